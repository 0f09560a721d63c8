"""Closed surfaces (STL, OBJ) from a segmentation, one file per segment, for planning and 3D printing.

The surface of each segment is made the way Slicer makes its "Closed surface" representation
(``vtkBinaryLabelmapToClosedSurfaceConversionRule``): the labelmap is padded by one voxel so the
surface closes at the image border, contoured at the voxel boundary (flying edges), optionally
decimated (``vtkDecimatePro``, topology preserved) and smoothed with a windowed-sinc low-pass
filter whose strength follows Slicer's *smoothing factor* (0 none, 0.5 Slicer's default, 1
strong: pass band ``10**(-4 * factor)``, ``20 + 40 * factor`` iterations). With slicer-core
installed Slicer's own converter is used; otherwise the same VTK pipeline runs here.

Coordinates are physical millimetres. Slicer writes STL/OBJ files in LPS by default (Slicer
4.11 and later; ``vtkSlicerSegmentationsModuleLogic::ExportSegmentsClosedSurfaceRepresentationToFiles``
has ``lps=true``, the "coordinate system" option of Export to files), as planning and printing
tools that read DICOM expect scanner coordinates; ``coordinate_system="RAS"`` gives Slicer's internal
world coordinates instead. LPS and RAS differ by a 180° rotation about the z axis (x and y
negated), which keeps the triangles' outward orientation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError, MissingDependencyError
from ..core.progress import Progress, ProgressCallback
from ..core.result import SegmentationResult

FORMATS = ("stl", "obj")
COORDINATE_SYSTEMS = ("LPS", "RAS")


def safe_file_stem(name: str) -> str:
    """A file name stem from a segment name: letters, digits, '-', '_' and '.' kept, others '_'."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return stem or "segment"


#: A labelmap with more labels than this is taken for an intensity image (a CT has thousands
#: of grey values; a surface each would take minutes and be of no use).
MAX_LABELS = 1000


def _have_slicer() -> bool:
    try:
        import slicer

        return hasattr(slicer, "vtkMRMLSegmentationNode")
    except ImportError:
        return False


# --- sources ------------------------------------------------------------------------------------


def _segments_from_labelmap(path: Path) -> Tuple[sitk.Image, List[Tuple[str, int]]]:
    """A labelmap file as instances: each connected component of each label is one segment."""
    from ..core.classes import generic_classes
    from ..io.images import read_image
    from ..postprocess.instances import label_instances

    labels = read_image(path)
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the labelmap '{path}' is not a 3D single-component image")
    arr = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(arr, np.round(arr)):
        raise InputError(f"the labelmap '{path}' has non-integer voxel values; is it a label image?")
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise InputError(f"the labelmap '{path}' has values outside 0-65535; is it an intensity image rather than labels?")
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0]
    if len(present) > MAX_LABELS:
        raise InputError(
            f"the labelmap '{path}' has {len(present)} different labels (more than {MAX_LABELS}); "
            "is it an intensity image rather than labels? Export a segmentation or a labelmap instead"
        )
    instances, table, _ = label_instances(labels, generic_classes(present, prefix="Label"))
    return instances, [(r.segment_name, r.instance_id) for r in table]


def _segmentation_node_for(source, scene):
    """A segmentation node for a result, a .seg.nrrd or a labelmap file (slicer-core path)."""
    from .segfile import load_segmentation_node
    from .segmentation_node import result_to_segmentation_node

    if isinstance(source, SegmentationResult):
        return result_to_segmentation_node(source, scene)
    if isinstance(source, _Instances):
        return _node_from_instances(source.instances, source.segments, scene)
    return load_segmentation_node(Path(source), scene)


def _node_from_instances(instances: sitk.Image, segments, scene):
    from .segmentation_node import BINARY_LABELMAP, _smallest_unsigned, import_slicer, oriented_image_from_sitk

    slicer = import_slicer()

    max_id = max((i for _, i in segments), default=0)
    grid = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(instances).astype(_smallest_unsigned(max_id)))
    grid.CopyInformation(instances)
    shared = oriented_image_from_sitk(grid)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "labelmap")
    for name, value in segments:
        seg = slicer.vtkSegment()
        seg.SetName(name)
        seg.SetLabelValue(int(value))
        seg.AddRepresentation(BINARY_LABELMAP, shared)
        node.GetSegmentation().AddSegment(seg, f"label_{value}")
    return node


