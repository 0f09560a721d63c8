"""Label fusion: combine the warped label maps of several atlases into one posterior.

Every rule takes the atlases' per-label probability maps on the target grid (vector images,
component 0 background, component i label ``label_values[i-1]``; see
:mod:`.transfer`) and returns a :class:`FusionResult`: the fused labelmap and the fused
posterior, whose normalised entropy is the method's uncertainty.

- :func:`majority_vote_fusion`: each atlas votes its most probable label (SimpleITK ``LabelVoting``).
- :func:`staple_fusion`: SimpleITK ``MultiLabelSTAPLE`` on the atlases' labels; the posterior
  is rebuilt from its estimated confusion matrices.
- :func:`bayesian_fusion`: each atlas is a rater with a sensitivity and specificity per label,
  estimated by EM on the soft maps around the structure.
- :func:`locally_weighted_fusion`: each atlas' vote is weighted per voxel by its local
  intensity agreement with the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...uncertainty.entropy import probabilities_image

FUSION_RULES = ("majority", "staple", "bayesian", "local")


@dataclass
class FusionResult:
    """A fused segmentation.

    Attributes
    ----------
    labels : sitk.Image
        UInt16 labelmap with the original label values, target grid.
    probabilities : sitk.Image
        Float32 vector image, K + 1 components summing to 1 (0 = background).
    extra : dict
        Rule-specific estimates (e.g. rater sensitivities), JSON-serialisable.
    """

    labels: sitk.Image
    probabilities: sitk.Image
    extra: dict = field(default_factory=dict)


def _stack(probabilities: Sequence[sitk.Image]) -> np.ndarray:
    """(A, z, y, x, C) float32 array of A atlases' maps; checks they share one grid and C."""
    if len(probabilities) == 0:
        raise ValueError("probabilities must hold at least one atlas map")
    first = probabilities[0]
    for i, p in enumerate(probabilities[1:], start=1):
        if p.GetSize() != first.GetSize() or p.GetNumberOfComponentsPerPixel() != first.GetNumberOfComponentsPerPixel():
            raise ValueError(f"probabilities[{i}] is not on the grid (or has not the components) of probabilities[0]")
    return np.stack([sitk.GetArrayViewFromImage(p) for p in probabilities]).astype(np.float32, copy=False)


def _result(post: np.ndarray, label_values: Sequence[int], reference: sitk.Image, extra: dict, labels: np.ndarray = None) -> FusionResult:
    post = post / np.maximum(post.sum(axis=-1, keepdims=True), 1e-12)
    lut = np.asarray([0] + list(label_values), dtype=np.uint16)
    if labels is None:
        labels = lut[np.argmax(post, axis=-1)]
    img = sitk.GetImageFromArray(labels.astype(np.uint16))
    img.CopyInformation(reference)
    return FusionResult(img, probabilities_image(post.astype(np.float32), reference), extra)


def _check_labels(label_values: Sequence[int], n_components: int) -> None:
    if len(label_values) + 1 != n_components:
        raise ValueError(f"label_values has {len(label_values)} labels but the maps have {n_components} components (background + labels)")


def majority_vote_fusion(probabilities: Sequence[sitk.Image], label_values: Sequence[int]) -> FusionResult:
    """Majority vote: every atlas votes for its most probable label at each voxel.

    Parameters
    ----------
    probabilities : list of sitk.Image
        Per-atlas probability vector images on the target grid (K + 1 components).
    label_values : sequence of int
        The K object labels, in component order.

    Returns
    -------
    FusionResult
        Posterior = vote fractions. Where two labels tie, the one with the larger summed soft
        probability wins (SimpleITK's ``LabelVoting`` would mark those voxels undecided);
        everywhere else the labels equal ``LabelVoting``'s.
    """
    stack = _stack(probabilities)
    _check_labels(label_values, stack.shape[-1])
    n_atlas, n_comp = stack.shape[0], stack.shape[-1]
    votes = np.zeros(stack.shape[1:], dtype=np.float32)
    hard = np.argmax(stack, axis=-1)
    for c in range(n_comp):
        votes[..., c] = (hard == c).sum(axis=0)
    post = votes / n_atlas
    # Ties: break by the soft sum, a tiny amount so vote fractions stay the posterior.
    soft = stack.mean(axis=0)
    decide = votes + 1e-3 * soft
    lut = np.asarray([0] + list(label_values), dtype=np.uint16)
    labels = lut[np.argmax(decide, axis=-1)]
    top2 = np.sort(votes, axis=-1)[..., -2:]
    ties = int(np.count_nonzero(top2[..., 0] == top2[..., 1]))
    return _result(post, label_values, probabilities[0], {"tied_voxels": ties}, labels)


