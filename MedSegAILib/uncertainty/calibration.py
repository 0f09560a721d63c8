"""How honest an uncertainty is: calibration error and how well it flags errors.

- Expected calibration error (ECE): voxels binned by confidence (the top class probability);
  ECE = sum over bins of (bin share) x |accuracy - mean confidence|.
- AUROC of uncertainty for errors: the probability that a misclassified voxel has higher
  uncertainty than a correctly classified one (Mann-Whitney U / (n_err x n_ok), ties half).

Both are computed over a region of interest: over a whole scan, background far from any
structure dominates and makes every method look calibrated, so callers pass the voxels near
the structures (e.g. the union of prediction and reference, dilated).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import rankdata


def expected_calibration_error(prob: np.ndarray, ref: np.ndarray, *, mask: Optional[np.ndarray] = None, n_bins: int = 15) -> float:
    """ECE of posteriors ``prob`` (K, ...) against reference labels ``ref`` (...)."""
    conf = prob.max(axis=0)
    correct = prob.argmax(axis=0) == ref
    if mask is not None:
        conf, correct = conf[mask], correct[mask]
    conf, correct = conf.ravel(), correct.ravel()
    if conf.size == 0:
        return float("nan")
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def error_detection_auroc(uncertainty: np.ndarray, errors: np.ndarray, *, mask: Optional[np.ndarray] = None) -> float:
    """AUROC of ``uncertainty`` as a detector of ``errors`` (boolean, same shape); NaN when
    there are no errors or no correct voxels in the region."""
    u, e = uncertainty, errors.astype(bool)
    if mask is not None:
        u, e = u[mask], e[mask]
    u, e = u.ravel(), e.ravel()
    n_err, n_ok = int(e.sum()), int((~e).sum())
    if n_err == 0 or n_ok == 0:
        return float("nan")
    ranks = rankdata(u)
    return float((ranks[e].sum() - n_err * (n_err + 1) / 2) / (n_err * n_ok))


def structure_region(pred: np.ndarray, ref: np.ndarray, margin_vox: int = 3) -> np.ndarray:
    """Voxels within ``margin_vox`` of the predicted or reference foreground."""
    from scipy import ndimage

    fg = (pred > 0) | (ref > 0)
    return ndimage.binary_dilation(fg, iterations=margin_vox) if fg.any() else fg
