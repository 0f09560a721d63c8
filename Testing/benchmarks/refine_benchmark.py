"""CRF refinement of deep and atlas probabilities: what it does to Dice, HD95 and islands.

Deep: ``hippocampus_single`` on its 40 validation cases (TTA, ONNX Runtime). Atlas: the shipped
library on the last 10 shared cases by name that are not atlases. Each case is segmented once;
its probabilities are then refined (:func:`MedSegAILib.postprocess.refine.refine_with_crf`) at
each CRF weight of ``WEIGHTS``, fixed before the run (the classical crf method's default 2.0,
the refinement's default 1.0, and a lighter 0.3), and every version is scored against the
reference: mean Dice and HD95 (mm) of the two classes, and the number of spurious islands
(connected pieces of a class beyond its largest). Prints a table and writes
docs/benchmarks/refine.json.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import SimpleITK as sitk

from bench_paths import HIPPOCAMPUS, REPO

sys.path.insert(0, str(REPO))

from MedSegAILib.measure.metrics import evaluate_labelmaps  # noqa: E402
from MedSegAILib.methods.atlas.library import load_atlas_library  # noqa: E402
from MedSegAILib.methods.atlas.segmentation import multi_atlas_segmentation  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.onnx_runtime import load_onnx_model  # noqa: E402
from MedSegAILib.postprocess.refine import refine_with_crf  # noqa: E402

OUT_JSON = REPO / "docs" / "benchmarks" / "refine.json"
WEIGHTS = (0.3, 1.0, 2.0)


def islands(labels: sitk.Image) -> int:
    n = 0
    for c in (1, 2):
        cc = sitk.ConnectedComponentImageFilter()
        cc.FullyConnectedOn()
        cc.Execute(sitk.Cast(labels == c, sitk.sitkUInt8))
        n += max(cc.GetObjectCount() - 1, 0)
    return n


def score(labels, ref) -> dict:
    rep = evaluate_labelmaps(labels, ref)
    cls = [rep["classes"][k] for k in ("1", "2")]
    hd = [c["hd95_mm"] for c in cls if c["hd95_mm"] is not None and np.isfinite(c["hd95_mm"])]
    return {"dice": float(np.mean([c["dice"] for c in cls])), "hd95": float(np.mean(hd)) if hd else None, "islands": islands(labels)}


def run_family(name, cases, segment_case) -> dict:
    rows = {"none": []} | {f"crf {w}": [] for w in WEIGHTS}
    seconds = {k: [] for k in rows}
    for n in cases:
        image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"), sitk.sitkFloat32)
        ref = sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{n}.nii.gz"))
        t0 = time.perf_counter()
        out = segment_case(image)
        seconds["none"].append(time.perf_counter() - t0)
        rows["none"].append(score(out.labels, ref))
        for w in WEIGHTS:
            t0 = time.perf_counter()
            refined = refine_with_crf(out, image, weight=w)
            seconds[f"crf {w}"].append(time.perf_counter() - t0)
            rows[f"crf {w}"].append(score(refined.labels, ref))
    summary = {}
    for k, v in rows.items():
        summary[k] = {"dice": round(float(np.mean([r["dice"] for r in v])), 4),
                      "hd95_mm": round(float(np.mean([r["hd95"] for r in v if r["hd95"] is not None])), 3),
                      "islands_per_case": round(float(np.mean([r["islands"] for r in v])), 2),
                      "cases_better_dice": int(sum(a["dice"] > b["dice"] for a, b in zip(v, rows["none"]))) if k != "none" else None,
                      "seconds_per_case": round(float(np.median(seconds[k])), 3)}
        better = "" if k == "none" else f"better on {summary[k]['cases_better_dice']}/{len(cases)}  "
        print(f"{name:<6} {k:<8} Dice {summary[k]['dice']:.4f}  HD95 {summary[k]['hd95_mm']:.2f} mm  islands/case {summary[k]['islands_per_case']:.2f}  "
              f"{better}{summary[k]['seconds_per_case']:.2f} s", flush=True)
    return {"cases": list(cases), "summary": summary}


def main() -> int:
    single = REPO / "Resources" / "Models" / "hippocampus_single"
    card = json.loads((single / "model.json").read_text())
    model = load_onnx_model(single)
    result = {"weights": WEIGHTS}
    result["deep"] = run_family("deep", card["training"]["validation_cases"], lambda img: segment_with_model([img], model))
    library = load_atlas_library(REPO / "Resources" / "Atlases" / "hippocampus")
    atlases = {c.name for c in library.cases}
    names = sorted(p.name[: -len(".nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))
    targets = [n for n in names if n not in atlases][-10:]
    result["atlas"] = run_family("atlas", targets, lambda img: multi_atlas_segmentation(img, library))
    OUT_JSON.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
