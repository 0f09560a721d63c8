"""MONAI bundles made with MONAI's own tooling (``monai.bundle.init_bundle``), for the import
tests and the import benchmark: an inference config as MONAI's model zoo writes them (NIfTI in,
``SaveImaged`` out, ``$`` expressions for the data list and the checkpoint loader) around a
MONAI network and its weights."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

HIPPOCAMPUS_LABELS = {"0": "background", "1": "anterior hippocampus", "2": "posterior hippocampus"}


def hippocampus_preprocessing(pixdim=(1.2, 1.2, 1.2)) -> List[dict]:
    return [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": list(pixdim), "mode": "bilinear"},
        {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
        {"_target_": "EnsureTyped", "keys": "image"},
    ]


def unet_definition(out_channels: int = 3, channels=(16, 32, 64), strides=(2, 2)) -> dict:
    return {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": out_channels, "channels": list(channels),
            "strides": list(strides), "num_res_units": 2, "norm": "batch"}


def write_bundle(folder: Path, network, network_def: dict, *, preprocessing: Optional[List[dict]] = None, labels: Optional[dict] = None,
                 inferer: Optional[dict] = None, nearest_interp: bool = False, ext: str = ".nii.gz") -> Path:
    """A bundle at ``folder`` (must not exist) with ``network``'s weights as models/model.pt."""
    from monai.bundle import init_bundle

    labels = labels or HIPPOCAMPUS_LABELS
    inference = {
        "imports": ["$import glob"],
        "bundle_root": str(folder),
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data",
        "datalist": f"$list(sorted(glob.glob(@dataset_dir + '/*{ext}')))",
        "device": "$torch.device('cpu')",
        "network_def": network_def,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing or hippocampus_preprocessing()},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False, "num_workers": 0},
        "inferer": inferer or {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 4, "overlap": 0.5, "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image", "nearest_interp": nearest_interp, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg", "separate_folder": False,
             "output_dtype": "$numpy.uint8", "resample": False},
        ]},
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader", "network": "@network",
                      "inferer": "@inferer", "postprocessing": "@postprocessing"},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'", "load_dict": {"model": "@network"},
                             "map_location": "cpu"},
        "initialize": ["$@checkpointloader(@evaluator)"],
        "run": ["$@evaluator.run()"],
    }
    n = network_def["out_channels"]
    metadata = {
        "version": "0.1.0", "task": "hippocampus segmentation (test bundle)", "name": "hippocampus_test_bundle",
        "network_data_format": {"inputs": {"image": {"type": "image", "num_channels": 1, "modality": "MR"}},
                                "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": n, "channel_def": labels}}},
    }
    init_bundle(str(folder), network=network, metadata_str=metadata, inference_str=inference)
    return Path(folder)


#: The bundle's own preprocessing, inferer and postprocessing (its SaveImaged included), parsed
#: by ``monai.bundle`` and run over its data list, without the ignite evaluator that
#: ``monai.bundle run`` needs (pytorch-ignite is not a project dependency). Arguments: the
#: config file, the dataset folder, the output folder.
RUN_PARSED_BUNDLE = """
import sys, torch
from monai.bundle import ConfigParser
p = ConfigParser()
p.read_config(sys.argv[1])
p["dataset_dir"], p["output_dir"] = sys.argv[2], sys.argv[3]
pre, post, net, inferer = (p.get_parsed_content(k) for k in ("preprocessing", "postprocessing", "network_def", "inferer"))
net.load_state_dict(torch.load(p.get_parsed_content("bundle_root") + "/models/model.pt", weights_only=True))
net.eval()
for path in p.get_parsed_content("datalist"):
    d = pre({"image": path})
    with torch.no_grad():
        d["pred"] = inferer(d["image"][None], net)[0]
    post(d)
"""
