"""Radiomic features against pyradiomics' own baseline values (brain1, brain2, breast1).

The baselines (../shared/data/mr_tumor/radiomics_baseline) were computed by pyradiomics with
binWidth 25, voxelArrayShift 2000, no resampling or normalisation, label 1 (see each CSV's
diagnostics_Configuration_Settings row, columns brain1/brain2/breast1). Every shape, first-order
and GLCM feature must agree within 1 %; first order and GLCM agree to 1e-6 (same definitions,
same discretisation), the mesh features within 0.5 % (marching-cubes case-table conventions,
see MedSegAILib.measure.mesh).
"""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.cli import main
from MedSegAILib.core.errors import InputError
from MedSegAILib.measure.mesh import CASE_TABLE, EDGES, CORNERS, mesh_area_volume
from MedSegAILib.measure.radiomics import add_instance_radiomics, compute_radiomics

CASES = ("brain1", "brain2", "breast1")


@pytest.fixture(scope="module")
def baseline(shared_data):
    folder = shared_data / "mr_tumor" / "radiomics_baseline"
    values = {c: {} for c in CASES}
    settings = {}
    for f in ("baseline_firstorder.csv", "baseline_glcm.csv", "baseline_shape.csv"):
        with open(folder / f) as fh:
            for row in csv.DictReader(fh):
                name = row["featureName"]
                for c in CASES:
                    if name.startswith("original_"):
                        values[c][name] = float(row[c])
                    elif name == "diagnostics_Configuration_Settings":
                        settings[(f, c)] = row[c]
    return values, settings


@pytest.mark.parametrize("case", CASES)
def test_features_match_pyradiomics_baseline(case, baseline, shared_data):
    values, settings = baseline
    for (f, c), s in settings.items():
        if c == case:  # the settings this test reproduces
            assert "'binWidth': 25" in s and "'voxelArrayShift': 2000" in s and "'resampledPixelSpacing': None" in s
    d = shared_data / "mr_tumor"
    feats = compute_radiomics(
        sitk.ReadImage(str(d / f"{case}_image.nrrd")), sitk.ReadImage(str(d / f"{case}_label.nrrd")), 1, 25, voxel_array_shift=2000
    )
    ref = values[case]
    assert len(ref) == 56
    off = {k: (feats.get(k), v) for k, v in ref.items() if feats.get(k) is None or abs(feats[k] - v) > 0.01 * abs(v)}
    assert not off, off
    for k, v in ref.items():
        if "_shape_" not in k or k.split("_")[-1] in ("VoxelVolume", "MajorAxisLength", "MinorAxisLength", "LeastAxisLength", "Elongation", "Flatness"):
            assert feats[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
        else:
            assert feats[k] == pytest.approx(v, rel=5e-3), k


def test_mesh_volume_of_simple_shapes():
    one = np.ones((1, 1, 1), bool)
    area, vol = mesh_area_volume(one, (1, 1, 1))
    assert vol == pytest.approx(1 / 6) and area == pytest.approx(np.sqrt(3))  # octahedron
    z, y, x = np.mgrid[:48, :48, :48]
    ball = (z - 24) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 16**2
    area, vol = mesh_area_volume(ball, (2.0, 1.0, 0.5))
    assert vol == pytest.approx(4 / 3 * np.pi * 16**3, rel=0.01)  # volume invariant to spacing product 1


def test_case_table_matches_vtk():
    vtk = pytest.importorskip("vtk")
    from vtk.util import numpy_support as ns

    mid = {tuple((CORNERS[a] + CORNERS[b]) / 2): e for e, (a, b) in enumerate(EDGES)}
    for code in range(256):
        arr = np.zeros((2, 2, 2), np.uint8)
        for k in range(8):
            if code >> k & 1:
                arr[tuple(CORNERS[k].astype(int))] = 1
        img = vtk.vtkImageData()
        img.SetDimensions(2, 2, 2)
        img.GetPointData().SetScalars(ns.numpy_to_vtk(arr.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        mc = vtk.vtkMarchingCubes()
        mc.SetInputData(img)
        mc.SetValue(0, 0.5)
        mc.ComputeNormalsOff()
        mc.Update()
        out = mc.GetOutput()
        if out.GetNumberOfPolys() == 0:
            assert CASE_TABLE[code] == ""
            continue
        pts = ns.vtk_to_numpy(out.GetPoints().GetData())[:, ::-1]
        conn = ns.vtk_to_numpy(out.GetPolys().GetConnectivityArray()).reshape(-1, 3)
        assert "".join("%x" % mid[tuple(pts[i])] for tri in conn for i in tri) == CASE_TABLE[code], code


def test_label_selection_and_errors(shared_data):
    d = shared_data / "mr_tumor"
    img = sitk.ReadImage(str(d / "breast1_image.nrrd"))
    lab = sitk.ReadImage(str(d / "breast1_label.nrrd"))
    two = sitk.Cast(lab, sitk.sitkUInt16) * 3  # label 3 only
    a = compute_radiomics(img, lab, 1, features=("firstorder",))
    b = compute_radiomics(img, two, None, features=("firstorder",))
    assert a == b and all(k.startswith("original_firstorder_") for k in a)
    with pytest.raises(InputError, match="not present"):
        compute_radiomics(img, lab, 2)
    with pytest.raises(InputError, match="unknown feature"):
        compute_radiomics(img, lab, 1, features=("glrlm",))


def test_instance_radiomics_fills_table_quickly(hippocampus_case):
    from MedSegAILib.core.classes import generic_classes
    from MedSegAILib.postprocess.instances import label_instances

    image = sitk.ReadImage(str(hippocampus_case[0]))
    # Many small instances: split the reference label into slabs, plus single-voxel specks.
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(hippocampus_case[1])))
    arr[:, :, ::4] = 0
    arr[0, 0, 0:10:2] = 1
    labels = sitk.GetImageFromArray(arr.astype(np.uint16))
    labels.CopyInformation(image)
    instances, table, classes = label_instances(labels, generic_classes([1, 2]))

    class R:  # the two attributes add_instance_radiomics reads
        pass

    res = R()
    res.instances, res.instance_table = instances, table
    assert len(table) >= 15
    t0 = time.perf_counter()
    add_instance_radiomics(res, sitk.Cast(image, sitk.sitkFloat32))
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.05 * len(table) + 1.0
    big = max(table, key=lambda r: r.voxel_count)
    tiny = min(table, key=lambda r: r.voxel_count)
    assert big.measurements["shape_MeshVolume"] > 0 and "glcm_Contrast" in big.measurements
    assert tiny.voxel_count == 1 and "glcm_Contrast" not in tiny.measurements
    assert tiny.measurements["firstorder_Mean"] is not None
    row = big.to_row()
    assert row["shape_VoxelVolume"] == pytest.approx(big.volume_mm3)
    # the per-instance values are the region values
    one = compute_radiomics(sitk.Cast(image, sitk.sitkFloat32), instances, big.instance_id, prefix="")
    assert big.measurements["firstorder_Mean"] == pytest.approx(one["firstorder_Mean"], rel=1e-6)


def test_cli_json(shared_data, capsys):
    d = shared_data / "mr_tumor"
    assert main(["radiomics", str(d / "breast1_image.nrrd"), str(d / "breast1_label.nrrd"), "--json", "--voxel-array-shift", "2000"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["original_firstorder_Energy"] > 0 and "original_glcm_Contrast" in doc
    assert main(["radiomics", str(d / "breast1_image.nrrd"), str(d / "breast1_label.nrrd"), "--label", "5"]) == 2
    assert "not present" in capsys.readouterr().err
