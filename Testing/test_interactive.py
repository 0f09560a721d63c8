"""Interactive seeded segmentation: the session, and what the Segment Editor effect computes.

The session's updates must equal a full pipeline run with the same seeds on real cases, stroke
after stroke (it keeps only what does not depend on the seeds). The effect's computation runs
on Slicer's own image types through slicer-core.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

from interactive_benchmark import corrective_stroke, round0_seeds  # noqa: E402  (the benchmark's simulated user)

from MedSegAILib.core.errors import InputError
from MedSegAILib.interactive.session import SeededSession
from MedSegAILib.pipeline import segment


def _round0_seeds(label: sitk.Image) -> np.ndarray:
    """The benchmark's first stroke (its protocol, not a copy of it)."""
    return round0_seeds(sitk.GetArrayFromImage(label) > 0)


@pytest.mark.parametrize("case", ["hippocampus_003", "hippocampus_101", "hippocampus_250"])
def test_session_updates_equal_full_runs_stroke_after_stroke(shared_data, case):
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / f"{case}.nii.gz"))
    label = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / f"{case}.nii.gz"))
    ref = sitk.GetArrayFromImage(label) > 0
    session = SeededSession(image, "graphcut")
    seeds_arr = _round0_seeds(label)
    for _ in range(4):
        seeds = sitk.GetImageFromArray(seeds_arr.copy())
        seeds.CopyInformation(image)
        fast = session.update(seeds)
        full = segment([image], "graphcut", seeds=seeds)
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(fast.labels), sitk.GetArrayViewFromImage(full.labels))
        np.testing.assert_allclose(sitk.GetArrayViewFromImage(fast.uncertainty), sitk.GetArrayViewFromImage(full.uncertainty), atol=1e-6)
        corrective_stroke(seeds_arr, sitk.GetArrayViewFromImage(fast.labels) > 0, ref)
    assert len(session.seconds) == 4
    assert any(key[0] == "geodesic_graph" for key in session._cache if isinstance(key, tuple))  # kept, not rebuilt


def test_where_next_points_at_uncertainty_away_from_the_seeds(shared_data):
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / "hippocampus_003.nii.gz"))
    label = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / "hippocampus_003.nii.gz"))
    session = SeededSession(image)
    assert session.most_uncertain_point() is None
    seeds_arr = _round0_seeds(label)
    seeds = sitk.GetImageFromArray(seeds_arr)
    seeds.CopyInformation(image)
    result = session.update(seeds)
    hint = session.most_uncertain_point()
    x, y, z = hint.index_xyz
    painted = ndimage.binary_dilation(seeds_arr > 0, iterations=2)
    assert not painted[z, y, x]
    unc = sitk.GetArrayViewFromImage(result.uncertainty)
    assert unc[max(z - 2, 0) : z + 3, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].max() >= np.percentile(unc, 99)
    assert np.allclose(hint.point_lps_mm, image.TransformIndexToPhysicalPoint(hint.index_xyz))


def test_a_session_needs_a_seeded_method(shared_data):
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / "hippocampus_003.nii.gz"))
    with pytest.raises(InputError, match="takes no seeds"):
        SeededSession(image, "otsu")
    with pytest.raises(InputError, match="'lam' of 'graphcut' must be between"):
        SeededSession(image, params={"lam": -1})


# --- the Segment Editor effect's computation, on Slicer's image types (slicer-core) ---------------


def test_effect_preview_matches_the_graph_cut_on_the_merged_labelmap_geometry(shared_data):
    pytest.importorskip("slicer", reason="slicer-core is needed")
    from MedSegAILib.slicer_bridge import segmentation_node as sn
    from MedSegAILib.slicer_bridge.seeded_effect import GraphCutPreview, background_value, seeds_for_cut

    sn.import_slicer()
    image = sitk.ReadImage(str(shared_data / "hippocampus" / "imagesTr" / "hippocampus_003.nii.gz"))
    label = sitk.ReadImage(str(shared_data / "hippocampus" / "labelsTr" / "hippocampus_003.nii.gz"))
    seeds_arr = _round0_seeds(label)
    # The editor's merged labelmap: segment n has value n + 1; here "background" is segment 0.
    merged_arr = np.zeros(seeds_arr.shape, np.uint8)
    merged_arr[seeds_arr == 2] = 1
    merged_arr[seeds_arr == 1] = 2
    merged_img = sitk.GetImageFromArray(merged_arr)
    merged_img.CopyInformation(image)
    merged = sn.oriented_image_from_sitk(merged_img)
    source = sn.oriented_image_from_sitk(sitk.Cast(image, sitk.sitkFloat32))
    assert background_value(["Background", "hippocampus"]) == 1 and background_value(["a", "b", "c"]) == 3

    preview = GraphCutPreview()
    out = preview.compute(source, merged, None, background=1)
    assert out.GetExtent() == merged.GetExtent()
    out_arr = sn._array_from_image_data(out)
    cut_seeds, value_of = seeds_for_cut(merged_arr, 1)
    assert value_of == [1, 2]
    seeds = sitk.GetImageFromArray(cut_seeds)
    seeds.CopyInformation(image)
    full = sitk.GetArrayFromImage(segment([image], "graphcut", seeds=seeds).labels)  # a copy: the result is a temporary
    np.testing.assert_array_equal(out_arr == 2, full == 1)  # the object segment where the cut says object
    np.testing.assert_array_equal(out_arr == 1, full == 0)  # the background segment everywhere else
    # The editor's mask (non-zero: not editable) is left alone.
    mask_arr = np.zeros(merged_arr.shape, np.uint8)
    mask_arr[:, :, : mask_arr.shape[2] // 2] = 1
    mask_img = sitk.GetImageFromArray(mask_arr)
    mask_img.CopyInformation(image)
    masked = sn._array_from_image_data(preview.compute(source, merged, sn.oriented_image_from_sitk(mask_img), background=1))
    assert not masked[mask_arr == 1].any() and np.array_equal(masked[mask_arr == 0], out_arr[mask_arr == 0])
    ras = preview.hint_ras()
    assert ras is not None and len(ras) == 3
    with pytest.raises(InputError, match="paint the background"):
        preview.compute(source, merged, None, background=3)
