"""A :class:`SegmentationResult` as MRML nodes, and painted segments back as a seed labelmap.

Works with real MRML: inside 3D Slicer, or in plain Python with the ``slicer-core`` package
(``pip install 'medsegai[mrml]'``). Nothing here needs the Slicer application or Qt.

Geometry: SimpleITK images are in LPS patient coordinates, MRML in RAS. A voxel index (i, j, k)
maps to LPS by ``origin + direction @ (spacing * ijk)``; RAS is the same point with x and y
negated, so the IJK-to-RAS matrix is ``diag(-1, -1, 1)`` times the IJK-to-LPS matrix. The
helpers below copy origin, spacing and direction separately (never through a product), so a
round trip SimpleITK -> MRML -> SimpleITK gives back the exact same numbers.

Every segment made from a result carries the tags of
:func:`MedSegAILib.outputs.seg_nrrd.segment_tags` (listed there), kept in the ``.seg.nrrd`` too.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, MissingDependencyError
from ..core.result import SegmentationResult
from ..outputs.colormaps import inferno
from ..io.images import LPS_TO_RAS, ras_geometry
from ..outputs.seg_nrrd import (  # noqa: F401  (the tag names are part of this module's interface)
    KNOWN_TAGS,
    TAG_CLASS_LABEL,
    TAG_CLASS_NAME,
    TAG_INSTANCE_ID,
    TAG_MEAN_UNCERTAINTY,
    TAG_TERMINOLOGY,
    TAG_VOLUME_MM3,
    segment_tags,
)

BINARY_LABELMAP = "Binary labelmap"
CLOSED_SURFACE = "Closed surface"


def import_slicer():
    """The ``slicer`` module (Slicer's own, or slicer-core's); MissingDependencyError if absent."""
    try:
        import slicer  # noqa: F401

        if not hasattr(slicer, "vtkMRMLSegmentationNode"):
            raise ImportError("slicer without MRML")
    except ImportError:
        raise MissingDependencyError("slicer-core", "mrml", "Working with MRML nodes") from None
    _ensure_converter_rules(slicer)
    return slicer


def _ensure_converter_rules(slicer) -> None:
    """Register Slicer's representation converters (labelmap <-> closed surface ...).

    The Slicer application registers them at start-up (the segmentations module logic does);
    with slicer-core nothing has, so the four standard rules are registered here. A
    segmentation copies the rules when it is created, so this runs before any node is made.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if not factory.GetConverterRules():
        for rule in (
            "vtkBinaryLabelmapToClosedSurfaceConversionRule",
            "vtkClosedSurfaceToBinaryLabelmapConversionRule",
            "vtkClosedSurfaceToFractionalLabelmapConversionRule",
            "vtkFractionalLabelmapToClosedSurfaceConversionRule",
        ):
            if hasattr(slicer, rule):
                factory.RegisterConverterRule(getattr(slicer, rule)())


# --- geometry -----------------------------------------------------------------------------------


def ijk_to_ras_matrix(image: sitk.Image):
    """vtkMatrix4x4 mapping voxel indices (i, j, k) of ``image`` to RAS mm."""
    import vtk

    origin, spacing, directions = ras_geometry(image)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, directions[r, c] * spacing[c])
        m.SetElement(r, 3, origin[r])
    return m


def _vtk_type_for(array: np.ndarray) -> int:
    from vtk.util import numpy_support

    return numpy_support.get_vtk_array_type(array.dtype)


def _image_data_from_array(array: np.ndarray):
    """vtkImageData (origin 0, spacing 1) holding a (z, y, x) array; x varies fastest as in VTK."""
    import vtk
    from vtk.util import numpy_support

    arr = np.ascontiguousarray(array)
    img = vtk.vtkImageData()
    img.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=True, array_type=_vtk_type_for(arr))
    scalars.SetName("ImageScalars")
    img.GetPointData().SetScalars(scalars)
    return img


