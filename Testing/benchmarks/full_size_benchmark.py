"""Full-size clinical volumes: every classical method end to end on a 523x433x480 CT (109 M
voxels, 0.7 mm), against SimpleITK's own filters for the same core step, in the same run.

Volumes (made once into --work, kept between runs): ``ct/example_ct.nii.gz`` resampled to
0.7 mm isotropic (linear), and the same with Gaussian noise (sigma 30 HU, seed 0). They are
written as uncompressed NRRD, as the Slicer panel hands a volume to the background process.
Graph-cut seeds: TotalSegmentator's liver (label 5 of ``ct/example_seg.nii.gz``) brought onto
the grid (nearest neighbour) and turned into scribbles on three axial slices
(``classical_seeds.scribble_seeds``: object eroded 2 mm, background farther than 10 mm).

Each run is a fresh ``medsegai segment`` process (``--no-radiomics`` unless the row says
otherwise); wall time and peak RSS come from the operating system (``os.wait4``), the stage
breakdown from the run's ``provenance.json`` (``stages``). The SimpleITK reference is a fresh
process too: read, ``OtsuMultipleThresholds`` (the same classes and bins as the Otsu row),
``ConnectedComponent`` on the brightest class.

    .venv/bin/python Testing/benchmarks/full_size_benchmark.py [--methods otsu,mrf,crf,graphcut,pipeline] [--volumes clean,noisy]

Prints a table and writes docs/benchmarks/full_size.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from bench_paths import REPO, SHARED_DATA

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from classical_seeds import scribble_seeds  # noqa: E402

OUT_JSON = REPO / "docs" / "benchmarks" / "full_size.json"
SPACING_MM = 0.7
NOISE_HU = 30.0

#: Rows: name -> (method, extra CLI arguments, needs seeds). Otsu with three classes as
#: SimpleITK's reference row; the MRF and CRF with their defaults (two classes, coarse-to-fine).
RUNS = {
    "otsu": ("otsu", ["--param", "n_classes=3"], False),
    "mrf": ("mrf", [], False),
    "crf": ("crf", [], False),
    "graphcut": ("graphcut", [], True),
    # The whole pipeline: Otsu with radiomics and the HTML report.
    "pipeline": ("otsu", ["--param", "n_classes=3", "--report"], False),
}


def make_volumes(work: Path) -> dict:
    """The clean and noisy full-size CT and the liver seeds, made once into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    paths = {"clean": work / "ct_0.7mm.nrrd", "noisy": work / "ct_0.7mm_noise30.nrrd", "seeds": work / "liver_seeds_0.7mm.nrrd"}
    if all(p.exists() for p in paths.values()):
        return paths
    ct = sitk.ReadImage(str(SHARED_DATA / "ct" / "example_ct.nii.gz"), sitk.sitkFloat32)
    size = [int(round(n * s / SPACING_MM)) for n, s in zip(ct.GetSize(), ct.GetSpacing())]
    full = sitk.Resample(ct, size, sitk.Transform(), sitk.sitkLinear, ct.GetOrigin(), (SPACING_MM,) * 3, ct.GetDirection(), -1024.0, sitk.sitkFloat32)
    sitk.WriteImage(full, str(paths["clean"]), useCompression=False)
    arr = sitk.GetArrayFromImage(full)
    arr += np.random.default_rng(0).normal(0.0, NOISE_HU, arr.shape).astype(np.float32)
    noisy = sitk.GetImageFromArray(arr)
    noisy.CopyInformation(full)
    del arr
    sitk.WriteImage(noisy, str(paths["noisy"]), useCompression=False)
    seg = sitk.ReadImage(str(SHARED_DATA / "ct" / "example_seg.nii.gz"))
    on_grid = sitk.Resample(seg, full, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    sitk.WriteImage(scribble_seeds(on_grid, object_value=5), str(paths["seeds"]), useCompression=True)
    return paths


def wait4_measured(cmd, cwd=REPO) -> dict:
    """Run ``cmd`` and reap it with ``os.wait4``: wall time and that child's own peak RSS."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=null, stderr=subprocess.PIPE)
        stderr = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rc": proc.returncode,
        "stderr_tail": stderr.strip().splitlines()[-3:],
    }


_REFERENCE = r"""
import json, sys, time, SimpleITK as sitk
t = {}
t0 = time.perf_counter(); img = sitk.ReadImage(sys.argv[1], sitk.sitkFloat32); t["read"] = time.perf_counter() - t0
f = sitk.OtsuMultipleThresholdsImageFilter(); f.SetNumberOfThresholds(int(sys.argv[2]) - 1); f.SetNumberOfHistogramBins(128)
t0 = time.perf_counter(); lab = f.Execute(img); t["otsu"] = time.perf_counter() - t0
t0 = time.perf_counter(); cc = sitk.ConnectedComponent(lab == int(sys.argv[2]) - 1, True); t["connected components"] = time.perf_counter() - t0
print(json.dumps({k: round(v, 3) for k, v in t.items()}), file=sys.stderr)
"""


def reference_row(volume: Path, n_classes: int = 3) -> dict:
    row = wait4_measured([sys.executable, "-c", _REFERENCE, str(volume), str(n_classes)])
    try:
        row["breakdown_s"] = json.loads(row["stderr_tail"][-1])
    except (IndexError, ValueError):
        row["breakdown_s"] = {}
    return row


def medsegai_row(name: str, volume: Path, seeds: Path, work: Path) -> dict:
    method, extra, needs_seeds = RUNS[name]
    out = work / f"out_{name}_{volume.stem}"
    cmd = [sys.executable, "-m", "MedSegAILib.cli", "segment", str(volume), "--method", method, *extra, "-o", str(out), "--overwrite", "-q"]
    if name != "pipeline":
        cmd.append("--no-radiomics")
    if needs_seeds:
        cmd += ["--seeds", str(seeds)]
    row = wait4_measured(cmd)
    prov = out / "provenance.json"
    if row["rc"] == 0 and prov.exists():
        p = json.loads(prov.read_text())
        row["stages"] = p.get("stages", [])
        row["instances"] = p.get("instances")
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(RUNS))
    ap.add_argument("--volumes", default="clean,noisy")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "medsegai_full_size")
    ap.add_argument("--json", type=Path, default=OUT_JSON)
    args = ap.parse_args(argv)
    paths = make_volumes(args.work)
    input_mib = paths["clean"].stat().st_size / 2**20
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(paths["clean"]))
    reader.ReadImageInformation()
    size = list(reader.GetSize())
    results = {
        "input": {"size_xyz": size, "voxels": int(np.prod(size)), "spacing_mm": SPACING_MM, "float32_mib": round(int(np.prod(size)) * 4 / 2**20, 1), "file_mib": round(input_mib, 1)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "SimpleITK": sitk.Version.VersionString()},
        "rows": [],
    }
    print(f"input {size[0]}x{size[1]}x{size[2]} = {np.prod(size) / 1e6:.1f} M voxels, float32 {results['input']['float32_mib']:.0f} MiB")
    header = f"{'volume':7} {'run':22} {'wall s':>8} {'peak MiB':>9} {'x input':>8}  slowest stages"
    print(header)
    for vol in args.volumes.split(","):
        ref = reference_row(paths[vol])
        ref.update(volume=vol, run="SimpleITK read+Otsu+CC")
        results["rows"].append(ref)
        _print_row(ref, results["input"]["float32_mib"])
        for name in args.methods.split(","):
            row = medsegai_row(name, paths[vol], paths["seeds"], args.work)
            row.update(volume=vol, run=name)
            if ref.get("wall_s"):
                row["wall_vs_simpleitk"] = round(row["wall_s"] / ref["wall_s"], 2)
            results["rows"].append(row)
            _print_row(row, results["input"]["float32_mib"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def _print_row(row: dict, input_mib: float) -> None:
    if row.get("stages"):
        slow = sorted(row["stages"], key=lambda s: -s["seconds"])[:4]
        detail = ", ".join(f"{s['stage']} {s['seconds']:.1f}" for s in slow)
    elif row.get("breakdown_s"):
        detail = ", ".join(f"{k} {v:.1f}" for k, v in row["breakdown_s"].items())
    else:
        detail = " | ".join(row.get("stderr_tail", []))[:120] if row.get("rc") else ""
    print(f"{row['volume']:7} {row['run']:22} {row['wall_s']:8.1f} {row['peak_rss_mib']:9.0f} {row['peak_rss_mib'] / input_mib:8.1f}  {detail}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
