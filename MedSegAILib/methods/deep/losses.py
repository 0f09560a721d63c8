"""Segmentation losses by name, MONAI's where MONAI has them.

All take logits (B, K, Z, Y, X) and a target that is either a label tensor (B, 1, Z, Y, X)
of class indices or soft labels (B, K, Z, Y, X) summing to 1 (e.g. the consensus of several
raters).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceFocalLoss, DiceLoss, FocalLoss, TverskyLoss

LOSSES = ("dice_ce", "ce", "wbce", "dice", "tversky", "focal", "dice_focal", "dice_ce_boundary")


def _one_hot(target: torch.Tensor, k: int) -> torch.Tensor:
    if target.shape[1] == k and target.dtype.is_floating_point:
        return target
    return F.one_hot(target[:, 0].long(), k).permute(0, 4, 1, 2, 3).float()


class SoftCrossEntropy(torch.nn.Module):
    """Cross-entropy that accepts soft labels; ``class_weights`` gives weighted CE (written here
    because MONAI's losses take hard labels for CE)."""

    def __init__(self, class_weights=None):
        super().__init__()
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)

    def forward(self, logits, target):
        soft = _one_hot(target, logits.shape[1])
        logp = F.log_softmax(logits, dim=1)
        if self.class_weights is not None:
            logp = logp * self.class_weights.to(logits.device).view(1, -1, 1, 1, 1)
        return -(soft * logp).sum(dim=1).mean()


class BoundaryLoss(torch.nn.Module):
    """Kervadec et al. 2019 boundary loss: mean of softmax probabilities times the signed
    distance map of each class's reference (negative inside). Not in MONAI; distance maps are
    computed per batch with SciPy's exact EDT (small patches, so cheap)."""

    def forward(self, logits, target):
        from scipy import ndimage

        k = logits.shape[1]
        onehot = _one_hot(target, k).detach().cpu().numpy() > 0.5
        sdm = torch.zeros_like(logits)
        for b in range(onehot.shape[0]):
            for c in range(1, k):
                m = onehot[b, c]
                if m.any() and not m.all():
                    d = ndimage.distance_transform_edt(~m) - ndimage.distance_transform_edt(m)
                    sdm[b, c] = torch.from_numpy(d).to(logits)
        prob = torch.softmax(logits, dim=1)
        return (prob[:, 1:] * sdm[:, 1:]).mean()


def signed_distance_targets(target: torch.Tensor, k: int, spacing_zyx=(1.0, 1.0, 1.0), scale_mm: float = 5.0) -> torch.Tensor:
    """``tanh(d / scale_mm)`` of each foreground class's signed distance d in mm (negative
    inside, positive outside), shape (B, K-1, Z, Y, X); a class absent from a sample gets +1
    (far outside) and a class filling it -1. Exact EDT from SciPy on the (small) patches."""
    from scipy import ndimage

    onehot = _one_hot(target, k).detach().cpu().numpy() > 0.5
    out = np.ones((onehot.shape[0], k - 1) + onehot.shape[2:], dtype=np.float32)
    for b in range(onehot.shape[0]):
        for c in range(1, k):
            m = onehot[b, c]
            if m.all():
                out[b, c - 1] = -1.0
            elif m.any():
                d = ndimage.distance_transform_edt(~m, sampling=spacing_zyx) - ndimage.distance_transform_edt(m, sampling=spacing_zyx)
                out[b, c - 1] = np.tanh(d / scale_mm)
    return torch.from_numpy(out).to(target.device)


class SignedDistanceLoss(torch.nn.Module):
    """L1 between predicted and reference ``tanh(signed distance / scale)`` maps: the
    regression task of the optional SDF head (Xue et al. 2020 style shape prior). Not in MONAI."""

    def __init__(self, spacing_zyx=(1.0, 1.0, 1.0), scale_mm: float = 5.0):
        super().__init__()
        self.spacing_zyx = tuple(float(s) for s in spacing_zyx)
        self.scale_mm = float(scale_mm)

    def forward(self, sdf_pred, target):
        ref = signed_distance_targets(target, sdf_pred.shape[1] + 1, self.spacing_zyx, self.scale_mm)
        return (sdf_pred - ref.to(sdf_pred)).abs().mean()


class _Combined(torch.nn.Module):
    def __init__(self, parts):
        super().__init__()
        self.parts = torch.nn.ModuleList([p for p, _ in parts])
        self.weights = [w for _, w in parts]

    def forward(self, logits, target):
        return sum(w * p(logits, target) for p, w in zip(self.parts, self.weights))


class _OneHotTarget(torch.nn.Module):
    """Feed MONAI losses one-hot targets so that soft labels work for them too."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, logits, target):
        return self.loss(logits, _one_hot(target, logits.shape[1]))


def build_loss(name: str = "dice_ce", *, class_weights=None, boundary_weight: float = 0.1) -> torch.nn.Module:
    """A loss by name (see LOSSES); Dice + CE is the default, as in nnU-Net."""
    if name == "dice_ce":
        return _Combined([(_OneHotTarget(DiceLoss(softmax=True, include_background=False, smooth_nr=1e-5, smooth_dr=1e-5)), 1.0), (SoftCrossEntropy(class_weights), 1.0)])
    if name == "ce":
        return SoftCrossEntropy(class_weights)
    if name == "wbce":
        return SoftCrossEntropy(class_weights if class_weights is not None else None)
    if name == "dice":
        return _OneHotTarget(DiceLoss(softmax=True, include_background=False))
    if name == "tversky":
        return _OneHotTarget(TverskyLoss(softmax=True, include_background=False, alpha=0.3, beta=0.7))
    if name == "focal":
        return _OneHotTarget(FocalLoss(gamma=2.0, use_softmax=True))
    if name == "dice_focal":
        return _OneHotTarget(DiceFocalLoss(softmax=True, include_background=False))
    if name == "dice_ce_boundary":
        return _Combined([(build_loss("dice_ce", class_weights=class_weights), 1.0), (BoundaryLoss(), boundary_weight)])
    raise ValueError(f"loss must be one of {LOSSES}, got '{name}'")
