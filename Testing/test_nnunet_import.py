"""Importing nnU-Net v2 models: a results folder written in nnU-Net's own file formats (plans.json,
dataset.json, fold_K/checkpoint_final.pth with the training log's numpy scalars, every weight
under nnU-Net's names and aliases) is imported, run on a real case through `medsegai segment`,
and every bad or hostile input is refused without anything in it being run.

That the labels equal nnUNetv2_predict's is measured against nnU-Net itself by
Testing/benchmarks/nnunet_import.py (nnU-Net lives in its own venv, not in the test suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.methods.deep.nnunet.importer import import_nnunet, load_imported  # noqa: E402
from MedSegAILib.methods.deep.nnunet.network import NnUNet  # noqa: E402
from MedSegAILib.methods.deep.nnunet.predict import gaussian_weights, segment_imported, tile_starts  # noqa: E402
from MedSegAILib.methods.deep.nnunet.preprocess import nonzero_box, resample, separate_axis  # noqa: E402

LIBRARY_PARENT = str(Path(__file__).resolve().parents[1])


def _arch(network="PlainConvUNet"):
    a = {
        "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }
    a["n_blocks_per_stage" if network == "ResidualEncoderUNet" else "n_conv_per_stage"] = [1, 2, 2] if network == "ResidualEncoderUNet" else [2, 2, 2]
    return {"network_class_name": f"dynamic_network_architectures.architectures.unet.{network}", "arch_kwargs": a,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def results_folder(root: Path, *, network="PlainConvUNet", folds=(0,), mutate=None, payload=None) -> Path:
    """An nnU-Net v2 results folder in nnU-Net's formats, with seeded random weights."""
    folder = root / f"nnUNetTrainer__nnUNetPlans__3d_fullres_{network}"
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2}, "numTraining": 10, "file_ending": ".nii.gz"}
    conf = {"data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2, "patch_size": [24, 32, 24],
            "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": _arch(network)}
    plans = {"dataset_name": "Dataset004_Hippocampus", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": conf}, "image_reader_writer": "SimpleITKIO",
             "foreground_intensity_properties_per_channel": {"0": {"mean": 80.0, "std": 20.0, "percentile_00_5": 20.0, "percentile_99_5": 150.0}}}
    if mutate:
        mutate(plans, dataset)
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps(dataset))
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in folds:
        torch.manual_seed(fold)
        net = NnUNet(_arch(network)["arch_kwargs"] | {"network": network}, 1, 3)
        ck = {"network_weights": net.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
              "logging": {"mean_fg_dice": [np.float32(0.5)], "ema_fg_dice": [np.float32(0.4)], "lrs": [0.01]},
              "_best_ema": np.float32(0.4), "current_epoch": 1, "trainer_name": "nnUNetTrainer",
              "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold, "dataset_json": dataset, "device": torch.device("cpu")},
              "inference_allowed_mirroring_axes": (0, 1, 2)}
        if payload is not None:
            ck["logging"]["extra"] = payload
        (folder / f"fold_{fold}").mkdir()
        torch.save(ck, folder / f"fold_{fold}" / "checkpoint_final.pth")
    return folder


