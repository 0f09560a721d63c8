"""A PNG overview a person can look at: three orthogonal slices with the label overlay, and
the same slices of the uncertainty map.

Slices pass through the centroid of the largest instance (the image centre when there is
none). Each view is drawn with its physical aspect ratio (mm), in radiological convention
for the axial view as Slicer shows it when the direction is identity-like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from ..core.result import SegmentationResult


def _orient_canonical(image: sitk.Image) -> sitk.Image:
    """Reorient to LPS axes so that array axes (z, y, x) are (I->S, P<-A, R->L) for display."""
    try:
        return sitk.DICOMOrient(image, "LPS")
    except RuntimeError:
        return image


def _window(arr: np.ndarray) -> tuple:
    lo, hi = np.percentile(arr, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def write_overview_png(
    image: sitk.Image,
    result: SegmentationResult,
    path,
    *,
    title: Optional[str] = None,
    dpi: int = 110,
) -> Path:
    """Write the overview picture; returns its path.

    Parameters
    ----------
    image : sitk.Image
        The input volume (channel 0), on the result's grid.
    result : SegmentationResult
    path : str or Path
        PNG file to write.
    """
    # Figure without pyplot: no GUI backend, no global figure registry, and 0.2 s less start-up.
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    img = _orient_canonical(sitk.Cast(image, sitk.sitkFloat32))
    lab = _orient_canonical(result.labels)
    unc = _orient_canonical(result.uncertainty)
    a = sitk.GetArrayFromImage(img)
    l = sitk.GetArrayFromImage(lab)
    u = sitk.GetArrayFromImage(unc)
    sx, sy, sz = img.GetSpacing()

    if np.any(l):
        # Slice through the centre of mass of the largest class's voxels.
        vals, counts = np.unique(l[l > 0], return_counts=True)
        zyx = np.argwhere(l == vals[np.argmax(counts)]).mean(axis=0).round().astype(int)
    else:
        zyx = np.array(a.shape) // 2
    z, y, x = (int(v) for v in zyx)

    max_label = max([c.label for c in result.classes] + [int(l.max()), 1])
    colors = np.zeros((max_label + 1, 4))
    for c in result.classes:
        colors[c.label] = (*c.color, 0.55)
    cmap = ListedColormap(colors)

    # (array slice, aspect = row spacing / column spacing, name); rows flipped so superior is up.
    views = [
        (lambda v: v[z], sy / sx, f"axial z={z}", False),
        (lambda v: v[:, y, :], sz / sx, f"coronal y={y}", True),
        (lambda v: v[:, :, x], sz / sy, f"sagittal x={x}", True),
    ]
    lo, hi = _window(a)
    fig = Figure(figsize=(10, 6.8))
    axes = fig.subplots(2, 3)
    for col, (take, aspect, name, flip) in enumerate(views):
        sl_a, sl_l, sl_u = take(a), take(l), take(u)
        if flip:
            sl_a, sl_l, sl_u = sl_a[::-1], sl_l[::-1], sl_u[::-1]
        ax = axes[0, col]
        ax.imshow(sl_a, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        ax.imshow(np.ma.masked_equal(sl_l, 0), cmap=cmap, vmin=0, vmax=max_label, aspect=aspect, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        ax = axes[1, col]
        ax.imshow(sl_a, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        im = ax.imshow(np.ma.masked_less(sl_u, 0.02), cmap="inferno", vmin=0, vmax=1, alpha=0.75, aspect=aspect, interpolation="nearest")
        ax.set_title(f"uncertainty, {name}", fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, label="normalised entropy")
    handles = [Rectangle((0, 0), 1, 1, color=c.color) for c in result.classes]
    if handles:
        fig.legend(handles, [c.name for c in result.classes], loc="upper right", fontsize=8, ncol=1)
    prov = result.provenance
    fig.suptitle(title or f"MedSegAI {prov.method}: {len(result.instance_table)} instances, {prov.wall_time_s:.1f} s", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
