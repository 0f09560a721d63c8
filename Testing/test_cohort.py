"""Cohort runs of ``medsegai segment``: folders, globs and CSV tables of real cases, a failing
case that does not stop the others, the summary table, --resume after an interruption, and
Dask workers giving the same results as the sequential loop."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSegAILib.cli import main  # noqa: E402
from MedSegAILib.cohort import segment_cohort  # noqa: E402
from MedSegAILib.cohort.cases import expand_inputs  # noqa: E402
from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.outputs.files import OUTPUT_FILES  # noqa: E402

CASES = ("001", "003", "004", "007", "008", "011")


@pytest.fixture
def cohort(shared_data, tmp_path):
    """A folder of real hippocampus crops and one file that is not an image."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    for c in CASES[:4]:
        shutil.copy(shared_data / "hippocampus" / "imagesTr" / f"hippocampus_{c}.nii.gz", folder)
    (folder / "broken.nii.gz").write_text("not an image")
    return folder


def _summary(out: Path):
    with open(out / "cohort.csv", newline="") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def test_a_failing_case_does_not_stop_the_others(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(cohort), "--method", "otsu", "--no-radiomics", "-q", "-o", str(out)])
    assert code == 2  # not every case succeeded; the failure was the input's
    rows = _summary(out)
    assert set(rows) == {f"hippocampus_{c}" for c in CASES[:4]} | {"broken"}
    assert rows["broken"]["status"] == "failed" and "broken.nii.gz" in rows["broken"]["error"]
    for c in CASES[:4]:
        row = rows[f"hippocampus_{c}"]
        assert row["status"] == "ok" and int(row["instances"]) >= 1 and 0 <= float(row["mean_uncertainty"]) <= 1
        assert all((out / f"hippocampus_{c}" / n).is_file() for n in OUTPUT_FILES)
    assert not (out / "broken").exists()
    err = capsys.readouterr().err
    assert "medsegai: error: broken:" in err


def test_resume_skips_complete_cases_and_redoes_changed_ones(cohort, tmp_path, shared_data):
    out = tmp_path / "out"
    (cohort / "broken.nii.gz").unlink()
    assert main(["segment", str(cohort), "--method", "otsu", "--no-radiomics", "-q", "-o", str(out)]) == 0
    first = (out / "hippocampus_003" / "provenance.json").stat().st_mtime_ns
    # Without --resume (or --overwrite) the existing results are refused before any work.
    with pytest.raises(InputError, match="overwrite"):
        from MedSegAILib.cli import build_parser
        from MedSegAILib.commands.segment import segment_all

        segment_all(build_parser().parse_args(["segment", str(cohort), "--method", "otsu", "-q", "-o", str(out)]))
    # One input changes: only that case is redone.
    shutil.copy(shared_data / "hippocampus" / "imagesTr" / "hippocampus_015.nii.gz", cohort / "hippocampus_004.nii.gz")
    assert main(["segment", str(cohort), "--method", "otsu", "--no-radiomics", "-q", "-o", str(out), "--resume", "--overwrite"]) == 0
    rows = _summary(out)
    assert rows["hippocampus_003"]["status"] == "skipped (complete)"
    assert rows["hippocampus_004"]["status"] == "ok"
    assert (out / "hippocampus_003" / "provenance.json").stat().st_mtime_ns == first
    # Another method is another result: not skipped.
    rows = segment_cohort([str(cohort)], out, "otsu", {"n_classes": 3}, resume=True, overwrite=True, options=["--no-radiomics"])
    assert {r["status"] for r in rows} == {"ok"}


