"""Uncertainty from class posteriors: normalised predictive entropy and friends."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def normalized_entropy(prob: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Shannon entropy of a categorical distribution divided by log(K), in [0, 1].

    Parameters
    ----------
    prob : ndarray, (..., K) by default
        Probabilities along ``axis`` (need not be exactly normalised; they are renormalised).
    """
    p = np.clip(prob, 0.0, None)
    k = p.shape[axis]
    if k < 2:
        return np.zeros(np.delete(p.shape, axis if axis >= 0 else p.ndim + axis), dtype=np.float32)
    p = p / np.maximum(p.sum(axis=axis, keepdims=True), eps)
    h = -np.sum(p * np.log(np.maximum(p, eps)), axis=axis)
    return (h / np.log(k)).astype(np.float32)


def entropy_image(probabilities: sitk.Image) -> sitk.Image:
    """Normalised entropy (Float32, [0, 1]) of a vector image of class posteriors, same grid."""
    arr = sitk.GetArrayViewFromImage(probabilities)  # (z, y, x, K)
    out = sitk.GetImageFromArray(normalized_entropy(arr, axis=-1))
    out.CopyInformation(probabilities)
    return out


def probabilities_image(prob: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x, K) float array of posteriors as a Float32 vector image on ``reference``'s grid."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(prob, dtype=np.float32), isVector=True)
    img.CopyInformation(reference)
    return img
