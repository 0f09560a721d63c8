"""Deep family: training on real cases, inference geometry, model integrity, shipped model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import load_model  # noqa: E402
from MedSegAILib.methods.deep.train import TrainOptions, train  # noqa: E402
from MedSegAILib.resources import models_dir  # noqa: E402
from MedSegAILib.uncertainty.calibration import error_detection_auroc, structure_region  # noqa: E402


@pytest.fixture(scope="module")
def tiny_fingerprint(tiny_dataset):
    """The ten cases' dataset fingerprint (spacings, sizes, intensities), from which plans are made."""
    from MedSegAILib.methods.deep.dataset import fingerprint, read_dataset

    return fingerprint(read_dataset(tiny_dataset))


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    opts = TrainOptions(features=[8, 16, 32], epochs=6, batch_size=2, val_cases=2, augment=0.0, lr=3e-3, threads=2, seed=1)
    card = train(tiny_dataset, out, opts, log=lambda m: None)
    return out, card


def test_training_loss_falls_and_card_is_written(tiny_model):
    out, card = tiny_model
    hist = json.loads((out / "training_history.json").read_text())
    assert hist == json.loads((out / "checkpoint.json").read_text())["history"]
    assert all(h["cpu_s"] > 0 and h["elapsed_s"] > 0 for h in hist)
    losses = [h["train_loss"] for h in hist]
    assert losses[-1] < 0.8 * losses[0], losses
    assert card["plan"]["num_classes"] == 3
    assert card["plan"]["class_names"] == {"1": "Anterior", "2": "Posterior"}
    assert len(card["training"]["validation_cases"]) == 2
    assert (out / "learning_curves.png").stat().st_size > 5000
    assert (out / "model.sha256").read_text().split()[0] == card["sha256"]


def test_training_continues_from_a_trained_models_weights(tiny_dataset, tiny_model, tmp_path):
    start, start_card = tiny_model
    opts = TrainOptions(features=[8, 16, 32], epochs=2, batch_size=2, val_cases=2, augment=0.0, lr=1e-3, threads=2, seed=1, init_from=str(start))
    card = train(tiny_dataset, tmp_path / "continued", opts, log=lambda m: None)
    assert card["training"]["initialised_from"]["sha256"] == start_card["sha256"]
    scratch = json.loads((start / "training_history.json").read_text())
    continued = json.loads((tmp_path / "continued" / "training_history.json").read_text())
    # Started from trained weights, its first epoch is already past the scratch run's first epoch.
    assert continued[0]["train_loss"] < 0.8 * scratch[0]["train_loss"], (continued[0], scratch[0])
    # Resuming the continued run keeps the record of the model it started from.
    opts.epochs = 3
    resumed = train(tiny_dataset, tmp_path / "continued", opts, resume=True, log=lambda m: None)
    assert resumed["training"]["epochs_run"] == 3
    assert resumed["training"]["initialised_from"]["sha256"] == start_card["sha256"]
    # Resuming on another split would validate on cases the weights were trained on: refused.
    opts.epochs, opts.fold = 4, 0
    with pytest.raises(InputError, match="validated on other cases"):
        train(tiny_dataset, tmp_path / "continued", opts, resume=True, log=lambda m: None)


