"""Training cases from the scene: a volume node and the segmentation drawn on it.

Works with real MRML (Slicer, or slicer-core in plain Python). The pair becomes a
:class:`~MedSegAILib.methods.deep.training_set.LabelledCase`: the volume on its own grid, and
the named segments as labels 1..K on that grid, with the node names and IDs as its source.
A segmentation drawn on another grid, a segment that is missing, or one that reaches outside
the volume is refused with a message naming the nodes; nothing in the scene is changed
(except that segments held only as surfaces get a binary labelmap, as the Segment Editor does).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..methods.deep.training_set import LabelledCase
from .segfile import reference_geometry_image
from .segmentation_node import TAG_TERMINOLOGY, import_slicer, segment_ids, segment_masks_on_grid, segment_tag, volume_node_to_sitk


def segment_names_of(seg_node) -> List[str]:
    """The segment names of a segmentation node, in its order."""
    segmentation = seg_node.GetSegmentation()
    return [segmentation.GetSegment(sid).GetName() for sid in segment_ids(seg_node)]


def _ids_by_name(seg_node, names: Sequence[str]) -> List[str]:
    """Segment IDs for ``names`` (exact name, else the one name that matches ignoring case)."""
    segmentation = seg_node.GetSegmentation()
    have = {segmentation.GetSegment(sid).GetName(): sid for sid in segment_ids(seg_node)}
    ids = []
    for name in names:
        sid = have.get(name)
        if sid is None:
            close = [v for k, v in have.items() if k.strip().lower() == name.strip().lower()]
            sid = close[0] if len(close) == 1 else None
        if sid is None:
            listed = ", ".join(f"'{n}'" for n in have) or "none"
            raise InputError(f"the segmentation '{seg_node.GetName()}' has no segment named '{name}' (it has {listed})")
        ids.append(sid)
    return ids


def _check_grid(volume_node, seg_node, image: sitk.Image) -> None:
    """Refuse a segmentation whose voxels are not the volume's (another spacing, direction or
    a shifted lattice): resampling it would move the boundaries the user drew."""
    if volume_node.GetParentTransformNode() is not None:
        raise InputError(f"the volume '{volume_node.GetName()}' is transformed; harden the transform (Data module) before training on it")
    if seg_node.GetParentTransformNode() is not None:
        raise InputError(f"the segmentation '{seg_node.GetName()}' is transformed; harden the transform (Data module) before training on it")
    ref = reference_geometry_image(seg_node)
    spacing, direction = np.array(image.GetSpacing()), np.array(image.GetDirection())
    if np.any(np.abs(np.array(ref.GetSpacing()) - spacing) > 1e-4 * spacing) or np.any(np.abs(np.array(ref.GetDirection()) - direction) > 1e-4):
        theirs = tuple(round(float(v), 4) for v in ref.GetSpacing())
        differs = f"spacing {theirs} vs {tuple(round(float(v), 4) for v in spacing)} mm" if theirs != tuple(round(float(v), 4) for v in spacing) else "other axis directions"
        raise InputError(
            f"the segmentation '{seg_node.GetName()}' was drawn on another grid than the volume '{volume_node.GetName()}' ({differs}); "
            "pair it with the volume it was drawn on"
        )
    # Same spacing and axes: the lattices coincide when the origins differ by whole voxels.
    offset = np.linalg.solve(direction.reshape(3, 3) * spacing, np.array(ref.GetOrigin()) - np.array(image.GetOrigin()))
    if np.any(np.abs(offset - np.round(offset)) > 1e-3):
        raise InputError(
            f"the segmentation '{seg_node.GetName()}' lies on a grid shifted by a fraction of a voxel from the volume '{volume_node.GetName()}'; "
            "pair it with the volume it was drawn on"
        )


def case_from_nodes(volume_node, seg_node, segment_names: Sequence[str], *, name: Optional[str] = None) -> Tuple[LabelledCase, Dict[str, str]]:
    """One training case from a volume node and its segmentation node.

    Parameters
    ----------
    volume_node : vtkMRMLScalarVolumeNode
    seg_node : vtkMRMLSegmentationNode
        Drawn on ``volume_node`` (its grid, or a crop of it on the same lattice).
    segment_names : sequence of str
        The segments to learn, in label order (1..K).
    name : str, optional
        Case name (default the volume node's name).

    Returns
    -------
    (case, terminology): the case (labels uint8 on the volume's grid; where segments overlap
    the later one wins) and each segment name's terminology entry where the segment has one.
    """
    if volume_node is None or seg_node is None:
        raise InputError("select a volume and the segmentation drawn on it")
    image = volume_node_to_sitk(volume_node)
    _check_grid(volume_node, seg_node, image)
    ids = _ids_by_name(seg_node, segment_names)
    labels = np.zeros(image.GetSize()[::-1], dtype=np.uint8)
    for k, (sid, mask, own) in enumerate(segment_masks_on_grid(seg_node, image, ids), start=1):
        inside = int(mask.sum())
        if own and inside < own:
            raise InputError(
                f"segment '{segment_names[k - 1]}' of '{seg_node.GetName()}' reaches outside the volume '{volume_node.GetName()}' "
                f"({own - inside} of {own} voxels); pair it with the volume it was drawn on"
            )
        labels[mask] = k
    label = sitk.GetImageFromArray(labels)
    label.CopyInformation(image)
    segmentation = seg_node.GetSegmentation()
    # Every new segment carries Slicer's generic "Tissue" entry: only a chosen one says something.
    generic = segment_tag(import_slicer().vtkSegment(), TAG_TERMINOLOGY)
    terminology = {}
    for n, sid in zip(segment_names, ids):
        entry = segment_tag(segmentation.GetSegment(sid), TAG_TERMINOLOGY)
        if entry and entry != generic:
            terminology[n] = entry
    source = {
        "volume": volume_node.GetName(), "volume_id": volume_node.GetID(),
        "segmentation": seg_node.GetName(), "segmentation_id": seg_node.GetID(),
        "segment_ids": dict(zip(segment_names, ids)),
    }
    return LabelledCase(name or volume_node.GetName(), image, label, source), terminology


def cases_from_node_pairs(pairs: Sequence[Tuple[object, object]], segment_names: Sequence[str]) -> Tuple[List[LabelledCase], Dict[str, str]]:
    """:func:`case_from_nodes` for each ``(volume node, segmentation node)``; the terminology of
    a segment name is the first case's that has one."""
    cases, terminology = [], {}
    for volume_node, seg_node in pairs:
        case, terms = case_from_nodes(volume_node, seg_node, segment_names)
        cases.append(case)
        for k, v in terms.items():
            terminology.setdefault(k, v)
    return cases, terminology
