"""Interactive seeded segmentation: the session, and what the Segment Editor effect computes.

The session's updates must equal a full pipeline run with the same seeds on real cases, stroke
after stroke (it keeps only what does not depend on the seeds). The effect's computation runs
on Slicer's own image types through slicer-core.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedSegAILib.core.errors import InputError
from MedSegAILib.interactive.session import SeededSession
from MedSegAILib.pipeline import segment


def _round0_seeds(label: sitk.Image) -> np.ndarray:
    """The benchmark's first stroke: on the object's middle axial slice, the object eroded by 2
    voxels in-plane is object (1), voxels more than 3 voxels outside it are background (2)."""
    ref = sitk.GetArrayFromImage(label) > 0
    z = int(np.median(np.nonzero(ref)[0]))
    seeds = np.zeros(ref.shape, np.uint16)
    inner = ndimage.binary_erosion(ref[z], iterations=2)
    outer = ~ndimage.binary_dilation(ref[z], iterations=3)
    seeds[z][inner] = 1
    seeds[z][outer] = 2
    return seeds


def _corrective_stroke(seeds: np.ndarray, pred: np.ndarray, ref: np.ndarray) -> None:
    """The largest wrong region gets a ball of the right answer at its innermost voxel."""
    wrong = pred != ref
    comp, n = ndimage.label(wrong, structure=np.ones((3, 3, 3)))
    if n == 0:
        return
    sizes = ndimage.sum(wrong, comp, range(1, n + 1))
    region = comp == int(np.argmax(sizes)) + 1
    depth = ndimage.distance_transform_edt(region)
    centre = np.unravel_index(int(np.argmax(depth)), region.shape)
    radius = int(min(3, max(depth[centre], 1)))
    zz, yy, xx = np.ogrid[tuple(slice(0, s) for s in region.shape)]
    ball = ((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2) & region
    seeds[ball] = 1 if ref[centre] else 2


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
        _corrective_stroke(seeds_arr, sitk.GetArrayViewFromImage(fast.labels) > 0, ref)
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
    slicer = pytest.importorskip("slicer", reason="slicer-core is needed")
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
