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

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..core.classes import ClassInfo, class_by_label, distinct_colors
from ..core.result import InstanceRecord
from ..core.slabs import take_by_slab
from .cleanup import connected_components, present_labels


@dataclass
class Region:
    """One label's voxel count, centroid (continuous index, x y z), bounding box (index x y z:
    start and size) and mean of an intensity image over it (None without one)."""

    count: int
    centroid_index_xyz: Tuple[float, float, float]
    bbox_start_xyz: Tuple[int, int, int]
    bbox_size_xyz: Tuple[int, int, int]
    mean: Optional[float] = None


def region_statistics(labels: sitk.Image, intensity: Optional[sitk.Image] = None) -> Dict[int, Region]:
    """Every non-zero label's :class:`Region`, in two passes that need no copy of the volume:
    SimpleITK's label statistics (counts, boxes, means; multi-threaded) and NumPy histograms of
    the voxel coordinates for the centroids.

    SimpleITK's shape statistics give the same figures but first turn the labels into runs of
    voxels: for a noisy CT's tissue classes that took 500 MB and seconds.
    """
    stats = sitk.LabelStatisticsImageFilter()
    stats.SetUseHistograms(False)
    stats.Execute(intensity if intensity is not None else labels, labels)
    ids = [int(v) for v in stats.GetLabels() if v != 0]
    figures = {v: (int(stats.GetCount(v)), [int(b) for b in stats.GetBoundingBox(v)], float(stats.GetMean(v))) for v in ids}
    # The filter shares the labels' buffer while it lives; a view taken now would copy the
    # buffer (SimpleITK's copy-on-write), and the old one is freed with the filter.
    del stats
    if not ids:
        return {}
    # Only the box that holds every label is read (the labels' union of bounding boxes).
    lo = [min(figures[v][1][2 * a] for v in ids) for a in range(3)]  # x, y, z
    hi = [max(figures[v][1][2 * a + 1] for v in ids) for a in range(3)]
    arr = sitk.GetArrayViewFromImage(labels)[lo[2] : hi[2] + 1, lo[1] : hi[1] + 1, lo[0] : hi[0] + 1]
    top = max(ids) + 1
    sums = np.zeros((3, top), dtype=np.float64)  # sum of x, y, z index per label
    # Each voxel's row and column index, for one plane of the box (reused by every plane).
    rows = np.repeat(np.arange(lo[1], hi[1] + 1, dtype=np.float64), arr.shape[2])
    cols = np.tile(np.arange(lo[0], hi[0] + 1, dtype=np.float64), arr.shape[1])
    for zi in range(arr.shape[0]):
        z = lo[2] + zi
        plane = arr[zi].ravel().astype(np.intp)  # bincount's own conversion, once a plane
        counts = np.bincount(plane, minlength=top)[:top]
        if not counts[1:].any():
            continue
        sums[2] += z * counts
        # Row and column sums of each label: histograms weighted by the coordinate.
        sums[1] += np.bincount(plane, weights=rows, minlength=top)[:top]
        sums[0] += np.bincount(plane, weights=cols, minlength=top)[:top]
    out = {}
    for v in ids:
        n, (x0, x1, y0, y1, z0, z1), mean = figures[v]
        out[v] = Region(
            count=n,
            centroid_index_xyz=tuple(float(sums[a, v] / n) for a in range(3)),
            bbox_start_xyz=(x0, y0, z0),
            bbox_size_xyz=(x1 - x0 + 1, y1 - y0 + 1, z1 - z0 + 1),
            mean=mean if intensity is not None else None,
        )
    return out


