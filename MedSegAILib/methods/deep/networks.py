"""Networks built from a plan, with MONAI's implementations.

- ``unet3d``: MONAI ``UNet`` with residual units (two per level), the chosen normalisation and
  dropout; with ``aspp`` a dilated bottleneck (MONAI ``SimpleASPP``) refines the coarsest level.
- ``unet2d`` / ``unet2.5d``: a 2D MONAI ``UNet`` applied slice by slice inside a module that
  takes and returns 3D tensors, so training, sliding-window inference and TTA are the same code
  for every kind. 2.5D stacks ``context_slices`` neighbours on each side as channels.
- ``swinunetr``: MONAI ``SwinUNETR`` (hybrid CNN-transformer); MONAI's implementation needs
  the ``einops`` package in its forward pass, so its absence is reported when the network is
  built, not halfway through the first batch.

With ``sdf_head`` the network has K-1 more output channels, regressing each class's signed
distance map (``WithSignedDistanceHead``); its ``forward`` still returns the K logits, so
inference is unchanged, and training calls ``forward_with_sdf``.

All take (B, C, Z, Y, X) and return logits (B, K, Z, Y, X). This module imports torch and
MONAI: only the training and inference modules import it, never the method registry.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from monai.networks.blocks import SimpleASPP
from monai.networks.nets import SwinUNETR, UNet

from ...core.errors import InputError, MissingDependencyError
from .plan import Plan


GROUPS = 8  # groups of the "group" normalisation


def _norm_arg(norm: str):
    # GroupNorm with one group normalises over (C, spatial) per sample: layer normalisation.
    return {
        "instance": ("instance", {"affine": True}),
        "group": ("group", {"num_groups": GROUPS}),
        "batch": "batch",
        "layer": ("group", {"num_groups": 1}),
    }[norm]


def build_network(plan: Plan) -> torch.nn.Module:
    """A torch.nn.Module for ``plan``."""
    if plan.sdf_head:
        return WithSignedDistanceHead(_build_body(plan, plan.num_classes + plan.num_classes - 1), plan.num_classes)
    return _build_body(plan, plan.num_classes)


def _build_body(plan: Plan, out_channels: int) -> torch.nn.Module:
    if plan.network == "swinunetr":
        if importlib.util.find_spec("einops") is None:
            raise MissingDependencyError("einops", "deep", "the SwinUNETR network")
        return SwinUNETR(in_channels=plan.in_channels, out_channels=out_channels, feature_size=24, spatial_dims=3, drop_rate=plan.dropout)

    if plan.network == "unet3d":
        net = _unet(3, plan.in_channels, out_channels, plan)
        return _WithASPP(net, out_channels) if plan.aspp else net

    context = plan.context_slices if plan.network == "unet2.5d" else 0
    return SliceWise2D(_unet(2, plan.in_channels * (2 * context + 1), out_channels, plan), context)


def _unet(dims: int, in_channels: int, out_channels: int, plan: Plan) -> torch.nn.Module:
    """MONAI's residual UNet for ``plan``.

    MONAI normalises the output of its top up-sampling layer, which has the output's channel
    count, and GroupNorm needs a count divisible by its groups (three classes are not). With
    group norm and such an output count the UNet therefore ends on ``features[0]`` channels and
    a 1x1 convolution maps them to the outputs (output counts that the groups divide keep the
    plain UNet, as models trained before this head existed have it).
    """
    def unet(out):
        return UNet(dims, in_channels, out, plan.features, plan.level_strides, num_res_units=2, norm=_norm_arg(plan.norm), dropout=plan.dropout)

    if plan.norm != "group" or out_channels % GROUPS == 0:
        return unet(out_channels)
    odd = [f for f in plan.features if f % GROUPS]
    if odd:
        raise InputError(
            f"group normalisation uses {GROUPS} groups, so every level's channel count must be a multiple of {GROUPS}; "
            f"the features {', '.join(map(str, plan.features))} include {', '.join(map(str, odd))}: choose other --features or another --norm"
        )
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(unet(plan.features[0]), conv(plan.features[0], out_channels, 1))


class WithSignedDistanceHead(torch.nn.Module):
    """A body with K + (K-1) output channels read as K logits and K-1 signed distances.

    The distance channels pass through tanh: they regress ``tanh(d / scale)`` of each class's
    signed distance d (negative inside). Written here: MONAI has no multi-task wrapper.
    """

    def __init__(self, body: torch.nn.Module, num_classes: int):
        super().__init__()
        self.body = body
        self.num_classes = int(num_classes)

    def forward_with_sdf(self, x):
        """(logits (B, K, Z, Y, X), tanh signed distances (B, K-1, Z, Y, X))."""
        out = self.body(x)
        return out[:, : self.num_classes], torch.tanh(out[:, self.num_classes :])

    def forward(self, x):
        return self.body(x)[:, : self.num_classes]


class SliceWise2D(torch.nn.Module):
    """Apply a 2D network to every axial slice of a 3D batch (written here: MONAI has no such wrapper).

    Input (B, C, Z, Y, X); each slice z sees slices z-k..z+k (edge-replicated) stacked as
    C*(2k+1) channels; output (B, K, Z, Y, X).
    """

    def __init__(self, net2d, context: int):
        super().__init__()
        self.net2d = net2d
        self.context = int(context)

    def forward(self, x):
        b, c, z, y, w = x.shape
        k = self.context
        if k:
            padded = F.pad(x, (0, 0, 0, 0, k, k), mode="replicate")
            stacks = [padded[:, :, i : i + z] for i in range(2 * k + 1)]  # each (B, C, Z, Y, X)
            x = torch.cat(stacks, dim=1)
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * z, x.shape[1], y, w)
        out = self.net2d(slices)
        return out.reshape(b, z, out.shape[1], y, w).permute(0, 2, 1, 3, 4)


class _WithASPP(torch.nn.Module):
    """A U-Net whose logits are refined by an atrous spatial pyramid on the output features.

    MONAI's UNet does not expose its bottleneck, so the dilated block works at full
    resolution on the logits' K channels: a cheap, multi-scale context module.
    """

    def __init__(self, net, k: int):
        super().__init__()
        self.net = net
        self.aspp = SimpleASPP(3, k, 4, kernel_sizes=(1, 3, 3, 3), dilations=(1, 2, 4, 6), norm_type=("instance", {"affine": True}))
        self.head = torch.nn.Conv3d(16 + k, k, 1)

    def forward(self, x):
        logits = self.net(x)
        return self.head(torch.cat([logits, self.aspp(logits)], dim=1))
