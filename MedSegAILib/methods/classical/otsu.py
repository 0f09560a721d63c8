"""Otsu and multi-Otsu thresholding with a Gaussian-mixture posterior for uncertainty.

Thresholds come from SimpleITK's Otsu filters, so they equal SimpleITK's to the bit. Class k
(0..K-1) holds voxels above k thresholds; class 0 (darkest) is background. Uncertainty: a
Gaussian is fitted to each Otsu class (mean, variance, weight = voxel fraction) and the
per-voxel posterior of that mixture gives the normalised entropy: high where intensities of
neighbouring classes overlap, low deep inside a class.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import SimpleITK as sitk

from ...core.classes import TISSUE, Terminology, generic_classes
from ...core.errors import InputError
from ...core.memory import require_memory
from ...core.result import MethodOutput
from ...uncertainty.entropy import entropy_image, probabilities_image
from ..registry import MethodRequest


def otsu_thresholds(image: sitk.Image, n_classes: int = 2, bins: int = 128) -> List[float]:
    """Otsu thresholds of ``image`` (SimpleITK's): one for 2 classes, K-1 for K classes."""
    if n_classes < 2:
        raise InputError(f"n_classes must be at least 2, got {n_classes}")
    if bins < n_classes * 2:
        raise InputError(f"bins must be at least {2 * n_classes} for {n_classes} classes, got {bins}")
    if n_classes == 2:
        f = sitk.OtsuThresholdImageFilter()
        f.SetNumberOfHistogramBins(bins)
        f.Execute(image)
        return [float(f.GetThreshold())]
    f = sitk.OtsuMultipleThresholdsImageFilter()
    f.SetNumberOfThresholds(n_classes - 1)
    f.SetNumberOfHistogramBins(bins)
    f.Execute(image)
    return [float(t) for t in f.GetThresholds()]


def gaussian_mixture_posterior(values: np.ndarray, labels: np.ndarray, n_classes: int) -> Tuple[np.ndarray, dict]:
    """Posterior P(class | intensity) of a Gaussian mixture fitted to a hard labelling.

    Parameters
    ----------
    values : ndarray (N,) float
    labels : ndarray (N,) int in [0, n_classes)

    Returns
    -------
    posterior : ndarray (N, n_classes) float32
    fit : dict with per-class "mean", "std", "weight"
    """
    means, stds, weights = [], [], []
    global_std = float(values.std()) or 1.0
    for k in range(n_classes):
        v = values[labels == k]
        if v.size == 0:
            means.append(float(values.mean()))
            stds.append(global_std)
            weights.append(1e-6)
            continue
        means.append(float(v.mean()))
        # A floor on the std keeps a near-constant class (e.g. zero-padded air) from collapsing.
        stds.append(max(float(v.std()), 1e-3 * global_std))
        weights.append(v.size / values.size)
    m, s, w = (np.asarray(x, dtype=np.float64) for x in (means, stds, weights))
    logp = -0.5 * ((values[:, None] - m) / s) ** 2 - np.log(s) + np.log(w)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32), {"mean": means, "std": stds, "weight": weights}


def otsu_segmentation(image: sitk.Image, *, n_classes: int = 2, bins: int = 128, smoothing_mm: float = 0.0) -> MethodOutput:
    """Segment a 3D volume into ``n_classes`` intensity classes by (multi-)Otsu thresholding.

    Parameters
    ----------
    image : sitk.Image
        3D scalar volume.
    n_classes : int, default 2
        Number of intensity classes K (>= 2); labels 1..K-1 are objects, 0 is the darkest class.
    bins : int, default 128
        Histogram bins for Otsu (as SimpleITK).
    smoothing_mm : float, default 0
        Gaussian smoothing sigma in mm before thresholding (0 = none); reduces speckle.

    Returns
    -------
    MethodOutput with labels (UInt8), probabilities (K components) and classes "Otsu class k".

    Examples
    --------
    >>> out = otsu_segmentation(sitk.ReadImage("hippocampus_001.nii.gz"), n_classes=3)
    """
    n = int(np.prod(image.GetSize()))
    # float32 copy, float64 values, labels, and the mixture posterior's (N, K) float64 temporaries.
    require_memory(n * (4 + 8 + 1 + 3 * 8 * n_classes + 4 * n_classes), f"Otsu with {n_classes} classes on {n:,} voxels")
    work = sitk.Cast(image, sitk.sitkFloat32)
    if smoothing_mm > 0:
        work = sitk.SmoothingRecursiveGaussian(work, float(smoothing_mm))
    thresholds = otsu_thresholds(work, n_classes, bins)
    arr = sitk.GetArrayViewFromImage(work)
    labels = np.digitize(arr, np.asarray(thresholds), right=True).astype(np.uint8)
    post, fit = gaussian_mixture_posterior(arr.ravel().astype(np.float64), labels.ravel(), n_classes)
    prob_img = probabilities_image(post.reshape(arr.shape + (n_classes,)), image)
    label_img = sitk.GetImageFromArray(labels)
    label_img.CopyInformation(image)
    tissue = Terminology(category=TISSUE, type=TISSUE)
    return MethodOutput(
        labels=label_img,
        classes=generic_classes(range(1, n_classes), prefix="Otsu class", terminology=tissue),
        probabilities=prob_img,
        uncertainty=entropy_image(prob_img),
        parameters={"n_classes": n_classes, "bins": bins, "smoothing_mm": smoothing_mm},
        extra={"thresholds": thresholds, "mixture": fit},
    )


def run(request: MethodRequest) -> MethodOutput:
    """Registry adapter: Otsu on channel 0."""
    request.progress.update(0.1, "Otsu thresholds")
    out = otsu_segmentation(request.channels[0], **request.params)
    request.progress.update(1.0, "Otsu done")
    return out
