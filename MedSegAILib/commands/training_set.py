"""``medsegai training-set``: images and their segmentations to a checked training set."""

from __future__ import annotations

NAME = "training-set"
HELP = "write images and their segmentations (.seg.nrrd or labelmaps) as a checked training set for 'medsegai train'"
DESCRIPTION = """\
Write cases (an image and the segmentation drawn on it) to a new dataset folder in the MSD
layout, checked as the Slicer panel checks them: every named segment present in every case, each
segmentation on its image's grid, at least 3 cases. A .seg.nrrd (saved from Slicer) gives its
segments by name; a labelmap file gives label k to the k-th name of --segments. The last fifth
of the cases validate (dataset.json lists them; 'medsegai train' uses that list).

With --add-to, the new cases join a copy of an existing training set (its validation cases
stay); train on it with --init-from the model trained on the old set.

Examples:
  medsegai training-set --case ct1.nrrd ct1.seg.nrrd --case ct2.nrrd ct2.seg.nrrd \\
      --case ct3.nrrd ct3.seg.nrrd --segments liver,spleen --output liver_set
  medsegai train liver_set --output liver_model --time-budget-min 10 --average-from 0.8
  medsegai training-set --case ct4.nrrd ct4.seg.nrrd --add-to liver_set --output liver_set_2
  medsegai train liver_set_2 --output liver_model_2 --init-from liver_model --time-budget-min 10
"""


def add_arguments(p) -> None:
    p.add_argument("--case", nargs=2, action="append", required=True, metavar=("IMAGE", "SEGMENTATION"), help="an image and its segmentation (.seg.nrrd or labelmap); repeat for each case")
    p.add_argument("--segments", help="comma-separated names of the segments to learn, in label order (default with --add-to: the set's)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="training set folder to write (new or empty)")
    p.add_argument("--add-to", metavar="SET", help="an existing training set whose cases (and validation split) the new one copies")


def _case(image_path: str, seg_path: str, segments):
    """One LabelledCase from files (a .seg.nrrd through slicer-core, as in Slicer)."""
    from pathlib import Path

    import SimpleITK as sitk

    from ..io.images import read_image
    from ..methods.deep.training_set import LabelledCase

    image = read_image(image_path)
    name = Path(image_path).name.split(".")[0]
    if seg_path.lower().endswith(".seg.nrrd"):
        from ..slicer_bridge.segfile import load_segmentation_node
        from ..slicer_bridge.segmentation_node import import_slicer, sitk_to_volume_node
        from ..slicer_bridge.training_nodes import case_from_nodes

        scene = import_slicer().vtkMRMLScene()
        case, terms = case_from_nodes(sitk_to_volume_node(image, scene, name), load_segmentation_node(seg_path, scene), segments, name=name)
        case.source = {"image_file": str(Path(image_path).resolve()), "label_file": str(Path(seg_path).resolve()), "segment_ids": case.source["segment_ids"]}
        return case, terms
    labels = read_image(seg_path)
    return LabelledCase(name, image, sitk.Cast(labels, sitk.sitkUInt8), {"image_file": str(Path(image_path).resolve()), "label_file": str(Path(seg_path).resolve())}), {}


def run(args) -> int:
    from ..core.errors import InputError
    from ..methods.deep.training_set import extend_training_set, names_from_text, read_training_set, write_training_set

    segments = names_from_text(args.segments)
    if args.add_to:
        have = [s["name"] for s in read_training_set(args.add_to)["medsegai"]["segments"]]
        if segments and segments != have:
            raise InputError(f"--segments {','.join(segments)} differ from the training set's {','.join(have)}")
        segments = have
    if not segments:
        raise InputError("name the segments to learn with --segments (comma-separated, in label order)")
    cases, terminology = [], {}
    for image_path, seg_path in args.case:
        case, terms = _case(image_path, seg_path, segments)
        cases.append(case)
        for k, v in terms.items():
            terminology.setdefault(k, v)
    if args.add_to:
        folder = extend_training_set(args.add_to, cases, args.output)
    else:
        folder = write_training_set(cases, segments, args.output, terminology=terminology)
    meta = read_training_set(folder)
    print(f"{folder}: {meta['numTraining']} cases ({len(meta['medsegai']['validation'])} validate) with segments {', '.join(segments)}")
    return 0
