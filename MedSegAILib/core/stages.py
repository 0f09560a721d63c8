"""Wall time and peak memory of a run's stages (read, method, instances, each output, ...).

A run keeps one list of rows, ``{"stage", "seconds", "peak_rss_mib"}``, in its provenance
(``provenance.json`` ``stages``), so a slow or memory-hungry step of a large volume shows where
it is. ``peak_rss_mib`` is the process's peak resident memory so far (it never decreases): the
first stage whose figure jumps is the one that set the peak.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional


def peak_rss_mib() -> Optional[float]:
    """The process's peak resident set size so far in MiB (None where the system does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


@contextmanager
def timed(rows: Optional[List[Dict]], stage: str) -> Iterator[None]:
    """Append ``stage``'s wall time (s) and the peak memory after it to ``rows`` (None: nothing)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if rows is not None:
            rows.append({"stage": stage, "seconds": round(time.perf_counter() - t0, 3), "peak_rss_mib": peak_rss_mib()})
