"""nnU-Net v2's inference preprocessing, reproduced: transpose, crop to the non-zero region,
normalise each channel, resample to the plan's spacing; and the resampling back.

Arrays are (C, z, y, x) as SimpleITK gives them (nnU-Net reads images the same way and ignores
their direction), spacings in the same axis order (mm). The resampling follows nnU-Net's rule:
along all axes with spline order 3 (data) or 1 (probabilities), except when the spacing is
anisotropic (largest over smallest above 3), where each slice across the coarse axis is
resampled in-plane and the coarse axis with order 0 (nearest).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: nnU-Net's anisotropy threshold (largest spacing over smallest).
ANISOTROPY = 3.0
EPS = 1e-8


def read_channels(channels: Sequence[sitk.Image]) -> Tuple[np.ndarray, List[float]]:
    """(C, z, y, x) float32 and the spacing (z, y, x) of the first channel (mm)."""
    data = np.stack([sitk.GetArrayFromImage(c) for c in channels]).astype(np.float32)
    return data, [abs(float(s)) for s in channels[0].GetSpacing()][::-1]


def nonzero_box(data: np.ndarray) -> Tuple[List[Tuple[int, int]], np.ndarray]:
    """Half-open box of the voxels non-zero in any channel (holes filled), and that mask
    (of the whole array); an all-zero image gives the whole array."""
    mask = ndimage.binary_fill_holes(np.any(data != 0, axis=0))
    box = []
    for axis in range(mask.ndim):
        hit = np.nonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        box.append((int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, mask.shape[axis]))
    return box, mask


def normalize(channel: np.ndarray, scheme: str, use_mask: bool, mask: np.ndarray, properties: dict) -> np.ndarray:
    """One channel (float32, in place) by nnU-Net's scheme of that name."""
    if scheme == "ZScoreNormalization":
        if use_mask:
            values = channel[mask]
            channel[mask] = (values - values.mean()) / max(float(values.std()), EPS)
        else:
            channel -= channel.mean()
            channel /= max(float(channel.std()), EPS)
    elif scheme == "CTNormalization":
        np.clip(channel, properties["percentile_00_5"], properties["percentile_99_5"], out=channel)
        channel -= properties["mean"]
        channel /= max(properties["std"], EPS)
    elif scheme == "RescaleTo01Normalization":
        channel -= channel.min()
        channel /= max(float(channel.max()), EPS)
    elif scheme == "RGBTo01Normalization":
        channel /= 255.0
    return channel  # NoNormalization: unchanged


def separate_axis(current: Sequence[float], new: Sequence[float], force: Optional[bool]) -> Optional[int]:
    """The coarse axis resampled on its own (nearest), or None to resample all axes together."""
    def coarse(spacing):
        spacing = np.asarray(spacing, dtype=float)
        if spacing.max() / spacing.min() <= ANISOTROPY:
            return None
        axes = np.nonzero(spacing.max() / spacing == 1)[0]
        return int(axes[0]) if len(axes) == 1 else None

    if force is False:
        return None
    if force is True:
        return int(np.argmax(current))
    axis = coarse(current)
    return axis if axis is not None else coarse(new)


def _resize(x: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """skimage.transform.resize(x, shape, order, mode="edge", anti_aliasing=False) of a float64
    array: a zoom on the voxel-centre grid, clipped to the input's range."""
    out = ndimage.zoom(x, [o / i for i, o in zip(x.shape, shape)], order=order, mode="nearest", grid_mode=True)
    return np.clip(out, x.min(), x.max())


def resample(data: np.ndarray, shape: Sequence[int], current: Sequence[float], new: Sequence[float], order: int, order_z: int, force_separate_z=None) -> np.ndarray:
    """(C, ...) ``data`` to ``shape`` (computed in float64, returned in data's dtype)."""
    shape = [int(s) for s in shape]
    if list(data.shape[1:]) == shape:
        return data
    axis = separate_axis(current, new, force_separate_z)
    out = np.empty((data.shape[0], *shape), dtype=data.dtype)
    for c in range(data.shape[0]):
        x = data[c].astype(np.float64)
        if axis is None:
            out[c] = _resize(x, shape, order)
            continue
        plane = [s for a, s in enumerate(shape) if a != axis]
        slices = [_resize(np.take(x, i, axis=axis), plane, order) for i in range(x.shape[axis])]
        tmp = np.stack(slices, axis=axis)
        if tmp.shape[axis] != shape[axis]:
            coords = np.meshgrid(*[(tmp.shape[d] / shape[d]) * (np.arange(shape[d]) + 0.5) - 0.5 for d in range(3)], indexing="ij")
            tmp = ndimage.map_coordinates(tmp, coords, order=order_z, mode="nearest")
        out[c] = tmp
    return out


def preprocess(channels: Sequence[sitk.Image], conf: dict) -> Tuple[np.ndarray, dict]:
    """The network input (C, z', y', x') float32 and what :func:`restore` needs."""
    data, spacing = read_channels(channels)
    tf = conf["transpose_forward"]
    data = np.ascontiguousarray(data.transpose([0, *[i + 1 for i in tf]]))
    spacing = [spacing[i] for i in tf]
    before = data.shape[1:]
    box, mask = nonzero_box(data)
    crop = tuple(slice(a, b) for a, b in box)
    data = np.ascontiguousarray(data[(slice(None), *crop)])
    mask = mask[crop]
    cropped = data.shape[1:]
    target = conf["spacing"]
    shape = [int(round(s / t * n)) for s, t, n in zip(spacing, target, cropped)]
    for c, norm in enumerate(conf["normalization"]):
        normalize(data[c], norm["scheme"], norm["use_mask"], mask, norm["properties"])
    r = conf["resampling"]["data"]
    data = resample(data, shape, spacing, target, r["order"], r["order_z"], r["force_separate_z"])
    return data, {"shape_before_cropping": list(before), "box": box, "cropped_shape": list(cropped), "spacing": spacing}


def restore(logits: np.ndarray, context: dict, conf: dict) -> Tuple[np.ndarray, np.ndarray]:
    """Logits (K, z', y', x') back on the input array: (labels uint8, probabilities float32
    (K, z, y, x)), background outside the cropped box, axes transposed back."""
    r = conf["resampling"]["probabilities"]
    logits = resample(logits, context["cropped_shape"], conf["spacing"], context["spacing"], r["order"], r["order_z"], r["force_separate_z"])
    labels_crop = np.argmax(logits, axis=0).astype(np.uint8)  # nnU-Net's labels: the argmax of the logits
    z = logits.astype(np.float32)
    z -= z.max(axis=0, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=0, keepdims=True)
    crop = tuple(slice(a, b) for a, b in context["box"])
    labels = np.zeros(context["shape_before_cropping"], dtype=np.uint8)
    labels[crop] = labels_crop
    prob = np.zeros((z.shape[0], *context["shape_before_cropping"]), dtype=np.float32)
    prob[0] = 1.0
    prob[(slice(None), *crop)] = z
    tb = conf["transpose_backward"]
    return np.ascontiguousarray(labels.transpose(tb)), np.ascontiguousarray(prob.transpose([0, *[i + 1 for i in tb]]))
