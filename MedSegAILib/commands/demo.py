"""``medsegai demo``: every method family on the bundled sample cases, with a summary.

The sample cases (``Resources/SampleData``) are real hippocampus MRI crops with reference
labels and scribble seeds. The demo runs the classical methods (seeded graph cut from the
bundled scribbles), the atlas method with the shipped atlas library and the deep method with
the shipped model, writes every output per method and case (plus an overview PNG and a report),
and prints Dice against the reference where the method's classes are the reference's
(graphcut, atlas, deep).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.progress import TextProgressBar
from ..methods.registry import available_methods
from ..outputs.files import check_output_folder
from ..resources import atlases_dir, models_dir, sample_data_dir
from .segment import Case, run_case

NAME = "demo"
HELP = "run every method on the bundled sample cases and write all outputs plus overview pictures"
DESCRIPTION = """\
Run MedSegAI on the bundled sample data (three hippocampus MRI crops, MSD Task04, CC-BY-SA 4.0)
with each method whose resources are installed:
  otsu    multi-Otsu intensity classes (classical)
  mrf     Gaussian mixture + Potts MRF by graph cut (classical)
  graphcut  seeded graph cut from the bundled scribbles <case>_seeds.nii.gz (classical)
  atlas   multi-atlas registration and label fusion with the shipped hippocampus atlases
  deep    the shipped hippocampus model (an ensemble of six U-Nets; four of them were trained
          on these cases, so its Dice here is optimistic: docs/benchmarks/deep.md has its
          figures on unseen cases)
Outputs go to OUTPUT/<method>/<case>/ (labels, instances, uncertainty, .seg.nrrd, table,
provenance, overview.png, report.html); OUTPUT/summary.json holds the figures printed.
"""

# (method, params, needs): the demo's choice of settings for each method.
DEMO_RUNS = (
    ("otsu", {"n_classes": "3"}, None),
    ("mrf", {"n_classes": "3"}, None),
    ("graphcut", {}, "seeds"),
    ("atlas", {}, "atlases"),
    ("deep", {}, "model"),
)


def add_arguments(p) -> None:
    p.add_argument("--output", "-o", default="demo_output", metavar="DIR", help="output folder (default demo_output)")
    p.add_argument("--methods", default="all", help="comma-separated methods to run (default: all available)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo's results")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def sample_cases() -> List[Dict[str, Path]]:
    """The bundled cases: [{"name", "image", "label", "seeds"}], sorted by name."""
    folder = sample_data_dir()
    cases = []
    for img in sorted(folder.glob("*.nii.gz")):
        if img.name.endswith(("_label.nii.gz", "_seeds.nii.gz")):
            continue
        name = img.name[: -len(".nii.gz")]
        seeds = folder / f"{name}_seeds.nii.gz"
        cases.append(
            {"name": name, "image": img, "label": folder / f"{name}_label.nii.gz", "seeds": seeds if seeds.exists() else None}
        )
    if not cases:
        raise InputError(f"no sample data found in '{folder}'")
    return cases


def _available_runs(selected: str):
    registered = {m.name for m in available_methods()}
    wanted = None if selected == "all" else {s.strip() for s in selected.split(",") if s.strip()}
    if wanted:
        unknown = sorted(wanted - {r[0] for r in DEMO_RUNS})
        if unknown:
            raise InputError(f"the demo has no method '{unknown[0]}'; choose from {', '.join(r[0] for r in DEMO_RUNS)}")
    runs = []
    for method, params, needs in DEMO_RUNS:
        if wanted is not None and method not in wanted:
            continue
        if method not in registered:
            print(f"demo: skipping '{method}' (not part of this installation)", file=sys.stderr)
            continue
        extra = {}
        if needs == "seeds" and not any(c["seeds"] for c in sample_cases()):
            continue
        if needs == "atlases":
            if not (atlases_dir() / "hippocampus").is_dir():
                print("demo: skipping 'atlas' (no shipped atlas library)", file=sys.stderr)
                continue
            extra["atlases"] = str(atlases_dir() / "hippocampus")
        if needs == "model":
            if not (models_dir() / "hippocampus").is_dir():
                print("demo: skipping 'deep' (no shipped model)", file=sys.stderr)
                continue
            extra["model"] = "hippocampus"
        runs.append((method, params, extra))
    return runs


def _dice_by_class(pred: sitk.Image, ref: sitk.Image) -> Dict[str, float]:
    from ..measure.metrics import evaluate_labelmaps

    report = evaluate_labelmaps(pred, ref)
    return {k: round(float(v["dice"]), 4) for k, v in report["classes"].items()}


def run(args) -> int:
    out = Path(args.output)
    cases = sample_cases()
    runs = _available_runs(args.methods)
    for method, _, _ in runs:
        for case in cases:
            check_output_folder(out / method / case["name"], args.overwrite)
    summary = {"cases": [c["name"] for c in cases], "runs": []}
    rows = []
    for method, params, extra in runs:
        for case in cases:
            if method == "graphcut" and case["seeds"] is None:
                continue
            cargs = SimpleNamespace(
                method=method,
                atlases=extra.get("atlases"),
                model=extra.get("model"),
                device="auto",
                # Intensity classes have speckle; anatomy outputs keep lobes >= 10% of the largest.
                min_island_mm3=20.0 if method in ("otsu", "mrf") else 0.0,
                keep_largest=False,
                keep_fraction=0.1 if method in ("graphcut", "atlas", "deep") else 0.0,
                fill_holes=False,
                connectivity=26,
                no_radiomics=False,
                allow_out_of_domain=False,
                report=True,
                overwrite=args.overwrite,
            )
            folder = out / method / case["name"]
            bar = None if args.quiet else TextProgressBar()
            t0 = time.perf_counter()
            try:
                result, _ = run_case(
                    Case(case["name"], [str(case["image"])], folder, seeds=case["seeds"] if method == "graphcut" else None),
                    cargs,
                    params,
                    progress=(lambda f, m, b=bar, l=f"{method} {case['name']}": b(f, f"{l}: {m}")) if bar else None,
                )
            finally:
                if bar:
                    bar.close()
            seconds = time.perf_counter() - t0
            dice = None
            if method in ("graphcut", "atlas", "deep"):
                dice = _dice_by_class(result.labels, sitk.ReadImage(str(case["label"])))
            mean_unc = float(sitk.GetArrayViewFromImage(result.uncertainty).mean())
            summary["runs"].append(
                {
                    "method": method,
                    "case": case["name"],
                    "instances": len(result.instance_table),
                    "seconds": round(seconds, 2),
                    "mean_uncertainty": round(mean_unc, 4),
                    "dice": dice,
                    "folder": str(folder),
                }
            )
            dice_txt = "  ".join(f"{k}:{v:.3f}" for k, v in (dice or {}).items()) or "-"
            rows.append(f"{method:<7} {case['name']:<17} {len(result.instance_table):>9} {seconds:>8.1f} {mean_unc:>9.3f}   {dice_txt}")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=2)
    print(f"\n{'method':<7} {'case':<17} {'instances':>9} {'seconds':>8} {'mean unc':>9}   Dice vs reference (label:Dice)")
    print("\n".join(rows))
    if any(r.startswith("deep") for r in rows):
        print("\ndeep: the shipped ensemble saw these cases in training (4 of its 6 members); its Dice on unseen cases is in docs/benchmarks/deep.md")
    print(f"\nOutputs in {out}/<method>/<case>/ ; look at overview.png and report.html in each.")
    return 0
