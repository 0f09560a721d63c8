"""Slicer's segmentation file (``.seg.nrrd``) written with SimpleITK, and the segment tags.

The header holds the fields Slicer's ``vtkMRMLSegmentationStorageNode`` writes
(``Segment<N>_ID``, ``_Name``, ``_Color``, ``_LabelValue``, ``_Layer``, ``_Extent``, ``_Tags``,
``Segmentation_MasterRepresentation`` ...), so Slicer and slicer-core read the file as a normal
segmentation: one shared layer whose voxel values are the instance ids. No slicer-core import
is needed (about 3 s of start-up saved per command); ``Testing/test_slicer_bridge.py`` reads
the file back through Slicer's storage node and through slicerio.

Segment tags written on every segment made from a result (readable in Slicer's Python console
with ``segment.GetTag(name)``):

===========================  ==============================================================
``MedSegAI.InstanceId``      instance id, the voxel value in ``instances.nii.gz``
``MedSegAI.ClassLabel``      semantic class label, the voxel value in ``labels.nii.gz``
``MedSegAI.ClassName``       class name
``MedSegAI.VolumeMm3``       instance volume in mm³
``MedSegAI.MeanUncertainty`` mean per-voxel uncertainty of the instance (when known)
``TerminologyEntry``         Slicer's standard terminology tag, where a code is known
===========================  ==============================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import numpy as np
import SimpleITK as sitk

from ..core.result import SegmentationResult
from ..core.terminology import terminology_entry_string
from ..io.images import ras_geometry
from ..postprocess.instances import smallest_label_type

TAG_INSTANCE_ID = "MedSegAI.InstanceId"
TAG_CLASS_LABEL = "MedSegAI.ClassLabel"
TAG_CLASS_NAME = "MedSegAI.ClassName"
TAG_VOLUME_MM3 = "MedSegAI.VolumeMm3"
TAG_MEAN_UNCERTAINTY = "MedSegAI.MeanUncertainty"
TAG_TERMINOLOGY = "TerminologyEntry"
KNOWN_TAGS = (TAG_INSTANCE_ID, TAG_CLASS_LABEL, TAG_CLASS_NAME, TAG_VOLUME_MM3, TAG_MEAN_UNCERTAINTY, TAG_TERMINOLOGY)


def segment_tags(rec, info) -> Dict[str, str]:
    """The tags of the segment made from instance record ``rec`` of class ``info`` (ClassInfo or None)."""
    tags = {
        TAG_INSTANCE_ID: str(rec.instance_id),
        TAG_CLASS_LABEL: str(rec.class_label),
        TAG_CLASS_NAME: rec.class_name,
        TAG_VOLUME_MM3: f"{rec.volume_mm3:.4f}",
    }
    if rec.mean_uncertainty is not None:
        tags[TAG_MEAN_UNCERTAINTY] = f"{rec.mean_uncertainty:.6f}"
    entry = terminology_entry_string(info) if info is not None else ""
    if entry:
        tags[TAG_TERMINOLOGY] = entry
    return tags


def write_seg_nrrd(result: SegmentationResult, path) -> Path:
    """Write ``result`` as a Slicer segmentation file, one segment per instance.

    Parameters
    ----------
    result : SegmentationResult
    path : str or Path
        Output file, normally ending in ``.seg.nrrd``; written to a temporary name first and
        renamed, so an interrupted write leaves no partial file under ``path``.

    Returns
    -------
    Path of the written file. The labelmap keeps the result's exact grid (LPS); segment names,
    colours, terminology and tags are those of :func:`segment_tags`.
    """
    path = Path(path)
    _write_with_sitk(result, path)
    return path


def _color_str(color) -> str:
    return " ".join(f"{float(c):.6g}" for c in color)


def _serialized_geometry(image: sitk.Image) -> str:
    """Slicer's image-geometry string: IJK-to-RAS matrix (16 values, row by row) then extent."""
    origin, spacing, directions = ras_geometry(image)
    m = np.eye(4)
    m[:3, :3] = directions * np.asarray(spacing)[None, :]
    m[:3, 3] = origin
    size = image.GetSize()
    values = [f"{v:.17g}" for v in m.ravel()] + [str(v) for d in range(3) for v in (0, size[d] - 1)]
    return "".join(v + ";" for v in values)


def _write_with_sitk(result: SegmentationResult, path: Path) -> None:
    """Slicer's .seg.nrrd header by hand: a 3D shared labelmap (values = instance ids)."""
    max_id = max((r.instance_id for r in result.instance_table), default=0)
    image = sitk.Cast(result.instances, smallest_label_type(max_id))
    size = image.GetSize()
    extent = f"0 {size[0] - 1} 0 {size[1] - 1} 0 {size[2] - 1}"
    classes = {c.label: c for c in result.classes}
    meta = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
        "Segmentation_ConversionParameters": f"Reference image geometry|{_serialized_geometry(image)}|Image geometry of the labelmap&",
    }
    for i, rec in enumerate(result.instance_table):
        info = classes.get(rec.class_label)
        tags = segment_tags(rec, info)
        meta.update(
            {
                f"Segment{i}_ID": f"instance_{rec.instance_id}",
                f"Segment{i}_Name": rec.segment_name or f"{rec.class_name} {rec.instance_id}",
                f"Segment{i}_NameAutoGenerated": "0",
                f"Segment{i}_Color": _color_str(info.color if info else (0.5, 0.5, 0.5)),
                f"Segment{i}_ColorAutoGenerated": "0",
                f"Segment{i}_LabelValue": str(rec.instance_id),
                f"Segment{i}_Layer": "0",
                f"Segment{i}_Extent": extent,
                f"Segment{i}_Tags": "".join(f"{k}:{v}|" for k, v in tags.items()),
            }
        )
    for k, v in meta.items():
        image.SetMetaData(k, v)
    tmp = path.with_name(path.name + ".tmp.nrrd")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
