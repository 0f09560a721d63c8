"""Cohort throughput: the 200 shared hippocampus cases through ``medsegai segment FOLDER``,
otsu and the shipped deep model (ONNX Runtime), sequentially in one process (what
``medsegai segment A B C ...`` did before cohorts) and on a local Dask cluster of 2
single-threaded worker processes, in one run, as cases per minute and ratios.

Each row is a fresh command (``--no-radiomics -q``); wall time from the start of the command
to its end (cluster start included); memory per worker: the largest peak RSS a case's own
provenance records (``stages``: the peak of the process that ran it, a Dask worker or the
sequential process).

    .venv/bin/python Testing/benchmarks/cohort_benchmark.py [--cases 200] [--workers 1,2]

Fault runs (otsu on the first 40 cases, 2 workers), each with its outcome:
- a worker process killed (SIGKILL) mid-run: the run completes, every case done exactly once
  (each case folder's provenance is written once: its creation time is unique and every
  case's row is "ok");
- the whole run killed with SIGKILL, then ``--resume``: no case lost, none done twice (the
  cases complete before the kill are skipped), no half-written folder;
- a corrupt case in the middle: reported in cohort.csv, every other case done.

Prints a table and writes docs/benchmarks/cohort.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_paths import HIPPOCAMPUS, REPO

OUT_JSON = REPO / "docs" / "benchmarks" / "cohort.json"
METHODS = {"otsu": ["--method", "otsu"], "deep": ["--method", "deep", "--model", "hippocampus"]}


def _case_peak(folder: Path) -> float:
    try:
        stages = json.loads((folder / "provenance.json").read_text())["stages"]
    except (OSError, ValueError, KeyError):
        return 0.0
    return max((s.get("peak_rss_mib") or 0.0) for s in stages) if stages else 0.0


def _run(folder: Path, out: Path, method_args, workers: int) -> dict:
    cmd = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(folder), *method_args, "--no-radiomics", "-q", "-o", str(out), "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    with open(out / "cohort.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ok = sum(r["status"] == "ok" for r in rows)
    return {
        "workers": workers,
        "rc": proc.returncode,
        "cases": len(rows),
        "ok": ok,
        "wall_s": round(wall, 2),
        "cases_per_minute": round(60 * ok / wall, 1),
        "peak_rss_mib_per_worker": max((_case_peak(out / r["case"]) for r in rows), default=None),
        "mean_case_seconds": round(sum(float(r["seconds"] or 0) for r in rows) / max(len(rows), 1), 3),
    }


def _worker_pids(parent: int):
    """Process ids of the Dask worker processes under ``parent`` (children's children)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    procs = [(int(a), int(b), c) for a, b, c in (line.split(None, 2) for line in out if len(line.split(None, 2)) == 3)]
    tree, frontier = set(), {parent}
    while frontier:
        kids = {p for p, pp, _ in procs if pp in frontier}
        tree |= kids
        frontier = kids
    # Dask starts its workers with multiprocessing's spawn (distributed's default).
    return [p for p, _, cmd in procs if p in tree and "spawn_main" in cmd and "resource_tracker" not in cmd]


def _rows(out: Path):
    try:
        with open(out / "cohort.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


def fault_runs(folder: Path, work: Path) -> list:
    import signal

    cases = sorted(folder.glob("*.nii.gz"))[:40]
    sub = work / "fault_cases"
    sub.mkdir()
    for f in cases:
        shutil.copy(f, sub)
    base = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(sub), "--method", "otsu", "--no-radiomics", "-q", "--workers", "2"]
    results = []

    # 1. A worker killed mid-run.
    out = work / "fault_worker"
    proc = subprocess.Popen([*base, "-o", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed is None:
        if sum(r["status"] == "ok" for r in _rows(out)) >= 5:
            pids = _worker_pids(proc.pid)
            if pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    proc.wait()
    rows = _rows(out)
    folders = [d for d in out.iterdir() if d.is_dir()]
    results.append({
        "fault": "a worker process killed (SIGKILL) mid-run",
        "killed_pid": killed,
        "rc": proc.returncode,
        "cases_ok": sum(r["status"] == "ok" for r in rows),
        "cases": len(cases),
        "case_folders": len(folders),
        "outcome": "run completed, every case done once" if killed and proc.returncode == 0 and len(folders) == len(cases) and all(r["status"] == "ok" for r in rows) else "see figures",
    })

    # 2. The whole run killed with SIGKILL, then resumed.
    out = work / "fault_run"
    proc = subprocess.Popen([*base, "-o", str(out)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(r["status"] == "ok" for r in _rows(out)) < 10:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {r["case"] for r in _rows(out) if r["status"] == "ok"}
    complete_before = {d.name for d in out.iterdir() if d.is_dir() and not d.name.startswith(".") and (d / "provenance.json").exists()}
    stamps = {d: (out / d / "provenance.json").stat().st_mtime_ns for d in complete_before}
    resumed = subprocess.run([*base, "-o", str(out), "--resume"], cwd=REPO, capture_output=True, text=True)
    rows = _rows(out)
    redone = [d for d in complete_before if (out / d / "provenance.json").stat().st_mtime_ns != stamps[d]]
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock") and p.name != ".cohort.csv"]
    results.append({
        "fault": "the whole run killed (SIGKILL), then --resume",
        "complete_at_kill": len(complete_before),
        "ok_in_summary_at_kill": len(done_before),
        "rc_resume": resumed.returncode,
        "skipped_on_resume": sum(r["status"].startswith("skipped") for r in rows),
        "redone_of_complete": len(redone),
        "cases_ok_after": sum(r["status"] in ("ok", "skipped (complete)") for r in rows),
        "cases": len(cases),
        "half_written_left": leftovers,
        "outcome": "no case lost, none done twice, nothing half written" if resumed.returncode == 0 and not redone and not leftovers and len(rows) == len(cases) and all(r["status"] in ("ok", "skipped (complete)") for r in rows) else "see figures",
    })

    # 3. A corrupt case in the middle.
    bad = sub / (cases[len(cases) // 2].name)
    bad.write_bytes(bad.read_bytes()[:500])  # truncated
    out = work / "fault_corrupt"
    proc = subprocess.run([*base, "-o", str(out)], cwd=REPO, capture_output=True, text=True)
    rows = _rows(out)
    failed = [r for r in rows if r["status"] == "failed"]
    results.append({
        "fault": "a corrupt (truncated) case in the middle",
        "rc": proc.returncode,
        "failed": [(r["case"], r["error"]) for r in failed],
        "cases_ok": sum(r["status"] == "ok" for r in rows),
        "cases": len(cases),
        "outcome": "reported in cohort.csv, the others done" if len(failed) == 1 and sum(r["status"] == "ok" for r in rows) == len(cases) - 1 else "see figures",
    })
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--methods", default="otsu,deep")
    ap.add_argument("--json", type=Path, default=OUT_JSON)
    ap.add_argument("--no-faults", action="store_true", help="skip the fault runs")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="medsegai_cohort_"))
    folder = work / "cases"
    folder.mkdir()
    for f in sorted((HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))[: args.cases]:
        shutil.copy(f, folder)
    results = {"cases": args.cases, "cpus": os.cpu_count(), "rows": []}
    print(f"{'method':6} {'workers':>7} {'wall s':>8} {'cases/min':>10} {'x sequential':>13} {'MiB/worker':>10}")
    try:
        for method in args.methods.split(","):
            base = None
            for w in (int(v) for v in args.workers.split(",")):
                row = _run(folder, work / f"out_{method}_{w}", METHODS[method], w)
                row["method"] = method
                base = base or row["cases_per_minute"]
                row["ratio_to_sequential"] = round(row["cases_per_minute"] / base, 2)
                results["rows"].append(row)
                print(f"{method:6} {w:7d} {row['wall_s']:8.1f} {row['cases_per_minute']:10.1f} {row['ratio_to_sequential']:13.2f} {row['peak_rss_mib_per_worker']:9.0f}"
                      + ("" if row["ok"] == row["cases"] else f"  ({row['cases'] - row['ok']} failed)"), flush=True)
        if not args.no_faults:
            results["faults"] = fault_runs(folder, work)
            for f in results["faults"]:
                print(f"fault: {f['fault']}: {f['outcome']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