def test_weight_averaging_keeps_the_running_mean_across_a_resume(tiny_dataset, tiny_model, tmp_path):
    """With --average-from the kept model is the mean of the weights after each averaged epoch,
    and a resumed run goes on with the saved mean: after epoch 4 it is (3 * mean of 1-3 + w4) / 4."""
    import safetensors.torch as st

    start, _ = tiny_model
    out = tmp_path / "swa"
    opts = TrainOptions(features=[8, 16, 32], epochs=3, batch_size=2, val_cases=2, augment=0.0, lr=1e-3, threads=2, seed=1, init_from=str(start), average_from=0.3, onnx_export=False)
    card = train(tiny_dataset, out, opts, log=lambda m: None)
    assert card["validation"]["best_epoch"] is None
    assert "3 epochs 1-3" in card["validation"]["weights"]
    assert card["validation"]["best_single_epoch"]["epoch"] in (1, 2, 3)
    mean3 = st.load_file(str(out / "model.safetensors"))
    lrs = [h["lr"] for h in json.loads((out / "training_history.json").read_text())]
    assert lrs[1] == lrs[2] < 1e-3  # constant once averaging has begun

    opts.epochs = 4
    card = train(tiny_dataset, out, opts, resume=True, log=lambda m: None)
    assert "4 epochs 1-4" in card["validation"]["weights"]
    mean4 = st.load_file(str(out / "model.safetensors"))
    w4 = {k[6:]: v for k, v in st.load_file(str(out / "checkpoint.safetensors")).items() if k.startswith("model.")}
    assert set(mean4) == set(w4)
    for k, v in mean4.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (3 * mean3[k] + w4[k]) / 4, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(mean4[k], w4[k]) for k in w4)
    # The averaged model is what a run loads (checksum recorded for the mean, not the last epoch).
    assert load_model(out).sha256 == card["sha256"]
    # Resuming with averaging switched off, or switched on for a run that did not average, would
    # keep a stale mean or misstate where averaging began: refused, the model left as it was.
    opts.epochs, opts.average_from = 5, None
    with pytest.raises(InputError, match="trained with --average-from 0.3, this run asks for None"):
        train(tiny_dataset, out, opts, resume=True, log=lambda m: None)
    assert load_model(out).sha256 == card["sha256"]
    plain = tmp_path / "plain"
    shutil.copytree(start, plain)
    opts.epochs, opts.average_from, opts.init_from = 7, 0.3, None
    with pytest.raises(InputError, match="trained with --average-from None, this run asks for 0.3"):
        train(tiny_dataset, plain, opts, resume=True, log=lambda m: None)


@pytest.mark.parametrize("change, message", [({"average_from": 1.0}, "fraction of the schedule"), ({"average_from": 0.5, "norm": "batch"}, "batch-norm statistics")])
def test_weight_averaging_refuses_what_it_cannot_average(tiny_dataset, tmp_path, change, message):
    opts = TrainOptions(features=[8, 16, 32], epochs=1, batch_size=2, val_cases=2, threads=2, **change)
    with pytest.raises(InputError, match=message):
        train(tiny_dataset, tmp_path / "m", opts, log=lambda m: None)
    assert not (tmp_path / "m").exists()


def test_starting_from_a_model_trained_on_the_validation_cases_is_refused(tiny_dataset, tiny_model, tmp_path):
    start, _ = tiny_model  # trained on the first 8 of the 10 cases
    opts = TrainOptions(features=[8, 16, 32], epochs=1, batch_size=2, val_cases=2, fold=0, augment=0.0, threads=2, init_from=str(start))
    with pytest.raises(InputError, match="trained on 2 of this run's validation cases"):
        train(tiny_dataset, tmp_path / "leaky", opts, log=lambda m: None)
    assert not (tmp_path / "leaky" / "model.json").exists()


def test_training_from_a_model_with_another_plan_is_refused(tiny_dataset, tiny_model, tmp_path):
    start, _ = tiny_model
    opts = TrainOptions(features=[8, 16], epochs=1, batch_size=2, val_cases=2, augment=0.0, threads=2, init_from=str(start))
    with pytest.raises(InputError, match="trained with another plan .*features"):
        train(tiny_dataset, tmp_path / "other", opts, log=lambda m: None)


