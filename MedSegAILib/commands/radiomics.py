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

Examples:
  medsegai radiomics scan.nii.gz out/ --label 1
  medsegai radiomics brain1_image.nrrd brain1_label.nrrd --json > features.json
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


def run(args) -> int:
    from ..core.errors import InputError
    from ..io.images import read_image, require_3d_scalar
    from ..measure.metrics import read_labelmap
    from ..measure.radiomics import compute_radiomics

    if not args.bin_width > 0:
        raise InputError(f"--bin-width must be > 0, got {args.bin_width}")
    image = require_3d_scalar(read_image(args.image), name=f"'{args.image}'")
    labels = read_labelmap(args.labels)
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