def _array_from_image_data(image_data) -> np.ndarray:
    from vtk.util import numpy_support

    dims = image_data.GetDimensions()
    scalars = image_data.GetPointData().GetScalars()
    arr = numpy_support.vtk_to_numpy(scalars)
    if scalars.GetNumberOfComponents() > 1:
        return arr.reshape(dims[2], dims[1], dims[0], scalars.GetNumberOfComponents()).copy()
    return arr.reshape(dims[2], dims[1], dims[0]).copy()


def _set_node_geometry(node, image: sitk.Image) -> None:
    import vtk

    origin, spacing, directions = ras_geometry(image)
    node.SetOrigin(*origin)
    node.SetSpacing(*spacing)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, directions[r, c])
    node.SetIJKToRASDirectionMatrix(m)


def _sitk_from_array_and_geometry(arr: np.ndarray, origin_ras, spacing, directions_ras) -> sitk.Image:
    img = sitk.GetImageFromArray(arr, isVector=arr.ndim == 4)
    img.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(origin_ras, dtype=float)])
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (LPS_TO_RAS @ np.asarray(directions_ras, dtype=float)).ravel()])
    return img


def sitk_to_volume_node(image: sitk.Image, scene, name: str = "Volume", *, node_class: str = "vtkMRMLScalarVolumeNode", node=None):
    """Add ``image`` to ``scene`` as a volume node with the image's exact geometry.

    Parameters
    ----------
    image : sitk.Image
        3D scalar image (LPS geometry).
    scene : vtkMRMLScene
    name : str
        Node name (made unique by the scene if taken).
    node_class : str
        "vtkMRMLScalarVolumeNode" or "vtkMRMLLabelMapVolumeNode".
    node : vtkMRMLVolumeNode or None
        An existing node to fill instead of adding a new one.

    Returns
    -------
    The volume node (with a display node when the scene can create one).
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("only 3D scalar images can become a volume node")
    if node is None:
        node = scene.AddNewNodeByClass(node_class, scene.GenerateUniqueName(name))
    node.SetAndObserveImageData(_image_data_from_array(sitk.GetArrayViewFromImage(image)))
    _set_node_geometry(node, image)
    if node.GetDisplayNode() is None and hasattr(node, "CreateDefaultDisplayNodes"):
        node.CreateDefaultDisplayNodes()
    return node


def volume_node_to_sitk(node) -> sitk.Image:
    """The voxels and exact geometry (LPS) of a volume node as a SimpleITK image.

    A parent transform on the node is not applied (MedSegAI never sets one; harden it first).
    """
    import vtk

    image_data = node.GetImageData()
    if image_data is None:
        raise InputError(f"the volume node '{node.GetName()}' has no image data")
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(m)
    directions = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    return _sitk_from_array_and_geometry(_array_from_image_data(image_data), node.GetOrigin(), node.GetSpacing(), directions)


def oriented_image_from_sitk(image: sitk.Image):
    """A ``vtkOrientedImageData`` (Slicer's labelmap-with-geometry) holding ``image`` in RAS."""
    import vtk

    slicer = import_slicer()
    oriented = slicer.vtkOrientedImageData()
    oriented.ShallowCopy(_image_data_from_array(sitk.GetArrayViewFromImage(image)))
    origin, spacing, directions = ras_geometry(image)
    oriented.SetOrigin(*origin)
    oriented.SetSpacing(*spacing)
    m = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            m.SetElement(r, c, directions[r, c])
    oriented.SetDirectionMatrix(m)
    return oriented


def sitk_from_oriented_image(oriented) -> sitk.Image:
    """Inverse of :func:`oriented_image_from_sitk`; the extent's start becomes the origin."""
    import vtk

    m = vtk.vtkMatrix4x4()
    oriented.GetDirectionMatrix(m)
    directions = np.array([[m.GetElement(r, c) for c in range(3)] for r in range(3)])
    spacing = oriented.GetSpacing()
    extent = oriented.GetExtent()
    origin = np.array(oriented.GetOrigin()) + directions @ (np.array(spacing) * np.array(extent[0::2]))
    return _sitk_from_array_and_geometry(_array_from_image_data(oriented), origin, spacing, directions)


def segment_tag(segment, name: str) -> Optional[str]:
    """A vtkSegment's tag value, or None (``GetTag`` fills an output argument in Python)."""
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _smallest_unsigned(max_value: int):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise InputError(f"{max_value} instances are more than a segmentation can hold")


# --- result -> nodes ----------------------------------------------------------------------------


def result_to_segmentation_node(
    result: SegmentationResult,
    scene,
    name: str = "MedSegAI segmentation",
    reference_volume_node=None,
    *,
    node=None,
):
    """One segment per instance of ``result``, in a new (or the given) segmentation node.

    Parameters
    ----------
    result : SegmentationResult
    scene : vtkMRMLScene
    name : str
        Node name (made unique by the scene).
    reference_volume_node : vtkMRMLVolumeNode or None
        Sets the segmentation's reference geometry (Segment Editor's "source volume"
        geometry). Without it the reference geometry is the result's labelmap grid.
    node : vtkMRMLSegmentationNode or None
        Existing node to replace the segments of (the user chose it as output).

    Returns
    -------
    vtkMRMLSegmentationNode. Segment ``k`` (in instance-id order) has ID ``instance_<id>``,
    name ``record.segment_name`` ("<class> <n>"), the class colour, label value = instance id
    in one shared binary labelmap on the result's grid, and the tags listed in this module's
    docstring.
    """
    slicer = import_slicer()
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    if hasattr(segmentation, "SetSourceRepresentationName"):
        segmentation.SetSourceRepresentationName(BINARY_LABELMAP)
    else:  # Slicer before 5.4
        segmentation.SetMasterRepresentationName(BINARY_LABELMAP)

    max_id = max((r.instance_id for r in result.instance_table), default=0)
    inst = sitk.GetArrayViewFromImage(result.instances).astype(_smallest_unsigned(max_id))
    grid = sitk.GetImageFromArray(inst)
    grid.CopyInformation(result.instances)
    shared = oriented_image_from_sitk(grid)  # one layer: instances never overlap

    geometry_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    else:
        segmentation.SetConversionParameter(geometry_name, slicer.vtkSegmentationConverter.SerializeImageGeometry(shared))

    classes = {c.label: c for c in result.classes}
    was_modifying = node.StartModify()
    try:
        for rec in result.instance_table:
            info = classes.get(rec.class_label)
            segment = slicer.vtkSegment()
            segment.SetName(rec.segment_name or f"{rec.class_name} {rec.instance_id}")
            if info is not None:
                segment.SetColor(*info.color)
            segment.SetLabelValue(int(rec.instance_id))
            segment.AddRepresentation(BINARY_LABELMAP, shared)
            for tag, value in segment_tags(rec, info).items():
                segment.SetTag(tag, value)
            segment.SetNameAutoGenerated(False)
            segment.SetColorAutoGenerated(False)
            segmentation.AddSegment(segment, f"instance_{rec.instance_id}")
    finally:
        node.EndModify(was_modifying)
    return node


def uncertainty_color_node(scene, name: str = "MedSegAI uncertainty"):
    """A 256-entry colour table (inferno) for uncertainty in [0, 1]; reused if already in the scene.

    In Slicer the built-in "Inferno" table is used when present.
    """
    builtin = scene.GetNodeByID("vtkMRMLColorTableNodeFileInferno.txt")
    if builtin is not None:
        return builtin
    existing = scene.GetFirstNodeByName(name)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    for i, (r, g, b) in enumerate(inferno(np.linspace(0.0, 1.0, 256))):
        node.SetColor(i, f"{i / 255.0:.3f}", float(r), float(g), float(b), 1.0)
    node.SetAttribute("Category", "MedSegAI")
    return node


#: Uncertainty below this is not drawn: the overlay is transparent where the result is certain.
UNCERTAINTY_DISPLAY_THRESHOLD = 0.02


def uncertainty_to_volume_node(result: SegmentationResult, scene, name: str = "MedSegAI uncertainty"):
    """The per-voxel uncertainty as a scalar volume (window 0..1) shown with an inferno colour
    table, thresholded at :data:`UNCERTAINTY_DISPLAY_THRESHOLD` so that voxels without
    uncertainty are transparent (inferno's 0 is black and would darken the whole image)."""
    return uncertainty_image_to_volume_node(result.uncertainty, scene, name)


def uncertainty_image_to_volume_node(uncertainty: sitk.Image, scene, name: str = "MedSegAI uncertainty", *, node=None):
    """:func:`uncertainty_to_volume_node` of an uncertainty image (0-1), filling ``node`` in
    place when given (the Segment Editor effect's overlay, after every preview)."""
    node = sitk_to_volume_node(sitk.Cast(uncertainty, sitk.sitkFloat32), scene, name, node=node)
    display = node.GetDisplayNode()
    if display is None:
        display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        node.SetAndObserveDisplayNodeID(display.GetID())
    display.SetAndObserveColorNodeID(uncertainty_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetThreshold(UNCERTAINTY_DISPLAY_THRESHOLD, 1.0)
    display.ApplyThresholdOn()
    node.SetAttribute("MedSegAI.Role", "uncertainty")
    return node


def instance_table_to_table_node(result: SegmentationResult, scene, name: str = "MedSegAI instances"):
    """A table node with one row per instance and the columns of ``instances.csv``.

    Integer columns are vtkIntArray, measurements vtkDoubleArray (missing values NaN), names
    vtkStringArray; column order is that of ``instances.csv``.
    """
    import vtk

    rows = [r.to_row() for r in result.instance_table]
    columns: List[str] = []
    if rows:
        for row in rows:
            columns += [k for k in row if k not in columns]
    else:
        from ..core.result import InstanceRecord

        columns = list(InstanceRecord(0, 0, "", 0, 0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0]).to_row())
    table = vtk.vtkTable()
    for col in columns:
        values = [row.get(col) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, str) for v in present) or col in ("segment_name", "class_name"):
            arr = vtk.vtkStringArray()
            for v in values:
                arr.InsertNextValue("" if v is None else str(v))
        elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in present) and len(present) == len(values):
            arr = vtk.vtkIntArray()
            for v in values:
                arr.InsertNextValue(int(v))
        else:
            arr = vtk.vtkDoubleArray()
            for v in values:
                arr.InsertNextValue(math.nan if v is None or isinstance(v, str) else float(v))
        arr.SetName(col)
        table.AddColumn(arr)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    node.SetAndObserveTable(table)
    node.SetUseColumnNameAsColumnHeader(True)
    node.SetAttribute("MedSegAI.Role", "instances")
    return node


