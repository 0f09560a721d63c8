"""Segmentation metrics against independent implementations, on real shared data.

References: SimpleITK's LabelOverlapMeasuresImageFilter (Dice, Jaccard, false negative error),
MONAI's compute_hausdorff_distance / compute_average_surface_distance / compute_surface_dice
(boundary voxels, Euclidean distances with spacing) and compute_panoptic_quality.
Both sides use the same surface convention (see MedSegAILib.measure.metrics Notes), so the
agreement is to float32 rounding (MONAI returns float32 distances): 1e-4 relative.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedSegAILib.cli import main
from MedSegAILib.core.errors import InputError
from MedSegAILib.measure.metrics import evaluate_labelmaps, surface_metrics
from MedSegAILib.measure.panoptic import connected_instances, panoptic_quality

try:  # MONAI is the reference for surface distances and PQ; it comes with the "deep" extra
    import torch
    import monai.metrics as monai_metrics
except ImportError:  # pragma: no cover - core-only installations
    torch = monai_metrics = None

needs_monai = pytest.mark.skipif(monai_metrics is None, reason="MONAI (medsegai[deep]) is the reference implementation")


def _like(arr, ref):
    img = sitk.GetImageFromArray(arr.astype(np.uint16))
    img.CopyInformation(ref)
    return img


def _perturb(arr, seed=0):
    """A realistic imperfect prediction: per class, erode or dilate, shift, and drop/add specks."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(arr)
    for lab in np.unique(arr):
        if lab == 0:
            continue
        m = arr == lab
        op = rng.integers(0, 3)
        if op == 0:
            m = ndimage.binary_erosion(m)
        elif op == 1:
            m = ndimage.binary_dilation(m)
        m = np.roll(m, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3)))
        out[m & (out == 0)] = lab
    # a false-positive speck and a hole
    out[0:2, 0:2, 0:2] = arr.max()
    return out


@pytest.fixture(scope="module")
def ct_pair(shared_data):
    """TotalSegmentator's 41-structure CT labelmap (3 mm) and a perturbed copy."""
    ref = sitk.ReadImage(str(shared_data / "ct" / "example_seg.nii.gz"))
    arr = sitk.GetArrayFromImage(ref)
    return _like(_perturb(arr), ref), ref


@pytest.fixture(scope="module")
def brain_pair(shared_data):
    """The brain1 tumour label (0.78 x 0.78 x 6.5 mm, strongly anisotropic) and an in-plane
    dilated copy shifted by one slice."""
    ref = sitk.ReadImage(str(shared_data / "mr_tumor" / "brain1_label.nrrd"))
    arr = sitk.GetArrayFromImage(ref) > 0
    st = np.zeros((1, 5, 5), bool)
    st[0, 1:4, :] = st[0, :, 1:4] = True
    pred = np.roll(ndimage.binary_dilation(arr, st), 1, axis=0)
    return _like(pred, ref), _like(arr, ref)


def test_overlap_matches_simpleitk(ct_pair, hippocampus_case):
    hip_ref = sitk.ReadImage(str(hippocampus_case[1]))
    hip_pred = _like(_perturb(sitk.GetArrayFromImage(hip_ref), seed=3), hip_ref)
    for pred, ref in (ct_pair, (hip_pred, hip_ref)):
        res = evaluate_labelmaps(pred, ref)
        f = sitk.LabelOverlapMeasuresImageFilter()
        f.Execute(sitk.Cast(pred, sitk.sitkUInt16), sitk.Cast(ref, sitk.sitkUInt16))
        assert len(res["classes"]) >= 2
        for lab, m in res["classes"].items():
            if m["ref_empty"] or m["pred_empty"]:
                continue
            assert m["dice"] == pytest.approx(f.GetDiceCoefficient(int(lab)), abs=1e-12)
            assert m["iou"] == pytest.approx(f.GetJaccardCoefficient(int(lab)), abs=1e-12)
            assert m["sensitivity"] == pytest.approx(1 - f.GetFalseNegativeError(int(lab)), abs=1e-12)


