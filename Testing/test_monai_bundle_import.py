"""MONAI bundle import: a bundle made with MONAI's own tooling around a MONAI U-Net (batch-norm
statistics set, so every kind of tensor is carried) is imported, and its result on real cases
is compared with the bundle run by MONAI itself: its parsed transforms and inferer in this
process (softmax on the input grid), and the bundle's whole pre/postprocessing in a process of
its own (the label files its SaveImaged writes; ``monai.bundle run`` itself, with its ignite
evaluator, is the benchmark's, in the peer venv). Then the refusals: code in the config, transforms
MedSegAI cannot reproduce, pickled objects in model.pt, TorchScript-only bundles.

The trained-network comparison on the 40 validation cases is Testing/benchmarks/monai_bundle_import.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("nibabel")  # MONAI's own Orientationd and NIfTI reader need it (the reference run)

from bundle_maker import RUN_PARSED_BUNDLE, unet_definition, write_bundle  # noqa: E402

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.methods.deep.model_import import detect_kind, import_model  # noqa: E402
from MedSegAILib.methods.deep.monai_bundle.importer import import_monai_bundle, load_bundle_model  # noqa: E402
from MedSegAILib.methods.deep.monai_bundle.predict import segment_bundle  # noqa: E402


def _network(network_def: dict, seed: int = 0):
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    net = UNet(**{k: v for k, v in network_def.items() if k != "_target_"})
    net.train()
    with torch.no_grad():  # running statistics that are not the defaults
        for _ in range(3):
            net(torch.randn(2, 1, 32, 32, 32) * 2 + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    definition = unet_definition(channels=(8, 16, 32))
    return write_bundle(tmp_path_factory.mktemp("bundles") / "hippocampus_bundle", _network(definition), definition)


@pytest.fixture(scope="module")
def imported(bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "model"
    card = import_monai_bundle(bundle, out, log=lambda m: None)
    return out, card


def _monai_reference(bundle: Path, case: Path) -> np.ndarray:
    """The bundle's softmax on the input grid (K, x, y, z), by MONAI's own parsed components."""
    from monai.bundle import ConfigParser
    from monai.transforms import Activationsd, Invertd

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    pre, net, inferer = (parser.get_parsed_content(k) for k in ("preprocessing", "network_def", "inferer"))
    net.load_state_dict(torch.load(str(bundle / "models" / "model.pt"), weights_only=True))
    net.eval()
    d = pre({"image": str(case)})
    with torch.no_grad():
        d["pred"] = inferer(d["image"][None], net)[0]
    d = Activationsd(keys="pred", softmax=True)(d)
    d = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(d)
    return d["pred"].numpy()


def _ours_xyz(out) -> np.ndarray:
    prob = sitk.GetArrayFromImage(out.probabilities)  # (z, y, x, K)
    return np.moveaxis(prob, -1, 0).transpose(0, 3, 2, 1)


def test_import_matches_monai_running_the_bundle(bundle, imported, shared_data):
    out_dir, card = imported
    assert card["format"] == "monai-bundle" and card["bundle"]["network_class"] == "monai.networks.nets.unet.UNet"
    assert [s["op"] for s in card["bundle"]["preprocessing"]] == ["orientation", "spacing", "normalize"]
    assert card["networks"][0].get("onnx"), "the import exports a checked ONNX model"
    assert card["bundle"]["labels"]["2"] == "posterior hippocampus"
    case = shared_data / "hippocampus" / "imagesTr" / sorted(os.listdir(shared_data / "hippocampus" / "imagesTr"))[7]
    ref = _monai_reference(bundle, case)
    image = sitk.ReadImage(str(case))
    for runtime in ("torch", "onnx"):
        out = segment_bundle([image], out_dir, runtime=runtime)
        ours = _ours_xyz(out)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-4, runtime
        assert (ours.argmax(0) == ref.argmax(0)).mean() > 0.9999
        assert out.extra["runtime"] == ("onnxruntime" if runtime == "onnx" else "torch")
        labels = sitk.GetArrayFromImage(out.labels)
        assert labels.shape == sitk.GetArrayFromImage(image).shape and out.labels.GetOrigin() == image.GetOrigin()


def test_a_ct_bundle_with_other_transforms_matches_monai(tmp_path, shared_data):
    """Another orientation, anisotropic target spacing, a CT window, constant blending and
    nearest-neighbour inversion: each a path of its own."""
    definition = unet_definition(out_channels=2, channels=(8, 16))
    definition["strides"] = [2]
    pre = [
        {"_target_": "LoadImaged", "keys": ["image"]},
        {"_target_": "EnsureChannelFirstd", "keys": ["image"]},
        {"_target_": "Orientationd", "keys": ["image"], "axcodes": "LPI"},
        {"_target_": "Spacingd", "keys": ["image"], "pixdim": [2.5, 2.2, 3.5], "mode": ["bilinear"]},
        {"_target_": "ScaleIntensityRanged", "keys": ["image"], "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": True},
    ]
    inferer = {"_target_": "SlidingWindowInferer", "roi_size": [48, 48, 48], "sw_batch_size": 2, "overlap": 0.25}
    bundle = write_bundle(tmp_path / "ct_bundle", _network(definition, seed=1), definition, preprocessing=pre,
                          labels={"0": "background", "1": "liver"}, inferer=inferer, nearest_interp=True)
    card = import_monai_bundle(bundle, tmp_path / "model", log=lambda m: None)
    assert card["bundle"]["inferer"]["mode"] == "constant" and card["bundle"]["postprocessing"]["nearest_interp"] is True
    case = shared_data / "ct" / "example_ct.nii.gz"
    from monai.bundle import ConfigParser
    from monai.transforms import Activationsd, Invertd

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    pre_t, net, inf = (parser.get_parsed_content(k) for k in ("preprocessing", "network_def", "inferer"))
    net.load_state_dict(torch.load(str(bundle / "models" / "model.pt"), weights_only=True))
    d = pre_t({"image": str(case)})
    with torch.no_grad():
        d["pred"] = inf(d["image"][None], net.eval())[0]
    ref = Invertd(keys="pred", transform=pre_t, orig_keys="image", nearest_interp=True)(Activationsd(keys="pred", softmax=True)(d))["pred"].numpy()
    ours = _ours_xyz(segment_bundle([sitk.ReadImage(str(case))], tmp_path / "model", runtime="onnx"))
    assert np.abs(ours - ref).max() < 1e-4


def test_labels_match_monai_bundle_run_and_the_cli_gives_every_output(bundle, imported, shared_data, tmp_path):
    out_dir, _card = imported
    data = tmp_path / "data"
    data.mkdir()
    names = sorted(os.listdir(shared_data / "hippocampus" / "imagesTr"))[:2]
    for n in names:
        (data / n).write_bytes((shared_data / "hippocampus" / "imagesTr" / n).read_bytes())
    peer = subprocess.run([sys.executable, "-c", RUN_PARSED_BUNDLE, str(bundle / "configs" / "inference.json"), str(data), str(tmp_path / "monai")],
                          capture_output=True, text=True, timeout=300)
    assert peer.returncode == 0, peer.stderr[-2000:]
    for n in names:
        stem = n[: -len(".nii.gz")]
        run = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "segment", str(data / n), "--method", "deep", "--model", str(out_dir),
                              "--output", str(tmp_path / "ours" / stem)], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "monai" / f"{stem}_seg.nii.gz")))
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ours" / stem / "labels.nii.gz")))
        assert theirs.shape == ours.shape
        assert (theirs == ours).mean() > 0.9999
        for f in ("segmentation.seg.nrrd", "uncertainty.nii.gz", "provenance.json", "instances.csv"):
            assert (tmp_path / "ours" / stem / f).is_file()
        provenance = json.loads((tmp_path / "ours" / stem / "provenance.json").read_text())
        assert "MONAI UNet" in json.dumps(provenance)


def test_the_imported_files_are_checked(imported, tmp_path):
    out_dir, _ = imported
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    load_bundle_model(copy)
    raw = bytearray((copy / "network.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (copy / "network.safetensors").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="SHA-256"):
        load_bundle_model(copy)


def test_kind_is_told_by_the_folder(bundle, tmp_path):
    assert detect_kind(bundle) == "monai-bundle"
    card = import_model(bundle, tmp_path / "m", log=lambda m: None)
    assert card["format"] == "monai-bundle"
    with pytest.raises(InputError, match="neither"):
        detect_kind(tmp_path)
    with pytest.raises(InputError, match="belong to nnU-Net"):
        import_model(bundle, tmp_path / "m2", kind="monai-bundle", folds=[0])


def _edited(bundle: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "edited"
    for f in bundle.rglob("*"):
        if f.is_file():
            (copy / f.relative_to(bundle)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(bundle)).write_bytes(f.read_bytes())
    config = json.loads((copy / "configs" / "inference.json").read_text())
    edit(config, copy)
    (copy / "configs" / "inference.json").write_text(json.dumps(config))
    return copy


def _set_transform(i, item):
    def edit(config, _):
        config["preprocessing"]["transforms"][i] = item
    return edit


@pytest.mark.parametrize("edit, says", [
    (lambda c, _: c["network_def"].update({"channels": "$[8, 16, 32]"}), "Python expression"),
    (lambda c, _: c.update({"network_def": "$__import__('os').system('touch pwned')"}), "Python expression"),
    (lambda c, _: c["network_def"].update({"_target_": "monai.transforms.Compose"}), "not one of MONAI's networks"),
    (lambda c, _: c["network_def"].update({"_target_": "os.system"}), "not one of MONAI's networks"),
    # attribute chains through a network module to other code
    (lambda c, _: c.update({"network_def": {"_target_": "monai.networks.nets.hovernet.os.system", "command": "touch pwned"}}), "not one of MONAI's networks"),
    (lambda c, _: c.update({"network_def": {"_target_": "monai.networks.nets.unet.torch.load", "f": "x.pt", "weights_only": False}}), "not one of MONAI's networks"),
    (lambda c, _: c["network_def"].update({"_mode_": "callable"}), "_mode_"),
    (lambda c, _: c["network_def"].update({"_debug_": True}), "_debug_"),
    (lambda c, _: c["network_def"].update({"pretrained": True}), "download weights itself"),
    (lambda c, _: c.update({"network_def": "@network_def"}), "refers to itself"),
    (lambda c, _: c.update({"a": ["@b", "@b"], "b": ["@a", "@a"], "network_def": {**c["network_def"], "channels": "@a"}}), "too deeply"),
    (lambda c, _: c["inferer"].update({"sw_batch_size": "four"}), "sw_batch_size"),
    (lambda c, _: c["preprocessing"]["transforms"][3].update({"padding_mode": "zeros"}), "padding_mode"),
    (_set_transform(4, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}), "CropForegroundd"),
    (_set_transform(4, {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x"}), "Lambdad"),
    (lambda c, _: c["inferer"].update({"roi_size": [100000, 32, 32]}), "roi_size"),
    (lambda c, _: c["postprocessing"]["transforms"][0].update({"softmax": False, "sigmoid": True}), "sigmoid"),
    (lambda c, _: c["network_def"].update({"out_channels": 4}), "shape|do not fit"),
    (lambda c, _: c["network_def"].update({"spatial_dims": 2}), "3D"),
])
def test_bundles_that_would_need_code_or_do_not_fit_are_refused(bundle, tmp_path, edit, says):
    edited = _edited(bundle, tmp_path, edit)
    with pytest.raises(InputError, match=says):
        import_monai_bundle(edited, tmp_path / "model", log=lambda m: None)
    assert not (tmp_path / "model").exists() and not (tmp_path / "pwned").exists() and not Path("pwned").exists() and not Path("x.pt").exists()


def test_references_and_disabled_transforms_are_read_as_monai_reads_them(bundle, tmp_path):
    def edit(config, _):
        config["image_key"] = "image"
        for t in config["preprocessing"]["transforms"]:
            t["keys"] = "@image_key"
        config["preprocessing"]["transforms"].insert(4, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "_disabled_": "True"})

    card = import_monai_bundle(_edited(bundle, tmp_path, edit), tmp_path / "model", log=lambda m: None)
    assert [s["op"] for s in card["bundle"]["preprocessing"]] == ["orientation", "spacing", "normalize"]


def test_an_edited_card_is_checked_again_before_anything_is_built(imported, tmp_path, shared_data):
    out_dir, _ = imported
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    card = json.loads((copy / "model.json").read_text())
    card["bundle"]["network"] = {"_target_": "monai.networks.nets.hovernet.os.system", "command": f"touch {tmp_path / 'ran'}"}
    (copy / "model.json").write_text(json.dumps(card))
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"))
    with pytest.raises(InputError, match="not one of MONAI's networks"):
        segment_bundle([image], copy, runtime="torch")
    assert not (tmp_path / "ran").exists()


def test_a_failed_import_keeps_the_empty_folder_it_was_given(bundle, tmp_path):
    edited = _edited(bundle, tmp_path, lambda c, _: c["network_def"].update({"out_channels": 4}))
    (tmp_path / "given").mkdir()
    with pytest.raises(InputError):
        import_monai_bundle(edited, tmp_path / "given", log=lambda m: None)
    assert (tmp_path / "given").is_dir() and not any((tmp_path / "given").iterdir())


def test_pickled_code_in_model_pt_is_refused_and_not_run(bundle, tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    def edit(_config, copy):
        weights = torch.load(str(copy / "models" / "model.pt"), weights_only=True)
        torch.save({"model": weights, "extra": Payload()}, str(copy / "models" / "model.pt"))

    edited = _edited(bundle, tmp_path, edit)
    with pytest.raises(InputError, match="pickled objects"):
        import_monai_bundle(edited, tmp_path / "model", log=lambda m: None)
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_a_torchscript_only_bundle_is_refused(bundle, tmp_path):
    def edit(_config, copy):
        (copy / "models" / "model.pt").rename(copy / "models" / "model.ts")

    with pytest.raises(InputError, match="TorchScript"):
        import_monai_bundle(_edited(bundle, tmp_path, edit), tmp_path / "model", log=lambda m: None)


def test_cli_refusal_is_one_line_and_exit_2(bundle, tmp_path):
    edited = _edited(bundle, tmp_path, lambda c, _: c["network_def"].update({"channels": "$[8, 16, 32]"}))
    run = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "import-model", "monai-bundle", str(edited), "--output", str(tmp_path / "m")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    said = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(said) == 1 and "Python expression" in said[0], run.stderr


def test_requirements_run_an_exported_bundle_on_onnx_runtime(imported):
    from MedSegAILib.runs import requirements as rq

    out_dir, _ = imported
    assert rq._runs_on_onnx(str(out_dir), {}, "cpu")
    assert not rq._runs_on_onnx(str(out_dir), {"runtime": "torch"}, "cpu")