# --- nodes -> seeds -----------------------------------------------------------------------------


def segment_ids(seg_node) -> List[str]:
    """Segment IDs of a segmentation node, in display order."""
    segmentation = seg_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def seeds_from_segmentation_node(
    seg_node,
    reference: Union[sitk.Image, "object"],
    segment_ids_to_use: Optional[Sequence[str]] = None,
) -> sitk.Image:
    """Painted segments as a seed labelmap on a reference grid (as Grow from seeds uses them).

    Parameters
    ----------
    seg_node : vtkMRMLSegmentationNode
        Segments painted in the Segment Editor (any representation; binary labelmap is used).
    reference : sitk.Image or vtkMRMLVolumeNode
        The grid of the image to segment.
    segment_ids_to_use : sequence of str or None
        Which segments, in which order; default all, in the node's order.

    Returns
    -------
    sitk.Image (UInt16) on the reference grid: segment k (1-based, in order) has label k,
    0 elsewhere. Where segments overlap the later one wins.
    """
    ids = list(segment_ids_to_use) if segment_ids_to_use is not None else segment_ids(seg_node)
    if not ids:
        raise InputError(f"the segmentation '{seg_node.GetName()}' has no segments to use as seeds")
    ref_image = reference if isinstance(reference, sitk.Image) else volume_node_to_sitk(reference)
    seeds = np.zeros(ref_image.GetSize()[::-1], dtype=np.uint16)
    for k, (_sid, mask, _own) in enumerate(segment_masks_on_grid(seg_node, ref_image, ids), start=1):
        seeds[mask] = k
    if not seeds.any():
        raise InputError(f"the segments of '{seg_node.GetName()}' have no voxels inside the image")
    out = sitk.GetImageFromArray(seeds)
    out.CopyInformation(ref_image)
    return out