def staple_fusion(
    probabilities: Sequence[sitk.Image],
    label_values: Sequence[int],
    *,
    max_iterations: int = 100,
    termination_threshold: float = 1e-5,
) -> FusionResult:
    """Multi-label STAPLE (Warfield et al. 2004; Rohlfing et al. 2004) by SimpleITK.

    The atlases' most probable labels go to ``sitk.MultiLabelSTAPLEImageFilter``; its labels
    are returned unchanged (undecided voxels take the posterior's argmax). The posterior at a
    voxel is ``prior(t) * prod_j theta_j[d_j, t]`` normalised over t, from the filter's
    confusion matrices ``theta_j`` and the label priors (relative label frequencies over all
    atlases, as the filter estimates them).

    Returns
    -------
    FusionResult with ``extra["confusion_diagonal"]``: per-atlas probability of reporting each
    true label correctly.
    """
    stack = _stack(probabilities)
    _check_labels(label_values, stack.shape[-1])
    n_comp = stack.shape[-1]
    hard = np.argmax(stack, axis=-1).astype(np.uint16)  # component indices 0..K
    raters = []
    for h in hard:
        img = sitk.GetImageFromArray(h)
        img.CopyInformation(probabilities[0])
        raters.append(img)
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(n_comp)
    f.SetMaximumNumberOfIterations(int(max_iterations))
    f.SetTerminationUpdateThreshold(float(termination_threshold))
    out = sitk.GetArrayFromImage(f.Execute(raters))
    priors = np.asarray(f.GetPriorProbabilities(), dtype=np.float64)
    if priors.size != n_comp:
        counts = np.bincount(hard.ravel(), minlength=n_comp).astype(np.float64)
        priors = counts / counts.sum()
    logpost = np.broadcast_to(np.log(np.maximum(priors, 1e-300)), hard.shape[1:] + (n_comp,)).copy()
    diag = []
    for j, h in enumerate(hard):
        theta = np.asarray(f.GetConfusionMatrix(j), dtype=np.float64).reshape(n_comp + 1, n_comp)
        logpost += np.log(np.maximum(theta[h], 1e-300))  # (z, y, x, C): row = observed label
        diag.append([round(float(theta[c, c]), 4) for c in range(n_comp)])
    logpost -= logpost.max(axis=-1, keepdims=True)
    post = np.exp(logpost)
    post /= post.sum(axis=-1, keepdims=True)
    undecided = out == n_comp
    comp = np.where(undecided, np.argmax(post, axis=-1), out)
    lut = np.asarray([0] + list(label_values), dtype=np.uint16)
    extra = {"undecided_voxels": int(np.count_nonzero(undecided)), "confusion_diagonal": diag, "priors": [round(float(p), 5) for p in priors]}
    return _result(post, label_values, probabilities[0], extra, lut[comp])