def smallest_label_type(max_value: int) -> int:
    """The smallest unsigned SimpleITK pixel type that holds ``max_value``."""
    return sitk.sitkUInt8 if max_value < 256 else (sitk.sitkUInt16 if max_value < 65536 else sitk.sitkUInt32)


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
    instances : sitk.Image on the labels' grid, 0 = background; UInt8, UInt16 or UInt32, the
        smallest that holds the number of instances
    table : list of InstanceRecord, ordered by instance id
    classes : list of ClassInfo covering every label present

    Notes
    -----
    Each object class's components are found in its bounding box only (SimpleITK's
    multi-threaded connected components), so the work and the temporaries scale with the
    objects, not with the volume; stuff classes are one table lookup over the volume.
    """
    if labels.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32):
        labels = sitk.Cast(labels, sitk.sitkUInt32)
    known = class_by_label(classes)
    present = present_labels(labels)
    missing = [v for v in present if v not in known]
    all_classes = list(classes)
    for v, color in zip(missing, distinct_colors(len(missing) + len(classes))[len(classes):]):
        all_classes.append(ClassInfo(v, f"Label {v}", color))
    known = class_by_label(all_classes)

    stuff = {int(v) for v in stuff_labels}
    # Bounding boxes of the object classes (their components are found inside them).
    boxes = region_statistics(labels) if any(lab not in stuff for lab in present) else {}
    # Instance ids: class by class (ascending label); a stuff class is one id, an object class
    # one id per component, largest first. A first pass counts each object class's components
    # (their maps are dropped at once, so memory does not grow with the number of classes); the
    # second stamps them into a map of the smallest type that holds them all.
    lut = np.zeros(max(present, default=0) + 1, dtype=np.uint32)
    counts = {}
    class_of_id = [0]

    def components(lab):
        box = (*boxes[lab].bbox_start_xyz, *boxes[lab].bbox_size_xyz)
        return box, connected_components(sitk.RegionOfInterest(labels, box[3:], box[:3]) == lab, connectivity)

    for lab in present:
        if lab in stuff:
            lut[lab] = len(class_of_id)
            class_of_id.append(lab)
            continue
        cc = components(lab)[1]  # held while its view is read (a view of a temporary dangles)
        counts[lab] = int(sitk.GetArrayViewFromImage(cc).max())
        cc = None
        class_of_id.extend([lab] * counts[lab])
    n_instances = len(class_of_id) - 1
    dtype = {sitk.sitkUInt8: np.uint8, sitk.sitkUInt16: np.uint16, sitk.sitkUInt32: np.uint32}[smallest_label_type(n_instances)]
    # The view is taken once no filter shares the labels' buffer (see region_statistics).
    instances = take_by_slab(lut, sitk.GetArrayViewFromImage(labels), dtype)
    offset = 0
    for lab in present:
        if lab in stuff:
            offset += 1
            continue
        (x0, y0, z0, sx, sy, sz), cc_img = components(lab)
        cc = sitk.GetArrayFromImage(cc_img)
        sel = cc > 0
        instances[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx][sel] = (cc[sel] + offset).astype(dtype)
        offset += counts[lab]
    inst_img = sitk.GetImageFromArray(instances)
    inst_img.CopyInformation(labels)
    instances = None  # the image holds its own copy
    table = instance_table(inst_img, class_of_id, known, uncertainty, stuff_labels=stuff)
    return inst_img, table, sorted(all_classes, key=lambda c: c.label)


def instance_table(
    instances: sitk.Image,
    class_of_id: Sequence[int],
    classes_by_label: dict,
    uncertainty: Optional[sitk.Image] = None,
    *,
    stuff_labels: Sequence[int] = (),
) -> List[InstanceRecord]:
    """Measure each instance: voxel count, volume (mm³), centroid (LPS mm), bounding box
    (voxels) and mean uncertainty (:func:`region_statistics`).

    ``class_of_id[i]`` is instance i's class label (index 0 unused).
    """
    regions = region_statistics(instances, uncertainty)
    voxel_mm3 = float(np.prod(instances.GetSpacing()))
    records = []
    per_class_count: dict = {}
    for iid in sorted(regions):
        region = regions[iid]
        lab = int(class_of_id[iid])
        info = classes_by_label[lab]
        per_class_count[lab] = per_class_count.get(lab, 0) + 1
        records.append(
            InstanceRecord(
                instance_id=int(iid),
                class_label=lab,
                class_name=info.name,
                voxel_count=region.count,
                volume_mm3=region.count * voxel_mm3,
                centroid_lps_mm=[float(c) for c in instances.TransformContinuousIndexToPhysicalPoint(region.centroid_index_xyz)],
                bbox_start_xyz=list(region.bbox_start_xyz),
                bbox_size_xyz=list(region.bbox_size_xyz),
                mean_uncertainty=region.mean,
                segment_name=info.name if lab in stuff_labels else f"{info.name} {per_class_count[lab]}",
            )
        )
    return records
