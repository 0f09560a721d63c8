"""Run every benchmark script in this folder, one after the other (``make benchmarks``).

Each ``*_benchmark.py`` prints its table and writes ``docs/benchmarks/<family>.json`` and
``.md``; this runner only sequences them (so they do not compete for the two cores) and stops
at the first failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or None
    scripts = sorted(HERE.glob("*_benchmark.py"))
    if names:
        scripts = [s for s in scripts if s.stem.replace("_benchmark", "") in names]
    for script in scripts:
        t0 = time.perf_counter()
        print(f"=== {script.name}", flush=True)
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parents[1])
        print(f"=== {script.name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
