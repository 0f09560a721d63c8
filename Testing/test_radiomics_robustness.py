"""Radiomic features under a one-voxel change of the boundary, on real regions, and the
first-order relation between a mask's outside fraction and its mean's shift."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.core.errors import InputError
from MedSegAILib.measure.radiomics import compute_radiomics
from MedSegAILib.measure.radiomics_robustness import feature_robustness, first_order_check, perturbed_masks, region_mask


def _case(shared_data, name="hippocampus_389"):
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{name}.nii.gz"), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / f"{name}.nii.gz"))
    return image, labels


def test_perturbed_regions_bracket_the_region_and_features_follow(shared_data):
    image, labels = _case(shared_data)
    rows = {r.name: r for r in feature_robustness(image, labels, 1)}
    vol = rows["original_shape_VoxelVolume"]
    assert vol.eroded < vol.value < vol.dilated and vol.flagged  # a thin structure: a voxel is a lot
    direct = compute_radiomics(image, labels, 1)
    assert rows["original_firstorder_Mean"].value == pytest.approx(direct["original_firstorder_Mean"])
    m = sitk.GetArrayFromImage(region_mask(labels, 1)) > 0
    moved = perturbed_masks(region_mask(labels, 1))
    er, di = (sitk.GetArrayFromImage(moved[k]) > 0 for k in ("eroded", "dilated"))
    assert (er <= m).all() and (m <= di).all() and er.sum() < m.sum() < di.sum()
    change = rows["original_firstorder_Mean"]
    assert change.change_dilated == pytest.approx(abs(change.dilated - change.value) / abs(change.value))
    # flagged exactly when the larger change passes the threshold
    assert all(r.flagged == (r.worst > 0.1) for r in rows.values())
    assert sum(r.flagged for r in feature_robustness(image, labels, 1, threshold=10.0)) < sum(r.flagged for r in rows.values())


def test_first_order_relation_holds_on_real_regions(shared_data):
    """The mean of the dilated mask shifts by e x (ring mean - object mean) to within a third."""
    image, labels = _case(shared_data)
    for label in (1, 2):
        c = first_order_check(image, labels, label)
        assert 0 < c["outside_fraction"] < 1
        assert np.sign(c["measured_shift"]) == np.sign(c["predicted_shift"])
        assert c["prediction_error_fraction"] < 0.35, c
        # with the ring one voxel thick, the ring is exactly the added shell: the relation is exact
        exact = first_order_check(image, labels, label, ring_voxels=1)
        assert exact["predicted_shift"] == pytest.approx(exact["measured_shift"], rel=1e-9)


def test_a_region_too_thin_to_erode_is_refused(shared_data):
    image, labels = _case(shared_data)
    thin = sitk.Image(labels.GetSize(), sitk.sitkUInt8)
    thin.CopyInformation(labels)
    thin[10:20, 10:20, 12] = 1  # one slice thick
    with pytest.raises(InputError, match="too thin to erode"):
        feature_robustness(image, thin, 1)


def test_cli_robustness_table_and_json(shared_data):
    image = shared_data / "hippocampus" / "imagesTr" / "hippocampus_389.nii.gz"
    labels = shared_data / "hippocampus" / "labelsTr" / "hippocampus_389.nii.gz"
    cli = [sys.executable, "-m", "MedSegAILib.cli", "radiomics", str(image), str(labels), "--label", "2", "--robustness"]
    text = subprocess.run(cli, capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    assert "UNSTABLE" in text.stdout and "least robust: " in text.stdout and "features change by more than 10%" in text.stdout
    data = json.loads(subprocess.run(cli + ["--json"], capture_output=True, text=True, check=True).stdout)
    worst = [max(f["change_eroded"] or math.inf, f["change_dilated"] or math.inf) for f in data["features"]]
    assert worst == sorted(worst)
    bad = subprocess.run(cli + ["--robustness-threshold", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--robustness-threshold" in bad.stderr
