"""Cohorts: many cases in one run, in this process or on Dask workers, resumable, with a
summary table (``cohort.csv``). :func:`segment_cohort` is the Python form of
``medsegai segment`` over many cases."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence


def segment_cohort(
    inputs: Sequence[str],
    output,
    method: str = "otsu",
    params: Optional[Dict[str, Any]] = None,
    *,
    workers: int = 1,
    scheduler: Optional[str] = None,
    resume: bool = False,
    overwrite: bool = False,
    options: Sequence[str] = (),
) -> List[Dict[str, Any]]:
    """Segment every case ``inputs`` name (files, DICOM folders, folders of cases, globs, CSV
    tables) into ``output/<case>/`` and return the summary rows (as ``cohort.csv``).

    ``options`` are further ``medsegai segment`` options (``["--model", "hippocampus",
    "--no-radiomics"]``); a case's failure is a row with status "failed", never an exception.

    Examples
    --------
    >>> rows = segment_cohort(["cases/*.nii.gz"], "out", "deep", options=["--model", "hippocampus"], workers=2)
    >>> [r["status"] for r in rows]
    """
    from ..cli import build_parser
    from ..commands.segment import segment_all

    argv = ["segment", *map(str, inputs), "--output", str(output), "--method", method, "--quiet", "--workers", str(workers)]
    for key, value in (params or {}).items():
        argv += ["--param", f"{key}={value}"]
    if scheduler:
        argv += ["--scheduler", scheduler]
    argv += ["--resume"] * bool(resume) + ["--overwrite"] * bool(overwrite) + list(options)
    args = build_parser().parse_args(argv)
    rows, _ = segment_all(args)
    return rows
