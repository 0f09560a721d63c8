"""A PNG overview a person can look at: three orthogonal slices with the label overlay, and
the same slices of the uncertainty map.

Slices pass through the centroid of the largest class's voxels (the image centre when nothing
is labelled). Each view is drawn with its physical aspect ratio (mm), in radiological convention
for the axial view as Slicer shows it when the direction is identity-like.

Drawn with NumPy and Pillow (slices blended as arrays, text and legend with ``ImageDraw``):
matplotlib's import alone took about 0.4 s, which was a third of a one-case ``medsegai
segment`` run; Pillow takes a few hundredths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw, ImageFont  # the "viz" extra; callers treat ImportError as "no picture"

from ..core.result import SegmentationResult
from .colormaps import inferno

PANEL_PX = (330, 260)        # width, height of the box each slice is fitted into
LABEL_ALPHA = 0.55           # opacity of the label colours over the image
UNCERTAINTY_ALPHA = 0.75     # opacity of the uncertainty colours over the image
UNCERTAINTY_FLOOR = 0.02     # uncertainty below this is not coloured


def _orient_canonical(image: sitk.Image) -> sitk.Image:
    """Reorient to LPS axes so that array axes (z, y, x) are (I->S, P<-A, R->L) for display."""
    try:
        return sitk.DICOMOrient(image, "LPS")
    except RuntimeError:
        return image


def _window(arr: np.ndarray) -> tuple:
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:
        return ImageFont.load_default()


def _blend(base: np.ndarray, color: np.ndarray, where: np.ndarray, alpha: float) -> np.ndarray:
    """``base`` (H, W, 3) with ``color`` (H, W, 3) laid over it at ``alpha`` where ``where``."""
    out = base.copy()
    out[where] = (1 - alpha) * base[where] + alpha * color[where]
    return out


def _fit(rgb: np.ndarray, row_mm: float, col_mm: float, box: Tuple[int, int]):
    """A Pillow image of ``rgb`` (H, W, 3 in [0, 1]) scaled (nearest neighbour) so that a pixel
    keeps its physical shape (row and column spacing in mm) and the slice fills ``box``."""
    h, w = rgb.shape[:2]
    scale = min(box[0] / (w * col_mm), box[1] / (h * row_mm))
    size = (max(1, round(w * col_mm * scale)), max(1, round(h * row_mm * scale)))
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.resize(size, Image.NEAREST)


def _centred_text(draw, x_centre: float, y: float, text: str, font) -> None:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((x_centre - (right - left) / 2, y), text, fill=(0, 0, 0), font=font)


def write_overview_png(
    image: sitk.Image,
    result: SegmentationResult,
    path,
    *,
    title: Optional[str] = None,
) -> Path:
    """Write the overview picture (about 1100 x 720 pixels); returns its path.

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
    img = _orient_canonical(sitk.Cast(image, sitk.sitkFloat32))
    a = sitk.GetArrayFromImage(img)
    l = sitk.GetArrayFromImage(_orient_canonical(result.labels))
    u = sitk.GetArrayFromImage(_orient_canonical(result.uncertainty))
    sx, sy, sz = img.GetSpacing()

    if np.any(l):
        # Slice through the centre of mass of the largest class's voxels.
        vals, counts = np.unique(l[l > 0], return_counts=True)
        zyx = np.argwhere(l == vals[np.argmax(counts)]).mean(axis=0).round().astype(int)
    else:
        zyx = np.array(a.shape) // 2
    z, y, x = (int(v) for v in zyx)

    max_label = max([c.label for c in result.classes] + [int(l.max()), 1])
    colors = np.zeros((max_label + 1, 3))
    for c in result.classes:
        colors[c.label] = c.color

    # (slice of a (Z, Y, X) array, row spacing, column spacing, name, flip rows so superior is up)
    views = [
        (lambda v: v[z], sy, sx, f"axial z={z}", False),
        (lambda v: v[:, y, :], sz, sx, f"coronal y={y}", True),
        (lambda v: v[:, :, x], sz, sy, f"sagittal x={x}", True),
    ]
    lo, hi = _window(a)
    pw, ph = PANEL_PX
    margin, title_h, caption_h = 24, 56, 22
    width = 3 * pw + 4 * margin + 110  # room on the right for the colour bar
    height = title_h + 2 * (caption_h + ph + margin)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    small, large = _font(13), _font(17)

    for col, (take, row_mm, col_mm, name, flip) in enumerate(views):
        sl_a, sl_l, sl_u = take(a), take(l), take(u)
        if flip:
            sl_a, sl_l, sl_u = sl_a[::-1], sl_l[::-1], sl_u[::-1]
        grey = np.repeat(((sl_a - lo) / (hi - lo))[..., None], 3, axis=-1)
        labelled = _blend(grey, colors[np.clip(sl_l, 0, max_label)], sl_l > 0, LABEL_ALPHA)
        uncertain = _blend(grey, inferno(sl_u), sl_u >= UNCERTAINTY_FLOOR, UNCERTAINTY_ALPHA)
        x0 = margin + col * (pw + margin)
        for row, (rgb, caption) in enumerate(((labelled, name), (uncertain, f"uncertainty, {name}"))):
            y0 = title_h + row * (caption_h + ph + margin)
            tile = _fit(rgb, row_mm, col_mm, PANEL_PX)
            # Centred in its box, the caption just above the slice.
            tx, ty = x0 + (pw - tile.width) // 2, y0 + caption_h + (ph - tile.height) // 2
            canvas.paste(tile, (tx, ty))
            _centred_text(draw, x0 + pw / 2, ty - caption_h + 4, caption, small)

    # Colour bar of the uncertainty map, beside the second row.
    bx, bw = 3 * pw + 4 * margin, 16
    by0 = title_h + caption_h + ph + margin + caption_h
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

    # Legend: one coloured square and name per class, top right.
    ly = 8
    for c in result.classes:
        rgb = tuple(int(round(255 * v)) for v in c.color)
        left, _, right, _ = draw.textbbox((0, 0), c.name, font=small)
        lx = width - margin - (right - left) - 20
        draw.rectangle((lx, ly + 2, lx + 13, ly + 14), fill=rgb, outline=(0, 0, 0))
        draw.text((lx + 19, ly), c.name, fill=(0, 0, 0), font=small)
        ly += 19

    prov = result.provenance
    heading = title or f"MedSegAI {prov.method}: {len(result.instance_table)} instances, {prov.wall_time_s:.1f} s"
    _centred_text(draw, (3 * pw + 4 * margin) / 2, 14, heading, large)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, format="PNG")
    return path