def _labelmap_as_instances(path: Path) -> "_Instances":
    instances, segments = _segments_from_labelmap(path)
    return _Instances(instances, segments)


class _Instances:
    """An instance map and its (segment name, label value) pairs, from a labelmap file."""

    def __init__(self, instances: sitk.Image, segments: List[Tuple[str, int]]):
        self.instances = instances
        self.segments = segments


def _segment_names(source) -> List[str]:
    """Segment names in order, read cheaply (no voxels for a .seg.nrrd)."""
    if isinstance(source, SegmentationResult):
        return [r.segment_name for r in source.instance_table]
    if isinstance(source, _Instances):
        return [name for name, _ in source.segments]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(source))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(f"'{source}' is not a segmentation file that can be read") from None
    names, i = [], 0
    while reader.HasMetaDataKey(f"Segment{i}_ID"):
        key = f"Segment{i}_Name"
        names.append(reader.GetMetaData(key) if reader.HasMetaDataKey(key) else reader.GetMetaData(f"Segment{i}_ID"))
        i += 1
    return names


def _plan_paths(names: Sequence[str], output_dir: Path, file_format: str) -> List[Path]:
    """One file path per segment (in order); repeated or clashing names get _2, _3 ..."""
    out, used = [], set()
    for name in names:
        stem = safe_file_stem(name)
        candidate, n = stem, 2
        while candidate.lower() in used:
            candidate, n = f"{stem}_{n}", n + 1
        used.add(candidate.lower())
        out.append(output_dir / f"{candidate}.{file_format}")
    return out


# --- surfaces -----------------------------------------------------------------------------------


def _surfaces_with_slicer(source, smoothing: float, decimation: float, progress: Progress) -> List[Tuple[int, object]]:
    """(segment index, vtkPolyData in RAS) for each non-empty segment, by Slicer's converter."""
    import vtk

    from .segmentation_node import import_slicer

    slicer = import_slicer()
    scene = slicer.vtkMRMLScene()
    node = _segmentation_node_for(source, scene)
    segmentation = node.GetSegmentation()
    segmentation.SetConversionParameter("Smoothing factor", str(float(smoothing)))
    segmentation.SetConversionParameter("Decimation factor", str(float(decimation)))
    segmentation.SetConversionParameter("Joint smoothing", "0")
    progress.update(0.1, "making closed surfaces")
    if not node.CreateClosedSurfaceRepresentation():
        raise RuntimeError("Slicer could not make closed surfaces from the segmentation")
    out = []
    n = segmentation.GetNumberOfSegments()
    for i in range(n):
        sid = segmentation.GetNthSegmentID(i)
        poly = vtk.vtkPolyData()
        node.GetClosedSurfaceRepresentation(sid, poly)
        if poly.GetNumberOfPolys():
            out.append((i, poly))
    return out


def _instances_for(source) -> Tuple[sitk.Image, List[Tuple[str, int]]]:
    if isinstance(source, SegmentationResult):
        return source.instances, [(r.segment_name, r.instance_id) for r in source.instance_table]
    if isinstance(source, _Instances):
        return source.instances, source.segments
    path = Path(source)
    if path.name.endswith(".seg.nrrd"):
        # Without slicer-core: read MedSegAI's own single-layer files (values = label values).
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        image = reader.Execute()
        if image.GetDimension() != 3:
            raise InputError(f"'{path}' has several layers; reading it needs slicer-core (pip install 'medsegai[mrml]')")
        segments, i = [], 0
        while reader.HasMetaDataKey(f"Segment{i}_ID"):
            name = reader.GetMetaData(f"Segment{i}_Name") if reader.HasMetaDataKey(f"Segment{i}_Name") else f"Segment_{i + 1}"
            value = int(reader.GetMetaData(f"Segment{i}_LabelValue")) if reader.HasMetaDataKey(f"Segment{i}_LabelValue") else 1
            segments.append((name, value))
            i += 1
        return image, segments
    return _segments_from_labelmap(path)


