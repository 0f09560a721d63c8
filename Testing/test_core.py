"""Core: reading with geometry, Otsu against SimpleITK, uncertainty, post-processing, instances."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegAILib.core.errors import InputError
from MedSegAILib.io.images import read_channels, read_image, require_3d_scalar
from MedSegAILib.methods.classical.otsu import otsu_segmentation, otsu_thresholds
from MedSegAILib.pipeline import segment, segment_files
from MedSegAILib.postprocess.cleanup import PostprocessOptions, postprocess_labels
from MedSegAILib.postprocess.instances import label_instances


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetSpacing() == b.GetSpacing()
    assert a.GetDirection() == b.GetDirection()


def test_dicom_series_is_read_with_oblique_anisotropic_geometry(shared_data):
    img = read_image(shared_data / "hippocampus_dicom" / "study3_t1post")
    assert img.GetSize() == (280, 320, 22)
    assert img.GetSpacing()[2] == pytest.approx(6.5, abs=1e-3)
    assert img.GetSpacing()[0] == pytest.approx(0.6875, abs=1e-3)
    d = np.array(img.GetDirection()).reshape(3, 3)
    assert not np.allclose(d, np.eye(3))  # oblique acquisition
    assert np.allclose(d @ d.T, np.eye(3), atol=1e-5)


@pytest.mark.parametrize(
    "relpath",
    ["hippocampus_dicom/study3_t1post", "mr_tumor/brain1_image.nrrd", "hippocampus/imagesTr/hippocampus_001.nii.gz"],
)
def test_result_keeps_input_geometry_exactly(shared_data, relpath):
    path = shared_data / relpath
    source = read_image(path)
    result = segment_files([path], "otsu")
    for img in (result.labels, result.instances, result.uncertainty):
        assert_same_geometry(img, source)


@pytest.mark.parametrize("n_classes", [2, 3, 4])
def test_otsu_thresholds_equal_simpleitk(hippocampus_case, n_classes):
    img = sitk.Cast(sitk.ReadImage(str(hippocampus_case[0])), sitk.sitkFloat32)
    ours = otsu_thresholds(img, n_classes, bins=128)
    if n_classes == 2:
        f = sitk.OtsuThresholdImageFilter()
        f.SetNumberOfHistogramBins(128)
        f.Execute(img)
        assert ours == [f.GetThreshold()]
    else:
        f = sitk.OtsuMultipleThresholdsImageFilter()
        f.SetNumberOfThresholds(n_classes - 1)
        f.SetNumberOfHistogramBins(128)
        f.Execute(img)
        assert ours == list(f.GetThresholds())
    out = otsu_segmentation(img, n_classes=n_classes)
    arr = sitk.GetArrayViewFromImage(img)
    lab = sitk.GetArrayViewFromImage(out.labels)
    # Labels are the threshold bins: everything above the last threshold is the top class.
    assert np.array_equal(lab == n_classes - 1, arr > ours[-1])
    assert set(np.unique(lab)) == set(range(n_classes))


def test_otsu_uncertainty_peaks_at_thresholds(hippocampus_case):
    img = sitk.Cast(sitk.ReadImage(str(hippocampus_case[0])), sitk.sitkFloat32)
    out = otsu_segmentation(img, n_classes=2)
    t = out.extra["thresholds"][0]
    arr = sitk.GetArrayViewFromImage(img)
    unc = sitk.GetArrayViewFromImage(out.uncertainty)
    spread = arr.std()
    near = np.abs(arr - t) < 0.05 * spread
    far = np.abs(arr - t) > 1.0 * spread
    assert near.sum() > 50 and far.sum() > 50
    assert unc[near].mean() > 0.5 > unc[far].mean()
    prob = sitk.GetArrayViewFromImage(out.probabilities)
    assert np.allclose(prob.sum(axis=-1), 1.0, atol=1e-5)


def test_postprocess_rules_on_real_labels(hippocampus_case):
    ref = sitk.ReadImage(str(hippocampus_case[1]))
    arr = sitk.GetArrayFromImage(ref)
    # Add two islands of class 1 far from the structure: 1 voxel and 27 voxels.
    arr[0, 0, 0] = 1
    arr[-4:-1, -4:-1, -4:-1] = 1
    noisy = sitk.GetImageFromArray(arr)
    noisy.CopyInformation(ref)

    def n_components(img, label):
        return int(sitk.GetArrayFromImage(sitk.ConnectedComponent(img == label, True)).max())

    assert n_components(noisy, 1) >= 3
    small = postprocess_labels(noisy, PostprocessOptions(min_island_mm3=10))
    assert n_components(small, 1) == n_components(noisy, 1) - 1  # the 1-voxel island went
    largest = postprocess_labels(noisy, PostprocessOptions(keep_largest=True))
    assert n_components(largest, 1) == 1 and n_components(largest, 2) == 1
    frac = postprocess_labels(noisy, PostprocessOptions(keep_fraction_of_largest=0.01))
    la = sitk.GetArrayFromImage(frac)
    assert la[0, 0, 0] == 0 and la[-2, -2, -2] == 1  # 27 voxels are > 1% of the hippocampus part
    # Other classes are never touched by class-1 rules.
    assert np.array_equal(sitk.GetArrayViewFromImage(small) == 2, arr == 2)


def test_fill_holes_fills_enclosed_cavity(hippocampus_case):
    ref = sitk.ReadImage(str(hippocampus_case[1]))
    arr = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
    arr[5:15, 10:20, 10:20] = 2
    arr[8:12, 13:17, 13:17] = 0  # an enclosed 64-voxel cavity
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(ref)
    filled = sitk.GetArrayFromImage(postprocess_labels(img, PostprocessOptions(fill_holes=True)))
    assert np.all(filled[5:15, 10:20, 10:20] == 2)
    assert filled.sum() == 2 * 10 * 10 * 10


def test_instances_table_matches_components(shared_data):
    img = sitk.ReadImage(str(shared_data / "mr_tumor" / "brain1_label.nrrd"))
    from MedSegAILib.core.classes import ClassInfo

    classes = [ClassInfo(1, "Tumour", (1.0, 0.2, 0.2))]
    labels = sitk.Cast(img, sitk.sitkUInt16)
    inst, table, all_classes = label_instances(labels, classes)
    iarr = sitk.GetArrayViewFromImage(inst)
    assert int(iarr.max()) == len(table) >= 1
    vox = float(np.prod(img.GetSpacing()))
    for rec in table:
        n = int(np.count_nonzero(iarr == rec.instance_id))
        assert rec.voxel_count == n
        assert rec.volume_mm3 == pytest.approx(n * vox, rel=1e-6)
        # Centroid is in physical LPS coordinates: map it back to an index inside the bbox.
        idx = inst.TransformPhysicalPointToContinuousIndex(rec.centroid_lps_mm)
        for a in range(3):
            assert rec.bbox_start_xyz[a] - 0.5 <= idx[a] <= rec.bbox_start_xyz[a] + rec.bbox_size_xyz[a] - 0.5
    assert [r.segment_name for r in table][:1] == ["Tumour 1"]
    assert np.array_equal(iarr > 0, sitk.GetArrayViewFromImage(labels) > 0)


def test_multichannel_input_must_share_grid(shared_data, hippocampus_case):
    chans = read_channels([hippocampus_case[0], hippocampus_case[0]])
    assert len(chans) == 2
    with pytest.raises(InputError, match="same voxel grid"):
        read_channels([hippocampus_case[0], shared_data / "mr_tumor" / "brain1_image.nrrd"])


def test_bad_volumes_are_refused_with_clear_messages(hippocampus_case):
    img = sitk.ReadImage(str(hippocampus_case[0]))
    with pytest.raises(InputError, match="constant"):
        require_3d_scalar(sitk.Image(img.GetSize(), sitk.sitkFloat32))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    arr[3, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        segment([sitk.GetImageFromArray(arr)], "otsu")
    with pytest.raises(InputError, match="2D"):
        require_3d_scalar(img[:, :, 5])
    with pytest.raises(InputError, match="no parameter"):
        segment([img], "otsu", {"n_clases": 3})
    with pytest.raises(InputError, match="unknown method"):
        segment([img], "nosuchmethod")