def bayesian_fusion(
    probabilities: Sequence[sitk.Image],
    label_values: Sequence[int],
    *,
    max_iterations: int = 50,
    tolerance: float = 1e-4,
    region_threshold: float = 0.5,
    margin: int = 0,
) -> FusionResult:
    """Bayesian fusion with each atlas a rater of known-form reliability, fitted by EM.

    For every label (background included, one versus the rest) atlas j reports a soft
    decision d_j in [0, 1] (its warped probability). With true indicator T, the rater model is
    ``P(d_j | T=1) = p_j^d_j (1-p_j)^(1-d_j)`` and ``P(d_j | T=0) = q_j^(1-d_j) (1-q_j)^d_j``,
    p_j the sensitivity and q_j the specificity, and a global prior f = P(T=1).

    Notes
    -----
    E-step: ``W = f prod_j P(d_j|T=1) / (f prod_j P(d_j|T=1) + (1-f) prod_j P(d_j|T=0))``.
    M-step: ``p_j = sum W d_j / sum W``, ``q_j = sum (1-W)(1-d_j) / sum (1-W)``, f = mean W.
    This is binary STAPLE with soft decisions (Warfield et al. 2004). Parameters are estimated
    in a region of interest, the union of the atlases' structures: voxels where any atlas
    gives any object label more than ``region_threshold``, grown by ``margin`` voxels. The far
    background, where all atlases agree, would otherwise outweigh the structure and push every
    specificity to 1 (Rohlfing et al. 2004; Asman and Landman 2011); restricting to disputed
    voxels only is worse, since there a rater that disagrees with the rest looks
    anti-correlated and its votes get inverted. Outside the region the posterior is
    background. On the hippocampus tuning cases (library cases, not benchmark targets) the
    union without margin did best. The per-label posteriors W_k
    are normalised over labels into the fused posterior.

    Returns
    -------
    FusionResult with ``extra["sensitivity"]``, ``extra["specificity"]``: per label (by value)
    the per-atlas estimates, and ``extra["iterations"]``.
    """
    stack = _stack(probabilities)
    _check_labels(label_values, stack.shape[-1])
    n_atlas, n_comp = stack.shape[0], stack.shape[-1]
    eps = 1e-4
    post = np.zeros(stack.shape[1:], dtype=np.float64)
    sens, spec, iters = {}, {}, {}
    values = [0] + list(label_values)
    region = (stack[..., 1:] > region_threshold).any(axis=(0, -1))
    if margin > 0 and region.any():
        region = ndimage.binary_dilation(region, iterations=int(margin))
    region = region.ravel()
    for c in range(n_comp):
        d = stack[..., c].reshape(n_atlas, -1).astype(np.float64)
        w_all = np.full(d.shape[1], 1.0 if c == 0 else 0.0)
        dd = d[:, region]
        if dd.shape[1] == 0:
            post[..., c] = w_all.reshape(post.shape[:-1])
            sens[values[c]] = [1.0] * n_atlas
            spec[values[c]] = [1.0] * n_atlas
            iters[values[c]] = 0
            continue
        w = dd.mean(axis=0)
        p = np.full(n_atlas, 0.9)
        q = np.full(n_atlas, 0.9)
        f = float(np.clip(w.mean(), eps, 1 - eps))
        it = 0
        for it in range(1, int(max_iterations) + 1):
            lp, lq = np.log(p)[:, None], np.log(1 - p)[:, None]
            ls, lt = np.log(q)[:, None], np.log(1 - q)[:, None]
            a = np.log(f) + (dd * lp + (1 - dd) * lq).sum(axis=0)
            b = np.log(1 - f) + ((1 - dd) * ls + dd * lt).sum(axis=0)
            w_new = 1.0 / (1.0 + np.exp(np.clip(b - a, -700, 700)))
            sw, snw = max(w_new.sum(), eps), max((1 - w_new).sum(), eps)
            p = np.clip((dd * w_new).sum(axis=1) / sw, eps, 1 - eps)
            q = np.clip(((1 - dd) * (1 - w_new)).sum(axis=1) / snw, eps, 1 - eps)
            f = float(np.clip(w_new.mean(), eps, 1 - eps))
            change = float(np.abs(w_new - w).max())
            w = w_new
            if change < tolerance:
                break
        w_all[region] = w
        post[..., c] = w_all.reshape(post.shape[:-1])
        sens[values[c]] = [round(float(x), 4) for x in p]
        spec[values[c]] = [round(float(x), 4) for x in q]
        iters[values[c]] = it
    post = np.maximum(post, 0.0)
    empty = post.sum(axis=-1) <= 1e-12
    post[empty, 0] = 1.0
    extra = {"sensitivity": sens, "specificity": spec, "iterations": iters}
    return _result(post, label_values, probabilities[0], extra)