def _monai_surface(pred_img, ref_img, lab, tol):
    sp = tuple(reversed(ref_img.GetSpacing()))
    p = torch.as_tensor(sitk.GetArrayFromImage(pred_img) == lab)[None, None]
    g = torch.as_tensor(sitk.GetArrayFromImage(ref_img) == lab)[None, None]
    hd95 = monai_metrics.compute_hausdorff_distance(p, g, percentile=95, spacing=sp).item()
    assd = monai_metrics.compute_average_surface_distance(p, g, symmetric=True, spacing=sp).item()
    two = lambda x: torch.cat([~x, x], dim=1)  # noqa: E731  (background + class channels)
    nsd = monai_metrics.compute_surface_dice(two(p), two(g), [tol], spacing=sp, include_background=False).item()
    return hd95, assd, nsd


@needs_monai
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("case", ["ct_pair", "brain_pair"])
def test_surface_distances_match_monai(case, request):
    pred, ref = request.getfixturevalue(case)
    tol = 2.0
    res = evaluate_labelmaps(pred, ref, tolerance_mm=tol)
    checked = 0
    for lab, m in list(res["classes"].items())[:12]:  # 12 structures keep the test quick
        if m["ref_empty"] or m["pred_empty"]:
            continue
        hd95, assd, nsd = _monai_surface(pred, ref, int(lab), tol)
        assert m["hd95_mm"] == pytest.approx(hd95, rel=1e-4, abs=1e-4), lab
        assert m["assd_mm"] == pytest.approx(assd, rel=1e-4, abs=1e-4), lab
        assert m["nsd"] == pytest.approx(nsd, rel=1e-4, abs=1e-4), lab
        checked += 1
    assert checked >= 1
    if case == "brain_pair":
        # One-slice shift at 6.5 mm: distances must reflect the slice thickness, not 1 voxel.
        assert res["classes"]["1"]["hd95_mm"] >= 6.0


def test_distances_do_not_depend_on_direction(brain_pair):
    pred, ref = brain_pair
    base = evaluate_labelmaps(pred, ref)["classes"]["1"]
    c, s = math.cos(0.5), math.sin(0.5)
    rot = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    p2, r2 = sitk.Image(pred), sitk.Image(ref)
    p2.SetDirection(rot)
    r2.SetDirection(rot)
    rotated = evaluate_labelmaps(p2, r2)["classes"]["1"]
    for k in ("dice", "hd95_mm", "assd_mm", "nsd", "volume_ref_mm3"):
        assert rotated[k] == pytest.approx(base[k])


@needs_monai
def test_panoptic_quality_matches_monai(ct_pair):
    pred, ref = ct_pair
    p_arr, r_arr = sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(ref)
    res = evaluate_labelmaps(pred, ref)
    pan = res["panoptic"]
    tot = np.zeros(4)
    imperfect = 0
    for lab in res["labels"]:
        pi = connected_instances(p_arr == lab)
        ri = connected_instances(r_arr == lab)
        # Crop for speed: MONAI's pairwise IoU loops over instances on the full volume.
        box = tuple(slice(a.min(), a.max() + 1) for a in np.nonzero((pi > 0) | (ri > 0)))
        cm = monai_metrics.compute_panoptic_quality(
            torch.as_tensor(pi[box].astype(np.int32)), torch.as_tensor(ri[box].astype(np.int32)), output_confusion_matrix=True
        ).numpy()
        mine = pan["per_class"][str(lab)]
        assert (mine["tp"], mine["fp"], mine["fn"]) == tuple(int(v) for v in cm[:3]), lab
        assert mine["sum_iou"] == pytest.approx(float(cm[3]), abs=1e-4)
        tot += cm
        imperfect += mine["fp"] + mine["fn"] > 0
    assert imperfect >= 1  # the perturbation splits or loses some instances
    assert (pan["tp"], pan["fp"], pan["fn"]) == tuple(int(v) for v in tot[:3])
    assert 0 < pan["pq"] < 1


def test_panoptic_known_values():
    ref = np.zeros((1, 10, 30), int)
    ref[0, 2:8, 1:7] = 1  # matched exactly
    ref[0, 2:8, 10:16] = 2  # half-covered: IoU 0.5 -> not matched (strict >)
    ref[0, 2:8, 20:26] = 3  # missed
    pred = np.zeros_like(ref)
    pred[0, 2:8, 1:7] = 1
    pred[0, 2:8, 10:13] = 2
    pred[0, 0:1, 28:30] = 3  # false positive
    r = panoptic_quality(pred, ref)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 2)
    assert r["sq"] == 1.0 and r["rq"] == pytest.approx(1 / 3) and r["pq"] == pytest.approx(1 / 3)


