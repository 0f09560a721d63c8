"""Unsupervised K-class segmentation: Gaussian intensity classes with a Potts MRF prior.

Intensity classes are a Gaussian mixture fitted by EM, initialised from multi-Otsu; the MAP
labelling under a Potts prior (weight beta, inversely proportional to the voxel distance in
mm) is found by an exact min cut for two classes, alpha-expansion for more, or ICM.
Uncertainty is the normalised entropy of the mean-field marginals of the same energy.
:func:`potts_mrf_segmentation` is the ``mrf`` method; ``crf`` (see :mod:`.crf`) is the same
model with contrast-sensitive pairwise weights.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ...core.classes import TISSUE, Terminology, generic_classes
from ...core.errors import InputError
from ...core.result import MethodOutput
from ...uncertainty.entropy import entropy_by_slab, probabilities_image, uncertainty_image
from ..registry import MethodRequest
from .banded import MODES, check_full_solve_fits, solve_potts_grid
from .energy import contrast_sigma, import_maxflow
from .otsu import otsu_thresholds

MAX_UNARY = 50.0


def gaussian_em(
    values: np.ndarray, n_classes: int, thresholds: Sequence[float], *, iterations: int = 20, max_samples: int = 500_000,
    seed: int = 0,
) -> Dict[str, list]:
    """Fit a K-component 1D Gaussian mixture by EM, starting from a thresholded split.

    Parameters
    ----------
    values : ndarray (N,)
    thresholds : K-1 ascending thresholds (e.g. multi-Otsu) giving the initial classes.
    iterations : int
        EM iterations (stops early when the log-likelihood gain is below 1e-6 per sample).
    max_samples : int
        EM runs on a fixed random subsample of this size (it estimates 3K numbers).

    Returns
    -------
    dict with "mean", "std", "weight" (lists of K, ascending means) and "iterations".
    """
    v = np.asarray(values).reshape(-1)
    if v.size > max_samples:  # the sample first, then float64: no float64 copy of a whole volume
        v = np.random.default_rng(seed).choice(v, max_samples, replace=False)
    v = v.astype(np.float64)
    lab = np.digitize(v, np.asarray(thresholds), right=True)
    floor = 1e-3 * (float(v.std()) or 1.0)
    mu = np.array([v[lab == k].mean() if np.any(lab == k) else v.mean() for k in range(n_classes)])
    sd = np.array([max(v[lab == k].std(), floor) if np.any(lab == k) else v.std() for k in range(n_classes)])
    pi = np.array([max(np.mean(lab == k), 1e-6) for k in range(n_classes)])
    last = -np.inf
    it = 0
    for it in range(1, iterations + 1):
        logp = -0.5 * ((v[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(pi)
        m = logp.max(axis=1, keepdims=True)
        p = np.exp(logp - m)
        s = p.sum(axis=1, keepdims=True)
        ll = float(np.mean(np.log(s) + m))
        r = p / s
        nk = r.sum(axis=0) + 1e-12
        mu = (r * v[:, None]).sum(axis=0) / nk
        sd = np.maximum(np.sqrt((r * (v[:, None] - mu) ** 2).sum(axis=0) / nk), floor)
        pi = np.maximum(nk / v.size, 1e-6)
        if ll - last < 1e-6:
            break
        last = ll
    order = np.argsort(mu)
    return {"mean": mu[order].tolist(), "std": sd[order].tolist(), "weight": pi[order].tolist(), "iterations": it}


def gaussian_unary(fit: Dict[str, list], prior_bias: Optional[Sequence[float]] = None):
    """Unary costs -log(pi_k N(I; mu_k, sd_k)) - bias_k, shifted to a zero minimum per voxel."""
    mu, sd, pi = (np.asarray(fit[k], dtype=np.float64) for k in ("mean", "std", "weight"))
    bias = np.zeros_like(mu) if prior_bias is None else np.asarray(prior_bias, dtype=np.float64)
    const = np.log(sd) - np.log(pi) - bias

    def unary(values, _index=None):
        c = 0.5 * ((values[:, None].astype(np.float64) - mu) / sd) ** 2 + const
        c -= c.min(axis=1, keepdims=True)
        return np.minimum(c, MAX_UNARY).astype(np.float32)

    return unary


def parse_bias(prior_bias, n_classes: int) -> Optional[Tuple[float, ...]]:
    """"" -> None; "0,0.5,0" or a sequence -> K floats (nats added to each class's log-prior)."""
    if prior_bias is None or (isinstance(prior_bias, str) and not prior_bias.strip()):
        return None
    try:
        vals = tuple(float(x) for x in (prior_bias.split(",") if isinstance(prior_bias, str) else prior_bias))
    except ValueError:
        raise InputError(f"prior_bias must be {n_classes} comma-separated numbers, got '{prior_bias}'") from None
    if len(vals) != n_classes:
        raise InputError(f"prior_bias needs {n_classes} values (one per class), got {len(vals)}")
    return vals


def _segment(
    image: sitk.Image, *, n_classes: int, weight: float, sigma: Optional[float], solver: str, prior_bias, bins: int,
    em_iterations: int, mode: str, coarse_voxels: int, band_width: int, mf_iterations: int, max_memory_gb: float,
    progress, prefix: str, params: dict, keep_probabilities: bool = True,
) -> MethodOutput:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the MRF/CRF methods need a 3D scalar image")
    if n_classes < 2:
        raise InputError(f"n_classes must be at least 2, got {n_classes}")
    if weight < 0:
        raise InputError(f"the pairwise weight must not be negative, got {weight}")
    if solver not in ("graphcut", "icm"):
        raise InputError(f"solver must be 'graphcut' or 'icm', got '{solver}'")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if solver == "graphcut":
        import_maxflow()
    bias = parse_bias(prior_bias, n_classes)
    check_full_solve_fits(int(np.prod(image.GetSize())), n_classes, mode=mode, solver=solver, max_memory_gb=max_memory_gb)
    if progress is not None:
        progress.update(0.02, "multi-Otsu initialisation and EM")
    work = sitk.Cast(image, sitk.sitkFloat32)
    thresholds = otsu_thresholds(work, n_classes, bins)
    arr = sitk.GetArrayFromImage(work)
    fit = gaussian_em(arr.reshape(-1), n_classes, thresholds, iterations=em_iterations)
    sig = None
    if sigma is not None:
        sig = float(sigma) if sigma > 0 else contrast_sigma(arr)
    labels, marg, info = solve_potts_grid(
        arr, image.GetSpacing()[::-1], gaussian_unary(fit, bias), n_classes, weight=weight, sigma=sig, solver=solver,
        mode=mode, coarse_voxels=coarse_voxels, band_width=band_width, mf_iterations=mf_iterations,
        max_memory_gb=max_memory_gb, progress=None if progress is None else progress.sub(0.1, 1.0),
    )
    label_img = sitk.GetImageFromArray(labels)
    label_img.CopyInformation(image)
    prob_img = unc = None
    if marg is not None:
        unc = uncertainty_image(entropy_by_slab(marg), image)
        prob_img = probabilities_image(marg, image) if keep_probabilities else None
        marg = None
    tissue = Terminology(category=TISSUE, type=TISSUE)
    extra = {"otsu_thresholds": thresholds, "mixture": fit, "solve": info}
    if sig is not None:
        extra["sigma_used"] = sig
    return MethodOutput(
        labels=label_img,
        classes=generic_classes(range(1, n_classes), prefix=prefix, terminology=tissue),
        probabilities=prob_img,
        uncertainty=unc,
        parameters=params,
        extra=extra,
    )


def potts_mrf_segmentation(
    image: sitk.Image,
    *,
    n_classes: int = 2,
    beta: float = 1.0,
    solver: str = "graphcut",
    prior_bias: str = "",
    bins: int = 128,
    em_iterations: int = 5,
    mode: str = "auto",
    coarse_voxels: int = 1_000_000,
    band_width: int = -1,
    mf_iterations: int = 10,
    max_memory_gb: float = 0.0,
    progress=None,
    keep_probabilities: bool = True,
) -> MethodOutput:
    """Segment a 3D volume into ``n_classes`` Gaussian intensity classes under a Potts prior.

    Parameters
    ----------
    image : sitk.Image
        3D scalar volume.
    n_classes : int, default 2
        K; labels 0..K-1 by ascending class mean (0, the darkest, is background).
    beta : float, default 1.0
        Potts weight (nats) of a 6-neighbour at the smallest spacing; a neighbour at distance
        d mm weighs beta * min(spacing) / d.
    solver : "graphcut" (exact for K = 2, alpha-expansion for K > 2) or "icm"
    prior_bias : str, default ""
        Optional K comma-separated numbers (nats) added to each class's log-prior.
    bins : int, default 128
        Histogram bins of the multi-Otsu initialisation.
    em_iterations : int, default 5
        EM iterations from the multi-Otsu split. Few on purpose: tissue intensities are not
        Gaussian, and long EM runs drift to fits that merge classes (measured on CT, see
        docs/benchmarks/classical.md).
    mode : "auto", "full" or "banded"
        Banded is coarse-to-fine; auto is banded above 2 million voxels.
    coarse_voxels, band_width, mf_iterations, max_memory_gb
        See :func:`~.banded.solve_potts_grid`.
    progress : Progress or None
    keep_probabilities : bool, default True
        Return the marginals as well as their entropy (K float32 values a voxel).

    Returns
    -------
    MethodOutput
        labels (UInt8, 0..K-1), probabilities (mean-field marginals, K components, or None),
        uncertainty (their normalised entropy), extra: thresholds, fitted mixture, solve info.

    Notes
    -----
    E(L) = sum_i -log(pi_L_i N(I_i; mu_L_i, sd_L_i)) + sum_(i,j) beta * s_min / d_ij [L_i != L_j].
    The mixture is fitted by EM from the multi-Otsu split; the MAP labelling is exact for two
    classes (Greig, Porteous and Seheult 1989) and within a factor 2 of the optimum by
    alpha-expansion for more (Boykov, Veksler and Zabih 2001).

    Examples
    --------
    >>> out = potts_mrf_segmentation(sitk.ReadImage("ct.nii.gz"), n_classes=4, beta=1.0)
    """
    params = dict(n_classes=n_classes, beta=beta, solver=solver, prior_bias=prior_bias, bins=bins,
                  em_iterations=em_iterations, mode=mode, coarse_voxels=coarse_voxels, band_width=band_width,
                  mf_iterations=mf_iterations, max_memory_gb=max_memory_gb)
    return _segment(
        image, n_classes=n_classes, weight=beta, sigma=None, solver=solver, prior_bias=prior_bias, bins=bins,
        em_iterations=em_iterations, mode=mode, coarse_voxels=coarse_voxels, band_width=band_width,
        mf_iterations=mf_iterations, max_memory_gb=max_memory_gb, progress=progress, prefix="MRF class",
        params=params, keep_probabilities=keep_probabilities,
    )


def run(request: MethodRequest) -> MethodOutput:
    """Registry adapter: Potts MRF on channel 0."""
    return potts_mrf_segmentation(
        request.channels[0], progress=request.progress, keep_probabilities=request.keep_probabilities, **request.params
    )
