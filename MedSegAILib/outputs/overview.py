"""A PNG overview a person can look at: three orthogonal slices with the label overlay, and
the same slices of the uncertainty map.

Slices pass through the centroid of the largest class's voxels (the image centre when nothing
is labelled). Each view keeps its physical aspect ratio (mm) and is shown in radiological
convention: patient right on the viewer's left, anterior at the top of the axial view, superior
at the top of the coronal and sagittal views (after reorientation to LPS axes).

Drawn with NumPy and Pillow (slices blended as arrays, text with ``ImageDraw``): matplotlib's
import alone took about 0.4 s, a third of a one-case ``medsegai segment`` run; Pillow takes a
few hundredths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont  # the "viz" extra; callers treat ImportError as "no picture"

from ..core.result import SegmentationResult
from ..postprocess.instances import region_statistics
from .colormaps import inferno

PANEL_PX = (330, 260)        # width, height of the box each slice is fitted into
LABEL_ALPHA = 0.55           # opacity of the label colours over the image
UNCERTAINTY_ALPHA = 0.75     # opacity of the uncertainty colours over the image
UNCERTAINTY_FLOOR = 0.02     # uncertainty below this is not coloured
UNLISTED_COLOR = (1.0, 0.0, 1.0)  # label values that have no class entry
LEGEND_ROW_PX = 19
LEGEND_MAX_NAME_PX = 240     # longer class names are shortened with "..."


@dataclass
class View:
    """One orthogonal slice ready to draw.

    ``labelled`` and ``uncertain`` are RGB arrays (rows, columns, 3) in [0, 1]: the grey image
    with the label colours, and with the uncertainty colours, laid over it. Row 0 is the top of
    the picture. ``row_mm`` / ``col_mm`` are the physical sizes of a pixel's height and width.
    """

    name: str
    labelled: np.ndarray
    uncertain: np.ndarray
    row_mm: float
    col_mm: float


def _orient_canonical(image: sitk.Image) -> sitk.Image:
    """Reorient to LPS axes so that array axes (z, y, x) are (I->S, A->P, R->L) for display."""
    try:
        return sitk.DICOMOrient(image, "LPS")
    except RuntimeError:
        return image


def _window(slices: List[np.ndarray]) -> Tuple[float, float]:
    """Grey window from the 0.5th to the 99.5th percentile of the shown slices' finite values."""
    values = np.concatenate([np.ravel(v) for v in slices])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _slice_centre(labels: sitk.Image) -> Tuple[float, ...]:
    """Physical point (LPS mm) the views pass through: the centroid of the largest class's
    voxels, or the image centre when nothing is labelled (one multi-threaded pass over the
    labels, no voxel list)."""
    if labels.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32):
        labels = sitk.Cast(labels, sitk.sitkUInt16)
    regions = region_statistics(labels)
    if not regions:
        return labels.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in labels.GetSize()])
    largest = max(regions, key=lambda v: regions[v].count)
    return labels.TransformContinuousIndexToPhysicalPoint(regions[largest].centroid_index_xyz)


