"""Scribble seeds made from a reference labelmap, for the seeded graph-cut tests and benchmark.

On three axial slices (array axis 0) at 25%, 50% and 75% of the object's extent, the object
eroded in-plane becomes object seeds (label 1) and the background farther than ``margin_mm``
from the object becomes background seeds (label 2, the highest label, as Slicer's Grow from
seeds expects). Nothing else is seeded.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def scribble_seeds(reference: sitk.Image, *, object_value=None, erosion_mm: float = 2.0, margin_mm: float = 10.0,
                   n_slices: int = 3) -> sitk.Image:
    """Seed labelmap (UInt8, 1 = object, 2 = background) on ``reference``'s grid.

    ``object_value`` None takes every label > 0 as the object, else ``ref == object_value``.
    """
    ref = sitk.GetArrayViewFromImage(reference)
    obj = ref > 0 if object_value is None else ref == object_value
    if not obj.any():
        raise ValueError("the reference holds no object voxels")
    sx, sy = reference.GetSpacing()[0], reference.GetSpacing()[1]
    zs = np.flatnonzero(obj.any(axis=(1, 2)))
    picks = sorted({int(zs[int(round(q * (zs.size - 1)))]) for q in np.linspace(0.25, 0.75, n_slices)})
    seeds = np.zeros(ref.shape, dtype=np.uint8)
    for z in picks:
        sl = obj[z]
        # In-plane distances in mm: inside the object for erosion, outside for the margin.
        inside = ndimage.distance_transform_edt(sl, sampling=(sy, sx))
        outside = ndimage.distance_transform_edt(~sl, sampling=(sy, sx))
        core = inside > erosion_mm
        if not core.any():
            core = inside >= inside.max()  # a thin slice: its most central voxels
        seeds[z][core] = 1
        seeds[z][outside > margin_mm] = 2
    img = sitk.GetImageFromArray(seeds)
    img.CopyInformation(reference)
    return img
