"""Radiomic features under a one-voxel change of the boundary, and the first-order relation.

For real regions (hippocampus crops: anterior and posterior of 3 cases; the two brain tumours
and the breast lesion of ``mr_tumor``), every feature is recomputed on the region eroded and
dilated by one voxel (:mod:`MedSegAILib.measure.radiomics_robustness`). Prints, per feature,
the median over regions of the larger relative change and the share of regions where it is
flagged (above 10 %); and, per region, the measured shift of the first-order mean on the
dilated mask against the predicted ``e * (ring mean - object mean)``. Writes
docs/benchmarks/radiomics_robustness.json.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import SimpleITK as sitk

from bench_paths import HIPPOCAMPUS, REPO, SHARED_DATA

sys.path.insert(0, str(REPO))

from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.measure.radiomics_robustness import feature_robustness, first_order_check  # noqa: E402

OUT_JSON = REPO / "docs" / "benchmarks" / "radiomics_robustness.json"


def regions():
    """(name, image, labels, label, bin width) of every region measured."""
    for case in ("hippocampus_389", "hippocampus_390", "hippocampus_393"):
        image = sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{case}.nii.gz"), sitk.sitkFloat32)
        labels = sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{case}.nii.gz"))
        for label, part in ((1, "anterior"), (2, "posterior")):
            yield f"{case} {part}", image, labels, label, 25.0
    for name in ("brain1", "brain2", "breast1"):
        image = sitk.ReadImage(str(SHARED_DATA / "mr_tumor" / f"{name}_image.nrrd"), sitk.sitkFloat32)
        labels = sitk.ReadImage(str(SHARED_DATA / "mr_tumor" / f"{name}_label.nrrd"))
        labels.CopyInformation(image)
        yield name, image, labels, None, 25.0


def main() -> int:
    per_feature, checks, skipped = {}, [], []
    for name, image, labels, label, bw in regions():
        try:
            rows = feature_robustness(image, labels, label, bin_width=bw)
        except InputError as exc:  # a region too thin to erode
            skipped.append({"region": name, "reason": str(exc)})
            print(f"{name:<28} skipped: {exc}", flush=True)
            continue
        for r in rows:
            per_feature.setdefault(r.name, []).append((r.worst, r.flagged))
        lab = label if label is not None else int(max(np.unique(sitk.GetArrayViewFromImage(labels))))
        c = first_order_check(image, labels, lab)
        c["region"], c["spacing_mm"] = name, [round(s, 3) for s in image.GetSpacing()]
        checks.append(c)
        print(f"{name:<28} e={c['outside_fraction']:.3f}  mean shift measured {c['measured_shift']:+.2f}, predicted {c['predicted_shift']:+.2f}", flush=True)
    table = sorted(({"feature": k, "median_change": float(np.median([w for w, _ in v])), "flagged_share": float(np.mean([f for _, f in v]))}
                    for k, v in per_feature.items()), key=lambda r: r["median_change"])
    print(f"\n{'feature':<44} {'median change':>13} {'flagged':>8}")
    for r in table:
        print(f"{r['feature']:<44} {100 * r['median_change']:>12.1f}% {100 * r['flagged_share']:>7.0f}%")
    OUT_JSON.write_text(json.dumps({"regions": len(checks), "skipped": skipped, "first_order": checks, "features": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
