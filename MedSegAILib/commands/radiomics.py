"""``medsegai radiomics``: shape, first-order and GLCM features of one labelled region."""

from __future__ import annotations

import json
import math
import sys

NAME = "radiomics"
HELP = "radiomic features (shape, first order, GLCM; pyradiomics names) of one region of a labelmap"
DESCRIPTION = """\
Compute radiomic features of one region: IMAGE is the intensity image, LABELS a labelmap or
mask on the same scan (a MedSegAI output folder is read as its labels.nii.gz). Features are
named as pyradiomics names them (original_shape_MeshVolume, original_firstorder_Mean,
original_glcm_Contrast, ...); volumes in mm3, areas in mm2, lengths in mm.

Grey levels are discretised with a fixed --bin-width (pyradiomics' binWidth, default 25, in
image units). Research use only.

--robustness also computes every feature on the region eroded and on it dilated by one voxel,
and prints the relative change of each (flagged above --robustness-threshold, default 0.1 =
10 %), the most robust features first; then the least and most robust five by name. A feature
that moves this much when the boundary moves by one voxel depends on the segmentation as much
as on the tissue.

Examples:
  medsegai radiomics scan.nii.gz out/ --label 1
  medsegai radiomics brain1_image.nrrd brain1_label.nrrd --json > features.json
  medsegai radiomics brain1_image.nrrd brain1_label.nrrd --robustness
"""


def add_arguments(p) -> None:
    p.add_argument("image", help="intensity image (file or DICOM folder)")
    p.add_argument("labels", help="labelmap or mask file, or a MedSegAI output folder")
    p.add_argument("--label", type=int, default=None, help="label of the region (default: the only label present)")
    p.add_argument("--bin-width", type=float, default=25.0, help="grey-level bin width in image units (default 25)")
    p.add_argument(
        "--features", nargs="+", choices=("shape", "firstorder", "glcm"), default=["shape", "firstorder", "glcm"], help="feature classes (default all)"
    )
    p.add_argument("--voxel-array-shift", type=float, default=0.0, help="intensity shift for Energy/RMS (pyradiomics' voxelArrayShift, default 0)")
    p.add_argument("--json", action="store_true", help="print the features as JSON")
    p.add_argument("--robustness", action="store_true", help="also each feature on the region eroded and dilated by one voxel, with its relative change")
    p.add_argument("--robustness-threshold", type=float, default=0.1, help="relative change that flags a feature (default 0.1)")


def run(args) -> int:
    from ..core.errors import InputError
    from ..io.images import read_image, require_3d_scalar
    from ..measure.metrics import read_labelmap
    from ..measure.radiomics import compute_radiomics

    if not args.bin_width > 0:
        raise InputError(f"--bin-width must be > 0, got {args.bin_width}")
    image = require_3d_scalar(read_image(args.image), name=f"'{args.image}'")
    labels = read_labelmap(args.labels)
    if args.robustness:
        return _robustness(args, image, labels)
    feats = compute_radiomics(
        image, labels, args.label, args.bin_width, features=args.features, voxel_array_shift=args.voxel_array_shift
    )
    clean = {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in feats.items()}
    if args.json:
        json.dump(clean, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = max(len(k) for k in clean)
        for k, v in clean.items():
            print(f"{k.ljust(width)}  {'-' if v is None else f'{v:.6g}'}")
    return 0


def _robustness(args, image, labels) -> int:
    from ..core.errors import InputError
    from ..measure.radiomics_robustness import feature_robustness

    if not args.robustness_threshold > 0:
        raise InputError(f"--robustness-threshold must be > 0, got {args.robustness_threshold}")
    rows = feature_robustness(image, labels, args.label, bin_width=args.bin_width, features=args.features,
                              voxel_array_shift=args.voxel_array_shift, threshold=args.robustness_threshold)
    rows.sort(key=lambda r: r.worst)

    def num(v):
        return v if isinstance(v, float) and math.isfinite(v) else None

    if args.json:
        json.dump({"threshold": args.robustness_threshold, "features": [
            {"name": r.name, "value": num(r.value), "eroded": num(r.eroded), "dilated": num(r.dilated),
             "change_eroded": num(r.change_eroded), "change_dilated": num(r.change_dilated), "flagged": r.flagged} for r in rows]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    width = max(len(r.name) for r in rows)
    fmt = lambda v: "-" if num(v) is None else f"{v:.6g}"  # noqa: E731
    pct = lambda v: "inf" if not math.isfinite(v) else f"{100 * v:.1f}%"  # noqa: E731
    print(f"{'feature'.ljust(width)}  {'value':>11}  {'eroded':>11}  {'dilated':>11}  {'change -1':>9}  {'change +1':>9}")
    for r in rows:
        flag = "  UNSTABLE" if r.flagged else ""
        print(f"{r.name.ljust(width)}  {fmt(r.value):>11}  {fmt(r.eroded):>11}  {fmt(r.dilated):>11}  {pct(r.change_eroded):>9}  {pct(r.change_dilated):>9}{flag}")
    flagged = sum(r.flagged for r in rows)
    print(f"{flagged} of {len(rows)} features change by more than {100 * args.robustness_threshold:g}% when the boundary moves by one voxel")
    print("most robust: " + ", ".join(r.name for r in rows[:5]))
    print("least robust: " + ", ".join(r.name for r in rows[::-1][:5]))
    return 0