def test_empty_classes_and_labels_argument(brain_pair):
    pred, ref = brain_pair
    empty = sitk.Image(pred.GetSize(), sitk.sitkUInt16)
    empty.CopyInformation(pred)
    r = evaluate_labelmaps(empty, ref, labels=[1, 7])
    c1, c7 = r["classes"]["1"], r["classes"]["7"]
    assert c1["dice"] == 0 and c1["pred_empty"] and math.isinf(c1["hd95_mm"]) and c1["precision"] is None
    assert c1["sensitivity"] == 0 and c1["nsd"] == 0
    assert c7["dice"] == 1 and c7["hd95_mm"] == 0  # absent from both: agreement on absence
    assert r["mean"]["n_skipped"]["hd95_mm"] == 1
    n_ref = int(connected_instances(sitk.GetArrayFromImage(ref) == 1).max())
    assert r["panoptic"]["fn"] == n_ref and r["panoptic"]["tp"] == 0 and r["panoptic"]["pq"] == 0
    assert r["panoptic"]["detection"]["sensitivity"] == 0


def test_other_grid_is_resampled(brain_pair):
    pred, ref = brain_pair
    # Same physical labelmap on a grid padded by 3 voxels: resampling must give the same scores.
    padded = sitk.ConstantPad(pred, [3, 3, 1], [2, 2, 1], 0)
    a = evaluate_labelmaps(pred, ref)
    b = evaluate_labelmaps(padded, ref)
    assert b["resampled"] and not a["resampled"]
    assert b["classes"]["1"]["dice"] == pytest.approx(a["classes"]["1"]["dice"])
    far = sitk.Image(pred)
    far.SetOrigin((5000.0, 0.0, 0.0))
    with pytest.raises(InputError, match="do not overlap"):
        evaluate_labelmaps(far, ref)


def test_surface_metrics_analytic():
    # Two 10-voxel cubes, one shifted by one slice of 3 mm along z.
    a = np.zeros((20, 20, 20), bool)
    a[5:15, 5:15, 5:15] = True
    b = np.roll(a, 1, axis=0)
    m = surface_metrics(a, b, (3.0, 1.0, 1.0), tolerance_mm=0.5)
    assert m["hd_mm"] == pytest.approx(3.0)
    assert 0 < m["assd_mm"] < 3.0


def test_cli_json_and_table(tmp_path, ct_pair, capsys):
    pred, ref = ct_pair
    sitk.WriteImage(pred, str(tmp_path / "pred.nii.gz"))
    case = tmp_path / "case"
    case.mkdir()
    sitk.WriteImage(ref, str(case / "labels.nii.gz"))  # a MedSegAI output folder as REF
    assert main(["evaluate", str(tmp_path / "pred.nii.gz"), str(case), "--json", "--tolerance-mm", "3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tolerance_mm"] == 3
    c = doc["classes"]["1"]
    for k in ("dice", "iou", "sensitivity", "precision", "volume_pred_mm3", "volume_ref_mm3", "volume_diff_mm3", "hd95_mm", "assd_mm", "nsd"):
        assert k in c
    for k in ("pq", "sq", "rq", "tp", "fp", "fn", "per_class"):
        assert k in doc["panoptic"]
    assert "dice" in doc["mean"]
    assert main(["evaluate", str(tmp_path / "pred.nii.gz"), str(case)]) == 0
    out = capsys.readouterr().out
    assert "HD95" in out and "panoptic" in out
    assert main(["evaluate", str(tmp_path / "missing.nii.gz"), str(case)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_lesion_detection_any_overlap():
    from MedSegAILib.measure.panoptic import lesion_detection

    ref = np.zeros((1, 10, 40), int)
    ref[0, 2:8, 1:7] = 1  # found well
    ref[0, 2:8, 10:16] = 2  # touched by a small prediction: detected, though IoU < 0.5
    ref[0, 2:8, 20:26] = 3  # missed
    pred = np.zeros_like(ref)
    pred[0, 2:8, 1:7] = 1
    pred[0, 4:5, 15:17] = 2
    pred[0, 0:2, 35:38] = 3  # false positive
    d = lesion_detection(pred, ref)
    assert (d["ref_lesions"], d["detected"], d["missed"], d["false_positives"]) == (3, 2, 1, 1)
    assert d["sensitivity"] == pytest.approx(2 / 3) and d["precision"] == pytest.approx(2 / 3)
    assert panoptic_quality(pred, ref)["tp"] == 1  # the stricter PQ matching
