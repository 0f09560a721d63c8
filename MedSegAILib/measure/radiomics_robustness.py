"""How much a region's radiomic features move when its boundary moves by one voxel.

A segmentation error becomes a feature error. :func:`feature_robustness` recomputes every
feature of :func:`.radiomics.compute_radiomics` on the region eroded and dilated by one voxel
(a 3x3x3 ball, on the image grid) and reports, per feature, the relative change
``|f(perturbed) - f| / |f|`` and whether the larger of the two exceeds a threshold.

:func:`first_order_check` tests the first-order relation on the same perturbations: when a
fraction ``e`` of a mask is tissue outside the object, its mean shifts by ``e`` times the
difference between that tissue's mean and the object's. The tissue outside is estimated by a
ring around the region (``ring_voxels`` thick), so the prediction can be checked against the
shift measured on the dilated mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from .radiomics import FEATURE_CLASSES, compute_radiomics, only_label


@dataclass
class FeatureChange:
    """One feature on the region, its eroded and its dilated version; relative changes are
    fractions of ``|value|`` (inf when the value is 0 and the perturbed one is not)."""

    name: str
    value: float
    eroded: float
    dilated: float
    change_eroded: float
    change_dilated: float
    flagged: bool

    @property
    def worst(self) -> float:
        return max(self.change_eroded, self.change_dilated)


def _relative(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf if a != b else 0.0
    if a == b:
        return 0.0
    return abs(b - a) / abs(a) if a != 0 else math.inf


def region_mask(labels: sitk.Image, label: int) -> sitk.Image:
    """The binary mask (UInt8) of one label."""
    return sitk.Cast(labels == int(label), sitk.sitkUInt8)


def perturbed_masks(mask: sitk.Image, voxels: int = 1) -> Dict[str, sitk.Image]:
    """The mask eroded and dilated by ``voxels`` (ball kernel), on its own grid."""
    radius = [int(voxels)] * 3
    eroded = sitk.BinaryErode(mask, radius, sitk.sitkBall, 0, 1)
    dilated = sitk.BinaryDilate(mask, radius, sitk.sitkBall, 0, 1)
    return {"eroded": eroded, "dilated": dilated}


def feature_robustness(
    image: sitk.Image,
    labels: sitk.Image,
    label: Optional[int] = None,
    *,
    bin_width: float = 25.0,
    features: Iterable[str] = FEATURE_CLASSES,
    voxel_array_shift: float = 0.0,
    threshold: float = 0.1,
) -> List[FeatureChange]:
    """Every feature of one region, eroded and dilated by one voxel, with its relative change.

    ``labels`` must be on ``image``'s grid (as :func:`.radiomics.compute_radiomics` resamples
    otherwise, the caller should do so first). ``threshold``: a relative change above it flags
    the feature (default 0.1, 10 %). Raises InputError when the eroded region is empty (a
    region one or two voxels thick has no robustness to report).
    """
    from ..io.images import same_grid

    if not same_grid(image, labels):
        labels = sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    label = only_label(sitk.GetArrayViewFromImage(labels)) if label is None else int(label)
    mask = region_mask(labels, label)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise InputError(f"label {label} is not present in the labelmap (on the image's grid)")
    kw = dict(bin_width=bin_width, features=tuple(features), voxel_array_shift=voxel_array_shift)
    base = compute_radiomics(image, mask, 1, **kw)
    moved = {}
    for name, m in perturbed_masks(mask).items():
        if not sitk.GetArrayViewFromImage(m).any():
            raise InputError(f"label {label} is too thin to erode by one voxel; its features cannot be tested for robustness")
        moved[name] = compute_radiomics(image, m, 1, **kw)
    rows = []
    for name, v in base.items():
        e, d = moved["eroded"].get(name, math.nan), moved["dilated"].get(name, math.nan)
        ce, cd = _relative(v, e), _relative(v, d)
        rows.append(FeatureChange(name, v, e, d, ce, cd, max(ce, cd) > threshold))
    return rows


def first_order_check(image: sitk.Image, labels: sitk.Image, label: int, *, ring_voxels: int = 2) -> dict:
    """The first-order relation on one region: the mean's shift measured on the mask dilated by
    one voxel, against ``e * (mean of the ring around the region - mean of the region)``,
    with ``e`` the fraction of the dilated mask that lies outside the region and the ring the
    ``ring_voxels`` voxels around it."""
    mask = region_mask(labels, label)
    arr = sitk.GetArrayViewFromImage(image).astype(np.float64)
    m = sitk.GetArrayViewFromImage(mask) > 0
    dil = sitk.GetArrayFromImage(perturbed_masks(mask)["dilated"]) > 0  # a copy: the image is a temporary
    ring = (sitk.GetArrayFromImage(sitk.BinaryDilate(mask, [int(ring_voxels)] * 3, sitk.sitkBall, 0, 1)) > 0) & ~m
    e = float((dil & ~m).sum() / dil.sum())
    mean_obj, mean_ring = float(arr[m].mean()), float(arr[ring].mean())
    measured = float(arr[dil].mean() - mean_obj)
    predicted = e * (mean_ring - mean_obj)
    return {"label": int(label), "voxels": int(m.sum()), "outside_fraction": e, "object_mean": mean_obj, "ring_mean": mean_ring,
            "measured_shift": measured, "predicted_shift": predicted,
            "prediction_error_fraction": abs(measured - predicted) / abs(measured) if measured else 0.0}
