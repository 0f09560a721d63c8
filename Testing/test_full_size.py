"""Large volumes: the slab-wise, one-pass versions of Otsu, instances, uncertainty storage and
the overview give what the direct computations give, and a run's memory stays a few times
its input (the full-size figures are in Testing/benchmarks/full_size_benchmark.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSegAILib.core.classes import generic_classes  # noqa: E402
from MedSegAILib.core.slabs import for_each_slab, slab_bounds  # noqa: E402
from MedSegAILib.methods.classical.otsu import otsu_segmentation  # noqa: E402
from MedSegAILib.pipeline import segment  # noqa: E402
from MedSegAILib.postprocess.instances import label_instances  # noqa: E402
from MedSegAILib.uncertainty.entropy import UNCERTAINTY_STEP, normalized_entropy, quantize_uncertainty  # noqa: E402


@pytest.fixture(scope="module")
def ct(shared_data):
    """The 3 mm abdominal CT (1.4 M voxels) and TotalSegmentator's labels of its 30-slice part."""
    image = sitk.ReadImage(str(shared_data / "ct" / "example_ct.nii.gz"), sitk.sitkFloat32)
    seg = sitk.ReadImage(str(shared_data / "ct" / "example_seg.nii.gz"))
    return image, seg


def test_slabs_cover_the_volume_once():
    for depth, plane in ((1, 10), (7, 1 << 20), (480, 523 * 433), (5, 3)):
        bounds = slab_bounds(depth, plane, slab_voxels=1 << 20)
        assert bounds[0][0] == 0 and bounds[-1][1] == depth
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    seen = np.zeros(97, int)

    def mark(z0, z1):
        seen[z0:z1] += 1

    for_each_slab(97, 1000, mark, slab_voxels=5000)
    assert np.all(seen == 1)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_slabwise_otsu_equals_the_direct_computation(ct, n_classes):
    """Labels as np.digitize over SimpleITK's thresholds; posteriors and uncertainty as the
    float64 Gaussian-mixture formula over the whole volume at once."""
    image = ct[0]
    out = otsu_segmentation(image, n_classes=n_classes)
    arr = sitk.GetArrayFromImage(image).astype(np.float64)
    labels = np.digitize(arr, np.asarray(out.extra["thresholds"]), right=True)
    assert np.array_equal(sitk.GetArrayViewFromImage(out.labels), labels)
    fit = out.extra["mixture"]
    for k in range(n_classes):
        values = arr[labels == k]
        assert fit["mean"][k] == pytest.approx(values.mean(), rel=1e-9, abs=1e-9)
        assert fit["std"][k] == pytest.approx(max(values.std(), 1e-3 * arr.std()), rel=1e-6)
        assert fit["weight"][k] == pytest.approx(values.size / arr.size, rel=1e-12)
    m, s, w = (np.asarray(fit[k]) for k in ("mean", "std", "weight"))
    logp = -0.5 * ((arr.reshape(-1, 1) - m) / s) ** 2 - np.log(s) + np.log(w)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    got = sitk.GetArrayViewFromImage(out.probabilities).reshape(-1, n_classes)
    np.testing.assert_allclose(got, p, atol=1e-6)
    # The uncertainty is the posteriors' entropy in the stored steps of 2**-16.
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(out.uncertainty).reshape(-1), normalized_entropy(p.astype(np.float32)), atol=UNCERTAINTY_STEP / 2 + 1e-6
    )
    # Without the posteriors, the same uncertainty.
    lean = otsu_segmentation(image, n_classes=n_classes, keep_probabilities=False)
    assert lean.probabilities is None
    assert np.array_equal(sitk.GetArrayViewFromImage(lean.uncertainty), sitk.GetArrayViewFromImage(out.uncertainty))


def test_stored_uncertainty_is_within_its_step_and_zero_deep_inside_a_class(ct):
    out = otsu_segmentation(ct[0], n_classes=3)
    exact = normalized_entropy(sitk.GetArrayFromImage(out.probabilities))
    stored = sitk.GetArrayFromImage(out.uncertainty)
    assert np.abs(stored - exact).max() <= UNCERTAINTY_STEP / 2 + 1e-7
    assert np.all(np.round(stored / UNCERTAINTY_STEP) * UNCERTAINTY_STEP == stored)
    assert np.count_nonzero(stored == 0) > np.count_nonzero(exact == 0) + exact.size // 10
    # An image made elsewhere is rounded by the pipeline the same way.
    plain = sitk.GetImageFromArray(exact)
    plain.CopyInformation(ct[0])
    assert np.array_equal(sitk.GetArrayViewFromImage(quantize_uncertainty(plain)), stored)
    # What a run keeps (and writes) is the stored one; the posteriors only on request.
    result = segment([ct[0]], "otsu", {"n_classes": 3})
    assert np.array_equal(sitk.GetArrayViewFromImage(result.uncertainty), stored)
    assert result.probabilities is None
    assert segment([ct[0]], "otsu", {"n_classes": 3}, keep_probabilities=True).probabilities is not None