def _surface_from_mask(mask: sitk.Image, smoothing: float, decimation: float):
    """Slicer's labelmap-to-closed-surface pipeline in plain VTK; vtkPolyData in RAS."""
    import vtk

    from .segmentation_node import _image_data_from_array, ijk_to_ras_matrix

    padded = sitk.ConstantPad(sitk.Cast(mask, sitk.sitkUInt8), (1, 1, 1), (1, 1, 1), 0)
    image = _image_data_from_array(sitk.GetArrayViewFromImage(padded))
    contour = vtk.vtkDiscreteFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, 1)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    result = contour.GetOutput()
    if not result.GetNumberOfPolys():
        return None
    if decimation > 0:
        decimator = vtk.vtkDecimatePro()
        decimator.SetInputData(result)
        decimator.SetFeatureAngle(60)
        decimator.SplittingOff()
        decimator.PreserveTopologyOn()
        decimator.SetMaximumError(1)
        decimator.SetTargetReduction(decimation)
        decimator.Update()
        result = decimator.GetOutput()
    if smoothing > 0:
        smoother = vtk.vtkWindowedSincPolyDataFilter()
        smoother.SetInputData(result)
        smoother.SetNumberOfIterations(int(20 + smoothing * 40))
        smoother.SetPassBand(10.0 ** (-4.0 * smoothing))
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        smoother.NormalizeCoordinatesOn()
        smoother.Update()
        result = smoother.GetOutput()
    # Padded index (0,0,0) is original index (-1,-1,-1): shift, then voxel -> RAS.
    transform = vtk.vtkTransform()
    transform.SetMatrix(ijk_to_ras_matrix(mask))
    transform.Translate(-1, -1, -1)
    tf = vtk.vtkTransformPolyDataFilter()
    tf.SetInputData(result)
    tf.SetTransform(transform)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(tf.GetOutputPort())
    normals.ConsistencyOn()
    normals.SplittingOff()
    normals.Update()
    return normals.GetOutput()


def _surfaces_with_vtk(source, smoothing: float, decimation: float, progress: Progress):
    instances, segments = _instances_for(source)
    arr = sitk.GetArrayViewFromImage(instances)
    out = []
    for k, (name, value) in enumerate(segments):
        progress.update(0.1 + 0.6 * k / max(len(segments), 1), f"surface of {name}")
        sel = np.argwhere(arr == value)
        if not len(sel):
            continue
        lo, hi = sel.min(axis=0), sel.max(axis=0) + 1  # crop to the segment: much faster
        crop = sitk.GetImageFromArray((arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] == value).astype(np.uint8))
        crop.SetSpacing(instances.GetSpacing())
        crop.SetDirection(instances.GetDirection())
        crop.SetOrigin(instances.TransformIndexToPhysicalPoint([int(lo[2]), int(lo[1]), int(lo[0])]))
        poly = _surface_from_mask(crop, smoothing, decimation)
        if poly is not None:
            out.append((k, poly))
    return out


def _to_lps(poly):
    import vtk

    transform = vtk.vtkTransform()
    transform.Scale(-1, -1, 1)  # a rotation (det +1): triangle orientation is kept
    tf = vtk.vtkTransformPolyDataFilter()
    tf.SetInputData(poly)
    tf.SetTransform(transform)
    tf.Update()
    return tf.GetOutput()


def _write(poly, path: Path, file_format: str) -> None:
    import vtk

    triangles = vtk.vtkTriangleFilter()
    triangles.SetInputData(poly)
    triangles.Update()
    if file_format == "stl":
        writer = vtk.vtkSTLWriter()
        writer.SetFileTypeToBinary()
    else:
        writer = vtk.vtkOBJWriter()
    writer.SetInputData(triangles.GetOutput())
    writer.SetFileName(str(path))
    if not writer.Write():
        raise OSError(f"could not write the surface file '{path}'")


