"""Radiomic features with intervals from the segmentation's own probabilities, on real runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from MedSegAILib.measure.radiomics import add_instance_radiomics
from MedSegAILib.measure.radiomics_intervals import LEVELS, add_instance_intervals, level_masks
from MedSegAILib.pipeline import segment
from MedSegAILib.resources import sample_data_dir

CASE = sample_data_dir() / "hippocampus_389.nii.gz"
CLI = [sys.executable, "-m", "MedSegAILib.cli"]


def test_cli_writes_intervals_next_to_each_feature(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run([*CLI, "segment", str(CASE), "-m", "deep", "--model", "hippocampus_single", "--radiomics-intervals", "-o", str(out), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(out / "instances.csv") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    i = header.index("shape_VoxelVolume")
    assert header[i + 1:i + 5] == [f"shape_VoxelVolume_{s}" for s in ("mean", "sd", "min", "max")]
    for r in rows:
        lo, mean, hi, sd = (float(r[f"firstorder_Mean_{s}"]) for s in ("min", "mean", "max", "sd"))
        assert lo <= mean <= hi and sd >= 0
        vol = float(r["shape_VoxelVolume"])
        assert float(r["shape_VoxelVolume_min"]) < vol < float(r["shape_VoxelVolume_max"])  # the labels lie inside the drawn range
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["extra"]["radiomics_intervals"]["masks_measured"] == len(LEVELS) * len(rows)
    assert any(s["stage"] == "radiomics intervals" and s["seconds"] > 0 for s in prov["stages"])
    bad = subprocess.run([*CLI, "segment", str(CASE), "--radiomics-intervals", "--no-radiomics", "-o", str(tmp_path / "b")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--no-radiomics" in bad.stderr and not (tmp_path / "b").exists()


def test_level_masks_are_nested_and_connected_to_the_instance():
    image = sitk.ReadImage(str(CASE), sitk.sitkFloat32)
    result = segment([image], "deep", {}, model="hippocampus_single", keep_probabilities=True)
    prob = sitk.GetArrayFromImage(result.probabilities)
    inst = sitk.GetArrayFromImage(result.instances) == result.instance_table[0].instance_id
    masks = level_masks(prob[..., result.instance_table[0].class_label], inst)
    assert len(masks) == len(LEVELS)
    sizes = [int(m.sum()) for m in masks]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    assert all((masks[k + 1] <= masks[k]).all() for k in range(len(masks) - 1))


def test_probabilities_that_disagree_with_the_labels_are_named():
    """Intervals drawn from another class's probability than the instance's: the run warns."""
    image = sitk.ReadImage(str(CASE), sitk.sitkFloat32)
    result = segment([image], "deep", {}, model="hippocampus_single", keep_probabilities=True)
    add_instance_radiomics(result, image)
    add_instance_intervals(result, image, result.probabilities)
    assert not any("disagree" in w for w in result.provenance.extra.get("warnings", []))
    first = dict(result.instance_table[0].measurements)
    arr = sitk.GetArrayFromImage(result.probabilities)[..., [0, 2, 1]]  # the two classes swapped
    swapped = sitk.GetImageFromArray(arr, isVector=True)
    swapped.CopyInformation(result.probabilities)
    add_instance_intervals(result, image, swapped)
    warning = [w for w in result.provenance.extra.get("warnings", []) if "disagree" in w]
    assert warning and "Anterior hippocampus" in warning[0]
    again = result.instance_table[0].measurements
    assert list(again) == list(first)  # the columns stay in place, replaced
    assert again["shape_VoxelVolume_mean"] != first["shape_VoxelVolume_mean"]  # from the other probabilities
    assert np.isfinite(again["firstorder_Mean_sd"])


def test_an_ensemble_draws_its_masks_from_its_members(tmp_path):
    """The shipped ensemble: one mask per member (its own labels), not probability levels."""
    out = tmp_path / "o"
    proc = subprocess.run([*CLI, "segment", str(CASE), "-m", "deep", "--model", "hippocampus", "--radiomics-intervals", "-o", str(out), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "provenance.json").read_text())["extra"]["radiomics_intervals"]
    with open(out / "instances.csv") as f:
        rows = list(csv.DictReader(f))
    assert info["drawn_from"] == "the labels of the 6 ensemble members" and info["masks_measured"] == 6 * len(rows)
    for r in rows:
        assert float(r["shape_VoxelVolume_min"]) <= float(r["shape_VoxelVolume"]) <= float(r["shape_VoxelVolume_max"])
        assert float(r["shape_VoxelVolume_sd"]) > 0  # the members do not draw identical masks
