"""Two optional unary terms of the seeded graph cut that come from outside the seeds.

- **Prior**: per-voxel label probabilities from elsewhere (a deep model's posterior, an atlas),
  added as ``prior_weight * -log p``. The cut then starts from the model's answer and the
  strokes correct it; seeds stay hard constraints.
- **Stability**: the previous update's labels, kept unless a stroke is near. A voxel that
  changes label pays ``stability * (1 - exp(-d / stability_mm))`` nats, d the distance (mm)
  to the nearest seed that changed since that update: a new stroke rewrites its
  surroundings freely, and the rest of the result, which the user has already looked at,
  changes only where the image and seeds argue for it strongly. Without it a stroke that
  shifts an intensity model can move the whole boundary, and a correct stroke can make the
  result worse (18 % of the corrective rounds on the hippocampus before it).

Both return costs on a solve level's grid (full resolution, or the coarse grid of a banded
solve, reduced by the same block factors the solver uses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...core.errors import InputError
from ...io.images import same_grid
from .banded import block_mean, block_seeds

#: Probabilities are floored here before the log, so one confident zero costs at most
#: ``prior_weight * 9.2`` nats.
PRIOR_FLOOR = 1e-4


@dataclass
class PreviousCut:
    """The labels of the previous update and the seeds it had.

    Attributes
    ----------
    labels : ndarray (z, y, x) uint8
        Its labels: 0 background, 1..K-1 the objects in ascending seed value.
    seeds : ndarray (z, y, x)
        The seed labelmap it was solved with, as painted (0 unpainted).
    objects : tuple of int
        The object seed values of ``labels`` 1..K-1; a cut with other objects ignores it.
    uncertainty : ndarray (z, y, x) float32 or None
        Its uncertainty; with it, a large volume's update can re-solve a box around the
        changed seeds only (:func:`local_region`) and keep the rest.
    """

    labels: np.ndarray
    seeds: np.ndarray
    objects: Tuple[int, ...]
    uncertainty: Optional[np.ndarray] = None

    def fits(self, seeds: np.ndarray, objects: Sequence[int]) -> bool:
        """Whether it belongs to a cut of ``seeds`` (same grid) with the same object labels."""
        return self.labels.shape == seeds.shape and self.seeds.shape == seeds.shape and tuple(self.objects) == tuple(objects)

    def crop(self, box: Tuple[slice, slice, slice]) -> "PreviousCut":
        return PreviousCut(self.labels[box], self.seeds[box], self.objects, None if self.uncertainty is None else self.uncertainty[box])


def check_prior(prior: sitk.Image, image: sitk.Image, n_labels: int) -> np.ndarray:
    """The prior as an array (z, y, x, K) float32, after checking it is a K-component image of
    probabilities on ``image``'s grid (component 0 background, then the object seed labels in
    ascending order)."""
    n = prior.GetNumberOfComponentsPerPixel()
    if n != n_labels:
        raise InputError(
            f"the prior has {n} components but the seeds hold {n_labels} labels (background and {n_labels - 1} "
            "object(s)); give one probability per label, background first"
        )
    if not same_grid(prior, image, tol=1e-4 * max(1.0, max(image.GetSpacing()))):
        raise InputError(f"the prior is not on the image grid (size {prior.GetSize()} vs {image.GetSize()}); resample it first")
    arr = sitk.GetArrayFromImage(prior).astype(np.float32, copy=False)
    if arr.ndim == 3:
        arr = arr[..., None]
    if not np.all(np.isfinite(arr)) or arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3:
        raise InputError("the prior must hold probabilities between 0 and 1 (no NaN)")
    return arr


def level_factors(full_shape: Sequence[int], level_shape: Sequence[int], coarse: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """(1, 1, 1) for the full-resolution level, else the banded solve's block factors
    ``coarse``, checked against the level's shape."""
    if tuple(level_shape) == tuple(full_shape):
        return (1, 1, 1)
    expect = tuple(-(-int(n) // int(f)) for n, f in zip(full_shape, coarse))
    if expect != tuple(level_shape):
        raise RuntimeError(f"solve level {tuple(level_shape)} does not match the block factors {coarse} of {tuple(full_shape)}")
    return coarse


def prior_unary(prior: np.ndarray, factors: Sequence[int], weight: float) -> np.ndarray:
    """``weight * -log p`` on the level grid (block-averaged probabilities), relative to the
    best label; (z, y, x, K) float32."""
    p = prior if tuple(factors) == (1, 1, 1) else np.stack([block_mean(prior[..., c], factors) for c in range(prior.shape[-1])], axis=-1)
    cost = -float(weight) * np.log(np.maximum(p, PRIOR_FLOOR))
    cost -= cost.min(axis=-1, keepdims=True)
    return cost.astype(np.float32)


def stability_weight(
    previous: PreviousCut, seeds: np.ndarray, objects: Sequence[int], factors: Sequence[int], level_spacing_zyx: Sequence[float], *,
    stability: float, stability_mm: float,
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """What leaving the previous labels costs, on the level grid: (weight (z, y, x) float32,
    nats a voxel pays to leave its label; labels (z, y, x) int16, the previous labels there,
    each block's most frequent on a coarse level), or None when the previous cut does not fit
    (another grid or other object labels).

    ``seeds`` is this update's seed labelmap as painted, ``objects`` its object seed values."""
    n_labels = len(objects) + 1
    if not previous.fits(seeds, objects):
        return None
    changed = (previous.seeds != seeds).astype(np.uint8)
    labels = previous.labels.astype(np.int16)
    if tuple(factors) != (1, 1, 1):
        labels = block_seeds(labels, factors, n_labels)
        changed = (block_mean(changed, factors) > 0).astype(np.uint8)
    if changed.any() and stability_mm > 0:
        distance = ndimage.distance_transform_edt(changed == 0, sampling=level_spacing_zyx)
        w = (float(stability) * -np.expm1(-distance / float(stability_mm))).astype(np.float32)
    else:
        w = np.full(labels.shape, stability, np.float32)
    return w, labels


def stability_cost(weight: np.ndarray, labels: np.ndarray, n_labels: int) -> np.ndarray:
    """(..., K) float32: ``weight`` for every label but the voxel's own previous one (0)."""
    cost = np.repeat(weight[..., None], n_labels, axis=-1)
    flat = cost.reshape(-1, n_labels)
    flat[np.arange(flat.shape[0]), labels.reshape(-1).astype(np.intp)] = 0.0
    return cost


def local_region(previous: PreviousCut, seeds: np.ndarray, spacing_zyx: Sequence[float], margin_mm: float) -> Optional[Tuple[slice, slice, slice]]:
    """The box (z, y, x slices) holding every seed that changed since ``previous``, grown by
    ``margin_mm`` on each side and clipped to the volume; None when no seed changed."""
    changed = previous.seeds != seeds
    box = []
    for axis in range(3):
        hit = np.flatnonzero(changed.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return grow_box(tuple(box), [int(np.ceil(float(margin_mm) / float(step))) for step in spacing_zyx], seeds.shape)


def grow_box(box: Tuple[slice, slice, slice], voxels, shape: Sequence[int]) -> Tuple[slice, slice, slice]:
    """``box`` grown by ``voxels`` (one count, or one per axis) on each side, clipped to ``shape``."""
    grow = [int(voxels)] * 3 if np.isscalar(voxels) else [int(v) for v in voxels]
    return tuple(slice(max(b.start - g, 0), min(b.stop + g, int(n))) for b, g, n in zip(box, grow, shape))


def hold_outside(index: np.ndarray, labels: np.ndarray, box: Tuple[slice, slice, slice]) -> np.ndarray:
    """Seeds that hold the previous ``labels`` outside ``box``: a copy of the seed index
    (-1 unseeded) whose unseeded voxels outside the box take the previous label. ``box`` is
    relative to the arrays given."""
    out = np.where(index < 0, labels.astype(index.dtype), index)
    out[box] = index[box]
    return out