def test_an_interrupted_cohort_leaves_its_record_and_resumes(shared_data, tmp_path):
    """Ctrl-C during the third case: cohort.csv lists the finished cases and the others as not
    run, no case folder is half written, and --resume finishes the rest."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    names = []
    for i in range(10):  # ten cases of about 1.5 s each (copies under their own names)
        c = CASES[i % len(CASES)]
        names.append(f"case_{i:02d}")
        shutil.copy(shared_data / "hippocampus" / "imagesTr" / f"hippocampus_{c}.nii.gz", folder / f"{names[-1]}.nii.gz")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(folder), "--method", "mrf", "--param", "mf_iterations=100", "--param", "n_classes=4", "-q", "-o", str(out)]
    # SIGINT as a terminal's Ctrl-C gives it: a job started in the background (CI, nohup) has
    # SIGINT ignored, and a child inherits that unless it is reset.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "cohort.csv").exists() and sum(r["status"] == "ok" for r in _summary(out).values()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = _summary(out)
    done = [c for c, r in rows.items() if r["status"] == "ok"]
    assert 2 <= len(done) < len(names) and any(r["status"] == "not run" for r in rows.values())
    for case in (out.iterdir()):
        if case.is_dir():
            assert case.name in done and all((case / n).is_file() for n in OUTPUT_FILES), case
    proc = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = _summary(out)
    assert {rows[c]["status"] for c in done} == {"skipped (complete)"}
    assert all(r["status"] in ("ok", "skipped (complete)") for r in rows.values()) and len(rows) == len(names)
    assert not [p for p in out.iterdir() if p.name.startswith(".")] or all(p.suffix == ".lock" for p in out.iterdir() if p.name.startswith("."))


def test_a_case_table_with_channels_and_seeds(shared_data, tmp_path):
    """A CSV: relative paths, a case column, per-case seeds for the graph cut."""
    sys.path.insert(0, str(REPO / "Testing" / "benchmarks"))
    from classical_seeds import scribble_seeds

    folder = tmp_path / "table"
    folder.mkdir()
    rows = []
    for c in CASES[:2]:
        img = shared_data / "hippocampus" / "imagesTr" / f"hippocampus_{c}.nii.gz"
        shutil.copy(img, folder / img.name)
        # The classical benchmark's hippocampus scribbles.
        seeds = scribble_seeds(sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / img.name)), erosion_mm=1.0, margin_mm=3.0)
        sitk.WriteImage(seeds, str(folder / f"seeds_{c}.nrrd"))
        rows.append({"case": f"patient {c}", "image": img.name, "seeds": f"seeds_{c}.nrrd", "site": "A"})
    with open(folder / "cases.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["case", "image", "seeds", "site"])
        w.writeheader()
        w.writerows(rows)
    specs = expand_inputs([str(folder / "cases.csv")])
    assert [s.name for s in specs] == ["patient 001", "patient 003"] and specs[0].extra == {"site": "A"}
    out = tmp_path / "out"
    assert main(["segment", str(folder / "cases.csv"), "--method", "graphcut", "--no-radiomics", "-q", "-o", str(out)]) == 0
    summary = _summary(out)
    assert {r["status"] for r in summary.values()} == {"ok"}
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "patient 001" / "labels.nii.gz")))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz"))) > 0
    assert 2 * np.sum((labels > 0) & ref) / (np.sum(labels > 0) + ref.sum()) > 0.7


def test_globs_and_bad_tables_are_checked_before_any_work(shared_data, tmp_path):
    pattern = str(shared_data / "hippocampus" / "imagesTr" / "hippocampus_00[13].nii.gz")
    assert [s.name for s in expand_inputs([pattern])] == ["hippocampus_001", "hippocampus_003"]
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.nii.gz")])
    (tmp_path / "t.csv").write_text("path,label\na.nii.gz,b\n")
    with pytest.raises(InputError, match="no 'image'"):
        expand_inputs([str(tmp_path / "t.csv")])
    (tmp_path / "u.csv").write_text("image\nmissing.nii.gz\n")
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([str(tmp_path / "u.csv")])


@pytest.mark.skipif(os.cpu_count() is None or os.cpu_count() < 2, reason="two worker processes need two CPUs")
def test_two_dask_workers_give_the_sequential_results(shared_data, tmp_path):
    """The shipped deep model (ONNX Runtime) on four cases with two local Dask workers: the same
    labels as the sequential loop, every case ok."""
    pytest.importorskip("distributed")
    folder = tmp_path / "cohort"
    folder.mkdir()
    for c in CASES[:4]:
        shutil.copy(shared_data / "hippocampus" / "imagesTr" / f"hippocampus_{c}.nii.gz", folder)
    options = ["--model", "hippocampus", "--no-radiomics"]
    seq = segment_cohort([str(folder)], tmp_path / "seq", "deep", options=options)
    par = segment_cohort([str(folder)], tmp_path / "par", "deep", options=options, workers=2)
    assert [r["status"] for r in seq] == [r["status"] for r in par] == ["ok"] * 4
    assert [r["case"] for r in par] == [r["case"] for r in seq]
    for r in seq:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seq" / r["case"] / "labels.nii.gz")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "par" / r["case"] / "labels.nii.gz")))
        assert np.array_equal(a, b), r["case"]
        assert r["in_domain"] is True


def test_a_bad_parameter_stops_the_run_before_any_case(cohort, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "segment", str(cohort), "--method", "mrf", "--param", "mf_iterations=300", "-q", "-o", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.startswith("medsegai: error")]
    assert len(lines) == 1 and "mf_iterations" in lines[0], proc.stderr
    assert not out.exists()


def test_an_existing_dask_scheduler_runs_the_cohort(cohort, tmp_path):
    """--scheduler ADDRESS: the cases go to a cluster started elsewhere (here one local worker
    process, as dask-jobqueue or Kubernetes would give an address)."""
    distributed = pytest.importorskip("distributed")
    (cohort / "broken.nii.gz").unlink()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rows = segment_cohort([str(cohort)], tmp_path / "out", "otsu", scheduler=cluster.scheduler_address, options=["--no-radiomics"])
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert all((tmp_path / "out" / r["case"] / "provenance.json").is_file() for r in rows)
