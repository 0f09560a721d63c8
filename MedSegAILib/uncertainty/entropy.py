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


def entropy_by_slab(prob: np.ndarray) -> np.ndarray:
    """:func:`normalized_entropy` of a (z, y, x, K) array along its last axis, slab by slab
    on every CPU (the temporaries are a slab's, not the volume's); (z, y, x) float32."""
    from ..core.slabs import for_each_slab

    out = np.empty(prob.shape[:-1], dtype=np.float32)

    def slab(z0, z1):
        out[z0:z1] = normalized_entropy(prob[z0:z1], axis=-1)

    for_each_slab(prob.shape[0], int(np.prod(prob.shape[1:])), slab)
    return out


def entropy_image(probabilities: sitk.Image) -> sitk.Image:
    """Normalised entropy (Float32, [0, 1]) of a vector image of class posteriors, same grid."""
    arr = sitk.GetArrayViewFromImage(probabilities)  # (z, y, x, K)
    out = sitk.GetImageFromArray(entropy_by_slab(arr))
    out.CopyInformation(probabilities)
    return out


def probabilities_image(prob: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a (z, y, x, K) float array of posteriors as a Float32 vector image on ``reference``'s grid."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(prob, dtype=np.float32), isVector=True)
    img.CopyInformation(reference)
    return img


#: A run's uncertainty is stored in steps of 2**-16 (error at most 7.6e-6): the 1e-9 left deep
#: inside a class becomes 0, so a full-size CT's uncertainty.nii.gz compresses from 377 MB in
#: 14 s to 12 MB in 1 s (docs/benchmarks/full_size.md), and every reader still gets float32.
UNCERTAINTY_STEP = 2.0**-16


#: Metadata key of an uncertainty image already in steps of UNCERTAINTY_STEP.
QUANTIZED_KEY = "MedSegAI_uncertainty_step"


def quantize_in_place(arr: np.ndarray) -> np.ndarray:
    """Round a float32 array to multiples of :data:`UNCERTAINTY_STEP` in place, slab by slab
    on every CPU; returns it."""
    from ..core.slabs import for_each_slab

    scale = np.float32(1.0 / UNCERTAINTY_STEP)

    def slab(z0, z1):
        part = arr[z0:z1]
        np.multiply(part, scale, out=part)
        np.rint(part, out=part)
        np.divide(part, scale, out=part)

    for_each_slab(arr.shape[0], int(np.prod(arr.shape[1:])), slab)
    return arr


def uncertainty_image(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A (z, y, x) float32 uncertainty array (rounded in place to the stored step) as an image
    on ``reference``'s grid, marked as rounded so that the pipeline does not round it again."""
    img = sitk.GetImageFromArray(quantize_in_place(np.asarray(arr, dtype=np.float32)))
    img.CopyInformation(reference)
    img.SetMetaData(QUANTIZED_KEY, repr(UNCERTAINTY_STEP))
    return img


def quantize_uncertainty(uncertainty: sitk.Image) -> sitk.Image:
    """``uncertainty`` (same grid) in float32 rounded to multiples of :data:`UNCERTAINTY_STEP`;
    an image :func:`uncertainty_image` made is returned as it is."""
    if uncertainty.HasMetaDataKey(QUANTIZED_KEY) and uncertainty.GetPixelID() == sitk.sitkFloat32:
        return uncertainty
    return uncertainty_image(sitk.GetArrayFromImage(uncertainty), uncertainty)
