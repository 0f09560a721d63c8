"""Otsu and multi-Otsu thresholding with a Gaussian-mixture posterior for uncertainty.

Thresholds come from SimpleITK's Otsu filters, so they equal SimpleITK's to the bit. Class k
(0..K-1) holds voxels above k thresholds; class 0 (darkest) is background. Uncertainty: a
Gaussian is fitted to each Otsu class (mean, variance, weight = voxel fraction) and the
per-voxel posterior of that mixture gives the normalised entropy: high where intensities of
neighbouring classes overlap, low deep inside a class.
"""

from __future__ import annotations

from typing import List

import numpy as np
import SimpleITK as sitk

from ...core.classes import TISSUE, Terminology, generic_classes
from ...core.errors import InputError
from ...core.memory import require_memory
from ...core.slabs import SLAB_VOXELS, for_each_slab, worker_count
from ...core.result import MethodOutput
from ...uncertainty.entropy import normalized_entropy, probabilities_image, uncertainty_image
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


def mixture_posterior(values: np.ndarray, fit: dict) -> np.ndarray:
    """Posterior P(class | intensity) under the Gaussian mixture ``fit`` ("mean", "std",
    "weight" per class), computed in float64.

    Parameters
    ----------
    values : ndarray (N,)

    Returns
    -------
    posterior : ndarray (N, K) float32, rows sum to 1
    """
    m, s, w = (np.asarray(fit[k], dtype=np.float64) for k in ("mean", "std", "weight"))
    logp = -0.5 * ((np.asarray(values, dtype=np.float64)[:, None] - m) / s) ** 2 - np.log(s) + np.log(w)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def fit_mixture(image: sitk.Image, labels: sitk.Image, n_classes: int) -> dict:
    """One Gaussian per class of a hard labelling: mean, (population) standard deviation and
    weight (voxel fraction), from SimpleITK's image and label statistics (two multi-threaded
    passes).

    A class with no voxels gets the image's mean and standard deviation and weight 1e-6; a
    floor of 1e-3 of the image's standard deviation keeps a near-constant class (zero-padded
    air) from collapsing.
    """
    total = sitk.StatisticsImageFilter()
    total.Execute(image)
    n = int(np.prod(image.GetSize()))
    global_std = float(np.sqrt(total.GetVariance() * (n - 1) / n)) or 1.0
    stats = sitk.LabelStatisticsImageFilter()
    stats.SetUseHistograms(False)  # no medians: a third of the time
    stats.Execute(image, labels)
    means, stds, weights = [], [], []
    for k in range(n_classes):
        count = int(stats.GetCount(k)) if stats.HasLabel(k) else 0
        if count == 0:
            means.append(float(total.GetMean()))
            stds.append(global_std)
            weights.append(1e-6)
            continue
        means.append(float(stats.GetMean(k)))
        variance = float(stats.GetVariance(k)) * (count - 1) / count if count > 1 else 0.0
        stds.append(max(float(np.sqrt(max(variance, 0.0))), 1e-3 * global_std))
        weights.append(count / n)
    return {"mean": means, "std": stds, "weight": weights}


def otsu_segmentation(
    image: sitk.Image, *, n_classes: int = 2, bins: int = 128, smoothing_mm: float = 0.0, keep_probabilities: bool = True
) -> MethodOutput:
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
    keep_probabilities : bool, default True
        Return the (Z, Y, X, K) posteriors; without them only the uncertainty is kept (a
        full-size CT's three-class posteriors are 1.3 GB).

    Returns
    -------
    MethodOutput with labels (UInt8), probabilities (K components, or None), uncertainty
    (normalised entropy of the posteriors) and classes "Otsu class k".

    Notes
    -----
    Labels, posteriors and entropy are computed slab by slab on every CPU
    (:mod:`MedSegAILib.core.slabs`): the memory beside the input is the labels (1 byte a
    voxel), the uncertainty (4) and, when kept, the posteriors (4 K).

    Examples
    --------
    >>> out = otsu_segmentation(sitk.ReadImage("hippocampus_001.nii.gz"), n_classes=3)
    """
    n = int(np.prod(image.GetSize()))
    cast = image.GetPixelID() != sitk.sitkFloat32 or smoothing_mm > 0
    # Beside the input: labels and uncertainty (each with its image), posteriors on request, and
    # each thread's slab temporaries (float64 values and (n, K) log-posteriors, three copies).
    require_memory(
        n * (4 * cast + 2 + 8 + 8 * n_classes * keep_probabilities) + (8 + 24 * n_classes) * SLAB_VOXELS * worker_count(),
        f"Otsu with {n_classes} classes on {n:,} voxels",
    )
    work = sitk.Cast(image, sitk.sitkFloat32) if image.GetPixelID() != sitk.sitkFloat32 else image
    if smoothing_mm > 0:
        work = sitk.SmoothingRecursiveGaussian(work, float(smoothing_mm))
    thresholds = otsu_thresholds(work, n_classes, bins)
    arr = sitk.GetArrayViewFromImage(work)  # ``work`` outlives every use of the view
    plane = arr.shape[1] * arr.shape[2]
    cuts = [np.float64(t) for t in thresholds]
    labels = np.empty(arr.shape, dtype=np.uint8)

    def label_slab(z0, z1):
        # Class = the number of thresholds below the value (np.digitize(..., right=True)).
        out = labels[z0:z1]
        out.fill(0)
        for t in cuts:
            out += arr[z0:z1] > t

    for_each_slab(arr.shape[0], plane, label_slab)
    label_img = sitk.GetImageFromArray(labels)
    label_img.CopyInformation(image)
    labels = None  # the image holds its own copy
    fit = fit_mixture(work, label_img, n_classes)
    uncertainty = np.empty(arr.shape, dtype=np.float32)
    prob = np.empty(arr.shape + (n_classes,), dtype=np.float32) if keep_probabilities else None

    def posterior_slab(z0, z1):
        p = mixture_posterior(arr[z0:z1].reshape(-1), fit)
        uncertainty[z0:z1] = normalized_entropy(p).reshape(arr[z0:z1].shape)
        if prob is not None:
            prob[z0:z1] = p.reshape(arr[z0:z1].shape + (n_classes,))

    for_each_slab(arr.shape[0], plane, posterior_slab)
    unc_img = uncertainty_image(uncertainty, image)
    uncertainty = None
    tissue = Terminology(category=TISSUE, type=TISSUE)
    return MethodOutput(
        labels=label_img,
        classes=generic_classes(range(1, n_classes), prefix="Otsu class", terminology=tissue),
        probabilities=None if prob is None else probabilities_image(prob, image),
        uncertainty=unc_img,
        parameters={"n_classes": n_classes, "bins": bins, "smoothing_mm": smoothing_mm},
        extra={"thresholds": thresholds, "mixture": fit},
    )


def run(request: MethodRequest) -> MethodOutput:
    """Registry adapter: Otsu on channel 0."""
    request.progress.update(0.1, "Otsu thresholds")
    out = otsu_segmentation(request.channels[0], keep_probabilities=request.keep_probabilities, **request.params)
    request.progress.update(1.0, "Otsu done")
    return out
