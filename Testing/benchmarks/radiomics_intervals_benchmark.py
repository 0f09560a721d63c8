"""Feature intervals from each method's own probabilities, and what they cost.

Runs ``medsegai segment --radiomics-intervals`` on the three bundled sample cases with the deep
model (hippocampus_single), the atlas method, seeded graph cut (bundled scribbles) and Otsu, and
prints for a few features the point value beside the mean, SD and range over the masks drawn at
five probability levels, and the seconds of the point features and of the intervals (the
``radiomics`` and ``radiomics intervals`` stages of provenance). Writes
docs/benchmarks/radiomics_intervals.json.
"""

from __future__ import annotations

import csv
import json
import subprocess
import tempfile
from pathlib import Path

from bench_paths import REPO

SAMPLES = REPO / "Resources" / "SampleData"
OUT_JSON = REPO / "docs" / "benchmarks" / "radiomics_intervals.json"
FEATURES = ("shape_VoxelVolume", "shape_Sphericity", "firstorder_Mean", "glcm_Contrast")
METHODS = {
    "deep": lambda case: ["--method", "deep", "--model", "hippocampus_single"],
    "atlas": lambda case: ["--method", "atlas", "--atlases", "hippocampus"],
    "graphcut": lambda case: ["--method", "graphcut", "--seeds", str(SAMPLES / f"{case}_seeds.nii.gz")],
    "otsu": lambda case: ["--method", "otsu"],
}


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, options in METHODS.items():
            for case in ("hippocampus_389", "hippocampus_390", "hippocampus_393"):
                out = Path(tmp) / f"{method}_{case}"
                cmd = [str(REPO / ".venv" / "bin" / "medsegai"), "segment", str(SAMPLES / f"{case}.nii.gz"), *options(case), "--radiomics-intervals", "-q", "-o", str(out)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{method} {case}: {proc.stderr.strip().splitlines()[-1]}")
                prov = json.loads((out / "provenance.json").read_text())
                stages = {s["stage"]: s["seconds"] for s in prov["stages"]}
                warned = [w for w in prov["extra"].get("warnings", []) if "intervals" in w]
                with open(out / "instances.csv") as f:
                    for r in csv.DictReader(f):
                        if not r.get("shape_VoxelVolume_sd"):
                            continue
                        row = {"method": method, "case": case, "segment": r["segment_name"], "radiomics_s": stages.get("radiomics"),
                               "intervals_s": stages.get("radiomics intervals"), "warned": bool(warned)}
                        for k in FEATURES:
                            row[k] = {s: (float(r[f"{k}_{s}"]) if r.get(f"{k}_{s}") else None) for s in ("mean", "sd", "min", "max")}
                            row[k]["point"] = float(r[k]) if r.get(k) else None
                        rows.append(row)
                        print(f"{method:<9} {case} {r['segment_name']:<22} volume {row['shape_VoxelVolume']['point']:.0f} "
                              f"({row['shape_VoxelVolume']['mean']:.0f} ± {row['shape_VoxelVolume']['sd']:.0f}), mean {row['firstorder_Mean']['point']:.1f} "
                              f"(± {row['firstorder_Mean']['sd']:.2f}); radiomics {row['radiomics_s']} s, intervals {row['intervals_s']} s{'  WARNED' if warned else ''}", flush=True)
    OUT_JSON.write_text(json.dumps({"features": FEATURES, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
