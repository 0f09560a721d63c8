"""Ensembles of deep models: one folder with one card, every member verified, probabilities
averaged over members, the disagreement in the uncertainty, and the CLI around it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("onnxruntime")

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.methods.deep.ensemble import assemble_ensemble  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import Ensemble, read_card  # noqa: E402
from MedSegAILib.methods.deep.onnx_runtime import load_onnx_model  # noqa: E402
from MedSegAILib.resources import models_dir  # noqa: E402

SHIPPED = models_dir() / "hippocampus_single"


def _case(shared_data, name="hippocampus_317"):
    return sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)


def _probabilities(out) -> np.ndarray:
    return sitk.GetArrayFromImage(out.probabilities)


@pytest.fixture(scope="module")
def perturbed_member(tmp_path_factory):
    """The shipped model's weights with every tensor shifted by noise: a second, different
    member of the same plan (no ONNX export)."""
    torch = pytest.importorskip("torch")
    from MedSegAILib.methods.deep.model_store import load_model, save_model
    from MedSegAILib.methods.deep.plan import Plan

    model = load_model(SHIPPED)
    gen = torch.Generator().manual_seed(0)
    state = {k: (v + 0.05 * v.std() * torch.randn(v.shape, generator=gen) if v.is_floating_point() and v.numel() > 1 else v)
             for k, v in model.network.state_dict().items()}
    out = tmp_path_factory.mktemp("member") / "perturbed"
    card = {k: v for k, v in model.card.items() if k not in ("onnx", "domain")}
    save_model(out, state, Plan.from_dict(model.card["plan"]), card)
    return out


def test_an_ensemble_of_one_model_twice_gives_that_model(shared_data, tmp_path):
    """Two copies of the shipped model: the same probabilities and uncertainty as the model
    alone through ONNX Runtime, the members' own entropy equal to it, and a provenance that
    names both members."""
    ens = tmp_path / "twice"
    card = assemble_ensemble([SHIPPED, SHIPPED], ens)
    assert [m["weights"] for m in card["members"]] == ["member0.safetensors", "member1.safetensors"]
    assert all(m["onnx"]["file"] == f"member{i}.onnx" for i, m in enumerate(card["members"]))
    loaded = load_onnx_model(ens)
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 2
    img = _case(shared_data)
    single = segment_with_model([img], str(SHIPPED), device="cpu")
    both = segment_with_model([img], str(ens), device="cpu")
    assert both.extra["runtime"] == "onnxruntime" and len(both.extra["onnx_sha256"]) == 2
    assert both.extra["ensemble_members"] == [read_card(SHIPPED)["sha256"]] * 2
    assert both.extra["member_agreement"] == 1.0 and "member_agreement" not in single.extra
    np.testing.assert_allclose(_probabilities(both), _probabilities(single), atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(both.uncertainty), sitk.GetArrayFromImage(single.uncertainty), atol=1e-5)
    np.testing.assert_allclose(sitk.GetArrayFromImage(both.member_uncertainty), sitk.GetArrayFromImage(single.uncertainty), atol=1e-4)
    assert single.member_uncertainty is None
    from MedSegAILib.runs.model_choices import model_summary

    summary = model_summary(read_card(ens))
    assert "ensemble of 2 models" in summary and "runs without PyTorch" in summary


def test_ensemble_probabilities_are_the_mean_of_its_members(shared_data, tmp_path, perturbed_member):
    """Shipped + perturbed member (torch, no flips): the mean of the two models' probabilities,
    and more mutual information than either alone, since they disagree."""
    ens = tmp_path / "pair"
    card = assemble_ensemble([SHIPPED, perturbed_member], ens)
    assert not any("onnx" in m for m in card["members"])  # one member has no export: none are kept
    img = _case(shared_data)
    kw = dict(device="cpu", tta=False, runtime="torch", uncertainty="mutual_information")
    a = segment_with_model([img], str(SHIPPED), **kw)
    b = segment_with_model([img], str(perturbed_member), **kw)
    both = segment_with_model([img], str(ens), **kw)
    assert both.extra["runtime"] == "torch"
    mean = (_probabilities(a) + _probabilities(b)) / 2
    np.testing.assert_allclose(_probabilities(both), mean, atol=1e-5)
    assert np.abs(_probabilities(a) - _probabilities(b)).max() > 0.05  # the members do differ
    assert 0.5 < both.extra["member_agreement"] < 1.0
    from MedSegAILib.methods.deep.domain import check_result

    record = dict(read_card(SHIPPED)["domain"], member_agreement=[both.extra["member_agreement"] + 0.1, 1.0])
    verdict = check_result(record, both)
    assert any("members disagree" in r for r in verdict.reasons), verdict.reasons
    record["member_agreement"] = [both.extra["member_agreement"], 1.0]
    assert not any("members disagree" in r for r in check_result(record, both).reasons)
    mi = sitk.GetArrayFromImage(both.uncertainty)
    assert float(sitk.GetArrayFromImage(a.uncertainty).max()) == 0.0  # one pass: no mutual information
    assert mi.max() > 0.01


def test_a_changed_member_or_card_is_refused(shared_data, tmp_path):
    ens = tmp_path / "twice"
    assemble_ensemble([SHIPPED, SHIPPED], ens)
    weights = ens / "member1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="member 1"):
        segment_with_model([_case(shared_data)], str(ens), device="cpu", runtime="torch")
    ens2 = tmp_path / "twice2"
    assemble_ensemble([SHIPPED, SHIPPED], ens2)
    card = json.loads((ens2 / "model.json").read_text())
    card["sha256"] = "0" * 64
    (ens2 / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="identity"):
        load_onnx_model(ens2)
    card = json.loads((ens / "model.json").read_text())
    card["members"][0]["weights"] = "../model.safetensors"
    (ens / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="member|weights"):
        segment_with_model([_case(shared_data)], str(ens), device="cpu", runtime="torch")


def test_members_of_another_plan_are_refused(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(SHIPPED, other)
    card = json.loads((other / "model.json").read_text())
    card["plan"]["patch_size_zyx"] = [32, 32, 32]
    (other / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="another plan.*patch_size_zyx"):
        assemble_ensemble([SHIPPED, other], tmp_path / "ens")
    with pytest.raises(InputError, match="at least two"):
        assemble_ensemble([SHIPPED], tmp_path / "ens")
    assert not (tmp_path / "ens").exists() and not (tmp_path / "ens.partial").exists()


def test_cli_assembles_and_segments_with_an_ensemble(shared_data, tmp_path):
    ens = tmp_path / "ens"
    cli = [sys.executable, "-m", "MedSegAILib.cli"]
    done = subprocess.run([*cli, "ensemble", str(SHIPPED), str(SHIPPED), "--output", str(ens)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([*cli, "ensemble", str(SHIPPED), str(SHIPPED), "--output", str(ens)], capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    image = shared_data / "hippocampus" / "imagesTr" / "hippocampus_317.nii.gz"
    run = subprocess.run([*cli, "segment", str(image), "--method", "deep", "--model", str(ens), "--output", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    text = json.dumps(prov)
    assert read_card(ens)["sha256"] in text and "ensemble_members" in text
    export = subprocess.run([*cli, "export-onnx", str(ens)], capture_output=True, text=True)
    assert export.returncode == 2 and "ensemble" in export.stderr