class Payload:
    """Unpickling this would run code: it must never be unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_import_keeps_every_tensor_and_runs_through_segment(tmp_path, hippocampus_case):
    src = results_folder(tmp_path, folds=(0, 1))
    card = import_nnunet(src, tmp_path / "model", log=lambda m: None)
    assert card["format"] == "nnunet-v2" and [m["fold"] for m in card["folds"]] == [0, 1]
    assert card["nnunet"]["mirror_axes"] == [0, 1, 2] and card["nnunet"]["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert len(card["import"]["checkpoints"]) == 2 and card["import"]["plans_name"] == "nnUNetPlans"
    # The imported weights are the checkpoint's, every alias of them included.
    model = load_imported(tmp_path / "model")
    ck = torch.load(src / "fold_1" / "checkpoint_final.pth", weights_only=False)
    for k, v in model.load_networks()[1].state_dict().items():
        torch.testing.assert_close(v, ck["network_weights"][k], rtol=0, atol=0)
    image = sitk.ReadImage(str(hippocampus_case[0]))
    out = segment_imported([image], tmp_path / "model", tta=False)
    assert out.labels.GetSize() == image.GetSize() and [c.name for c in out.classes] == ["Anterior", "Posterior"]
    prob = sitk.GetArrayFromImage(out.probabilities)
    np.testing.assert_allclose(prob.sum(axis=-1), 1.0, atol=1e-5)
    # Each fold has an ONNX export checked against torch; ONNX Runtime gives the same result.
    assert all(m["onnx"]["max_relative_logit_difference"] < 1e-3 for m in card["folds"])
    onnx = segment_imported([image], tmp_path / "model", tta=False, runtime="onnx")
    assert onnx.parameters["runtime"] == "onnx"
    np.testing.assert_allclose(sitk.GetArrayFromImage(onnx.probabilities), prob, atol=2e-3)
    assert (sitk.GetArrayFromImage(onnx.labels) != sitk.GetArrayFromImage(out.labels)).mean() < 1e-3
    # What Slicer is asked to install for it: ONNX Runtime alone, or PyTorch when torch is asked for.
    from MedSegAILib.runs import requirements as rq

    assert [r.module for r in rq.requirements_for("deep", model=str(tmp_path / "model"))] == ["onnxruntime"]
    assert "torch" in [r.module for r in rq.requirements_for("deep", model=str(tmp_path / "model"), parameters={"runtime": "torch"})]
    # Through the CLI: a MedSegAI run of the imported model, with every output.
    run = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "segment", str(hippocampus_case[0]), "--method", "deep", "--model", str(tmp_path / "model"),
                          "--output", str(tmp_path / "out"), "--no-radiomics"], capture_output=True, text=True, cwd=LIBRARY_PARENT)
    assert run.returncode == 0, run.stderr
    for f in ("labels.nii.gz", "uncertainty.nii.gz", "segmentation.seg.nrrd", "instances.csv", "provenance.json"):
        assert (tmp_path / "out" / f).exists(), f
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["model_hash"] == card["sha256"]
    # A damaged weights file is caught by its SHA-256.
    for name in ("fold1.onnx", "fold0.safetensors"):
        (tmp_path / "model" / name).write_bytes(b"x" + (tmp_path / "model" / name).read_bytes()[1:])
        with pytest.raises(InputError, match=f"{name}' does not match the SHA-256"):
            load_imported(tmp_path / "model")


def test_the_residual_encoder_unet_is_rebuilt(tmp_path):
    src = results_folder(tmp_path, network="ResidualEncoderUNet")
    import_nnunet(src, tmp_path / "model", log=lambda m: None)
    net = load_imported(tmp_path / "model").load_networks()[0]
    assert any(".skip.1.conv.weight" in k for k in net.state_dict()) and "encoder.stem.convs.0.conv.weight" in net.state_dict()
    assert net(torch.zeros(1, 1, 24, 32, 24)).shape == (1, 3, 24, 32, 24)


def test_a_checkpoint_with_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "was_run"
    src = results_folder(tmp_path, payload=Payload(str(marker)))
    with pytest.raises(InputError, match="pickled objects that are not plain weights"):
        import_nnunet(src, tmp_path / "model", log=lambda m: None)
    assert not marker.exists() and not (tmp_path / "model").exists()


@pytest.mark.parametrize("mutate, says", [
    (lambda p, d: p["configurations"]["3d_fullres"].update(patch_size=[4096, 4096, 4096]), "absurd"),
    (lambda p, d: p["configurations"]["3d_fullres"].update(normalization_schemes=["MyOwnNormalization"]), "unknown normalisation 'MyOwnNormalization'"),
    (lambda p, d: d["labels"].update(whole=[1, 2]), "region-based"),
    (lambda p, d: p["configurations"]["3d_fullres"]["architecture"].update(network_class_name="evil.Net"), "'Net' is not one of"),
    (lambda p, d: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(nonlin="os.system"), "nonlin 'os.system' is not supported"),
    (lambda p, d: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(features_per_stage=[4, 8, 32]), "shape"),
    (lambda p, d: p.update(transpose_forward=[0, 0, 1]), "not inverse permutations"),
], ids=["patch", "normalisation", "regions", "network", "nonlin", "shapes", "transpose"])
def test_bad_plans_are_refused(tmp_path, mutate, says):
    src = results_folder(tmp_path, mutate=mutate)
    with pytest.raises(InputError, match=says):
        import_nnunet(src, tmp_path / "model", log=lambda m: None)
    assert not (tmp_path / "model").exists()


def test_cli_refusals_are_one_line_and_exit_2(tmp_path):
    src = results_folder(tmp_path, mutate=lambda p, d: p["configurations"]["3d_fullres"].update(patch_size=[4096, 4096, 4096]))
    run = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "import-model", "nnunet", str(src), "--output", str(tmp_path / "m")],
                         capture_output=True, text=True, cwd=LIBRARY_PARENT)
    assert run.returncode == 2 and "absurd" in run.stderr and run.stderr.count("\n") == 1, run.stderr


def test_sliding_window_and_resampling_rules():
    assert tile_starts(40, 40) == [0] and tile_starts(100, 40) == [0, 20, 40, 60] and tile_starts(90, 40) == [0, 17, 33, 50]
    g = gaussian_weights([8, 10, 12])
    assert g.dtype == np.float16 and float(g.max()) == 10.0 and g.min() > 0
    assert separate_axis([5.0, 1.0, 1.0], [1.0, 1.0, 1.0], None) == 0 and separate_axis([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], None) is None
    data = np.random.default_rng(0).normal(size=(1, 6, 10, 10)).astype(np.float32)
    assert resample(data, (6, 10, 10), [1, 1, 1], [1, 1, 1], 3, 0) is data  # nothing to do: untouched
    out = resample(data, (12, 20, 20), [2, 1, 1], [1, 0.5, 0.5], 3, 0)
    assert out.shape == (1, 12, 20, 20) and out.dtype == np.float32 and out.min() >= data.min() and out.max() <= data.max()
    vol = np.zeros((1, 8, 8, 8), np.float32)
    vol[0, 2:5, 3:7, 1:4] = 1
    vol[0, 3, 4, 2] = 0  # a hole: filled, as nnU-Net fills it
    box, mask = nonzero_box(vol)
    assert box == [(2, 5), (3, 7), (1, 4)] and mask[3, 4, 2]
