"""The deep model's domain check on real inputs: refuse what is unlike the training data, say
why and what to do, segment on request with the result marked; in-domain cases pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import SimpleITK as sitk

from MedSegAILib.methods.deep.domain import check_output, output_features
from MedSegAILib.resources import models_dir

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "MedSegAILib.cli", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_whole_head_scan_is_refused_with_the_reason_and_the_remedy(shared_data, tmp_path):
    out = tmp_path / "o"
    proc = run_cli("segment", shared_data / "hippocampus_dicom" / "study3_t1post", "-m", "deep", "--model", "hippocampus", "-o", out)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("medsegai: error: the input is unlike the model's training data")
    assert "field of view" in line and "training crops" in line and "Crop Volume" in line and "--allow-out-of-domain" in line
    assert not out.exists()


def test_on_request_it_is_segmented_and_marked_out_of_domain(shared_data, tmp_path):
    out = tmp_path / "o"
    proc = run_cli("segment", shared_data / "mr_tumor" / "brain1_image.nrrd", "-m", "deep", "--model", "hippocampus", "--allow-out-of-domain", "--no-radiomics", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "OUT OF DOMAIN" in proc.stderr
    domain = json.loads((out / "provenance.json").read_text())["extra"]["domain"]
    assert domain["in_domain"] is False and domain["before"]["reasons"]


def test_validation_cases_are_in_domain(shared_data, tmp_path):
    card = json.loads((models_dir() / "hippocampus" / "model.json").read_text())
    split = card["members"][0]["training"] if "members" in card else card["training"]
    for name in split["validation_cases"][:3]:
        out = tmp_path / name
        proc = run_cli("segment", shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz", "-m", "deep", "--model", "hippocampus", "--no-radiomics", "-o", out)
        assert proc.returncode == 0, proc.stderr
        domain = json.loads((out / "provenance.json").read_text())["extra"]["domain"]
        assert domain["in_domain"] is True and domain["before"]["checked"] == "before inference" and domain["after"]["checked"] == "after inference"


def test_a_model_without_a_domain_record_says_so(shared_data, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(models_dir() / "hippocampus", model)
    card = json.loads((model / "model.json").read_text())
    card.pop("domain")
    (model / "model.json").write_text(json.dumps(card))
    proc = run_cli("segment", shared_data / "hippocampus_dicom" / "study3_t1post", "-m", "deep", "--model", model, "--no-radiomics", "-o", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert "records no training domain" in proc.stderr
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["extra"]["domain"]["in_domain"] is None


def test_the_check_after_inference_counts_pieces_and_volumes(shared_data):
    record = json.loads((models_dir() / "hippocampus" / "model.json").read_text())["domain"]
    label = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / "hippocampus_317.nii.gz"))
    unc = sitk.Image(label.GetSize(), sitk.sitkFloat32)
    unc.CopyInformation(label)
    ok = check_output(record, output_features(label, unc, [1, 2]), {"1": "anterior", "2": "posterior"})
    assert ok.in_domain is True, ok.reasons
    scattered = sitk.Image(label)
    for i in range(0, label.GetSize()[0] - 2, 6):
        scattered[i, 2, 2] = 1  # many separate specks of class 1
    bad = check_output(record, output_features(scattered, unc, [1, 2]), {"1": "anterior", "2": "posterior"})
    assert bad.in_domain is False and any("separate anterior pieces" in r for r in bad.reasons)


def test_the_panel_recognises_the_refusal_and_the_report_shows_the_verdict(shared_data, tmp_path):
    """The panel offers "segment anyway" when a run ends with the library's refusal; the report
    says the verdict at the top."""
    import ast

    import pytest

    from MedSegAILib.core.errors import OUT_OF_DOMAIN_START, OutOfDomainError
    from MedSegAILib.methods.deep.domain import DomainVerdict
    from MedSegAILib.methods.domain_gate import refuse_unless_allowed

    tree = ast.parse((REPO / "MedSegAI" / "MedSegAI.py").read_text())
    check = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_isDomainRefusal")
    assert "OUT_OF_DOMAIN_START" in {n.id for n in ast.walk(check) if isinstance(n, ast.Name)}
    for source in ("the model's training data", "the atlas library's images"):
        with pytest.raises(OutOfDomainError) as refused:
            refuse_unless_allowed(DomainVerdict(False, ["x"]), False, source)
        assert str(refused.value).startswith(OUT_OF_DOMAIN_START + source)
    refuse_unless_allowed(DomainVerdict(False, ["x"]), True, "the model's training data")  # allowed: no error
    out = tmp_path / "o"
    proc = run_cli("segment", shared_data / "mr_tumor" / "brain2_image.nrrd", "-m", "deep", "--model", "hippocampus", "--allow-out-of-domain", "--report", "--no-radiomics", "-o", out)
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="domain"' in html and "OUT OF DOMAIN" in html
