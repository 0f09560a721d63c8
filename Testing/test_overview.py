"""overview.png: labels and uncertainty over three orthogonal slices, in radiological
convention with physical aspect ratios, robust to NaN voxels, unlisted labels and many classes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("PIL")

from MedSegAILib.core.classes import ClassInfo  # noqa: E402
from MedSegAILib.outputs.overview import LABEL_ALPHA, UNLISTED_COLOR, fit_to_box, orthogonal_views, write_overview_png  # noqa: E402
from MedSegAILib.pipeline import segment_files  # noqa: E402

RED = (0.9, 0.1, 0.1)


@pytest.fixture(scope="module")
def case(hippocampus_case):
    image = sitk.ReadImage(str(hippocampus_case[0]))
    return segment_files([hippocampus_case[0]]), image


def _blended_pixels(png: Path, color, alpha: float) -> int:
    """Pixels of ``png`` that are ``color`` (RGB in [0, 1]) laid at ``alpha`` over some grey."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    under = (rgb - alpha * 255 * np.asarray(color)) / (1 - alpha)
    grey = (np.ptp(under, axis=-1) <= 3.5) & (under.min(axis=-1) >= -2) & (under.max(axis=-1) <= 257)
    return int(grey.sum())


def _marker_case(result, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    """A 20 x 30 x 10 volume at 1 x 1 x 3 mm (LPS axes) with a labelled block at the patient's
    right, anterior and superior corner, as a result with one class."""
    arr = np.random.default_rng(0).normal(100, 10, (10, 30, 20)).astype(np.float32)  # (z, y, x)
    lab = np.zeros(arr.shape, np.uint8)
    lab[6:9, 2:8, 2:6] = 1  # superior (high z), anterior (low y), right (low x)
    images = []
    for a in (arr, lab, np.zeros(arr.shape, np.float32)):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((1.0, 1.0, 3.0))
        images.append(img)
    if direction != (1, 0, 0, 0, 1, 0, 0, 0, 1):
        # The same physical volume stored along other axes.
        images = [sitk.Resample(i, _grid(i, direction), sitk.Transform(), sitk.sitkNearestNeighbor) for i in images]
    image, labels, unc = images
    return image, replace(result, labels=sitk.Cast(labels, sitk.sitkUInt16), uncertainty=unc, classes=[ClassInfo(1, "marker", RED)], instance_table=[])


def _grid(img, direction):
    d = np.array(direction, float).reshape(3, 3)
    corners = [img.TransformIndexToPhysicalPoint([i, j, k]) for i in (0, img.GetSize()[0] - 1) for j in (0, img.GetSize()[1] - 1) for k in (0, img.GetSize()[2] - 1)]
    idx = np.array(corners) @ d  # coordinates along the new axes
    spacing = np.abs(d.T @ np.array(img.GetSpacing()))
    g = sitk.Image([int(round(s)) for s in (np.ptp(idx, axis=0) / spacing + 1)], img.GetPixelID())
    g.SetSpacing(spacing.tolist())
    g.SetDirection(direction)
    g.SetOrigin((d @ idx.min(axis=0)).tolist())
    return g


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1)], ids=["LPS", "RAS"])
def test_views_are_radiological_and_keep_physical_proportions(case, direction):
    """The right-anterior-superior marker sits at the top left of every view (patient right on
    the viewer's left, anterior up in the axial view, superior up in the others), whichever way
    the volume is stored; each view's pixels keep the 1 x 3 mm shape of the coronal and
    sagittal planes."""
    image, result = _marker_case(case[0], direction)
    views = orthogonal_views(image, result)
    assert [v.name.split()[0] for v in views] == ["axial", "coronal", "sagittal"]
    for v in views:
        red = np.argwhere(np.abs(v.labelled - (1 - LABEL_ALPHA) * v.labelled.mean(axis=-1, keepdims=True) - LABEL_ALPHA * np.array(RED)).max(axis=-1) < 0.08)
        rows, cols = v.labelled.shape[:2]
        assert len(red) > 0, v.name
        r, c = red.mean(axis=0)
        assert r < rows / 2 and c < cols / 2, (v.name, r, c, rows, cols)
    assert [(v.row_mm, v.col_mm) for v in views] == [(1.0, 1.0), (3.0, 1.0), (3.0, 1.0)]
    for v in views:
        tile = fit_to_box(v.labelled, v.row_mm, v.col_mm, (330, 260))
        rows, cols = v.labelled.shape[:2]
        assert tile.width / tile.height == pytest.approx((cols * v.col_mm) / (rows * v.row_mm), rel=0.02)
        assert tile.width == 330 or tile.height == 260


def test_overview_shows_the_labels_over_the_image(case, tmp_path):
    """The largest class's colour, blended over grey, fills its cross-sections in the picture;
    with the labels removed that blend is gone."""
    result, image = case
    labels = sitk.GetArrayFromImage(result.labels)
    largest = int(np.bincount(labels[labels > 0].ravel()).argmax())
    color = next(c.color for c in result.classes if c.label == largest)
    png = write_overview_png(image, result, tmp_path / "overview.png")
    assert _blended_pixels(png, color, LABEL_ALPHA) > 500

    empty_labels = sitk.Image(result.labels.GetSize(), sitk.sitkUInt16)
    empty_labels.CopyInformation(result.labels)
    empty = write_overview_png(image, replace(result, labels=empty_labels), tmp_path / "empty.png")
    assert _blended_pixels(empty, color, LABEL_ALPHA) < 20


def test_a_nan_voxel_does_not_blank_the_picture(case, tmp_path):
    result, image = case
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    arr.flat[0] = np.nan
    nan_image = sitk.GetImageFromArray(arr)
    nan_image.CopyInformation(image)
    color = result.classes[0].color
    with np.errstate(invalid="raise"):
        png = write_overview_png(nan_image, result, tmp_path / "nan.png")
    assert _blended_pixels(png, color, LABEL_ALPHA) > 500


def test_labels_without_a_class_are_shown_and_named(case, tmp_path):
    """A label value with no class entry is drawn in its own colour, with a legend entry."""
    result, image = case
    relabelled = sitk.Cast(result.labels > 0, sitk.sitkUInt16) * 9
    png = write_overview_png(image, replace(result, labels=relabelled), tmp_path / "unlisted.png")
    assert _blended_pixels(png, UNLISTED_COLOR, LABEL_ALPHA) > 500


def test_many_classes_keep_the_legend_beside_the_picture(case, tmp_path):
    """Forty classes with long names: the legend column stays narrow (names shortened) and lists
    as many as fit, then how many more there are."""
    from PIL import Image

    result, image = case
    many = [ClassInfo(i, f"structure number {i} with a rather long descriptive name", (i / 40, 0.5, 1 - i / 40)) for i in range(1, 41)]
    png = write_overview_png(image, replace(result, classes=many), tmp_path / "many.png")
    plain = write_overview_png(image, result, tmp_path / "plain.png")
    width, height = Image.open(png).size
    assert (width, height)[1] == Image.open(plain).size[1]
    assert width <= 3 * 330 + 4 * 24 + 240 + 20 + 24
    legend = np.asarray(Image.open(png).convert("RGB"))[:, 3 * 330 + 4 * 24 :]
    # Squares of the first classes are drawn, the last ones are not (they are counted instead).
    for i, expect in ((1, True), (40, False)):
        rgb = np.round(255 * np.array(many[i - 1].color))
        assert bool(np.any(np.all(np.abs(legend - rgb) <= 1, axis=-1))) is expect, i