def segment_masks_on_grid(seg_node, ref_image: sitk.Image, ids: Sequence[str]):
    """Yield ``(segment ID, mask, own voxels)`` for each of ``ids``: the segment's binary
    labelmap resampled onto ``ref_image``'s grid by Slicer's own routine (mask: bool (z, y, x)),
    and how many voxels it has on its own grid (more than ``mask.sum()`` when part of it lies
    outside the reference). InputError for an ID the node does not have."""
    slicer = import_slicer()
    if not seg_node.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP):
        seg_node.CreateBinaryLabelmapRepresentation()  # e.g. segments imported from models
    ref_geom = sitk.Image(ref_image.GetSize(), sitk.sitkUInt8)
    ref_geom.CopyInformation(ref_image)
    ref_oriented = oriented_image_from_sitk(ref_geom)
    shape = ref_image.GetSize()[::-1]
    for sid in ids:
        segment = seg_node.GetSegmentation().GetSegment(sid)
        if segment is None:
            raise InputError(f"the segmentation '{seg_node.GetName()}' has no segment '{sid}'")
        binary = slicer.vtkOrientedImageData()
        seg_node.GetBinaryLabelmapRepresentation(sid, binary)
        if binary.IsEmpty():
            yield sid, np.zeros(shape, dtype=bool), 0
            continue
        own = int(np.count_nonzero(_array_from_image_data(binary)))
        resampled = slicer.vtkOrientedImageData()
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            binary, ref_oriented, resampled, False, False
        )
        mask = _array_from_image_data(resampled) > 0
        if mask.shape != tuple(shape):  # Slicer crops to the overlap; place it by its extent
            mask = _place_in_extent(mask, resampled.GetExtent(), shape)
        yield sid, mask, own


