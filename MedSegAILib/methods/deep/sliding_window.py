"""Sliding-window inference with Gaussian (or constant) blending over NumPy arrays.

MONAI's ``sliding_window_inference`` is what the torch runtime of MedSegAI's own models uses;
it takes and returns torch tensors, so it cannot serve the ONNX Runtime path (imported MONAI
bundles use this one with either runtime), whose point is to run a shipped model without
importing torch (1.5 s) and MONAI (2.2 s more) in every fresh process. This is the same scheme
written over arrays: windows of the plan's patch size overlapping by ``overlap``, the last one
flush with the far edge, a volume smaller than a patch padded with zeros (centred), and every
window's logits weighted by a Gaussian (sigma = 1/8 of the patch along each axis, floor 1e-3)
so that window centres count more than their edges.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, List, Sequence, Tuple

import numpy as np

Window = Tuple[slice, slice, slice]


def gaussian_importance(patch_zyx: Sequence[int], sigma_scale: float = 0.125, floor: float = 1e-3) -> np.ndarray:
    """Blending weights of one window, (Z, Y, X) float32: a Gaussian centred on the window
    (peak near 1), held at ``floor`` or above. The floor matters: towards a window's corners the
    Gaussian falls below 1e-9, and two windows meeting there are then blended equally, as
    MONAI's torch runtime does; the model's validation figures were measured that way."""
    w = np.ones((), dtype=np.float64)
    for n in patch_zyx:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        w = np.multiply.outer(w, np.exp(-0.5 * (x / max(sigma_scale * n, 1e-6)) ** 2))
    return np.maximum(w, max(float(w.min()), floor)).astype(np.float32)


def window_starts(size: int, patch: int, overlap: float) -> List[int]:
    """Start indices along one axis: step ``patch * (1 - overlap)``, the last window ends at ``size``."""
    if size <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    n = math.ceil((size - patch) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(n)})


def windows(shape_zyx: Sequence[int], patch_zyx: Sequence[int], overlap: float) -> List[Window]:
    """Every window of a (padded) volume of ``shape_zyx``."""
    starts = [window_starts(s, p, overlap) for s, p in zip(shape_zyx, patch_zyx)]
    return [
        (slice(z, z + patch_zyx[0]), slice(y, y + patch_zyx[1]), slice(x, x + patch_zyx[2]))
        for z in starts[0]
        for y in starts[1]
        for x in starts[2]
    ]


def _batches(items: List[Window], size: int) -> Iterator[List[Window]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def sliding_window_logits(
    forward: Callable[[np.ndarray], np.ndarray],
    arr: np.ndarray,
    patch_zyx: Sequence[int],
    *,
    overlap: float = 0.25,
    batch: int = 4,
    weight: np.ndarray = None,
) -> np.ndarray:
    """Blended logits (K, Z, Y, X) float32 of ``forward`` over ``arr`` (C, Z, Y, X).

    ``forward`` maps a batch of patches (B, C, *patch_zyx) float32 to logits (B, K, *patch_zyx).
    ``weight``: each window's blending weights (*patch_zyx); default :func:`gaussian_importance`
    (MONAI's "gaussian" mode; ones give its "constant" mode). The axes only need to agree with
    ``patch_zyx`` and the network: a MONAI bundle's (C, x, y, z) arrays work the same way.
    """
    patch = [int(p) for p in patch_zyx]
    shape = arr.shape[1:]
    pad = [(max(0, p - s) // 2, max(0, p - s) - max(0, p - s) // 2) for s, p in zip(shape, patch)]
    x = np.pad(arr, [(0, 0)] + pad) if any(sum(p) for p in pad) else arr
    weight = gaussian_importance(patch) if weight is None else np.asarray(weight, dtype=np.float32)
    out = None
    norm = np.zeros(x.shape[1:], dtype=np.float32)
    for group in _batches(windows(x.shape[1:], patch, overlap), batch):
        logits = forward(np.ascontiguousarray(np.stack([x[(slice(None),) + w] for w in group]), dtype=np.float32))
        if out is None:
            out = np.zeros((logits.shape[1],) + x.shape[1:], dtype=np.float32)
        for w, lg in zip(group, logits):
            out[(slice(None),) + w] += lg * weight
            norm[w] += weight
    out /= norm
    crop = tuple(slice(b, b + s) for (b, _), s in zip(pad, shape))
    return out[(slice(None),) + crop]
