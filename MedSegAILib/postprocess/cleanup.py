"""Post-processing of a semantic labelmap, class by class, in physical units.

Every rule works on the connected components of one class at a time and leaves the other
classes untouched; removed voxels become background. Sizes are in mm³ so that a rule means
the same on a 0.7 mm and a 3 mm scan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError


@dataclass
class PostprocessOptions:
    """Rules applied to every object class.

    Attributes
    ----------
    min_island_mm3 : float
        Remove components smaller than this volume (mm³); 0 keeps all.
    keep_largest : bool
        Keep only the largest component of each class.
    keep_fraction_of_largest : float
        Keep every component at least this fraction (0..1] of the class's largest component;
        0 disables. 0.1 keeps both lungs, or two hippocampal parts, while dropping specks.
    fill_holes : bool
        Fill cavities fully enclosed by a class (3D, per class).
    connectivity : int
        6 (faces) or 26 (faces, edges, corners) neighbourhood for components.
    """

    min_island_mm3: float = 0.0
    keep_largest: bool = False
    keep_fraction_of_largest: float = 0.0
    fill_holes: bool = False
    connectivity: int = 26

    def validate(self) -> "PostprocessOptions":
        if not (0 <= self.min_island_mm3 < float("inf")):  # also refuses NaN
            raise InputError(f"min_island_mm3 must be a finite volume >= 0 mm³, got {self.min_island_mm3}")
        if not 0 <= self.keep_fraction_of_largest <= 1:
            raise InputError(f"keep_fraction_of_largest must be in [0, 1], got {self.keep_fraction_of_largest}")
        if self.connectivity not in (6, 26):
            raise InputError(f"connectivity must be 6 or 26, got {self.connectivity}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def connected_components(mask: sitk.Image, connectivity: int = 26) -> sitk.Image:
    """Label the components of a binary mask (UInt32), largest first."""
    cc = sitk.ConnectedComponent(sitk.Cast(mask, sitk.sitkUInt8), connectivity == 26)
    return sitk.RelabelComponent(cc, sortByObjectSize=True)


def _component_sizes(cc_arr: np.ndarray) -> np.ndarray:
    counts = np.bincount(cc_arr.ravel())
    counts[0] = 0
    return counts


def present_labels(labels: sitk.Image) -> List[int]:
    """The non-zero label values of an integer labelmap, ascending (a histogram for 8- and
    16-bit maps: one pass, no sort of the volume)."""
    arr = sitk.GetArrayViewFromImage(labels)
    if arr.dtype not in (np.uint8, np.uint16):
        return [int(v) for v in np.unique(arr) if v != 0]
    seen = np.zeros(1 << (8 * arr.dtype.itemsize), dtype=bool)
    for plane in arr:  # plane by plane: bincount makes 8-byte integers of its input
        seen[np.flatnonzero(np.bincount(plane.ravel()))] = True
    return [int(v) for v in np.flatnonzero(seen) if v != 0]


def postprocess_labels(labels: sitk.Image, options: Optional[PostprocessOptions] = None) -> sitk.Image:
    """Apply ``options`` to each object class of ``labels``; returns a new labelmap (same type,
    grid), or ``labels`` itself when no option is active.

    Parameters
    ----------
    labels : sitk.Image
        Semantic labelmap (integer), 0 = background.
    options : PostprocessOptions
    """
    options = (options or PostprocessOptions()).validate()
    active = options.min_island_mm3 > 0 or options.keep_largest or options.keep_fraction_of_largest > 0
    if not (active or options.fill_holes):
        return labels  # nothing to do: no copy of the volume
    arr = sitk.GetArrayFromImage(labels)
    out = arr.copy()
    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    for lab in present_labels(labels):
        mask = arr == lab
        if active:
            cc_img = connected_components(sitk.GetImageFromArray(mask.astype(np.uint8)), options.connectivity)
            cc = sitk.GetArrayViewFromImage(cc_img)
            sizes = _component_sizes(cc)
            keep = sizes > 0
            if options.min_island_mm3 > 0:
                keep &= sizes * voxel_mm3 >= options.min_island_mm3
            if options.keep_largest:
                keep[2:] = False  # relabelled largest first
            if options.keep_fraction_of_largest > 0 and sizes.max() > 0:
                keep &= sizes >= options.keep_fraction_of_largest * sizes.max()
            keep[0] = False
            out[mask & ~keep[cc]] = 0
            mask = out == lab
        if options.fill_holes:
            filled = sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)), fullyConnected=options.connectivity == 26)
            holes = sitk.GetArrayViewFromImage(filled).astype(bool) & ~mask
            # Only background becomes the class: a hole filled with another class is that class.
            out[holes & (out == 0)] = lab
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(labels)
    return result
