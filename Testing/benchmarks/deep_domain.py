"""The deep model's domain check: record the shipped model's domain, then score in-domain and
out-of-domain inputs.

    .venv/bin/python Testing/benchmarks/deep_domain.py --record   # writes the card's "domain"
    .venv/bin/python Testing/benchmarks/deep_domain.py            # the benchmark

``--record`` takes the input features of the model's 160 training cases and the output features
of its 40 validation cases (the card's split) and writes ``Resources/Models/hippocampus/model.json``'s
``domain`` entry (the weights and their SHA-256 are untouched).

The benchmark runs every input through the same check a run makes (before and after
inference, ONNX Runtime) and prints the verdict and the reasons: in domain, the 40 validation
cases; out of domain, the whole-head DICOM study, the CT cases, the abdominal MRI, the brain
tumour MRIs, and validation crops changed as scanners change them. Score = number of reasons;
AUROC of the score, false flags on in-domain cases, misses on out-of-domain ones. Writes
docs/benchmarks/deep_domain.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import SimpleITK as sitk

from bench_paths import HIPPOCAMPUS, REPO, SHARED_DATA

sys.path.insert(0, str(REPO))

from MedSegAILib.io.images import read_image  # noqa: E402
from MedSegAILib.methods.deep.domain import check_input, check_output, input_features, output_features, record_domain  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402

MODEL = REPO / "Resources" / "Models" / "hippocampus"
OUT_JSON = REPO / "docs" / "benchmarks" / "deep_domain.json"


def card():
    return json.loads((MODEL / "model.json").read_text())


def record() -> None:
    c = card()
    train = c["training"]["train_cases"]
    val = c["training"]["validation_cases"]
    files = lambda names: [[HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"] for n in names]  # noqa: E731
    rec = record_domain(MODEL, files(train), files(val), source=f"input features of the {len(train)} training cases, output features of the {len(val)} validation cases (the card's split)")
    print(f"recorded the domain of {MODEL.name}: {rec['n_training_inputs']} training inputs, {rec['n_validation_outputs']} validation outputs")


def altered(image: sitk.Image, how: str) -> sitk.Image:
    """A validation crop changed as a scanner or a user would change it."""
    img = sitk.Cast(image, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img)
    rng = np.random.default_rng(0)
    if how == "strong noise":
        arr = arr + rng.normal(0, 0.5 * arr.std(), arr.shape)
    elif how == "bias field":
        z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in arr.shape], indexing="ij")
        arr = arr * np.exp(0.8 * (x + 0.5 * y))
    elif how == "contrast inversion":
        arr = arr.max() - arr
    elif how == "intensity scale x100":
        arr = arr * 100.0
    elif how in ("2x resampling", "0.5x resampling"):
        f = 2.0 if how.startswith("2x") else 0.5
        spacing = [s * f for s in img.GetSpacing()]
        size = [max(2, int(round(n / f))) for n in img.GetSize()]
        return sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), spacing, img.GetDirection(), 0.0, sitk.sitkFloat32)
    elif how == "half the crop":
        return img[:, : img.GetSize()[1] // 2, :]
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(img)
    return out


def judge(image: sitk.Image, rec: dict) -> dict:
    image = sitk.Cast(image, sitk.sitkFloat32)
    t0 = time.perf_counter()
    before = check_input(rec, input_features([image]))
    after = None
    if before.in_domain:
        out = segment_with_model([image], str(MODEL))
        names = {str(k.label): k.name for k in out.classes}
        after = check_output(rec, output_features(out.labels, out.uncertainty, [k.label for k in out.classes]), names)
    reasons = before.reasons + (after.reasons if after else [])
    return {"flagged": bool(reasons), "score": len(reasons), "reasons": reasons, "stage": "before" if before.reasons else ("after" if reasons else "-"),
            "seconds": round(time.perf_counter() - t0, 3)}


def auroc(pos, neg) -> float:
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def benchmark() -> None:
    c = card()
    rec = c.get("domain")
    if not rec:
        raise SystemExit("the card records no domain; run with --record first")
    rows = []
    for n in c["training"]["validation_cases"]:
        rows.append({"input": n, "kind": "in domain", **judge(sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz")), rec)})
    others = [
        ("whole-head T1 DICOM (study3_t1post)", lambda: read_image(SHARED_DATA / "hippocampus_dicom" / "study3_t1post")),
        ("abdominal CT 3 mm", lambda: read_image(SHARED_DATA / "ct" / "example_ct.nii.gz")),
        ("abdominal CT, 30 slices", lambda: read_image(SHARED_DATA / "ct" / "example_ct_sm.nii.gz")),
        ("abdominal MRI", lambda: read_image(SHARED_DATA / "ct" / "example_mr_sm.nii.gz")),
        ("brain tumour MRI 1", lambda: read_image(SHARED_DATA / "mr_tumor" / "brain1_image.nrrd")),
        ("brain tumour MRI 2", lambda: read_image(SHARED_DATA / "mr_tumor" / "brain2_image.nrrd")),
    ]
    for name, load in others:
        rows.append({"input": name, "kind": "out of domain", **judge(load(), rec)})
    for how in ("strong noise", "bias field", "contrast inversion", "2x resampling", "0.5x resampling", "half the crop", "intensity scale x100"):
        for n in c["training"]["validation_cases"][:5]:
            image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"))
            rows.append({"input": f"{n}, {how}", "kind": "out of domain" if how != "intensity scale x100" else "scale (z-scored away)", **judge(altered(image, how), rec)})
    ind = [r for r in rows if r["kind"] == "in domain"]
    ood = [r for r in rows if r["kind"] == "out of domain"]
    summary = {
        "in_domain_cases": len(ind),
        "false_flags": sum(r["flagged"] for r in ind),
        "out_of_domain_inputs": len(ood),
        "missed": sum(not r["flagged"] for r in ood),
        "auroc_of_score": round(auroc([r["score"] for r in ood], [r["score"] for r in ind]), 4),
        "missed_by_kind": {},
    }
    for r in ood:
        kind = r["input"].split(", ", 1)[-1] if r["input"].startswith("hippocampus_") else r["input"]
        entry = summary["missed_by_kind"].setdefault(kind, [0, 0])
        entry[0] += (not r["flagged"])
        entry[1] += 1
    for r in rows:
        if r["kind"] != "in domain" or r["flagged"]:
            print(f"{r['kind']:<22} {r['input']:<42} {'FLAGGED' if r['flagged'] else 'in domain':<9} {r['stage']:<6} {('; '.join(r['reasons']))[:150]}")
    print(json.dumps({k: v for k, v in summary.items()}, indent=1))
    OUT_JSON.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    record() if a.record else benchmark()
