"""Run one function over many cases: in this process, on a local Dask cluster, or on an
existing Dask scheduler; a summary row per case, written to ``cohort.csv`` as cases finish.

The function (``run_one(case) -> row``) runs a case to the end and returns its row; it never
raises for a case's own failure (a bad input, a model that refuses it): that is a row with
status "failed" and the one-line error. A worker process that dies (killed for memory, a
crash in a library) costs its case only: the row says so and the others go on.

Dask (``dask.distributed``) is the engine for parallel runs: ``workers=N`` starts a
``LocalCluster`` of N single-threaded processes on this machine; ``scheduler=ADDRESS`` uses a
cluster the user already has (dask-jobqueue, Kubernetes, Coiled: anything with a scheduler
address). Each worker process keeps what it loads (a model, its ONNX session) between cases.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

#: Columns of cohort.csv, in order.
SUMMARY_COLUMNS = ("case", "status", "seconds", "instances", "mean_uncertainty", "in_domain", "output", "error")


def write_summary(rows: Sequence[Dict], path: Path) -> Path:
    """``cohort.csv``: one row a case (columns :data:`SUMMARY_COLUMNS`), written to a temporary
    file and renamed, so that a reader never sees half a table."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SUMMARY_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in SUMMARY_COLUMNS})
    os.replace(tmp, path)
    return path


class _Reporter:
    """A bar with counts and time left on a terminal (tqdm), one plain line per finished case
    otherwise (a log, Slicer's process output)."""

    def __init__(self, total: int, quiet: bool, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = time.monotonic()
        self.bar = None
        if not quiet and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="case", file=self.stream, dynamic_ncols=True)

    def finished(self, row: Dict) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{row['case']}: {row['status']}", refresh=False)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.t0
        left = elapsed / self.done * (self.total - self.done)
        detail = f" ({row['error']})" if row.get("error") else ""
        self.stream.write(f"[{self.done}/{self.total}] {row['case']}: {row['status']} in {row.get('seconds') or 0:.1f} s{detail}; about {left:.0f} s left\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_cases(
    cases: Sequence,
    run_one: Callable,
    *,
    workers: int = 1,
    scheduler: Optional[str] = None,
    summary_path: Optional[Path] = None,
    skipped: Sequence[Dict] = (),
    quiet: bool = False,
) -> List[Dict]:
    """Run ``run_one`` over ``cases``; returns the rows in the cases' order (``skipped`` rows
    first, as given). ``summary_path`` is rewritten after every case, so an interrupted run
    leaves the record of what finished (the cases not run are marked "not run")."""
    rows: Dict[int, Dict] = {}

    def table() -> List[Dict]:
        pending = [{"case": c.name, "status": "not run"} for i, c in enumerate(cases) if i not in rows]
        return list(skipped) + [rows[i] for i in range(len(cases)) if i in rows] + pending

    reporter = _Reporter(len(cases), quiet)
    try:
        if workers <= 1 and scheduler is None:
            for i, case in enumerate(cases):
                rows[i] = run_one(case)
                reporter.finished(rows[i])
                if summary_path is not None:
                    write_summary(table(), summary_path)
        else:
            _run_on_dask(cases, run_one, workers, scheduler, rows, reporter, lambda: summary_path and write_summary(table(), summary_path))
    finally:
        reporter.close()
        if summary_path is not None:
            write_summary(table(), summary_path)
    return table()


def _run_on_dask(cases, run_one, workers, scheduler, rows, reporter, save) -> None:
    from ..core.errors import MissingDependencyError

    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise MissingDependencyError("distributed", "cohort", "parallel cohort runs (--workers, --scheduler)") from None
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    cluster = None
    if scheduler is None:
        # Processes, one thread each: torch, ONNX Runtime and SimpleITK each use the one core.
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    client = Client(cluster if cluster is not None else scheduler)
    try:
        futures = {client.submit(_in_worker, run_one, case, pure=False, key=f"medsegai-case-{i}-{case.name}"): i for i, case in enumerate(cases)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                rows[i] = future.result()
            except Exception as exc:  # the worker died (KilledWorker) or could not unpickle the case
                rows[i] = {"case": cases[i].name, "status": "failed", "error": _worker_failure(exc)}
            reporter.finished(rows[i])
            save()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _in_worker(run_one, case):
    """Run in a Dask worker: one CPU for this process's libraries, then the case."""
    os.environ["MEDSEGAI_THREADS"] = "1"
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    return run_one(case)


def _worker_failure(exc: BaseException) -> str:
    from ..core.errors import first_line

    name = type(exc).__name__
    if name == "KilledWorker":
        return "the worker process running this case died (out of memory, or a crash in a library); the other cases went on"
    first = first_line(exc)
    return f"internal error in the worker: {name}" + (f": {first}" if first else "")