def _reference_instances(labels: np.ndarray, connectivity: int):
    """Instance ids the direct way: per class ascending, components largest first (scipy)."""
    out = np.zeros(labels.shape, np.int64)
    classes = []
    structure = np.ones((3, 3, 3)) if connectivity == 26 else ndimage.generate_binary_structure(3, 1)
    for lab in [v for v in np.unique(labels) if v]:
        comp, n = ndimage.label(labels == lab, structure=structure)
        sizes = np.bincount(comp.ravel())[1:]
        # Largest first; ties keep scipy's scan order, as ITK's relabelling does.
        order = np.argsort(-sizes, kind="stable")
        for rank, c in enumerate(order):
            out[comp == c + 1] = len(classes) + 1 + rank
        classes += [int(lab)] * n
    return out, classes


@pytest.mark.parametrize("connectivity", [26, 6])
def test_instances_of_forty_structures_equal_the_direct_computation(ct, connectivity):
    """TotalSegmentator's 41-structure labelmap (organs, single ribs, vessels): the same ids,
    classes, sizes and mean uncertainties as labelling each class over the whole volume."""
    seg = sitk.Cast(ct[1], sitk.sitkUInt16)
    rng = np.random.default_rng(0)
    unc_arr = rng.random(sitk.GetArrayViewFromImage(seg).shape).astype(np.float32)
    unc = sitk.GetImageFromArray(unc_arr)
    unc.CopyInformation(seg)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(seg)) if v]
    inst, table, _ = label_instances(seg, generic_classes(present, prefix="TS"), connectivity=connectivity, uncertainty=unc)
    ref, ref_classes = _reference_instances(sitk.GetArrayViewFromImage(seg), connectivity)
    got = sitk.GetArrayViewFromImage(inst)
    assert got.dtype == (np.uint8 if len(ref_classes) < 256 else np.uint16)
    assert np.array_equal(got, ref)
    assert [r.class_label for r in table] == ref_classes
    lab = sitk.GetArrayViewFromImage(seg)
    for rec in table[:: max(1, len(table) // 25)]:
        sel = ref == rec.instance_id
        assert rec.voxel_count == int(sel.sum())
        assert np.all(lab[sel] == rec.class_label)
        assert rec.mean_uncertainty == pytest.approx(float(unc_arr[sel].astype(np.float64).mean()), rel=1e-9)


def test_stuff_classes_are_one_instance_each_through_the_lookup(ct):
    seg = sitk.Cast(ct[1], sitk.sitkUInt16)
    present = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(seg)) if v]
    stuff = present[::2]
    inst, table, _ = label_instances(seg, generic_classes(present, prefix="TS"), stuff_labels=stuff)
    got = sitk.GetArrayViewFromImage(inst)
    lab = sitk.GetArrayViewFromImage(seg)
    for rec in table:
        if rec.class_label in stuff:
            assert np.array_equal(got == rec.instance_id, lab == rec.class_label)
            assert rec.segment_name == f"TS {rec.class_label}"


def _peak_rss_mib(cmd) -> float:
    with open(os.devnull, "w") as null:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=null, stderr=subprocess.PIPE)
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, err
    return usage.ru_maxrss / 1024


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak memory of a child needs os.wait4")
def test_an_otsu_run_needs_a_few_times_its_input_beside_the_interpreter(ct, tmp_path, hippocampus_case):
    """``medsegai segment --method otsu`` (three classes, every output) on the CT upsampled to
    22 M voxels (82 MiB as float32): its peak memory beyond what the same command takes on a
    hippocampus crop stays under 6x the input (4.4x measured; 21x before the slab-wise rewrite)."""
    image = ct[0]
    spacing = [s / 2.5 for s in image.GetSpacing()]
    size = [int(n * 2.5) for n in image.GetSize()]
    big = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing, image.GetDirection(), -1024.0, sitk.sitkFloat32)
    path = tmp_path / "ct_big.nrrd"
    sitk.WriteImage(big, str(path), useCompression=False)
    input_mib = np.prod(size) * 4 / 2**20
    del big

    def run(inp, out):
        return _peak_rss_mib([sys.executable, "-m", "MedSegAILib.cli", "segment", str(inp), "--method", "otsu", "--param", "n_classes=3",
                              "--no-radiomics", "-q", "-o", str(out)])

    floor = run(hippocampus_case[0], tmp_path / "small")
    peak = run(path, tmp_path / "big")
    assert (peak - floor) < 6 * input_mib, (peak, floor, input_mib)
    stages = json.loads((tmp_path / "big" / "provenance.json").read_text())["stages"]
    assert [s["stage"] for s in stages][:2] == ["read", "method (otsu)"]
    assert "overview.png" in [s["stage"] for s in stages]


