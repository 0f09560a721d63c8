"""Slicer's segmentation file (``.seg.nrrd``): write a result, read segments back.

With ``slicer-core`` installed (or inside Slicer) the file is written and read by Slicer's own
``vtkMRMLSegmentationStorageNode``, so it is exactly what Slicer writes. Without it the file is
written by SimpleITK with the same NRRD header fields Slicer uses (``Segment<N>_ID``,
``_Name``, ``_Color``, ``_LabelValue``, ``_Layer``, ``_Extent``, ``_Tags``,
``Segmentation_MasterRepresentation`` ...), which Slicer and slicer-core read as a normal
segmentation: one shared layer whose voxel values are the instance ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.result import SegmentationResult
from .segmentation_node import _segment_tags


@dataclass
class SegmentInfo:
    """One segment as stored in a ``.seg.nrrd``."""

    segment_id: str
    name: str
    color: Tuple[float, float, float]
    label_value: int
    layer: int
    tags: Dict[str, str] = field(default_factory=dict)


@dataclass
class SegFile:
    """Segments of a ``.seg.nrrd`` and their voxels.

    ``labelmap`` is on the segmentation's reference geometry (LPS, as SimpleITK): voxel value k
    marks segment ``segments[k - 1]`` (0 = no segment; where segments overlap the later wins).
    """

    segments: List[SegmentInfo]
    labelmap: sitk.Image


def _have_slicer() -> bool:
    try:
        import slicer

        return hasattr(slicer, "vtkMRMLSegmentationStorageNode")
    except ImportError:
        return False


def write_seg_nrrd(result: SegmentationResult, path, *, use_slicer: bool = None) -> Path:
    """Write ``result`` as a Slicer segmentation file, one segment per instance.

    Parameters
    ----------
    result : SegmentationResult
    path : str or Path
        Output file, normally ending in ``.seg.nrrd``.
    use_slicer : bool or None
        Force (True) or avoid (False) slicer-core's storage node; default: use it when
        importable.

    Returns
    -------
    Path of the written file. Segment names, colours, terminology and MedSegAI tags are those
    of :func:`~MedSegAILib.slicer_bridge.segmentation_node.result_to_segmentation_node`; the
    labelmap keeps the result's exact grid.
    """
    path = Path(path)
    if use_slicer is None:
        use_slicer = _have_slicer()
    if use_slicer:
        _write_with_slicer(result, path)
    else:
        _write_with_sitk(result, path)
    return path


def _write_with_slicer(result: SegmentationResult, path: Path) -> None:
    from .segmentation_node import import_slicer, result_to_segmentation_node

    slicer = import_slicer()

    scene = slicer.vtkMRMLScene()
    node = result_to_segmentation_node(result, scene, name=path.name.split(".")[0])
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    storage.SetUseCompression(1)
    if not storage.WriteData(node):
        raise OSError(f"could not write the segmentation file '{path}'")


def _color_str(color) -> str:
    return " ".join(f"{float(c):.6g}" for c in color)


def _serialized_geometry(image: sitk.Image) -> str:
    """Slicer's image-geometry string: IJK-to-RAS matrix (16 values, row by row) then extent."""
    from .segmentation_node import ras_geometry

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
    pixel = sitk.sitkUInt8 if max_id < 256 else (sitk.sitkUInt16 if max_id < 65536 else sitk.sitkUInt32)
    image = sitk.Cast(result.instances, pixel)
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
        tags = _segment_tags(rec, info)
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


def load_segmentation_node(path, scene):
    """Read a ``.seg.nrrd`` into a new segmentation node of ``scene`` through Slicer's storage node."""
    from .segmentation_node import import_slicer

    slicer = import_slicer()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"the segmentation file '{path}' does not exist")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", path.name.split(".")[0])
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise InputError(f"'{path}' is not a segmentation file Slicer can read")
    node.CreateDefaultDisplayNodes()
    return node


def reference_geometry_image(seg_node) -> sitk.Image:
    """An empty UInt8 image on a segmentation node's reference geometry (LPS)."""
    import slicer

    from .segmentation_node import sitk_from_oriented_image

    segmentation = seg_node.GetSegmentation()
    geometry = segmentation.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    oriented = slicer.vtkOrientedImageData()
    if not geometry or not slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, oriented, True):
        # No reference geometry stored: use the common geometry of the segments' labelmaps.
        ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
        if not ids:
            raise InputError(f"the segmentation '{seg_node.GetName()}' has neither segments nor a reference geometry")
        seg_node.GetBinaryLabelmapRepresentation(ids[0], oriented)
    return sitk_from_oriented_image(oriented)


def segments_of_node(seg_node, tag_names=None) -> List[SegmentInfo]:
    """The segments of a segmentation node (ID, name, colour, label value, layer, tags).

    vtkSegment's Python wrapping cannot list its tags, so the tags read are ``tag_names``
    (default: the MedSegAI tags and ``TerminologyEntry``) that the segment has.
    """
    from .segmentation_node import KNOWN_TAGS, segment_tag

    segmentation = seg_node.GetSegmentation()
    out = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        segment = segmentation.GetSegment(sid)
        tags = {t: segment_tag(segment, t) for t in (tag_names or KNOWN_TAGS) if segment.HasTag(t)}
        out.append(
            SegmentInfo(
                segment_id=sid,
                name=segment.GetName(),
                color=tuple(float(c) for c in segment.GetColor()),
                label_value=int(segment.GetLabelValue()),
                layer=int(segmentation.GetLayerIndex(sid)),
                tags=tags,
            )
        )
    return out


def header_tag_names(path) -> List[str]:
    """Every segment tag name in a ``.seg.nrrd`` header (read without the voxels)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    names: List[str] = []
    for key in reader.GetMetaDataKeys():
        if key.startswith("Segment") and key.endswith("_Tags"):
            for item in reader.GetMetaData(key).split("|"):
                name = item.split(":", 1)[0]
                if name and name not in names:
                    names.append(name)
    return names


def read_seg_nrrd(path) -> SegFile:
    """Read a ``.seg.nrrd`` through slicer-core: its segments and a labelmap of them.

    Returns
    -------
    SegFile whose ``labelmap`` (UInt16) is on the file's reference geometry with segment k
    (1-based, file order) as value k.
    """
    from .segmentation_node import import_slicer, seeds_from_segmentation_node

    slicer = import_slicer()

    scene = slicer.vtkMRMLScene()
    node = load_segmentation_node(path, scene)
    segments = segments_of_node(node, header_tag_names(path))
    reference = reference_geometry_image(node)
    if segments:
        try:
            labelmap = seeds_from_segmentation_node(node, reference)
        except InputError:  # segments without voxels
            labelmap = sitk.Image(reference.GetSize(), sitk.sitkUInt16)
            labelmap.CopyInformation(reference)
    else:
        labelmap = sitk.Image(reference.GetSize(), sitk.sitkUInt16)
        labelmap.CopyInformation(reference)
    return SegFile(segments, labelmap)
