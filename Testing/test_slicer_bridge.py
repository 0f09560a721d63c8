"""The MRML bridge against real MRML (slicer-core) on real data from ../shared/data.

A result goes to a segmentation node, to a .seg.nrrd and back through Slicer's own storage
node; the segments, their names, colours and tags, the geometry and every voxel must survive.
Exported surfaces must be closed and lie where the labelmap is.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer", reason="slicer-core is needed (pip install 'medsegai[mrml]')")

from MedSegAILib.core.classes import ClassInfo  # noqa: E402
from MedSegAILib.core.errors import InputError  # noqa: E402
from MedSegAILib.core.result import Provenance, SegmentationResult  # noqa: E402
from MedSegAILib.postprocess.instances import label_instances  # noqa: E402
from MedSegAILib.slicer_bridge import segmentation_node as sn  # noqa: E402
from MedSegAILib.outputs.seg_nrrd import write_seg_nrrd  # noqa: E402
from MedSegAILib.slicer_bridge.segfile import read_seg_nrrd, write_seg_nrrd_with_slicer  # noqa: E402
from MedSegAILib.slicer_bridge.surfaces import export_surfaces, read_surface, surface_is_closed  # noqa: E402
from MedSegAILib.core.terminology import (  # noqa: E402
    lookup_terminology,
    parse_terminology_entry,
    terminology_entry_string,
)

HIPPOCAMPUS_CLASSES = [
    ClassInfo(1, "Anterior hippocampus", (0.9, 0.4, 0.2)),
    ClassInfo(2, "Posterior hippocampus", (0.2, 0.6, 0.9)),
]


def result_from_labels(labels: sitk.Image, classes) -> SegmentationResult:
    """A SegmentationResult from a real reference labelmap (uncertainty: distance to the edge)."""
    labels = sitk.Cast(labels, sitk.sitkUInt16)
    edge = sitk.Cast(sitk.BinaryContour(sitk.Cast(labels > 0, sitk.sitkUInt8)), sitk.sitkFloat32)
    uncertainty = sitk.Cast(sitk.SmoothingRecursiveGaussian(edge, 1.0), sitk.sitkFloat32)
    uncertainty = sitk.Clamp(uncertainty, sitk.sitkFloat32, 0.0, 1.0)
    uncertainty.CopyInformation(labels)
    instances, table, classes = label_instances(labels, classes, uncertainty=uncertainty)
    provenance = Provenance("reference", "test", {}, "0", [], [])
    return SegmentationResult(labels, instances, uncertainty, classes, table, provenance)


def oblique(image: sitk.Image, spacing=(0.8, 1.1, 2.5)) -> sitk.Image:
    """The same voxels with an oblique direction (rotated 25° and 10°) and anisotropic spacing."""
    rot = sitk.VersorTransform((0.3, 0.2, 0.93), math.radians(25)).GetMatrix()
    out = sitk.Image(image)
    out.SetDirection(rot)
    out.SetSpacing(spacing)
    out.SetOrigin((12.25, -30.5, 7.125))
    return out


@pytest.fixture(scope="module")
def hippo_result(hippocampus_case):
    return result_from_labels(sitk.ReadImage(str(hippocampus_case[1])), HIPPOCAMPUS_CLASSES)


@pytest.fixture(scope="module")
def tumour_result(shared_data):
    # Non-identity direction (y flipped) and 0.78 x 0.78 x 6.5 mm voxels; crop to keep it fast.
    labels = sitk.ReadImage(str(shared_data / "mr_tumor" / "brain1_label.nrrd"))
    arr = sitk.GetArrayViewFromImage(labels)
    z, y, x = np.nonzero(arr)
    lo = [max(int(v.min()) - 3, 0) for v in (x, y, z)]
    hi = [min(int(v.max()) + 4, s) for v, s in zip((x, y, z), labels.GetSize())]
    crop = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return result_from_labels(crop, [ClassInfo(1, "Brain tumour", (0.9, 0.9, 0.3))])


@pytest.fixture(scope="module")
def oblique_result(hippocampus_case):
    return result_from_labels(oblique(sitk.ReadImage(str(hippocampus_case[1]))), HIPPOCAMPUS_CLASSES)


def assert_same_geometry(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-12)


# --- terminology --------------------------------------------------------------------------------


def test_terminology_entry_is_read_by_slicer():
    info = ClassInfo(1, "Liver", (0.8, 0.5, 0.4))
    entry = terminology_entry_string(info)
    assert entry == (
        "Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
        "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^"
    )
    # Slicer's own parser gives back the same codes, and serialises them to the same string.
    parsed = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(entry, parsed)
    assert parsed.GetTypeObject().GetCodeValue() == "10200004"
    assert parsed.GetCategoryObject().GetCodeMeaning() == "Anatomical Structure"
    assert slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(parsed) == entry
    assert parse_terminology_entry(entry) == lookup_terminology("liver")


def test_terminology_lookup_names_and_unknown():
    assert lookup_terminology("Posterior hippocampus").type[1] == "5366008"
    assert lookup_terminology("brain_tumour").type == ("SCT", "108369006", "Neoplasm")
    assert lookup_terminology("kidney_left").type_modifier == ("SCT", "7771000", "Left")
    assert lookup_terminology("fat").type[2] == "Body fat"
    assert lookup_terminology("Class 3") is None
    assert terminology_entry_string(ClassInfo(3, "Class 3", (1, 0, 0))) == ""


# --- nodes --------------------------------------------------------------------------------------


def test_result_to_segmentation_node(hippo_result):
    scene = slicer.vtkMRMLScene()
    node = sn.result_to_segmentation_node(hippo_result, scene, name="hippo")
    segmentation = node.GetSegmentation()
    table = hippo_result.instance_table
    assert segmentation.GetNumberOfSegments() == len(table) >= 2
    assert segmentation.GetNumberOfLayers() == 1  # one shared labelmap, built in one go
    for rec in table:
        segment = segmentation.GetSegment(f"instance_{rec.instance_id}")
        assert segment.GetName() == rec.segment_name
        assert segment.GetLabelValue() == rec.instance_id
        np.testing.assert_allclose(segment.GetColor(), hippo_result.class_info(rec.class_label).color, atol=1e-6)
        assert sn.segment_tag(segment, sn.TAG_INSTANCE_ID) == str(rec.instance_id)
        assert sn.segment_tag(segment, sn.TAG_CLASS_LABEL) == str(rec.class_label)
        assert sn.segment_tag(segment, sn.TAG_CLASS_NAME) == rec.class_name
        assert "SCT^5366008^Hippocampus" in sn.segment_tag(segment, sn.TAG_TERMINOLOGY)
    assert [r.segment_name for r in table][:2] == ["Anterior hippocampus 1", "Posterior hippocampus 1"]


@pytest.mark.parametrize("which", ["hippo_result", "tumour_result", "oblique_result"])
@pytest.mark.parametrize("use_slicer", [True, False], ids=["storage-node", "sitk-writer"])
def test_seg_nrrd_round_trip(which, use_slicer, request, tmp_path):
    result = request.getfixturevalue(which)
    writer = write_seg_nrrd_with_slicer if use_slicer else write_seg_nrrd
    path = writer(result, tmp_path / "segmentation.seg.nrrd")
    back = read_seg_nrrd(path)  # always read by Slicer's storage node
    table = result.instance_table
    assert len(back.segments) == len(table)
    for seg, rec in zip(back.segments, table):
        assert seg.name == rec.segment_name
        assert seg.tags["MedSegAI.InstanceId"] == str(rec.instance_id)
        assert seg.tags["MedSegAI.ClassName"] == rec.class_name
        np.testing.assert_allclose(seg.color, result.class_info(rec.class_label).color, atol=1e-5)
    assert_same_geometry(back.labelmap, result.instances)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back.labelmap), sitk.GetArrayViewFromImage(result.instances))


def test_volume_node_keeps_geometry_exactly(oblique_result, shared_data):
    scene = slicer.vtkMRMLScene()
    image = sitk.ReadImage(str(shared_data / "mr_tumor" / "brain1_image.nrrd"))[100:140, 90:150, 5:15]
    for img in (image, oblique_result.labels):
        node = sn.sitk_to_volume_node(img, scene, "v")
        back = sn.volume_node_to_sitk(node)
        assert_same_geometry(back, img)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    # Slicer's RAS matrix: LPS x and y negated.
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    p_lps = oblique_result.labels.TransformIndexToPhysicalPoint((3, 4, 5))
    p_ras = m.MultiplyPoint((3, 4, 5, 1))[:3]
    np.testing.assert_allclose(p_ras, (-p_lps[0], -p_lps[1], p_lps[2]), atol=1e-9)


def test_uncertainty_volume_node(tumour_result):
    scene = slicer.vtkMRMLScene()
    node = sn.uncertainty_to_volume_node(tumour_result, scene)
    assert node.IsA("vtkMRMLScalarVolumeNode")
    back = sn.volume_node_to_sitk(node)
    assert_same_geometry(back, tumour_result.uncertainty)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(tumour_result.uncertainty))
    display = node.GetDisplayNode()
    color = display.GetColorNode()
    assert color is not None and color.GetNumberOfColors() == 256
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((1.0, 0.5))


def test_table_node_has_one_row_per_instance(hippo_result, tmp_path):
    from MedSegAILib.outputs.files import write_instance_csv

    scene = slicer.vtkMRMLScene()
    node = sn.instance_table_to_table_node(hippo_result, scene)
    assert node.GetNumberOfRows() == len(hippo_result.instance_table)
    write_instance_csv(hippo_result, tmp_path / "instances.csv")
    with open(tmp_path / "instances.csv") as fh:
        header = next(csv.reader(fh))
    assert [node.GetColumnName(i) for i in range(node.GetNumberOfColumns())] == header
    assert node.GetCellText(0, header.index("segment_name")) == hippo_result.instance_table[0].segment_name
    assert int(node.GetCellText(1, header.index("voxel_count"))) == hippo_result.instance_table[1].voxel_count


def test_seeds_from_painted_segments(hippocampus_case):
    """Segments painted on a coarser, shifted grid come back as labels 1..K on the image grid."""
    image = sitk.ReadImage(str(hippocampus_case[0]))
    reference = sitk.ReadImage(str(hippocampus_case[1]))
    scene = slicer.vtkMRMLScene()
    volume = sn.sitk_to_volume_node(image, scene, "image")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    arr = sitk.GetArrayViewFromImage(reference)
    for label, name in ((2, "posterior"), (1, "anterior")):  # order decides the seed label
        mask = sitk.GetImageFromArray((arr == label).astype(np.uint8))
        mask.CopyInformation(reference)
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(sn.BINARY_LABELMAP, sn.oriented_image_from_sitk(mask))
        seg_node.GetSegmentation().AddSegment(segment, name)
    seeds = sn.seeds_from_segmentation_node(seg_node, volume)
    assert_same_geometry(seeds, image)
    expected = np.where(arr == 2, 1, np.where(arr == 1, 2, 0))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(seeds), expected)
    # The same from a SimpleITK reference, and a chosen subset of segments.
    only = sn.seeds_from_segmentation_node(seg_node, image, ["anterior"])
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(only), (arr == 1).astype(np.uint16))
    with pytest.raises(InputError):
        sn.seeds_from_segmentation_node(scene.AddNewNodeByClass("vtkMRMLSegmentationNode"), image)


# --- surfaces -----------------------------------------------------------------------------------


def _index_bounds(poly, image: sitk.Image) -> np.ndarray:
    """(min, max) of the surface points in continuous voxel indices of ``image`` (from LPS)."""
    from vtk.util import numpy_support

    pts = numpy_support.vtk_to_numpy(poly.GetPoints().GetData()).astype(float)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    idx = (np.linalg.inv(direction) @ (pts - np.array(image.GetOrigin())).T).T / np.array(image.GetSpacing())
    return np.stack([idx.min(axis=0), idx.max(axis=0)])


@pytest.mark.parametrize("use_slicer", [True, False], ids=["slicer-converter", "vtk"])
@pytest.mark.parametrize("file_format", ["stl", "obj"])
def test_surfaces_closed_and_in_place(oblique_result, use_slicer, file_format, tmp_path):
    result = oblique_result
    files = export_surfaces(result, tmp_path, file_format=file_format, smoothing=0.0, use_slicer=use_slicer)
    assert len(files) == len(result.instance_table)
    assert [f.name for f in files][0] == f"Anterior_hippocampus_1.{file_format}"
    inst = sitk.GetArrayViewFromImage(result.instances)
    for path, rec in zip(files, result.instance_table):
        poly = read_surface(path)
        assert poly.GetNumberOfCells() > 0 and surface_is_closed(poly), path.name
        # Unsmoothed, the surface runs along voxel faces: half a voxel beyond the outer voxel centres.
        zyx = np.argwhere(inst == rec.instance_id)
        expected = np.stack([zyx.min(axis=0)[::-1] - 0.5, zyx.max(axis=0)[::-1] + 0.5])
        np.testing.assert_allclose(_index_bounds(poly, result.instances), expected, atol=1e-3)


def test_surfaces_ras_smoothing_decimation_and_sources(hippo_result, hippocampus_case, tmp_path):
    lps = export_surfaces(hippo_result, tmp_path / "lps", smoothing=0.0)
    ras = export_surfaces(hippo_result, tmp_path / "ras", smoothing=0.0, coordinate_system="RAS")
    b_lps, b_ras = read_surface(lps[0]).GetBounds(), read_surface(ras[0]).GetBounds()
    np.testing.assert_allclose(b_ras, (-b_lps[1], -b_lps[0], -b_lps[3], -b_lps[2], b_lps[4], b_lps[5]), atol=1e-4)
    # Slicer's default smoothing and a decimation keep the surfaces closed and in place.
    smooth = export_surfaces(hippo_result, tmp_path / "smooth", file_format="obj", smoothing=0.5, decimation=0.5)
    for a, b in zip(smooth, lps):
        ps, pb = read_surface(a), read_surface(b)
        assert surface_is_closed(ps)
        assert ps.GetNumberOfPolys() < pb.GetNumberOfPolys()
        np.testing.assert_allclose(ps.GetCenter(), pb.GetCenter(), atol=1.0)
    # A .seg.nrrd and a labelmap file give the same surfaces as the result.
    seg = write_seg_nrrd(hippo_result, tmp_path / "s.seg.nrrd")
    from_file = export_surfaces(seg, tmp_path / "from_seg", smoothing=0.0)
    assert [f.name for f in from_file] == [f.name for f in lps]
    from_labels = export_surfaces(hippocampus_case[1], tmp_path / "from_labels", smoothing=0.0)
    assert [f.name for f in from_labels][:2] == ["Label_1_1.stl", "Label_2_1.stl"]
    np.testing.assert_allclose(read_surface(from_labels[0]).GetBounds(), b_lps, atol=1e-4)


def test_surfaces_refuse_to_overwrite(hippo_result, tmp_path):
    calls = []
    first = export_surfaces(hippo_result, tmp_path, smoothing=0.0, progress=lambda f, m: calls.append(f))
    assert calls and calls[-1] == 1.0
    before = first[0].stat().st_mtime_ns
    with pytest.raises(InputError, match="already exists"):
        export_surfaces(hippo_result, tmp_path, smoothing=0.0)
    assert first[0].stat().st_mtime_ns == before
    assert export_surfaces(hippo_result, tmp_path, smoothing=0.0, overwrite=True) == first
    with pytest.raises(InputError, match="file_format"):
        export_surfaces(hippo_result, tmp_path, file_format="ply")
    with pytest.raises(InputError, match="does not exist"):
        export_surfaces(tmp_path / "missing.seg.nrrd", tmp_path)


def test_otsu_result_instances_match_seg_nrrd_segments(hippocampus_case, tmp_path):
    from MedSegAILib.pipeline import segment_files

    result = segment_files([hippocampus_case[0]], "otsu", {})
    back = read_seg_nrrd(write_seg_nrrd(result, tmp_path / "otsu.seg.nrrd"))
    assert len(back.segments) == len(result.instance_table) > 0
    assert [s.tags["MedSegAI.InstanceId"] for s in back.segments] == [str(r.instance_id) for r in result.instance_table]
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back.labelmap), sitk.GetArrayViewFromImage(result.instances))


def test_surfaces_repeated_names_and_early_refusal(hippo_result, tmp_path):
    """Two segments with one name get two files; an existing file stops the export before any work."""
    import copy

    result = copy.copy(hippo_result)
    result.instance_table = [copy.copy(r) for r in hippo_result.instance_table]
    for r in result.instance_table:
        r.segment_name = "Hippocampus"
    files = export_surfaces(result, tmp_path, smoothing=0.0)
    assert [f.name for f in files][:2] == ["Hippocampus.stl", "Hippocampus_2.stl"]
    messages = []
    with pytest.raises(InputError, match="already exists"):
        export_surfaces(result, tmp_path, smoothing=0.0, progress=lambda f, m: messages.append(m))
    assert messages == ["reading segmentation"]


# --- a finished run into the scene (MedSegAILib.slicer_bridge.scene_io) --------------------------


def _run_cli(tmp_path, *extra):
    import os
    import subprocess
    import sys

    from MedSegAILib.resources import sample_cases
    from MedSegAILib.runs.runner import python_command, subprocess_environment

    case = sample_cases()[0]
    out = tmp_path / "out"
    args = ["segment", str(case.image), "--output", str(out), "--no-radiomics", *extra]
    lib_parent = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        python_command(sys.executable, args), env=subprocess_environment(dict(os.environ), lib_parent), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return case, out


def test_a_finished_case_is_loaded_into_the_scene(tmp_path):
    from MedSegAILib.outputs.case_folder import check_case_outputs
    from MedSegAILib.slicer_bridge import scene_io

    case, out = _run_cli(tmp_path, "--method", "otsu", "--min-island-mm3", "30")
    assert check_case_outputs(out, case.label) == []
    scene = slicer.vtkMRMLScene()
    volume = sn.sitk_to_volume_node(sitk.ReadImage(str(case.image)), scene, "image")
    written = sitk.ReadImage(str(scene_io.write_volume_for_run(volume, tmp_path / "channel0.nrrd")))
    assert_same_geometry(written, sitk.ReadImage(str(case.image)))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="harden"):
        scene_io.write_volume_for_run(volume, tmp_path / "x.nrrd")
    volume.SetAndObserveTransformNodeID(None)
    existing = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    nodes = scene_io.load_case_into_scene(out, scene, reference_volume_node=volume)
    n = nodes.segmentation.GetSegmentation().GetNumberOfSegments()
    assert n == nodes.table.GetNumberOfRows() > 0 and nodes.segmentation is not existing
    assert existing.GetSegmentation().GetNumberOfSegments() == 0  # nothing the user had changed
    assert json.loads(nodes.segmentation.GetAttribute("MedSegAI.Provenance"))["method"] == "otsu"
    # Seeds painted in a segmentation node become the --seeds file on the image grid.
    seeds = scene_io.seeds_file_for_segmentation(nodes.segmentation, volume, tmp_path / "seeds.nii.gz")
    seed_img = sitk.ReadImage(str(seeds))
    assert_same_geometry(seed_img, sitk.ReadImage(str(case.image)))
    assert int(sitk.GetArrayViewFromImage(seed_img).max()) == n


def test_uncertainty_overlay_is_transparent_where_certain(tmp_path):
    """Inferno maps 0 to black: without a threshold the overlay darkens the whole image."""
    from MedSegAILib.slicer_bridge import scene_io

    _, out = _run_cli(tmp_path, "--method", "otsu")
    scene = slicer.vtkMRMLScene()
    nodes = scene_io.load_case_into_scene(out, scene)
    display = nodes.uncertainty.GetDisplayNode()
    assert display.GetColorNode() is not None
    assert display.GetApplyThreshold() == 1
    assert 0.0 < display.GetLowerThreshold() < 0.1 and display.GetUpperThreshold() >= 1.0
    assert display.GetAutoWindowLevel() == 0 and display.GetWindow() > 0


def test_tissue_classes_are_one_segment_each_and_objects_one_per_island(tmp_path):
    """Otsu's classes are stuff (one segment per class, whatever the islands); the graph cut's
    object is a thing (one segment per component)."""
    from MedSegAILib.outputs.case_folder import read_case_folder

    _, out = _run_cli(tmp_path, "--method", "otsu", "--param", "n_classes=3")
    result = read_case_folder(out)
    labels = sitk.GetArrayViewFromImage(result.labels)
    present = sorted(int(v) for v in np.unique(labels) if v)
    assert [r.class_label for r in result.instance_table] == present
    assert [r.segment_name for r in result.instance_table] == [result.class_info(v).name for v in present]
    islands = sitk.ConnectedComponentImageFilter()
    islands.Execute(sitk.Cast(result.labels == present[0], sitk.sitkUInt8))
    assert islands.GetObjectCount() > 1  # several islands, still one segment
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(result.instances) > 0, labels > 0)


def test_many_segments_are_flagged(tmp_path):
    from MedSegAILib.slicer_bridge import scene_io

    assert scene_io.segment_count_warning(12) is None
    text = scene_io.segment_count_warning(scene_io.MANY_SEGMENTS + 1)
    assert str(scene_io.MANY_SEGMENTS + 1) in text and "island" in text


def test_seg_nrrd_reads_back_with_slicerio(hippo_result, tmp_path):
    """An independent reader (slicerio, maintained with Slicer) sees the same segments, names,
    label values, colours and voxels as the SimpleITK writer put in."""
    slicerio = pytest.importorskip("slicerio")
    path = write_seg_nrrd(hippo_result, tmp_path / "s.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    segments = seg["segments"]
    assert [s["name"] for s in segments] == [r.segment_name for r in hippo_result.instance_table]
    assert [int(s["labelValue"]) for s in segments] == [r.instance_id for r in hippo_result.instance_table]
    for s, r in zip(segments, hippo_result.instance_table):
        np.testing.assert_allclose(s["color"], hippo_result.class_info(r.class_label).color, atol=1e-5)
    voxels = np.asarray(seg["voxels"])  # slicerio: (i, j, k), SimpleITK arrays: (k, j, i)
    np.testing.assert_array_equal(voxels.transpose(2, 1, 0), sitk.GetArrayViewFromImage(hippo_result.instances))


def test_a_segmentation_made_of_surfaces_exports_through_a_labelmap_copy(tmp_path):
    """Slicer's storage node writes the source representation only; a segmentation made from
    surfaces (an imported STL) would go out as poly data and the export would fail on it."""
    import vtk

    from MedSegAILib.slicer_bridge.scene_io import write_segmentation_for_export

    sn.import_slicer()
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "from surfaces")
    node.SetSourceRepresentationToClosedSurface()  # as an imported model is
    sphere = vtk.vtkSphereSource()
    sphere.SetRadius(10.0)
    sphere.SetThetaResolution(32)
    sphere.SetPhiResolution(32)
    sphere.Update()
    node.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "ball", [1.0, 0.5, 0.2])
    assert not node.GetSegmentation().IsSourceRepresentationImageData()
    path = write_segmentation_for_export(node, tmp_path / "s.seg.nrrd")
    assert not node.GetSegmentation().IsSourceRepresentationImageData()  # the user's node is unchanged
    files = export_surfaces(path, tmp_path / "surfaces", smoothing=0.0)
    assert [f.name for f in files] == ["ball.stl"]
    surface = read_surface(files[0])
    assert surface_is_closed(surface)
    bounds = surface.GetBounds()
    assert 17 < bounds[1] - bounds[0] < 23  # a 20 mm ball
