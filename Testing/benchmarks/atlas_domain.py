"""The atlas method's domain check: record the shipped hippocampus library's domain, then score
in-domain and out-of-domain targets.

    .venv/bin/python Testing/benchmarks/atlas_domain.py --record   # writes Resources/Atlases/hippocampus/domain.json
    .venv/bin/python Testing/benchmarks/atlas_domain.py            # the benchmark

``--record`` runs the atlas method (default parameters) on 40 shared hippocampus cases that are
not atlases (the first 40 by name) and records the range of their input features (with the
atlases' own), of their fused results and of the registration quality (:mod:`MedSegAILib.methods.atlas.domain`).

The benchmark judges other cases, never seen by the record (the last 40 by name that are not
atlases), as in domain, and the same out-of-domain inputs as the deep check
(``deep_domain.out_of_domain_inputs``): the whole-head DICOM study, CT, abdominal MRI, brain
tumour MRIs, and crops changed as scanners change them. Score = number of reasons; prints the
table and writes docs/benchmarks/atlas_domain.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import SimpleITK as sitk

from bench_paths import HIPPOCAMPUS, REPO

sys.path.insert(0, str(REPO))

from deep_domain import out_of_domain_inputs, summarise  # noqa: E402

from MedSegAILib.methods.atlas.domain import RECORD_FILE, build_atlas_record, check_result, read_record, result_features  # noqa: E402
from MedSegAILib.methods.atlas.library import load_atlas_library  # noqa: E402
from MedSegAILib.methods.atlas.segmentation import multi_atlas_segmentation  # noqa: E402
from MedSegAILib.methods.deep.domain import check_input, input_features  # noqa: E402

LIBRARY = REPO / "Resources" / "Atlases" / "hippocampus"
OUT_JSON = REPO / "docs" / "benchmarks" / "atlas_domain.json"
N = 40


def targets():
    """(record targets, in-domain test targets): shared cases that are not atlases, the first
    and the last ``N`` by name."""
    atlases = {c.name for c in load_atlas_library(LIBRARY).cases}
    names = sorted(p.name[: -len(".nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))
    names = [n for n in names if n not in atlases]
    return names[:N], names[-N:]


def _image(name):
    return sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)


def record() -> None:
    library = load_atlas_library(LIBRARY)
    names, _ = targets()
    inputs = [input_features([c.image]) for c in library.cases] + [input_features([_image(n)]) for n in names]
    outputs = []
    for i, n in enumerate(names):
        outputs.append(result_features(multi_atlas_segmentation(_image(n), library)))
        print(f"{i + 1}/{len(names)} {n}: {outputs[-1]['registration']}", flush=True)
    rec = build_atlas_record(inputs, outputs, source=f"input features of the {len(library.cases)} atlases and {len(names)} in-domain targets ({names[0]} ... {names[-1]}); results and registration quality of the atlas method (default parameters) on those targets")
    rec["targets"] = names
    (LIBRARY / RECORD_FILE).write_text(json.dumps(rec, indent=2))
    print(f"wrote {LIBRARY / RECORD_FILE}")


def judge(image: sitk.Image, rec: dict, library) -> dict:
    image = sitk.Cast(image, sitk.sitkFloat32)
    t0 = time.perf_counter()
    before = check_input(rec, input_features([image]), terms="atlas")
    reasons, figures = list(before.reasons), {}
    if before.in_domain:
        try:
            after = check_result(rec, multi_atlas_segmentation(image, library))
            reasons += after.reasons
            figures = after.figures["output"]["registration"]
        except Exception as exc:  # every registration failed: the method itself refuses
            reasons.append(f"the atlas method failed: {str(exc).splitlines()[0][:120]}")
    return {"flagged": bool(reasons), "score": len(reasons), "reasons": reasons, "registration": figures,
            "stage": "before" if before.reasons else ("after" if reasons else "-"), "seconds": round(time.perf_counter() - t0, 3)}


def benchmark() -> None:
    rec = read_record(LIBRARY)
    if rec is None:
        raise SystemExit(f"{LIBRARY} has no {RECORD_FILE}; run with --record first")
    library = load_atlas_library(LIBRARY)
    _, test = targets()
    rows = [{"input": n, "kind": "in domain", **judge(_image(n), rec, library)} for n in test]
    for name, kind, image in out_of_domain_inputs(test[:5]):
        rows.append({"input": name, "kind": kind, **judge(image, rec, library)})
        print(f"{name:<44} {'FLAGGED' if rows[-1]['flagged'] else 'in domain':<9} {rows[-1]['stage']:<6} {'; '.join(rows[-1]['reasons'])[:140]}", flush=True)
    summary = summarise(rows)
    for r in rows:
        if r["kind"] == "in domain" and r["flagged"]:
            print(f"FALSE FLAG {r['input']}: {'; '.join(r['reasons'])}")
    print(json.dumps(summary, indent=1))
    OUT_JSON.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    record() if a.record else benchmark()