def _canonical_plane(image: sitk.Image, centre, axis: int) -> Tuple[np.ndarray, int]:
    """The plane through ``centre`` perpendicular to LPS axis ``axis`` (0 = right-left, 1 =
    anterior-posterior, 2 = inferior-superior), as the (Z, Y, X) array of a one-voxel-thick
    slab reoriented to LPS (its size along ``axis`` is 1), and the plane's index along that axis
    in the reoriented volume. Only the slab is reoriented, not the volume."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    stored = int(np.argmax(np.abs(direction[axis, :])))  # the stored axis closest to ``axis``
    index = image.TransformPhysicalPointToIndex(tuple(float(c) for c in centre))
    n = image.GetSize()[stored]
    k = min(max(int(index[stored]), 0), n - 1)
    start, size = [0, 0, 0], list(image.GetSize())
    start[stored], size[stored] = k, 1
    slab = _orient_canonical(sitk.RegionOfInterest(image, size, start))
    return sitk.GetArrayFromImage(slab), (k if direction[axis, stored] > 0 else n - 1 - k)


def _blend(base: np.ndarray, color: np.ndarray, where: np.ndarray, alpha: float) -> np.ndarray:
    """``base`` (H, W, 3) with ``color`` (H, W, 3) laid over it at ``alpha`` where ``where``."""
    out = base.copy()
    out[where] = (1 - alpha) * base[where] + alpha * color[where]
    return out


def orthogonal_views(image: sitk.Image, result: SegmentationResult) -> List[View]:
    """The axial, coronal and sagittal views of the overview (see the module docstring).

    Parameters
    ----------
    image : sitk.Image
        The input volume (channel 0), on the result's grid.
    result : SegmentationResult
        Its labels colour the first picture row (label values without a class entry in
        ``UNLISTED_COLOR``), its uncertainty in [0, 1] the second.
    """
    centre = _slice_centre(result.labels)
    sx, sy, sz = _orient_canonical(sitk.RegionOfInterest(image, [1, 1, 1], [0, 0, 0])).GetSpacing()
    # (LPS axis the plane is perpendicular to, how to take the plane from the slab, row and
    # column spacing, name, flip rows so that superior is up)
    cuts = [
        (2, lambda v: v[0], sy, sx, "axial z", False),
        (1, lambda v: v[:, 0, :], sz, sx, "coronal y", True),
        (0, lambda v: v[:, :, 0], sz, sy, "sagittal x", True),
    ]
    planes = []
    for axis, take, row_mm, col_mm, name, flip in cuts:
        arrays = []
        for volume in (image, result.labels, result.uncertainty):
            arr, k = _canonical_plane(volume, centre, axis)
            arrays.append(take(arr)[::-1] if flip else take(arr))
        planes.append((arrays, row_mm, col_mm, f"{name}={k}"))
    lo, hi = _window([p[0][0] for p in planes])
    top = max([c.label for c in result.classes] + [int(p[0][1].max()) for p in planes] + [1])
    colors = np.tile(np.asarray(UNLISTED_COLOR, dtype=float), (top + 1, 1))
    for c in result.classes:
        colors[c.label] = c.color
    views = []
    for (sl_a, sl_l, sl_u), row_mm, col_mm, name in planes:
        sl_a = sl_a.astype(np.float32)
        sl_l = sl_l.astype(np.int64)
        sl_u = np.nan_to_num(sl_u.astype(np.float32), nan=0.0)
        grey = np.repeat(np.nan_to_num((sl_a - lo) / (hi - lo), nan=0.0)[..., None], 3, axis=-1)
        labelled = _blend(grey, colors[np.clip(sl_l, 0, top)], sl_l > 0, LABEL_ALPHA)
        uncertain = _blend(grey, inferno(sl_u), sl_u >= UNCERTAINTY_FLOOR, UNCERTAINTY_ALPHA)
        views.append(View(name, labelled, uncertain, float(row_mm), float(col_mm)))
    return views


def fit_to_box(rgb: np.ndarray, row_mm: float, col_mm: float, box: Tuple[int, int]) -> Image.Image:
    """A Pillow image of ``rgb`` (H, W, 3 in [0, 1]) scaled (nearest neighbour) so that each
    pixel keeps its physical shape (``row_mm`` high, ``col_mm`` wide) and the slice fills the
    ``box`` (width, height in pixels) in one direction."""
    h, w = rgb.shape[:2]
    scale = min(box[0] / (w * col_mm), box[1] / (h * row_mm))
    size = (max(1, round(w * col_mm * scale)), max(1, round(h * row_mm * scale)))
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.resize(size, Image.NEAREST)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:
        return ImageFont.load_default()


def _text_width(draw, text: str, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _shorten(draw, text: str, font, width: int) -> str:
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, text + "...", font) > width:
        text = text[:-1]
    return text + "..."


def _centred_text(draw, x_centre: float, y: float, text: str, font) -> None:
    draw.text((x_centre - _text_width(draw, text, font) / 2, y), text, fill=(0, 0, 0), font=font)


def _legend_entries(result: SegmentationResult, labels: sitk.Image) -> List[Tuple[tuple, str]]:
    """(RGB in [0, 1], text) per class, then one entry for label values without a class."""
    entries = [(tuple(c.color), c.name) for c in result.classes]
    known = {c.label for c in result.classes}
    present = np.unique(sitk.GetArrayViewFromImage(labels))
    unlisted = [int(v) for v in present if v > 0 and int(v) not in known]
    if unlisted:
        shown = ", ".join(map(str, unlisted[:5])) + (", ..." if len(unlisted) > 5 else "")
        entries.append((UNLISTED_COLOR, f"no class: label {shown}"))
    return entries


def write_overview_png(
    image: sitk.Image,
    result: SegmentationResult,
    path,
    *,
    title: Optional[str] = None,
) -> Path:
    """Write the overview picture (about 1200 x 670 pixels); returns its path.

    Parameters
    ----------
    image : sitk.Image
        The input volume (channel 0), on the result's grid.
    result : SegmentationResult
    path : str or Path
        PNG file to write.
    title : str, optional
        Heading; by default the method, the number of instances and the run time.
    """
    views = orthogonal_views(image, result)
    small, large = _font(13), _font(17)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries = _legend_entries(result, result.labels)

    pw, ph = PANEL_PX
    margin, title_h, caption_h = 24, 56, 22
    row_h = caption_h + ph + margin
    names_w = max([_text_width(measure, _shorten(measure, t, small, LEGEND_MAX_NAME_PX), small) for _, t in entries] + [0])
    side_w = max(110, names_w + 20 + margin)  # legend beside the first row, colour bar beside the second
    panels_w = 3 * pw + 4 * margin
    canvas = Image.new("RGB", (panels_w + side_w, title_h + 2 * row_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    for col, view in enumerate(views):
        x0 = margin + col * (pw + margin)
        for row, (rgb, caption) in enumerate(((view.labelled, view.name), (view.uncertain, f"uncertainty, {view.name}"))):
            tile = fit_to_box(rgb, view.row_mm, view.col_mm, PANEL_PX)
            # Centred in its box, the caption just above the slice.
            tx, ty = x0 + (pw - tile.width) // 2, title_h + row * row_h + caption_h + (ph - tile.height) // 2
            canvas.paste(tile, (tx, ty))
            _centred_text(draw, x0 + pw / 2, ty - caption_h + 4, caption, small)

    # Legend: a coloured square and a name per class, as many as the first row's height holds.
    fits = (row_h + caption_h) // LEGEND_ROW_PX
    if len(entries) > fits:
        entries = entries[: fits - 1] + [(None, f"+{len(entries) - fits + 1} more classes")]
    lx, ly = panels_w, title_h - caption_h
    for color, text in entries:
        if color is not None:
            draw.rectangle((lx, ly + 2, lx + 13, ly + 14), fill=tuple(int(round(255 * v)) for v in color), outline=(0, 0, 0))
        draw.text((lx + 19, ly), _shorten(draw, text, small, LEGEND_MAX_NAME_PX), fill=(0, 0, 0), font=small)
        ly += LEGEND_ROW_PX

    # Colour bar of the uncertainty map, beside the second row.
    bx, bw, by0 = panels_w, 16, title_h + row_h + caption_h
    bar = Image.fromarray((inferno(np.linspace(1, 0, ph))[:, None, :].repeat(bw, axis=1) * 255).astype(np.uint8), "RGB")
    canvas.paste(bar, (bx, by0))
    draw.rectangle((bx, by0, bx + bw - 1, by0 + ph - 1), outline=(0, 0, 0))
    for v in (0.0, 0.5, 1.0):
        ty = by0 + round((1 - v) * (ph - 1))
        draw.line((bx + bw, ty, bx + bw + 4, ty), fill=(0, 0, 0))
        draw.text((bx + bw + 7, ty - 7), f"{v:.1f}", fill=(0, 0, 0), font=small)
    # Its name, written upwards beside the tick labels.
    name = "normalised entropy"
    left, top, right, bottom = draw.textbbox((0, 0), name, font=small)
    label = Image.new("RGB", (right - left + 2, bottom - top + 4), (255, 255, 255))
    ImageDraw.Draw(label).text((-left + 1, -top + 1), name, fill=(0, 0, 0), font=small)
    label = label.rotate(90, expand=True)
    canvas.paste(label, (bx + bw + 36, by0 + (ph - label.height) // 2))

    prov = result.provenance
    heading = title or f"MedSegAI {prov.method}: {len(result.instance_table)} instances, {prov.wall_time_s:.1f} s"
    _centred_text(draw, panels_w / 2, 14, heading, large)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
