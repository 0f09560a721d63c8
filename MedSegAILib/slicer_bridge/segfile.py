"""Slicer's segmentation file (``.seg.nrrd``) through MRML: read segments back, write as Slicer does.

Everything here goes through Slicer's own ``vtkMRMLSegmentationStorageNode`` (inside Slicer, or
slicer-core in plain Python). The writer every run uses needs no MRML and lives in
:mod:`MedSegAILib.outputs.seg_nrrd`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.result import SegmentationResult


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


def write_seg_nrrd_with_slicer(result: SegmentationResult, path) -> Path:
    """Write ``result`` through slicer-core's own storage node (the reference the SimpleITK
    writer, :func:`MedSegAILib.outputs.seg_nrrd.write_seg_nrrd`, is tested against)."""
    path = Path(path)
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
    return path


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