def local_similarity_weights(
    warped_images: Sequence[sitk.Image], target: sitk.Image, *, sigma_mm: float = 1.5, gain: float = 3.0
) -> np.ndarray:
    """Per-voxel atlas weights from Gaussian-weighted local mean squared intensity difference.

    ``w_j(x) = (G_sigma * (I_j - I)^2 (x) + e)^(-gain)``, ``I_j`` the warped, normalised atlas
    intensity, ``I`` the target's, e a floor (1e-3 of the mean local MSD) that keeps a perfect
    match finite. Returns (A, z, y, x) float32, normalised to sum 1 over atlases.
    """
    tgt = sitk.Cast(target, sitk.sitkFloat32)
    msd = []
    for img in warped_images:
        diff = sitk.Cast(img, sitk.sitkFloat32) - tgt
        local = sitk.SmoothingRecursiveGaussian(diff * diff, float(sigma_mm)) if sigma_mm > 0 else diff * diff
        msd.append(np.maximum(sitk.GetArrayFromImage(local), 0.0))
    msd = np.stack(msd).astype(np.float64)
    floor = 1e-3 * max(float(msd.mean()), 1e-12)
    # Work in logs: (msd)^-gain under/overflows for large gains.
    logw = -float(gain) * np.log(msd + floor)
    logw -= logw.max(axis=0, keepdims=True)
    w = np.exp(logw)
    w /= w.sum(axis=0, keepdims=True)
    return w.astype(np.float32)


def locally_weighted_fusion(
    probabilities: Sequence[sitk.Image],
    label_values: Sequence[int],
    warped_images: Sequence[sitk.Image],
    target: sitk.Image,
    *,
    sigma_mm: float = 1.5,
    gain: float = 3.0,
) -> FusionResult:
    """Locally weighted voting (Artaechevarria et al. 2009; Sabuncu et al. 2010).

    Parameters
    ----------
    probabilities : list of sitk.Image
        Per-atlas probability vector images on the target grid.
    label_values : sequence of int
    warped_images : list of sitk.Image
        Each atlas' intensity image on the target grid, on the target's intensity scale
        (normalised and histogram-matched).
    target : sitk.Image
        Target intensities, normalised the same way.
    sigma_mm : float, default 1.5
        Gaussian window (mm) of the local mean squared difference.
    gain : float, default 3
        Exponent of the inverse local MSD: 0 gives plain (soft) averaging, large values pick the
        locally best atlas.

    Returns
    -------
    FusionResult; posterior ``P(l | x) = sum_j w_j(x) P_j(l | x)``.
    """
    stack = _stack(probabilities)
    _check_labels(label_values, stack.shape[-1])
    if len(warped_images) != stack.shape[0]:
        raise ValueError(f"warped_images has {len(warped_images)} images for {stack.shape[0]} atlas maps")
    w = local_similarity_weights(warped_images, target, sigma_mm=sigma_mm, gain=gain)
    post = np.einsum("azyx,azyxc->zyxc", w, stack)
    return _result(post, label_values, probabilities[0], {"sigma_mm": sigma_mm, "gain": gain})


def fuse(rule: str, probabilities: List[sitk.Image], label_values: Sequence[int], *, warped_images=None, target=None, **options) -> FusionResult:
    """Dispatch to the fusion rule named ``rule`` (one of :data:`FUSION_RULES`)."""
    if rule == "majority":
        return majority_vote_fusion(probabilities, label_values)
    if rule == "staple":
        return staple_fusion(probabilities, label_values)
    if rule == "bayesian":
        return bayesian_fusion(probabilities, label_values)
    if rule == "local":
        return locally_weighted_fusion(probabilities, label_values, warped_images, target, **options)
    raise ValueError(f"fusion must be one of {', '.join(FUSION_RULES)}, got '{rule}'")