def test_cross_validation_folds_partition_the_shared_cases(shared_data):
    from MedSegAILib.methods.deep.dataset import read_dataset, split_cases

    cases = read_dataset(shared_data / "hippocampus").cases
    _, default_val = split_cases(cases, 40)
    seen = []
    for k in range(len(cases) // 40):
        tr, va = split_cases(cases, 40, fold=k)
        assert len(va) == 40 and len(tr) == len(cases) - 40
        assert not {c.name for c in tr} & {c.name for c in va}
        seen += [c.name for c in va]
    assert sorted(seen) == sorted(c.name for c in cases)  # every case validates exactly once
    assert [c.name for c in split_cases(cases, 40, fold=len(cases) // 40 - 1)[1]] == [c.name for c in default_val]
    with pytest.raises(InputError, match="--fold 5 does not exist"):
        split_cases(cases, 40, fold=5)
    # Blocks that do not divide the cases: the last fold takes the remainder (200 = 6 x 30 + 20).
    blocks = [split_cases(cases, 30, fold=k)[1] for k in range(6)]
    assert [len(b) for b in blocks] == [30] * 5 + [50]
    assert sorted(c.name for b in blocks for c in b) == sorted(c.name for c in cases)


def test_full_resolution_level_plan_and_network(tiny_fingerprint):
    """With a full-resolution first level the total stride halves and the first unit keeps the size."""
    from MedSegAILib.methods.deep.networks import build_network
    from MedSegAILib.methods.deep.plan import Plan, make_plan

    fp = tiny_fingerprint
    half = make_plan(fp, features=[8, 16, 32, 64])
    full = make_plan(fp, features=[8, 16, 32, 64], full_resolution_level=True)
    assert (half.stride, full.stride) == (8, 4)
    assert full.level_strides == [1, 2, 2]
    assert all(p % 4 == 0 for p in full.patch_size_zyx)
    # A plan written before the option existed reads as the half-resolution network.
    old = {k: v for k, v in half.to_dict().items() if k != "full_resolution_level"}
    assert Plan.from_dict(old).level_strides == [2, 2, 2]
    x = torch.zeros(1, 1, *full.patch_size_zyx)
    net = build_network(full).eval()
    first = net.model[0]  # MONAI UNet: the first down-sampling unit
    with torch.no_grad():
        assert first(x).shape[2:] == x.shape[2:]
        assert net(x).shape == (1, 3, *full.patch_size_zyx)
        assert build_network(half).eval().model[0](torch.zeros(1, 1, *half.patch_size_zyx)).shape[2] == half.patch_size_zyx[0] // 2


@pytest.mark.parametrize("network", ["unet3d", "unet2d", "unet2.5d"])
@pytest.mark.parametrize("norm", ["instance", "group", "batch", "layer"])
def test_every_network_and_normalisation_trains_a_step(tiny_fingerprint, network, norm):
    """Each network kind with each normalisation maps a batch of patches to K logits of the same
    size, with gradients reaching the first layer; group and layer norm are GroupNorm layers
    with 8 and 1 groups. The ASPP and signed-distance variants ride on the 3D runs."""
    from MedSegAILib.methods.deep.losses import build_loss
    from MedSegAILib.methods.deep.networks import build_network
    from MedSegAILib.methods.deep.plan import make_plan

    torch.manual_seed(0)
    extra = {"aspp": norm == "instance", "sdf_head": norm == "layer"} if network == "unet3d" else {}
    plan = make_plan(tiny_fingerprint, network=network, norm=norm, features=[8, 16, 32], **extra)
    net = build_network(plan).train()
    x = torch.randn(2, plan.in_channels, *plan.patch_size_zyx)
    logits = net(x)
    assert logits.shape == (2, 3, *plan.patch_size_zyx)
    build_loss("dice_ce")(logits, torch.randint(0, 3, (2, 1, *plan.patch_size_zyx))).backward()
    first = next(p for p in net.parameters() if p.ndim > 1)
    assert first.grad is not None and float(first.grad.abs().sum()) > 0
    groups = {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert groups == {"group": {8}, "layer": {1}}.get(norm, set())


def test_group_norm_with_channels_it_cannot_split_is_refused(tiny_fingerprint):
    from MedSegAILib.methods.deep.networks import build_network
    from MedSegAILib.methods.deep.plan import Plan, make_plan

    plan = make_plan(tiny_fingerprint, norm="group", features=[12, 24, 48])
    with pytest.raises(InputError, match="multiple of 8; the features 12, 24, 48 include 12"):
        build_network(plan)
    # Eight classes split into 8 groups: the plain UNet, as such models were built before the
    # 1x1 head existed, so their weights still load.
    eight = Plan.from_dict({**make_plan(tiny_fingerprint, norm="group", features=[8, 16, 32]).to_dict(), "num_classes": 8})
    assert all(k.startswith("model.") for k in build_network(eight).state_dict())


@pytest.mark.parametrize("name", ["dice_ce", "ce", "wbce", "dice", "tversky", "focal", "dice_focal", "dice_ce_boundary"])
def test_every_loss_prefers_the_reference_labels(hippocampus_case, name):
    """On a real label map, logits that state the reference score a lower loss than logits that
    state a shifted copy of it, and the loss is finite with a gradient."""
    from MedSegAILib.methods.deep.losses import build_loss

    lab = torch.from_numpy(sitk.GetArrayFromImage(sitk.ReadImage(str(hippocampus_case[1]))).astype(np.int64))[None, None]

    def logits_for(labels):
        return (6.0 * torch.nn.functional.one_hot(labels[:, 0], 3).permute(0, 4, 1, 2, 3).float() - 3.0).requires_grad_(True)

    loss = build_loss(name)
    right = logits_for(lab)
    value = loss(right, lab)
    value.backward()
    assert torch.isfinite(value) and float(right.grad.abs().sum()) > 0
    assert float(value.detach()) < float(loss(logits_for(torch.roll(lab, 4, dims=3)), lab).detach())


def test_inference_keeps_input_geometry_on_oblique_anisotropic_image(tiny_model, hippocampus_case):
    """A resampled, rotated, anisotropic copy: the output is on its grid exactly."""
    out, _ = tiny_model
    img = sitk.ReadImage(str(hippocampus_case[0]), sitk.sitkFloat32)
    rot = sitk.Euler3DTransform(img.TransformContinuousIndexToPhysicalPoint([s / 2 for s in img.GetSize()]), 0.2, 0.0, 0.1)
    direction = np.array(rot.GetMatrix()).reshape(3, 3) @ np.array(img.GetDirection()).reshape(3, 3)
    grid = sitk.Image([35, 50, 18], sitk.sitkFloat32)
    grid.SetSpacing((1.0, 1.0, 2.0))
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin(img.GetOrigin())
    moved = sitk.Resample(img, grid, sitk.Transform(), sitk.sitkLinear, 0.0)
    res = segment_with_model([moved], out, device="cpu", tta=False)
    for im in (res.labels, res.uncertainty, res.probabilities):
        assert im.GetSize() == moved.GetSize()
        assert im.GetSpacing() == moved.GetSpacing()
        assert im.GetOrigin() == moved.GetOrigin()
        assert im.GetDirection() == moved.GetDirection()
    p = sitk.GetArrayViewFromImage(res.probabilities)
    assert np.allclose(p.sum(-1), 1.0, atol=1e-4)


def test_signed_distance_targets_match_simpleitk_maurer_map(hippocampus_case):
    """The SDF head's targets against SimpleITK's signed Maurer distance on a real label."""
    from MedSegAILib.methods.deep.losses import signed_distance_targets

    lab = sitk.ReadImage(str(hippocampus_case[1]))
    arr = sitk.GetArrayFromImage(lab)
    spacing_zyx = lab.GetSpacing()[::-1]
    ours = signed_distance_targets(torch.from_numpy(arr[None, None].astype(np.int64)), 3, spacing_zyx, scale_mm=5.0)[0].numpy()
    for c in (1, 2):
        ref = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(lab == c, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
        ref = np.tanh(ref / 5.0)
        assert np.corrcoef(ours[c - 1].ravel(), ref.ravel())[0, 1] > 0.99
        far = np.abs(ref) > np.tanh(1.5 / 5.0)  # more than 1.5 mm from the surface: signs agree
        assert np.array_equal(np.sign(ours[c - 1][far]), np.sign(ref[far]))


def test_sdf_head_trains_and_its_model_segments(tiny_dataset, hippocampus_case, tmp_path):
    out = tmp_path / "sdf"
    opts = TrainOptions(features=[8, 16, 32], epochs=5, batch_size=2, val_cases=2, augment=0.0, lr=3e-3, threads=2, seed=1, sdf_head=True)
    card = train(tiny_dataset, out, opts, log=lambda m: None)
    assert card["plan"]["sdf_head"] is True
    losses = [h["train_loss"] for h in json.loads((out / "checkpoint.json").read_text())["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    img = sitk.ReadImage(str(hippocampus_case[0]), sitk.sitkFloat32)
    res = segment_with_model([img], out, device="cpu", tta=False)
    assert sitk.GetArrayViewFromImage(res.probabilities).shape[-1] == 3  # K logits only, not the distance channels
    assert res.labels.GetSize() == img.GetSize()


@pytest.mark.slow
def test_swinunetr_trains_exports_and_segments(tiny_dataset, hippocampus_case, tmp_path):
    """The hybrid CNN-transformer: one short run, its ONNX export checked against torch, and
    both runtimes segment a case on its own grid with the same labels (about 100 s)."""
    out = tmp_path / "swin"
    opts = TrainOptions(network="swinunetr", epochs=2, batch_size=2, val_cases=2, max_train_cases=2, augment=0.0, threads=2, seed=1)
    card = train(tiny_dataset, out, opts, log=lambda m: None)
    assert card["plan"]["network"] == "swinunetr"
    assert all(p % 32 == 0 for p in card["plan"]["patch_size_zyx"])
    assert card["onnx"]["max_relative_logit_difference"] < 1e-3
    img = sitk.ReadImage(str(hippocampus_case[0]), sitk.sitkFloat32)
    labels = {}
    for runtime in ("torch", "onnx"):
        res = segment_with_model([img], out, device="cpu", tta=False, runtime=runtime)
        assert res.labels.GetSize() == img.GetSize() and res.labels.GetOrigin() == img.GetOrigin()
        labels[runtime] = sitk.GetArrayFromImage(res.labels)
    assert np.mean(labels["torch"] == labels["onnx"]) > 0.999


def test_swinunetr_without_einops_is_a_clear_error(tiny_fingerprint, monkeypatch):
    import importlib.util

    from MedSegAILib.core.errors import MissingDependencyError
    from MedSegAILib.methods.deep import networks
    from MedSegAILib.methods.deep.plan import make_plan

    real = importlib.util.find_spec
    monkeypatch.setattr(networks.importlib.util, "find_spec", lambda name, *a: None if name == "einops" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="SwinUNETR network needs the Python package 'einops'.*medsegai\\[deep\\]"):
        networks.build_network(make_plan(tiny_fingerprint, network="swinunetr"))


def test_tampered_weights_are_refused(tiny_model, damaged_model_copy):
    out, _ = tiny_model
    bad = damaged_model_copy(out, "model.safetensors", -5)
    with pytest.raises(InputError, match="SHA-256 of the weights .* does not match the recorded one"):
        load_model(bad)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(InputError, match="no model folder or shipped model"):
        load_model("no-such-model")


SHIPPED = models_dir() / "hippocampus"


@pytest.mark.skipif(not (SHIPPED / "model.json").exists(), reason="the hippocampus model is not shipped in this checkout")
def test_shipped_model_reaches_documented_dice(shared_data):
    from MedSegAILib.measure.metrics import evaluate_labelmaps

    card = json.loads((SHIPPED / "model.json").read_text())
    assert card["status"] == "trained"
    model = load_model("hippocampus")
    if "members" in card:  # an ensemble: each member on its own validation cases, as its entry says
        member = 0
        model, card = model.members[member], card["members"][member]
    documented = card["validation"]["mean_dice"]
    cases = card["training"]["validation_cases"][:4]
    assert not set(cases) & set(card["training"]["train_cases"])
    dices, aurocs = [], []
    for name in cases:
        img = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"))
        ref = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / f"{name}.nii.gz"))
        out = segment_with_model([sitk.Cast(img, sitk.sitkFloat32)], model, device="cpu", tta=True)
        rep = evaluate_labelmaps(out.labels, ref)
        dices.append(np.mean([rep["classes"][k]["dice"] for k in ("1", "2")]))
        pred = sitk.GetArrayFromImage(out.labels)
        r = sitk.GetArrayFromImage(ref)
        unc = sitk.GetArrayFromImage(out.uncertainty)
        aurocs.append(error_detection_auroc(unc, pred != r, mask=structure_region(pred, r)))
    # Four cases vary around the 40-case mean; TTA adds a little.
    assert np.mean(dices) >= documented - 0.04, (dices, documented)
    # Uncertainty flags errors: misclassified voxels are more uncertain than correct ones.
    assert np.mean(aurocs) > 0.75, aurocs


def test_cancel_during_monte_carlo_dropout_leaves_torch_clean(tiny_model, hippocampus_case):
    """Cancelling in the middle of the dropout passes stops the run, and afterwards the thread
    is out of torch's inference mode and the network's dropout is off again."""
    from MedSegAILib.core.errors import Cancelled
    from MedSegAILib.core.progress import CancelToken, Progress

    out, _ = tiny_model
    model = load_model(out)
    img = sitk.ReadImage(str(hippocampus_case[0]), sitk.sitkFloat32)
    token = CancelToken()

    def on_progress(fraction, message):
        if message == "pass 5/6":  # the first dropout pass is done
            token.cancel()

    with pytest.raises(Cancelled) as caught:  # kept: its traceback holds the run's frames
        segment_with_model([img], model, device="cpu", mc_samples=2, progress=Progress(on_progress, token))
    assert caught.value is not None
    assert not torch.is_inference_mode_enabled()
    dropouts = [m for m in model.network.modules() if isinstance(m, torch.nn.Dropout | torch.nn.Dropout3d)]
    assert dropouts and not any(m.training for m in dropouts)
