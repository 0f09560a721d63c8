"""The deep model's explanation map (occlusion sensitivity) on real cases, with the sanity
checks saliency maps need: it concentrates near the structures, and it changes when the
model's weights are randomised."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.methods.deep.explain import concentration_near, occlusion_sensitivity
from MedSegAILib.resources import models_dir, sample_data_dir

CASE = sample_data_dir() / "hippocampus_393.nii.gz"
LABEL = sample_data_dir() / "hippocampus_393_label.nii.gz"
CLI = [sys.executable, "-m", "MedSegAILib.cli"]


def test_cli_writes_the_map_the_picture_and_the_report_section(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run([*CLI, "segment", str(CASE), "-m", "deep", "--model", "hippocampus_single", "--explain", "--report", "-o", str(out), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    image, explanation = sitk.ReadImage(str(CASE)), sitk.ReadImage(str(out / "explanation.nii.gz"))
    assert explanation.GetSize() == image.GetSize() and explanation.GetNumberOfComponentsPerPixel() == 2
    assert np.allclose(explanation.GetOrigin(), image.GetOrigin()) and np.allclose(explanation.GetSpacing(), image.GetSpacing())
    info = json.loads((out / "provenance.json").read_text())["extra"]["explanation"]
    for name, share in info["share_within_5mm_of_structure"].items():
        assert share > 2 * info["volume_share_within_5mm"][name]  # it concentrates near the structure
    assert (out / "explanation.png").stat().st_size > 1000
    assert 'id="explanation"' in (out / "report.html").read_text(encoding="utf-8")
    bad = subprocess.run([*CLI, "segment", str(CASE), "--explain", "-o", str(tmp_path / "b")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a deep model" in bad.stderr and not (tmp_path / "b").exists()
    # In Slicer: one volume per structure (through slicer-core)
    try:
        import slicer
    except ImportError:
        return
    from MedSegAILib.slicer_bridge import scene_io

    scene = slicer.vtkMRMLScene()
    volumes = scene_io.load_case_into_scene(out, scene).extra["explanation"]
    assert [v.GetName() for v in volumes] == ["MedSegAI explanation: Anterior hippocampus", "MedSegAI explanation: Posterior hippocampus"]
    assert all(v.GetAttribute("MedSegAI.Role") == "explanation" and v.GetImageData().GetDimensions() == image.GetSize() for v in volumes)


def test_the_map_changes_when_the_weights_are_randomised(tmp_path):
    """Adebayo et al. (2018)'s model-randomisation test: a map that stays the same for random
    weights shows the image, not the model."""
    torch = pytest.importorskip("torch")
    from MedSegAILib.methods.deep.model_store import load_model, save_model
    from MedSegAILib.methods.deep.plan import Plan

    trained = load_model(models_dir() / "hippocampus_single")
    torch.manual_seed(0)
    for module in trained.network.modules():
        if hasattr(module, "reset_parameters") and module is not trained.network:
            module.reset_parameters()
    random_dir = tmp_path / "random"
    save_model(random_dir, trained.network.state_dict(), Plan.from_dict(trained.card["plan"]), {"name": "random"})
    image = sitk.ReadImage(str(CASE), sitk.sitkFloat32)
    kw = dict(patch_mm=10.0, stride_mm=10.0, runtime="torch")
    a = sitk.GetArrayFromImage(occlusion_sensitivity([image], str(models_dir() / "hippocampus_single"), **kw))
    b = sitk.GetArrayFromImage(occlusion_sensitivity([image], str(random_dir), **kw))
    r = np.corrcoef(a[..., 0].ravel(), b[..., 0].ravel())[0, 1]
    assert not np.isfinite(r) or r < 0.5, r
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(LABEL)))
    near = concentration_near(a[..., 1], ref == 2, image.GetSpacing()[::-1])
    assert near["mass_near"] > 2 * near["volume_near"]