def _place_in_extent(mask: np.ndarray, extent, shape) -> np.ndarray:
    """A (z, y, x) mask with VTK ``extent`` pasted into a zero array of ``shape`` (index 0 based)."""
    full = np.zeros(shape, dtype=bool)
    x0, y0, z0 = extent[0], extent[2], extent[4]
    zs = slice(max(z0, 0), min(z0 + mask.shape[0], shape[0]))
    ys = slice(max(y0, 0), min(y0 + mask.shape[1], shape[1]))
    xs = slice(max(x0, 0), min(x0 + mask.shape[2], shape[2]))
    full[zs, ys, xs] = mask[zs.start - z0 : zs.stop - z0, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    return full


def segmentation_node_from_labels(labels: sitk.Image, names: Sequence[str], scene, name: str = "Segmentation", reference_volume_node=None):
    """A segmentation node with one segment per name: segment ``names[k - 1]`` holds the voxels
    of ``labels`` equal to k (as a labelmap file imported in Slicer gives). With
    ``reference_volume_node`` the node's reference geometry is that volume's, as when the
    Segment Editor draws on it."""
    slicer = import_slicer()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    arr = sitk.GetArrayFromImage(labels)
    for k, segment_name in enumerate(names, start=1):
        mask = sitk.GetImageFromArray((arr == k).astype(np.uint8))
        mask.CopyInformation(labels)
        segment = slicer.vtkSegment()
        segment.SetName(segment_name)
        segment.AddRepresentation(BINARY_LABELMAP, oriented_image_from_sitk(mask))
        node.GetSegmentation().AddSegment(segment, segment_name)
    return node
