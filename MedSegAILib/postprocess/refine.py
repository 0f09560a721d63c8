"""Refining a method's class probabilities with the classical family's contrast-sensitive CRF.

A deep model or an atlas fusion gives per-voxel class probabilities p, but decides each voxel
alone. :func:`refine_with_crf` takes ``-log p`` as the unary cost of the classical solvers
(:func:`~MedSegAILib.methods.classical.banded.solve_potts_grid`) and adds the contrast-sensitive
Potts term of the ``crf`` method, w_ij = lambda exp(-(I_i - I_j)^2 / 2 sigma^2) s_min / d_ij:
neighbouring voxels pay ``w_ij`` (nats) for different labels unless an intensity edge separates
them. The labels are the energy's minimum (graph cut), the probabilities and the uncertainty
come from its mean-field marginals, so they describe the refined labels.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.result import MethodOutput

#: Refinements a run can ask for.
REFINEMENTS = ("none", "crf")
#: Default pairwise weight (nats, as the crf method's ``lam``) and probability floor.
CRF_WEIGHT = 1.0
EPS = 1e-4


def _unary_from(prob_zyxk: np.ndarray):
    """``spatial_unary`` for solve_potts_grid: -log p, resampled (area mean) to a coarse level's grid."""

    def spatial(arr, spacing, seeds):
        p = prob_zyxk
        if arr.shape != p.shape[:3]:
            from scipy import ndimage

            zoom = [a / b for a, b in zip(arr.shape, p.shape[:3])]
            p = np.stack([ndimage.zoom(p[..., k], zoom, order=1) for k in range(p.shape[-1])], axis=-1)[: arr.shape[0], : arr.shape[1], : arr.shape[2]]
        return -np.log(np.clip(p, EPS, 1.0)).astype(np.float32)

    return spatial


def refine_with_crf(out: MethodOutput, image: sitk.Image, *, weight: float = CRF_WEIGHT, sigma: float = 0.0, keep_probabilities: bool = False) -> MethodOutput:
    """``out`` with labels, probabilities and uncertainty from the CRF on its probabilities.

    Parameters
    ----------
    out : MethodOutput
        Needs ``probabilities`` (component 0 = background, k = label k of ``out.labels``).
    image : sitk.Image
        The intensities (channel 0) on the same grid: the CRF's edges.
    weight : float
        lambda (nats) of a 6-neighbour at the smallest spacing across no intensity step.
    sigma : float
        Contrast scale (image units); 0 = the RMS of 6-neighbour differences.
    keep_probabilities : bool
        Keep the refined marginals as the output's probabilities (else only the uncertainty).
    """
    from ..methods.classical.banded import solve_potts_grid
    from ..methods.classical.energy import contrast_sigma
    from ..uncertainty.entropy import entropy_by_slab, probabilities_image, uncertainty_image

    if out.probabilities is None:
        raise InputError("CRF refinement needs the method's class probabilities; this method gives none")
    if not weight > 0:
        raise InputError(f"the CRF weight must be > 0, got {weight}")
    prob = sitk.GetArrayFromImage(out.probabilities).astype(np.float32)  # (z, y, x, K), a copy
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    if arr.shape != prob.shape[:3]:
        raise InputError("the image and the probabilities are not on one grid")
    k = prob.shape[-1]
    sig = float(sigma) if sigma > 0 else contrast_sigma(arr)
    zeros = lambda values, index: np.zeros((values.shape[0], k), dtype=np.float32)  # noqa: E731 (all cost is spatial)
    labels, marg, info = solve_potts_grid(arr, image.GetSpacing()[::-1], zeros, k, weight=weight, sigma=sig, spatial_unary=_unary_from(prob))
    before = sitk.GetArrayViewFromImage(out.labels)
    changed = int((labels != before).sum())
    label_img = sitk.GetImageFromArray(labels.astype(sitk.GetArrayViewFromImage(out.labels).dtype))
    label_img.CopyInformation(out.labels)
    unc = uncertainty_image(entropy_by_slab(marg), image)
    extra = dict(out.extra or {})
    extra["refinement"] = {"method": "crf", "weight": weight, "sigma_used": sig, "voxels_changed": changed, "solve": info}
    params = dict(out.parameters, refine="crf", refine_weight=weight)
    return replace(out, labels=label_img, probabilities=probabilities_image(marg, image) if keep_probabilities else None,
                   uncertainty=unc, extra=extra, parameters=params, member_uncertainty=None, label_samples=None)
