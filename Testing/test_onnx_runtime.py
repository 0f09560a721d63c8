"""The ONNX Runtime path of the deep method: same results as torch on real cases, integrity
checks on the export, the runtime choice, and a deep run in a process where torch is absent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnxruntime")

from MedSegAILib.core.errors import InputError, MissingDependencyError  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.onnx_runtime import choose_runtime, load_onnx_model  # noqa: E402
from MedSegAILib.resources import models_dir  # noqa: E402

SHIPPED = models_dir() / "hippocampus_single"  # one network: the export integrity tests need its files


def test_shipped_model_has_a_current_onnx_export():
    from MedSegAILib.methods.deep.model_store import read_card
    from MedSegAILib.methods.deep.onnx_runtime import export_status

    assert export_status(SHIPPED, read_card(SHIPPED)) == "ready"
    model = load_onnx_model(SHIPPED)
    assert model.sha256 == read_card(SHIPPED)["sha256"] and len(model.onnx_sha256) == 64


def _read(shared_data, name):
    img = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)
    ref = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / f"{name}.nii.gz"))
    return img, ref


def _mirrored(img: sitk.Image) -> sitk.Image:
    """A real case tiled to more than one window along every axis (67 x 102 x 70 voxels)."""
    a = sitk.GetArrayFromImage(img)
    a = np.concatenate([a, a[::-1]], 0)
    a = np.concatenate([a, a[:, ::-1]], 1)
    a = np.concatenate([a, a[:, :, ::-1]], 2)
    out = sitk.GetImageFromArray(a)
    out.SetSpacing(img.GetSpacing())
    out.SetOrigin(img.GetOrigin())
    return out


def test_onnx_and_torch_runtimes_agree_on_real_cases(shared_data):
    """Shipped model, validation cases as they are and tiled (several overlapping windows),
    with and without TTA: the same labels and probabilities within 1e-3."""
    pytest.importorskip("torch")
    from MedSegAILib.methods.deep.model_store import load_model

    card = json.loads((SHIPPED / "model.json").read_text())
    onnx_model, torch_model = load_onnx_model(SHIPPED), load_model(SHIPPED)
    for name in card["training"]["validation_cases"][:2]:
        img, _ = _read(shared_data, name)
        for image, tta in ((img, True), (_mirrored(img), False)):
            a = segment_with_model([image], onnx_model, tta=tta)
            b = segment_with_model([image], torch_model, device="cpu", tta=tta)
            assert (a.extra["runtime"], b.extra["runtime"]) == ("onnxruntime", "torch")
            pa, pb = sitk.GetArrayViewFromImage(a.probabilities), sitk.GetArrayViewFromImage(b.probabilities)
            assert np.abs(pa - pb).max() < 1e-3
            assert np.array_equal(sitk.GetArrayViewFromImage(a.labels), sitk.GetArrayViewFromImage(b.labels))
            assert np.abs(sitk.GetArrayViewFromImage(a.uncertainty) - sitk.GetArrayViewFromImage(b.uncertainty)).max() < 1e-3
            assert a.labels.GetSize() == image.GetSize() and a.labels.GetOrigin() == image.GetOrigin()


def test_numpy_sliding_window_matches_monai(shared_data):
    """Our window layout, padding and Gaussian blending against MONAI's sliding_window_inference,
    with the same network, on a real case smaller than a patch and on a tiled one."""
    torch = pytest.importorskip("torch")
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet

    from MedSegAILib.methods.deep.sliding_window import sliding_window_logits

    torch.manual_seed(0)
    net = UNet(3, 1, 3, (8, 16, 32), (2, 2), num_res_units=1, norm="instance").eval()
    img, _ = _read(shared_data, "hippocampus_001")
    a = sitk.GetArrayFromImage(img)
    a = (a - a.mean()) / a.std()
    patch = (32, 48, 32)
    tiled = sitk.GetArrayFromImage(_mirrored(sitk.GetImageFromArray(a)))
    # smaller than the patch; larger along every axis; mixed (smaller, equal, one voxel more)
    for arr in (a[:20, :30, :25], tiled, tiled[:20, :48, :33]):
        x = np.ascontiguousarray(arr[None], dtype=np.float32)
        with torch.inference_mode():
            ref = sliding_window_inference(torch.from_numpy(x[None]), patch, 2, net, overlap=0.25, mode="gaussian", padding_mode="constant")[0].numpy()
            ours = sliding_window_logits(lambda b: net(torch.from_numpy(b)).numpy(), x, patch, overlap=0.25)
        assert ours.shape == ref.shape == (3, *arr.shape)
        assert np.abs(ours - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))


def test_tampered_onnx_export_is_refused(damaged_model_copy):
    bad = damaged_model_copy(SHIPPED, "model.onnx", (SHIPPED / "model.onnx").stat().st_size // 2)
    with pytest.raises(InputError, match="SHA-256 of the ONNX export .* does not match the recorded one.*export-onnx"):
        load_onnx_model(bad)
    # auto does not fall back silently past a damaged file: the run stops with the same error
    img = sitk.Image([30, 40, 30], sitk.sitkFloat32)
    with pytest.raises(InputError, match="SHA-256 of the ONNX export"):
        segment_with_model([img], bad, device="cpu", runtime="auto")


def test_onnx_export_is_not_run_when_the_weights_were_replaced(damaged_model_copy):
    """The export stands for the recorded weights: a swapped weights file stops the ONNX run too."""
    bad = damaged_model_copy(SHIPPED, "model.safetensors", -5)
    with pytest.raises(InputError, match="SHA-256 of the weights"):
        load_onnx_model(bad)


def test_export_of_other_weights_is_never_run(tmp_path):
    stale = tmp_path / "stale"
    shutil.copytree(SHIPPED, stale)
    card = json.loads((stale / "model.json").read_text())
    card["onnx"]["weights_sha256"] = "0" * 64
    (stale / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="made from other weights"):
        load_onnx_model(stale)
    with pytest.raises(InputError, match="ONNX export was made from other weights"):
        choose_runtime(stale, "onnx", "cpu", 0)
    if __import__("importlib").util.find_spec("torch") is not None:
        assert choose_runtime(stale, "auto", "cpu", 0)[0] == "torch"


def test_runtime_choice():
    everything = lambda m: True  # noqa: E731
    no_gpu, gpu = (lambda: False), (lambda: True)
    assert choose_runtime(SHIPPED, "auto", "cpu", 0, installed=everything, gpu_usable=gpu)[0] == "onnx"
    assert choose_runtime(SHIPPED, "auto", "auto", 0, installed=everything, gpu_usable=no_gpu)[0] == "onnx"
    # a GPU torch can use takes the run, but only with the whole torch stack installed
    assert choose_runtime(SHIPPED, "auto", "auto", 0, installed=everything, gpu_usable=gpu)[0] == "torch"
    assert choose_runtime(SHIPPED, "auto", "auto", 0, installed=lambda m: m != "monai", gpu_usable=gpu)[0] == "onnx"
    assert choose_runtime(SHIPPED, "torch", "cpu", 0)[0] == "torch"
    assert choose_runtime(SHIPPED, "auto", "cpu", 3, installed=everything) == ("torch", "Monte-Carlo dropout needs the torch runtime")
    assert choose_runtime(SHIPPED, "auto", "cpu", 0, installed=lambda m: m != "onnxruntime")[0] == "torch"
    with pytest.raises(MissingDependencyError, match=r"medsegai\[onnx\]"):
        choose_runtime(SHIPPED, "auto", "cpu", 0, installed=lambda m: False)
    with pytest.raises(InputError, match="Monte-Carlo dropout needs the torch runtime"):
        choose_runtime(SHIPPED, "onnx", "cpu", 3)
    with pytest.raises(InputError, match="runs on the CPU, --device cuda"):
        choose_runtime(SHIPPED, "onnx", "cuda", 0)
    with pytest.raises(InputError, match="runtime must be one of"):
        choose_runtime(SHIPPED, "tensorrt", "cpu", 0)


def test_training_exports_and_new_weights_retire_the_export(shared_data, tmp_path):
    """A tiny real training writes a checked export that runs like torch; saving other weights
    into the folder removes it, and the run goes back to torch."""
    pytest.importorskip("torch")
    from MedSegAILib.methods.deep.model_store import load_model, read_card, save_model
    from MedSegAILib.methods.deep.plan import Plan
    from MedSegAILib.methods.deep.train import TrainOptions, train

    data = tmp_path / "data"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
        for f in sorted((shared_data / "hippocampus" / sub).glob("*.nii.gz"))[:6]:
            shutil.copy(f, data / sub / f.name)
    (data / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}))
    out = tmp_path / "model"
    card = train(data, out, TrainOptions(features=[8, 16], epochs=1, batch_size=2, val_cases=2, augment=0.0, threads=2, seed=1), log=lambda m: None)
    entry = card["onnx"]
    assert entry["weights_sha256"] == card["sha256"] and entry["max_relative_logit_difference"] < 1e-3
    assert (out / "model.sha256").read_text().count("\n") == 2
    img, _ = _read(shared_data, "hippocampus_001")
    a = segment_with_model([img], out, device="cpu")
    b = segment_with_model([img], out, device="cpu", runtime="torch")
    assert (a.extra["runtime"], b.extra["runtime"]) == ("onnxruntime", "torch")
    assert np.abs(sitk.GetArrayViewFromImage(a.probabilities) - sitk.GetArrayViewFromImage(b.probabilities)).max() < 1e-3
    # --no-onnx: no export, and the run uses torch
    bare = tmp_path / "bare"
    train(data, bare, TrainOptions(features=[8, 16], epochs=1, batch_size=2, val_cases=2, augment=0.0, threads=2, seed=1, onnx_export=False), log=lambda m: None)
    assert not (bare / "model.onnx").exists() and "onnx" not in read_card(bare)
    assert segment_with_model([img], bare, device="cpu").extra["runtime"] == "torch"
    # new weights saved into the exported folder: the export is gone, not left stale
    model = load_model(out)
    save_model(out, model.network.state_dict(), Plan.from_dict(card["plan"]), {"name": "again"})
    assert not (out / "model.onnx").exists() and "onnx" not in read_card(out)
    assert choose_runtime(out, "auto", "cpu", 0)[0] == "torch"


def test_deep_method_runs_from_the_cli_without_torch(shared_data, tmp_path):
    """A fresh process in which torch and MONAI cannot be imported segments a validation case
    with the shipped model, writes every output, and matches the reference; matplotlib (slow to
    import, and not needed for the overview picture) is not loaded either."""
    card = json.loads((SHIPPED / "model.json").read_text())
    name = card["training"]["validation_cases"][0]
    case = shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"
    out = tmp_path / "out"
    script = (
        "import sys\n"
        "for m in ('torch', 'monai', 'safetensors'):\n"
        "    sys.modules[m] = None  # import fails and find_spec reports it missing\n"
        "from MedSegAILib.cli import main\n"
        f"code = main(['segment', {str(case)!r}, '--method', 'deep', '--model', 'hippocampus', '-o', {str(out)!r}, '-q'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai', 'matplotlib') and sys.modules[m] is not None)\n"
        "print('LOADED', loaded)\n"
        "sys.exit(code)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "LOADED []" in run.stdout
    prov = json.loads((out / "provenance.json").read_text())
    assert json.dumps(prov).count('"onnxruntime"') >= 1
    for f in ("labels.nii.gz", "uncertainty.nii.gz", "segmentation.seg.nrrd", "instances.csv", "overview.png"):
        assert (out / f).stat().st_size > 0
    from MedSegAILib.measure.metrics import evaluate_labelmaps

    rep = evaluate_labelmaps(sitk.ReadImage(str(out / "labels.nii.gz")), _read(shared_data, name)[1])
    assert np.mean([rep["classes"][k]["dice"] for k in ("1", "2")]) > 0.75