def test_a_band_solved_in_slabs_agrees_with_one_graph(shared_data):
    """The banded MRF of the whole 3 mm CT (1.4 M voxels, three classes) with its band split
    into slabs of at most 60 000 voxels: the labels and the energy match the band solved as
    one graph, and so does the energy of the whole volume; slabs bound the graph's size, not
    the result."""
    from MedSegAILib.methods.classical.banded import band_slabs, solve_potts_grid
    from MedSegAILib.methods.classical.mrf import gaussian_em, gaussian_unary
    from MedSegAILib.methods.classical.otsu import otsu_thresholds

    image = sitk.ReadImage(str(shared_data / "ct" / "example_ct.nii.gz"), sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(image)
    fit = gaussian_em(arr.reshape(-1), 3, otsu_thresholds(image, 3, 128), iterations=5)
    common = dict(weight=1.0, mode="banded", coarse_voxels=100_000, mf_iterations=3, band_width=1)
    one, q_one, info_one = solve_potts_grid(arr, (3.0, 3.0, 3.0), gaussian_unary(fit), 3, **common)
    many, q_many, info_many = solve_potts_grid(arr, (3.0, 3.0, 3.0), gaussian_unary(fit), 3, max_band_nodes=60_000, **common)
    assert info_one["band_slabs"] == 1 and info_many["band_slabs"] >= 4
    assert info_many["solved_voxels"] == info_one["solved_voxels"] > 240_000
    # Measured: 0.9989 of the voxels agree; the whole volume's energy is 0.24 % higher.
    assert np.mean(one == many) > 0.998
    from MedSegAILib.methods.classical.energy import build_problem, potts_energy

    problem, _ = build_problem(arr, (3.0, 3.0, 3.0), gaussian_unary(fit), 3, weight=1.0)
    e_one, e_many = potts_energy(problem, one), potts_energy(problem, many)
    assert e_many <= e_one * 1.005, (e_one, e_many)
    np.testing.assert_allclose(q_many.sum(axis=-1), 1.0, atol=1e-4)
    # The automatic width keeps the boundary voxels only once the band exceeds one slab.
    auto = {**common, "band_width": -1}
    assert solve_potts_grid(arr, (3.0, 3.0, 3.0), gaussian_unary(fit), 3, **auto)[2]["band_width"] == 1
    narrow = solve_potts_grid(arr, (3.0, 3.0, 3.0), gaussian_unary(fit), 3, max_band_nodes=60_000, **auto)[2]
    assert narrow["band_width"] == 0 and narrow["solved_voxels"] < info_one["solved_voxels"]
    # Slabs are consecutive, within the limit unless a single slice holds more.
    band = np.zeros((6, 2, 2), bool)
    band[[0, 1, 4]] = True
    assert band_slabs(band, 8) == [(0, 4), (4, 6)]
    assert band_slabs(band, 3) == [(0, 1), (1, 2), (4, 5)]


def test_radiomics_of_a_very_large_instance_skips_texture_and_says_so(ct):
    """A tissue class above the texture limit: first-order and axis features as for any
    instance (axis lengths from plane-by-plane moments equal the coordinate-list ones), no
    GLCM or mesh columns, and a warning naming it."""
    from MedSegAILib.measure.radiomics import coordinate_covariance, shape_features

    result = segment([ct[0]], "otsu", {"n_classes": 3})
    big = max(result.instance_table, key=lambda r: r.voxel_count)
    from MedSegAILib.measure.radiomics import add_instance_radiomics

    add_instance_radiomics(result, ct[0], max_voxels_for_texture=big.voxel_count - 1)
    assert "glcm_Contrast" not in big.measurements and "shape_MeshVolume" not in big.measurements
    assert big.measurements["firstorder_Mean"] == pytest.approx(
        float(sitk.GetArrayViewFromImage(ct[0])[sitk.GetArrayViewFromImage(result.instances) == big.instance_id].astype(np.float64).mean()), rel=1e-9
    )
    assert any(big.segment_name in w and "texture" in w for w in result.provenance.extra["warnings"])
    smaller = [r for r in result.instance_table if r.voxel_count < big.voxel_count]
    assert smaller and all("glcm_Contrast" in r.measurements for r in smaller)
    # The moments gathered plane by plane are those of the voxel list.
    mask = sitk.GetArrayViewFromImage(result.instances) == big.instance_id
    spacing = (3.0, 3.0, 3.0)
    coords = np.argwhere(mask) * np.asarray(spacing)
    n, cov = coordinate_covariance(mask, spacing)
    assert n == len(coords)
    np.testing.assert_allclose(cov, np.cov(coords.T, bias=True), rtol=1e-9, atol=1e-9)
    assert shape_features(mask, spacing, mesh=False)["MajorAxisLength"] == pytest.approx(4 * np.sqrt(np.linalg.eigvalsh(np.cov(coords.T, bias=True))[-1]), rel=1e-9)