def export_surfaces(
    source: Union[SegmentationResult, str, Path],
    output_dir,
    *,
    file_format: str = "stl",
    smoothing: float = 0.5,
    decimation: float = 0.0,
    coordinate_system: str = "LPS",
    overwrite: bool = False,
    progress: Optional[ProgressCallback] = None,
    use_slicer: Optional[bool] = None,
) -> List[Path]:
    """Write one closed surface file per segment.

    Parameters
    ----------
    source : SegmentationResult, or path of a ``.seg.nrrd`` or a labelmap (.nii.gz, .nrrd, ...)
        For a labelmap each connected component of each label becomes one segment
        ("Label <v> <n>").
    output_dir : str or Path
        Folder for the files (created if missing).
    file_format : "stl" or "obj"
        Binary STL or Wavefront OBJ (triangles, with normals).
    smoothing : float in [0, 1]
        Slicer's closed-surface smoothing factor (0 none, 0.5 default, 1 strong).
    decimation : float in [0, 1)
        Fraction of triangles to remove (Slicer's decimation factor).
    coordinate_system : "LPS" or "RAS"
        Coordinates of the written points, in mm; LPS as Slicer writes by default.
    overwrite : bool
        Replace files that exist; otherwise an existing file raises InputError before anything
        is written.
    progress : callable(fraction, message) or None
    use_slicer : bool or None
        Force (True) or avoid (False) slicer-core's converter; default: use it when importable.

    Returns
    -------
    list of Path, one per non-empty segment, named ``<segment name>.<format>`` (characters
    other than letters, digits, '-', '_', '.' become '_'; repeated names get ``_2``, ``_3``).
    """
    try:
        import vtk  # noqa: F401
    except ImportError:
        raise MissingDependencyError("vtk", "mrml", "Exporting surfaces") from None
    file_format = str(file_format).lower()
    if file_format not in FORMATS:
        raise InputError(f"file_format must be 'stl' or 'obj', got '{file_format}'")
    coordinate_system = str(coordinate_system).upper()
    if coordinate_system not in COORDINATE_SYSTEMS:
        raise InputError(f"coordinate_system must be 'LPS' or 'RAS', got '{coordinate_system}'")
    if not 0.0 <= float(smoothing) <= 1.0:
        raise InputError(f"smoothing must be between 0 and 1, got {smoothing}")
    if not 0.0 <= float(decimation) < 1.0:
        raise InputError(f"decimation must be in [0, 1), got {decimation}")
    if not isinstance(source, SegmentationResult) and not Path(source).is_file():
        raise InputError(f"the source '{source}' does not exist or is not a file")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"the output '{output_dir}' exists and is not a folder")
    prog = Progress(progress)
    prog.update(0.0, "reading segmentation")
    if not isinstance(source, (SegmentationResult, str, Path)):
        raise InputError(f"source must be a SegmentationResult or a file path, got {type(source).__name__}")
    if not isinstance(source, SegmentationResult) and not Path(source).name.endswith(".seg.nrrd"):
        source = _labelmap_as_instances(Path(source))  # components once, for names and surfaces
    # Refuse before the (slow) surface making when any file would be replaced.
    planned = _plan_paths(_segment_names(source), output_dir, file_format)
    existing = [p for p in planned if p.exists()]
    if existing and not overwrite:
        raise InputError(
            f"the surface file '{existing[0]}' already exists ({len(existing)} of {len(planned)} would be replaced); "
            "choose another folder or pass --overwrite"
        )
    if use_slicer is None:
        use_slicer = _have_slicer()
    make = _surfaces_with_slicer if use_slicer else _surfaces_with_vtk
    surfaces = make(source, float(smoothing), float(decimation), prog)

    output_dir.mkdir(parents=True, exist_ok=True)
    paths: List[Path] = []
    for k, (index, poly) in enumerate(surfaces):
        path = planned[index]
        prog.update(0.7 + 0.3 * k / max(len(surfaces), 1), f"writing {path.name}")
        _write(_to_lps(poly) if coordinate_system == "LPS" else poly, path, file_format)
        paths.append(path)
    prog.update(1.0, f"wrote {len(paths)} surfaces")
    return paths


def surface_is_closed(poly) -> bool:
    """True when a triangle mesh has no boundary and no non-manifold edges (watertight)."""
    import vtk

    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(poly)
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOn()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return edges.GetOutput().GetNumberOfCells() == 0


def read_surface(path):
    """vtkPolyData from an STL or OBJ file."""
    import vtk

    path = Path(path)
    reader = vtk.vtkSTLReader() if path.suffix.lower() == ".stl" else vtk.vtkOBJReader()
    reader.SetFileName(str(path))
    reader.Update()
    return reader.GetOutput()
