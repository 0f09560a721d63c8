"""CRF refinement of a method's probabilities (``refine="crf"``), on a real case and on a weak island."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.core.classes import ClassInfo
from MedSegAILib.core.errors import InputError
from MedSegAILib.core.result import MethodOutput
from MedSegAILib.measure.metrics import evaluate_labelmaps
from MedSegAILib.pipeline import segment
from MedSegAILib.postprocess.refine import refine_with_crf
from MedSegAILib.resources import sample_data_dir
from MedSegAILib.uncertainty.entropy import probabilities_image

CASE = sample_data_dir() / "hippocampus_393.nii.gz"
LABEL = sample_data_dir() / "hippocampus_393_label.nii.gz"


def test_refined_deep_run_keeps_its_accuracy_and_describes_its_labels():
    image = sitk.ReadImage(str(CASE), sitk.sitkFloat32)
    ref = sitk.ReadImage(str(LABEL))
    plain = segment([image], "deep", {}, model="hippocampus_single")
    refined = segment([image], "deep", {}, model="hippocampus_single", refine="crf", keep_probabilities=True)
    info = refined.provenance.extra["refinement"]
    assert info["method"] == "crf" and info["voxels_changed"] > 0
    assert refined.provenance.parameters["refine"] == "crf"
    dice = lambda r: np.mean([evaluate_labelmaps(r.labels, ref)["classes"][k]["dice"] for k in ("1", "2")])  # noqa: E731
    assert abs(dice(refined) - dice(plain)) < 0.03
    prob = sitk.GetArrayFromImage(refined.probabilities)
    assert (prob.argmax(-1) == sitk.GetArrayFromImage(refined.labels)).mean() > 0.99  # the marginals are the refined labels'
    assert any(s["stage"] == "refinement (crf)" for s in refined.provenance.stages)
    with pytest.raises(InputError, match="refine must be one of"):
        segment([image], "otsu", refine="dense")


def test_a_weak_island_in_flat_tissue_is_removed():
    """Probabilities that favour class 1 only slightly in a 2-voxel blob of uniform tissue: the
    CRF gives the blob to the surrounding background, which the argmax did not."""
    arr = np.full((20, 20, 20), 100.0, dtype=np.float32)
    image = sitk.GetImageFromArray(arr)
    p = np.zeros((20, 20, 20, 2), dtype=np.float32)
    p[..., 0] = 0.95
    p[9:11, 9:11, 9:11, 0] = 0.4  # class 1 at 0.6: the argmax's island
    p[..., 1] = 1.0 - p[..., 0]
    labels = sitk.GetImageFromArray(p.argmax(-1).astype(np.uint8))
    labels.CopyInformation(image)
    out = MethodOutput(labels=labels, classes=[ClassInfo(1, "blob", (1.0, 0.0, 0.0))], probabilities=probabilities_image(p, image))
    assert sitk.GetArrayViewFromImage(out.labels).sum() == 8
    refined = refine_with_crf(out, image, weight=1.0)
    assert sitk.GetArrayViewFromImage(refined.labels).sum() == 0 and refined.extra["refinement"]["voxels_changed"] == 8
    with pytest.raises(InputError, match="needs the method's class probabilities"):
        refine_with_crf(MethodOutput(labels=labels, classes=out.classes), image)


def test_cli_refuses_an_unknown_refinement(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "segment", str(CASE), "--refine", "dense", "-o", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--refine" in proc.stderr and not (tmp_path / "o").exists()
