"""Object instances: connected components of each semantic class, and their table.

Instance ids are assigned class by class (ascending label), largest component first within a
class, so ids are stable for the same labelmap. Each instance's segment name is
"<class name> <n>" with n counting from 1 within its class.

Panoptic "stuff" classes (tissue classes such as Otsu's or an MRF's intensity classes) are not
split: the whole class is one instance named after the class, so a CT through Otsu gives a few
segments instead of thousands of islands. Object classes ("things") get one instance per
connected component.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..core.classes import ClassInfo, class_by_label, distinct_colors
from ..core.result import InstanceRecord
from .cleanup import connected_components


def label_instances(
    labels: sitk.Image,
    classes: Sequence[ClassInfo],
    *,
    connectivity: int = 26,
    uncertainty: Optional[sitk.Image] = None,
    stuff_labels: Sequence[int] = (),
) -> Tuple[sitk.Image, List[InstanceRecord], List[ClassInfo]]:
    """Split a semantic labelmap into instances and measure each one.

    Parameters
    ----------
    labels : sitk.Image
        Semantic labelmap, 0 = background.
    classes : sequence of ClassInfo
        Known classes; a label present in ``labels`` without one gets a generic class.
    connectivity : 6 or 26
    uncertainty : sitk.Image or None
        Per-voxel uncertainty on the same grid; its mean per instance is recorded.
    stuff_labels : sequence of int
        Labels of "stuff" classes: each becomes a single instance, whatever its components.

    Returns
    -------
    instances : sitk.Image (UInt32) on the labels' grid, 0 = background
    table : list of InstanceRecord, ordered by instance id
    classes : list of ClassInfo covering every label present
    """
    arr = sitk.GetArrayViewFromImage(labels)
    known = class_by_label(classes)
    present = [int(v) for v in np.unique(arr) if v != 0]
    missing = [v for v in present if v not in known]
    all_classes = list(classes)
    for v, color in zip(missing, distinct_colors(len(missing) + len(classes))[len(classes):]):
        all_classes.append(ClassInfo(v, f"Label {v}", color))
    known = class_by_label(all_classes)

    instances = np.zeros(arr.shape, dtype=np.uint32)
    next_id = 1
    stuff = {int(v) for v in stuff_labels}
    for lab in present:
        if lab in stuff:
            instances[arr == lab] = next_id
            next_id += 1
            continue
        # A copy, not a view: the component image is a temporary.
        cc = sitk.GetArrayFromImage(
            connected_components(sitk.GetImageFromArray((arr == lab).astype(np.uint8)), connectivity)
        )
        n = int(cc.max())
        sel = cc > 0
        instances[sel] = cc[sel].astype(np.uint32) + (next_id - 1)
        next_id += n

    inst_img = sitk.GetImageFromArray(instances)
    inst_img.CopyInformation(labels)
    table = instance_table(inst_img, labels, known, uncertainty, stuff_labels=stuff)
    return inst_img, table, sorted(all_classes, key=lambda c: c.label)


def instance_table(
    instances: sitk.Image,
    labels: sitk.Image,
    classes_by_label: dict,
    uncertainty: Optional[sitk.Image] = None,
    *,
    stuff_labels: Sequence[int] = (),
) -> List[InstanceRecord]:
    """Measure each instance: voxel count, volume (mm³), centroid (LPS mm), bounding box (voxels)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(instances)
    inst_arr = sitk.GetArrayViewFromImage(instances)
    lab_arr = sitk.GetArrayViewFromImage(labels)
    unc_means = None
    if uncertainty is not None and stats.GetNumberOfLabels():
        unc = sitk.GetArrayViewFromImage(uncertainty).astype(np.float64).ravel()
        flat = inst_arr.ravel()
        sums = np.bincount(flat, weights=unc)
        counts = np.bincount(flat)
        unc_means = sums / np.maximum(counts, 1)
    records = []
    per_class_count: dict = {}
    for iid in sorted(stats.GetLabels()):
        bbox = stats.GetBoundingBox(iid)  # (x0, y0, z0, sx, sy, sz)
        x0, y0, z0 = bbox[:3]
        # Any voxel of the instance gives its class; the bbox start corner may be outside it.
        idx = np.argwhere(inst_arr[z0 : z0 + bbox[5], y0 : y0 + bbox[4], x0 : x0 + bbox[3]] == iid)[0]
        lab = int(lab_arr[z0 + idx[0], y0 + idx[1], x0 + idx[2]])
        info = classes_by_label[lab]
        per_class_count[lab] = per_class_count.get(lab, 0) + 1
        records.append(
            InstanceRecord(
                instance_id=int(iid),
                class_label=lab,
                class_name=info.name,
                voxel_count=int(stats.GetNumberOfPixels(iid)),
                volume_mm3=float(stats.GetPhysicalSize(iid)),
                centroid_lps_mm=[float(c) for c in stats.GetCentroid(iid)],
                bbox_start_xyz=[int(v) for v in bbox[:3]],
                bbox_size_xyz=[int(v) for v in bbox[3:]],
                mean_uncertainty=None if unc_means is None else float(unc_means[iid]),
                segment_name=info.name if lab in stuff_labels else f"{info.name} {per_class_count[lab]}",
            )
        )
    return records
