"""The ``medsegai`` command line: outputs, geometry, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.cli import main
from MedSegAILib.outputs.files import OUTPUT_FILES


def run_cli(*args, cwd=None):
    """Run the installed CLI in a fresh process (as a user would); returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "MedSegAILib.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def test_segment_writes_all_outputs_with_input_geometry(tmp_path, hippocampus_case):
    out = tmp_path / "out"
    proc = run_cli("segment", hippocampus_case[0], "--method", "otsu", "--param", "n_classes=3", "--output", out)
    assert proc.returncode == 0, proc.stderr
    src = sitk.ReadImage(str(hippocampus_case[0]))
    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    for name in ("labels.nii.gz", "instances.nii.gz", "uncertainty.nii.gz"):
        img = sitk.ReadImage(str(out / name))
        assert img.GetSize() == src.GetSize()
        assert np.allclose(img.GetOrigin(), src.GetOrigin(), atol=1e-6)
        assert np.allclose(img.GetSpacing(), src.GetSpacing(), atol=1e-6)
        assert np.allclose(img.GetDirection(), src.GetDirection(), atol=1e-6)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["method"] == "otsu" and prov["parameters"]["n_classes"] == 3
    assert len(prov["input_sha256"][0]) == 64
    inst = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "instances.nii.gz")))
    rows = (out / "instances.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == int(inst.max()) == prov["instances"]
    assert (out / "overview.png").stat().st_size > 10_000


def test_segment_dicom_folder_oblique_geometry(tmp_path, shared_data):
    out = tmp_path / "dcm"
    series = shared_data / "hippocampus_dicom" / "study3_t1post"
    assert main(["segment", str(series), "--output", str(out), "--quiet", "--no-radiomics"]) == 0
    src = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series)))
    lab = sitk.ReadImage(str(out / "labels.nii.gz"))
    assert lab.GetSize() == src.GetSize()
    assert np.allclose(lab.GetDirection(), src.GetDirection(), atol=1e-6)
    assert np.allclose(lab.GetOrigin(), src.GetOrigin(), atol=1e-4)


def test_several_inputs_write_case_folders(tmp_path, shared_data):
    imgs = [shared_data / "hippocampus" / "imagesTr" / f"hippocampus_{c}.nii.gz" for c in ("003", "004")]
    out = tmp_path / "multi"
    assert main(["segment", *map(str, imgs), "--output", str(out), "--quiet", "--no-radiomics"]) == 0
    for c in ("hippocampus_003", "hippocampus_004"):
        assert all((out / c / n).is_file() for n in OUTPUT_FILES)


def _one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.startswith("medsegai: error")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_inputs_get_one_line_errors_and_exit_2(tmp_path, hippocampus_case):
    out = tmp_path / "o"
    assert "does not exist" in _one_line_error(run_cli("segment", tmp_path / "missing.nii.gz", "-o", out))
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    assert "not an image" in _one_line_error(run_cli("segment", text, "-o", out))
    img = sitk.ReadImage(str(hippocampus_case[0]))
    sitk.WriteImage(img[:, :, 10], str(tmp_path / "slice.nii.gz"))
    assert "2D" in _one_line_error(run_cli("segment", tmp_path / "slice.nii.gz", "-o", out))
    four = sitk.JoinSeries([img, img])
    sitk.WriteImage(four, str(tmp_path / "four.nii.gz"))
    assert "4D" in _one_line_error(run_cli("segment", tmp_path / "four.nii.gz", "-o", out))
    const = sitk.Image(img.GetSize(), sitk.sitkInt16)
    sitk.WriteImage(const, str(tmp_path / "const.nii.gz"))
    assert "constant" in _one_line_error(run_cli("segment", tmp_path / "const.nii.gz", "-o", out))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[1, 2, 3] = np.nan
    nan = sitk.GetImageFromArray(arr)
    sitk.WriteImage(nan, str(tmp_path / "nan.nrrd"))
    assert "NaN" in _one_line_error(run_cli("segment", tmp_path / "nan.nrrd", "-o", out))
    assert "KEY=VALUE" in _one_line_error(run_cli("segment", hippocampus_case[0], "-o", out, "--param", "n_classes"))
    assert not out.exists()  # no failed run left anything behind


def test_existing_results_are_not_overwritten(tmp_path, hippocampus_case):
    out = tmp_path / "o"
    assert main(["segment", str(hippocampus_case[0]), "-o", str(out), "-q", "--no-radiomics"]) == 0
    before = (out / "labels.nii.gz").read_bytes()
    (out / "provenance.json").write_text('{"mine": true}')
    msg = _one_line_error(run_cli("segment", hippocampus_case[0], "-o", out, "--param", "n_classes=3"))
    assert "--overwrite" in msg
    assert (out / "labels.nii.gz").read_bytes() == before
    assert json.loads((out / "provenance.json").read_text()) == {"mine": True}
    assert main(["segment", str(hippocampus_case[0]), "-o", str(out), "-q", "--no-radiomics", "--overwrite", "-p", "n_classes=3"]) == 0
    assert json.loads((out / "provenance.json").read_text())["parameters"]["n_classes"] == 3


def test_help_lists_commands_and_methods():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("segment", "demo", "evaluate", "export-surfaces"):
        assert cmd in proc.stdout
    proc = run_cli("methods")
    assert proc.returncode == 0 and "otsu" in proc.stdout and "n_classes" in proc.stdout
