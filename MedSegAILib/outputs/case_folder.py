"""A case folder as ``medsegai segment`` writes it: read it back, check it is complete."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import List


def read_case_folder(folder):
    """A :class:`SegmentationResult` from the outputs ``medsegai segment`` wrote into ``folder``."""
    import SimpleITK as sitk

    from ..core.classes import ClassInfo
    from ..core.errors import InputError
    from ..core.result import InstanceRecord, Provenance, SegmentationResult

    folder = Path(folder)
    needed = ["labels.nii.gz", "instances.nii.gz", "uncertainty.nii.gz", "instances.csv", "provenance.json"]
    missing = [n for n in needed if not (folder / n).exists()]
    if missing:
        raise InputError(f"the result folder '{folder}' has no {missing[0]}")
    with open(folder / "provenance.json") as fh:
        prov = json.load(fh)
    classes = [ClassInfo.from_dict(c) for c in prov.pop("classes", [])]
    prov.pop("instances", None)
    known = set(Provenance.__dataclass_fields__)
    provenance = Provenance(**{k: v for k, v in prov.items() if k in known})
    fixed = set(InstanceRecord(0, 0, "", 0, 0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0]).to_row())
    table = []
    with open(folder / "instances.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            unc = row.get("mean_uncertainty")
            measurements = {}
            for k, v in row.items():
                if k not in fixed and v not in ("", None):
                    try:
                        measurements[k] = float(v)
                    except ValueError:
                        pass
            table.append(
                InstanceRecord(
                    instance_id=int(row["instance_id"]),
                    class_label=int(row["class_label"]),
                    class_name=row["class_name"],
                    voxel_count=int(row["voxel_count"]),
                    volume_mm3=float(row["volume_mm3"]),
                    centroid_lps_mm=[float(row[f"centroid_{a}_mm"]) for a in "xyz"],
                    bbox_start_xyz=[int(row[f"bbox_start_{a}"]) for a in "xyz"],
                    bbox_size_xyz=[int(row[f"bbox_size_{a}"]) for a in "xyz"],
                    mean_uncertainty=float(unc) if unc not in ("", None) else None,
                    segment_name=row["segment_name"],
                    measurements=measurements,
                )
            )
    return SegmentationResult(
        labels=sitk.ReadImage(str(folder / "labels.nii.gz")),
        instances=sitk.ReadImage(str(folder / "instances.nii.gz")),
        uncertainty=sitk.ReadImage(str(folder / "uncertainty.nii.gz")),
        classes=classes,
        instance_table=table,
        provenance=provenance,
    )


def check_case_outputs(folder, reference_label=None, *, min_dice: float = 0.0) -> List[str]:
    """Problems with a case folder (empty list = fine); used by MedSegAITest and pytest.

    Checks every output exists, geometry equals the labels', the .seg.nrrd has one segment per
    instance, and (with ``reference_label``) the foreground Dice is at least ``min_dice``.
    """
    import numpy as np
    import SimpleITK as sitk

    from .files import OUTPUT_FILES

    folder = Path(folder)
    problems = [f"missing {n}" for n in OUTPUT_FILES if not (folder / n).exists()]
    if problems:
        return problems
    labels = sitk.ReadImage(str(folder / "labels.nii.gz"))
    for n in ("instances.nii.gz", "uncertainty.nii.gz"):
        img = sitk.ReadImage(str(folder / n))
        if img.GetSize() != labels.GetSize() or not np.allclose(img.GetOrigin(), labels.GetOrigin()) or not np.allclose(
            img.GetDirection(), labels.GetDirection()
        ):
            problems.append(f"{n} is not on the labels' grid")
    with open(folder / "instances.csv", newline="") as fh:
        n_rows = sum(1 for _ in csv.DictReader(fh))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(folder / "segmentation.seg.nrrd"))
    reader.ReadImageInformation()
    n_segments = len([k for k in reader.GetMetaDataKeys() if re.fullmatch(r"Segment\d+_ID", k)])
    if n_segments != n_rows:
        problems.append(f"segmentation.seg.nrrd has {n_segments} segments for {n_rows} instances")
    if reference_label is not None:
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_label))) > 0  # a copy: the image is a temporary
        pred = sitk.GetArrayViewFromImage(labels) > 0
        denom = ref.sum() + pred.sum()
        dice = 2.0 * np.logical_and(ref, pred).sum() / denom if denom else 1.0
        if dice < min_dice:
            problems.append(f"foreground Dice {dice:.3f} is below {min_dice}")
    return problems
