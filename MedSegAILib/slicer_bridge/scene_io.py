"""A finished case folder into the MRML scene, and the scene's volumes and seeds out to files for a run.

What the Slicer panel does with nodes, tested through slicer-core: the run itself (settings,
command line, process life cycle) is in :mod:`MedSegAILib.runs` and knows no MRML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..core.errors import InputError

#: Above this many segments the panel warns and suggests an island limit (a CT through Otsu
#: without one gives thousands).
MANY_SEGMENTS = 200


@dataclass
class LoadedNodes:
    segmentation: Any
    uncertainty: Any
    table: Any
    extra: Dict[str, Any] = field(default_factory=dict)


def load_case_into_scene(
    folder,
    scene,
    *,
    reference_volume_node=None,
    segmentation_node=None,
    name: str = "MedSegAI",
) -> LoadedNodes:
    """Add a finished case's outputs to ``scene``: segmentation, uncertainty volume, table.

    ``segmentation_node`` is the output the user chose (its segments are replaced); otherwise
    a new node is added, so nothing the user had is overwritten. Provenance is kept as a node
    attribute ("MedSegAI.Provenance", JSON) on the segmentation.
    """
    from ..outputs.case_folder import read_case_folder
    from .segmentation_node import instance_table_to_table_node, result_to_segmentation_node, uncertainty_to_volume_node

    result = read_case_folder(folder)
    seg = result_to_segmentation_node(
        result, scene, name=f"{name} segmentation", reference_volume_node=reference_volume_node, node=segmentation_node
    )
    seg.SetAttribute("MedSegAI.Provenance", json.dumps(result.provenance.to_dict(), default=str))
    unc = uncertainty_to_volume_node(result, scene, name=f"{name} uncertainty")
    table = instance_table_to_table_node(result, scene, name=f"{name} instances")
    nodes = LoadedNodes(seg, unc, table)
    explanation = Path(folder) / "explanation.nii.gz"
    if explanation.is_file():
        nodes.extra["explanation"] = explanation_volume_nodes(explanation, result, scene, name=name)
    return nodes


def explanation_volume_nodes(path, result, scene, *, name: str = "MedSegAI") -> list:
    """One scalar volume node per structure from a deep run's ``explanation.nii.gz`` (a vector
    image, component k-1 = structure k): "<name> explanation: <class name>"."""
    import SimpleITK as sitk

    from .segmentation_node import sitk_to_volume_node

    image = sitk.ReadImage(str(path))
    names = {c.label: c.name for c in result.classes}
    out = []
    for k in range(image.GetNumberOfComponentsPerPixel()):
        component = sitk.VectorIndexSelectionCast(image, k, sitk.sitkFloat32)
        node = sitk_to_volume_node(component, scene, name=f"{name} explanation: {names.get(k + 1, f'structure {k + 1}')}")
        node.SetAttribute("MedSegAI.Role", "explanation")
        out.append(node)
    return out


def write_volume_for_run(volume_node, path) -> Path:
    """Write a volume node for the background process with its exact geometry (LPS, NRRD/NIfTI).

    A volume under a transform is refused (InputError): the process would not see the
    transform, so the result would not line up.
    """
    import SimpleITK as sitk

    from ..core.errors import InputError
    from .segmentation_node import volume_node_to_sitk

    if volume_node.GetParentTransformNode() is not None:
        raise InputError(
            f"the volume '{volume_node.GetName()}' is transformed; harden the transform (Data module) before segmenting it"
        )
    # Uncompressed: the file lives for one run, and compressing a 512³ CT on the GUI thread takes seconds.
    sitk.WriteImage(volume_node_to_sitk(volume_node), str(path), useCompression=False)
    return Path(path)


def seeds_file_for_segmentation(seg_node, reference_volume_node, path) -> Path:
    """Write the painted segments of ``seg_node`` as a seed labelmap (labels 1..K) for ``--seeds``."""
    import SimpleITK as sitk

    from .segmentation_node import seeds_from_segmentation_node

    seeds = seeds_from_segmentation_node(seg_node, reference_volume_node)
    sitk.WriteImage(seeds, str(path), useCompression=True)
    return Path(path)


def segment_count_warning(count: int) -> Optional[str]:
    """A sentence for the panel when a result has more than :data:`MANY_SEGMENTS` segments
    (each is a row in the Segment Editor and a surface to build), else None."""
    if count <= MANY_SEGMENTS:
        return None
    return (
        f"The result has {count} segments. Most are probably small islands: set 'Remove islands below (mm³)' "
        "or 'Keep largest component' under Post-processing and run again."
    )


def write_segmentation_for_export(seg_node, path) -> Path:
    """Write a segmentation node as a labelmap ``.seg.nrrd`` (the form surface export reads).

    Slicer's storage node writes a segmentation's source representation only, so one made
    from surfaces (imported models, STL) would be written as poly data under that name; such a
    node is written through a labelmap copy, and the user's node is left as it is.
    """
    from .segmentation_node import import_slicer

    slicer = import_slicer()
    node = seg_node
    if not seg_node.GetSegmentation().IsSourceRepresentationImageData():
        node = slicer.vtkMRMLSegmentationNode()
        node.GetSegmentation().DeepCopy(seg_node.GetSegmentation())
        if not node.CreateBinaryLabelmapRepresentation():
            raise InputError(f"the segmentation '{seg_node.GetName()}' cannot be turned into a labelmap for export")
        node.SetSourceRepresentationToBinaryLabelmap()
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise InputError(f"the segmentation '{seg_node.GetName()}' could not be written for export")
    return Path(path)
