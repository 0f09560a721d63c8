"""The deep model's domain check: record the shipped model's domain, then score in-domain and
out-of-domain inputs.

    .venv/bin/python Testing/benchmarks/deep_domain.py --record   # writes the card's "domain"
    .venv/bin/python Testing/benchmarks/deep_domain.py            # the benchmark

``--record`` takes the input features of the cases the model learned from and the output
features of validation cases, each from a model that did not train on it, and writes
``Resources/Models/hippocampus/model.json``'s ``domain`` entry (the weights and their SHA-256
are untouched). For an ensemble of fold models that is every shared case, as the member that
validated on it sees it; for one model, its 160 training inputs and its 40 validation outputs.

The benchmark runs every input through the same check a run makes (before and after
inference, ONNX Runtime) and prints the verdict and the reasons. In domain: each validation
case by the member that did not train on it, against a record made without that member's
validation cases (so no in-domain case is judged by a record it helped to make; for one model,
its own record). Out of domain, by the whole model: the whole-head DICOM study, the CT cases,
the abdominal MRI, the brain tumour MRIs, and validation crops changed as scanners change them.
Score = number of reasons; AUROC of the score, false flags on in-domain cases, misses on
out-of-domain ones. Writes docs/benchmarks/deep_domain.json.
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
from MedSegAILib.methods.deep.domain import build_record, check_input, check_result, input_features, result_features, write_record  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402

MODEL = REPO / "Resources" / "Models" / "hippocampus"
OUT_JSON = REPO / "docs" / "benchmarks" / "deep_domain.json"


def card():
    return json.loads((MODEL / "model.json").read_text())


def folds(c):
    """(model to run, its validation cases, its training cases) per member: for an ensemble
    each member (from the ensemble's own verified files) with its own split; for one model,
    the model with the card's split."""
    from MedSegAILib.methods.deep.onnx_runtime import load_onnx_model

    loaded = load_onnx_model(MODEL)
    if "members" not in c:
        return [(loaded, c["training"]["validation_cases"], c["training"]["train_cases"])]
    return [(m, e["training"]["validation_cases"], e["training"]["train_cases"]) for m, e in zip(loaded.members, c["members"])]


def _image(name):
    return sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)


def case_features(c):
    """{case: (input features, output features of the model that did not train on it)}."""
    out = {}
    for model, val, _ in folds(c):
        for n in val:
            image = _image(n)
            out[n] = (input_features([image]), result_features(segment_with_model([image], model)))
    return out


def held_out_by_several(c) -> dict:
    """{case: an Ensemble of the members that did not train on it}, for the cases that more
    than one member validated on (the fold-4 cases: fold 4's member and the single model)."""
    from MedSegAILib.methods.deep.model_store import Ensemble

    by_case = {}
    for model, val, _ in folds(c):
        for n in val:
            by_case.setdefault(n, []).append(model)
    return {n: Ensemble(ms, ms[0].plan, c, c.get("sha256", ""), MODEL) for n, ms in by_case.items() if len(ms) > 1}


def agreements(c) -> dict:
    """{case: the agreement of the members that did not train on it} (see held_out_by_several)."""
    return {n: segment_with_model([_image(n)], ens).extra["member_agreement"] for n, ens in held_out_by_several(c).items()}


def record() -> None:
    """The card's domain entry from every case any member validated on: its input features
    and the output features of the member that did not train on it; for an ensemble also the
    agreement of the members that did not train on a case, where several did not."""
    c = card()
    feats = case_features(c)
    inputs = [input_features([_image(n)]) for n in c["training"]["train_cases"]]
    outputs = [f[1] for f in feats.values()]
    kind = f"{len(c['members'])} members, each" if "members" in c else "the model"
    rec = build_record(inputs, outputs, source=f"input features of the {len(inputs)} cases the model learned from; output features of {len(outputs)} validation cases, {kind} on the cases it did not train on")
    agree = agreements(c) if "members" in c else {}
    if agree:
        rec["member_agreement"] = [min(agree.values()), max(agree.values())]
        rec["member_agreement_source"] = f"{len(agree)} cases that {len(held_out_by_several(c)[next(iter(agree))].members)} members did not train on"
    write_record(MODEL, rec)
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


def judge(image: sitk.Image, rec: dict, model=None) -> dict:
    """The run's own check of ``image``: before, and (when that passes) after inference with
    ``model`` (default: the whole model)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    t0 = time.perf_counter()
    before = check_input(rec, input_features([image]))
    after = None
    if before.in_domain:
        after = check_result(rec, segment_with_model([image], model if model is not None else str(MODEL)))
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
    splits = folds(c)
    feats = case_features(c) if len(splits) > 1 else {}
    several = held_out_by_several(c) if feats else {}
    agree = agreements(c) if several else {}
    done = set()
    for k, (model, val, train) in enumerate(splits):
        # In domain: each case by the members that did not train on it, against a record made
        # without that member's validation cases and, for the members' agreement, without the
        # case itself (for one model: the card's own record).
        if feats:
            others = [n for n in feats if n not in val]
            rec_k = build_record([input_features([_image(n)]) for n in train], [feats[n][1] for n in others])
        for n in val:
            if n in done:
                continue
            done.add(n)
            judged, r = model, (rec_k if feats else rec)
            if n in several:
                rest = [v for m, v in agree.items() if m != n]
                judged, r = several[n], dict(rec_k, member_agreement=[min(rest), max(rest)])
            rows.append({"input": n, "kind": "in domain", "member": k, "members": len(several[n].members) if n in several else 1, **judge(_image(n), r, judged)})
    for name, kind, image in out_of_domain_inputs(splits[-1][1][:5]):
        rows.append({"input": name, "kind": kind, **judge(image, rec)})
    summary = summarise(rows)
    for r in rows:
        if r["kind"] != "in domain" or r["flagged"]:
            print(f"{r['kind']:<22} {r['input']:<42} {'FLAGGED' if r['flagged'] else 'in domain':<9} {r['stage']:<6} {('; '.join(r['reasons']))[:150]}")
    print(json.dumps({k: v for k, v in summary.items()}, indent=1))
    OUT_JSON.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))


FOREIGN = (
    ("whole-head T1 DICOM (study3_t1post)", ("hippocampus_dicom", "study3_t1post")),
    ("abdominal CT 3 mm", ("ct", "example_ct.nii.gz")),
    ("abdominal CT, 30 slices", ("ct", "example_ct_sm.nii.gz")),
    ("abdominal MRI", ("ct", "example_mr_sm.nii.gz")),
    ("brain tumour MRI 1", ("mr_tumor", "brain1_image.nrrd")),
    ("brain tumour MRI 2", ("mr_tumor", "brain2_image.nrrd")),
)
ALTERATIONS = ("strong noise", "bias field", "contrast inversion", "2x resampling", "0.5x resampling", "half the crop", "intensity scale x100")


def out_of_domain_inputs(crops):
    """(name, kind, image) of every foreign input: the shared non-hippocampus scans, then each
    alteration of each of the hippocampus ``crops`` (case names). A scale change is its own
    kind: a method that normalises each input (z-score) sees no change."""
    for name, parts in FOREIGN:
        yield name, "out of domain", read_image(SHARED_DATA.joinpath(*parts))
    for how in ALTERATIONS:
        for n in crops:
            image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz"))
            yield f"{n}, {how}", "out of domain" if how != "intensity scale x100" else "scale (z-scored away)", altered(image, how)


def summarise(rows) -> dict:
    """False flags, misses (also by kind of input) and the AUROC of the score (number of reasons)."""
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
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    record() if a.record else benchmark()
