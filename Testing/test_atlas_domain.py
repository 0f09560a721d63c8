"""The atlas method's domain check: a target unlike the library's images is refused before
registration, a target the atlases do not register to as they do to in-domain targets is
refused after fusion, in-domain targets pass, and a library without a record says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from MedSegAILib.resources import atlases_dir

REPO = Path(__file__).resolve().parents[1]
LIBRARY = atlases_dir() / "hippocampus"
IN_DOMAIN = "hippocampus_393"  # not an atlas, not one of the record's targets


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "MedSegAILib.cli", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO)


def _segment(shared_data, image, out, atlases=LIBRARY, *extra):
    return run_cli("segment", image, "-m", "atlas", "--atlases", atlases, "--no-radiomics", "-o", out, *extra)


def test_the_shipped_library_records_its_domain_from_targets_it_does_not_contain():
    record = json.loads((LIBRARY / "domain.json").read_text())
    atlases = {p.name.split(".")[0] for p in (LIBRARY / "imagesTr").iterdir()}
    assert record["n_validation_outputs"] == len(record["targets"]) >= 30 and IN_DOMAIN not in record["targets"]
    assert not atlases & set(record["targets"]), "the record's targets are not atlases"
    lo, hi = record["registration"]["mean_ncc"]
    assert 0.3 < lo <= hi <= 1.0


def test_a_whole_head_scan_is_refused_before_registration(shared_data, tmp_path):
    out = tmp_path / "o"
    proc = _segment(shared_data, shared_data / "hippocampus_dicom" / "study3_t1post", out)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("medsegai: error: the input is unlike the atlas library's images") and "field of view" in line
    assert "--allow-out-of-domain" in line and not out.exists()


def test_an_in_domain_target_passes_both_checks(shared_data, tmp_path):
    out = tmp_path / "o"
    proc = _segment(shared_data, shared_data / "hippocampus" / "imagesTr" / f"{IN_DOMAIN}.nii.gz", out)
    assert proc.returncode == 0, proc.stderr
    domain = json.loads((out / "provenance.json").read_text())["extra"]["domain"]
    assert domain["in_domain"] is True and domain["before"]["checked"] == "before inference" and domain["after"]["checked"] == "after fusion"
    assert 0.5 < domain["after"]["figures"]["output"]["registration"]["mean_ncc"] <= 1.0


def test_poor_registration_is_refused_after_fusion_and_marked_on_request(shared_data, tmp_path):
    """A library whose record says in-domain targets register better than this one does: the
    run stops after fusion with the registration reason, and on request is marked."""
    library = tmp_path / "library"
    shutil.copytree(LIBRARY, library)
    record = json.loads((library / "domain.json").read_text())
    record["registration"]["mean_ncc"] = [1.3, 1.3]  # 0.8x of it is above any correlation
    (library / "domain.json").write_text(json.dumps(record))
    image = shared_data / "hippocampus" / "imagesTr" / f"{IN_DOMAIN}.nii.gz"
    proc = _segment(shared_data, image, tmp_path / "o", library)
    assert proc.returncode == 2 and "match the target poorly after the deformable step" in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = _segment(shared_data, image, tmp_path / "o2", library, "--allow-out-of-domain")
    assert proc.returncode == 0 and "OUT OF DOMAIN" in proc.stderr
    assert json.loads((tmp_path / "o2" / "provenance.json").read_text())["extra"]["domain"]["in_domain"] is False


def test_a_library_without_a_record_runs_unchecked_and_says_so(shared_data, tmp_path):
    library = tmp_path / "library"
    shutil.copytree(LIBRARY, library)
    (library / "domain.json").unlink()
    proc = _segment(shared_data, shared_data / "hippocampus" / "imagesTr" / f"{IN_DOMAIN}.nii.gz", tmp_path / "o", library)
    assert proc.returncode == 0, proc.stderr
    assert "records no domain" in proc.stderr
    domain = json.loads((tmp_path / "o" / "provenance.json").read_text())["extra"]["domain"]
    assert domain["in_domain"] is None


def test_a_contrast_inverted_target_is_refused_with_exit_code_2(shared_data, tmp_path):
    """Inverted contrast (as a T2-like scan would be): refused by the intensity check or, where
    that passes, because no atlas registers to it; a one-line message either way."""
    import SimpleITK as sitk

    for name in ("hippocampus_316", IN_DOMAIN):  # one of each, in the benchmark's run
        image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)
        arr = sitk.GetArrayFromImage(image)
        inverted = sitk.GetImageFromArray(arr.max() - arr)
        inverted.CopyInformation(image)
        path = tmp_path / f"{name}_inverted.nii.gz"
        sitk.WriteImage(inverted, str(path))
        proc = _segment(shared_data, path, tmp_path / name)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("medsegai: error: the input is unlike the atlas library's images")
        assert not (tmp_path / name).exists()
