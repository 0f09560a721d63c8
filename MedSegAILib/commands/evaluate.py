"""``medsegai evaluate``: per-class overlap, surface distances and panoptic quality of a prediction."""

from __future__ import annotations

import json
import sys

NAME = "evaluate"
HELP = "compare a predicted labelmap with a reference: Dice, IoU, HD95, ASSD, surface Dice, panoptic quality"
DESCRIPTION = """\
Compare a predicted labelmap (PRED) with a reference (REF), class by class.

PRED and REF are labelmap files (.nii.gz, .nrrd, .mha) or MedSegAI output folders (their
labels.nii.gz is used). When PRED is on another voxel grid it is resampled onto REF's grid with
nearest neighbour, and the output says so.

Per class: Dice, IoU, sensitivity, precision, volumes and volume difference (mm3, %), HD95 and
ASSD (mm, physical spacing), normalised surface Dice at --tolerance-mm. Per case: panoptic
quality (PQ = SQ x RQ, instances matched at IoU > 0.5; instances are the 26-connected components
of each class unless instance maps are given) and lesion-wise detection (any overlap).
A class empty on one side scores Dice 0 and infinite distances (null in JSON).

Examples:
  medsegai evaluate out/ reference.nii.gz
  medsegai evaluate out/labels.nii.gz reference.nii.gz --json > scores.json
  medsegai evaluate pred.nii.gz ref.nii.gz --tolerance-mm 2 --instances-pred out/instances.nii.gz
"""


def add_arguments(p) -> None:
    p.add_argument("pred", help="predicted labelmap file, or a MedSegAI output folder")
    p.add_argument("ref", help="reference labelmap file, or a MedSegAI output folder")
    p.add_argument("--json", action="store_true", help="print the full result as JSON (infinite distances as null)")
    p.add_argument("--tolerance-mm", type=float, default=1.0, metavar="T", help="tolerance of the normalised surface Dice in mm (default 1)")
    p.add_argument("--labels", type=int, nargs="+", metavar="N", help="classes to score (default: every label present in either)")
    p.add_argument("--instances-pred", metavar="F", help="instance map of the prediction (default: connected components per class)")
    p.add_argument("--instances-ref", metavar="F", help="instance map of the reference (default: connected components per class)")
    p.add_argument("--connectivity", type=int, choices=(6, 26), default=26, help="neighbourhood of connected components (default 26)")
    p.add_argument("--output", "-o", metavar="FILE", help="also write the JSON result to FILE (never one of the inputs)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")


def run(args) -> int:
    from pathlib import Path

    from ..core.errors import InputError
    from ..io.images import read_image
    from ..measure.metrics import evaluate_labelmaps, format_table, read_labelmap, to_json_ready
    from ..outputs.files import OUTPUT_FILES, write_text_atomically

    if not 0 <= args.tolerance_mm < float("inf"):  # NaN fails this too
        raise InputError(f"--tolerance-mm must be a finite distance >= 0 mm, got {args.tolerance_mm}")
    if args.output:
        out = Path(args.output)
        inputs = [Path(x) for x in (args.pred, args.ref, args.instances_pred, args.instances_ref) if x]
        if any(out.resolve() == i.resolve() or (i.is_dir() and out.resolve().parent == i.resolve() and out.name in OUTPUT_FILES) for i in inputs):
            raise InputError(f"--output '{out}' is one of the inputs; choose another file")
        if out.exists() and not args.overwrite:
            raise InputError(f"'{out}' already exists; add --overwrite to replace it")
        if out.is_dir():
            raise InputError(f"--output '{out}' is a folder; give a file name")
    pred = read_labelmap(args.pred)
    ref = read_labelmap(args.ref)
    inst_pred = read_image(args.instances_pred) if args.instances_pred else None
    inst_ref = read_image(args.instances_ref) if args.instances_ref else None
    result = evaluate_labelmaps(
        pred,
        ref,
        labels=args.labels,
        tolerance_mm=args.tolerance_mm,
        pred_instances=inst_pred,
        ref_instances=inst_ref,
        connectivity=args.connectivity,
    )
    result["pred"] = str(args.pred)
    result["ref"] = str(args.ref)
    doc = to_json_ready(result)
    if args.output:
        write_text_atomically(Path(args.output), json.dumps(doc, indent=2))
    if args.json:
        if result["resampled"]:
            print("note: PRED is on another voxel grid; it was resampled onto REF's grid (nearest neighbour)", file=sys.stderr)
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(result))
    return 0
