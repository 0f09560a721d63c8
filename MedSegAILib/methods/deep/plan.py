"""The training and inference plan, derived from a dataset fingerprint (as nnU-Net does).

The plan fixes everything inference must repeat exactly: target spacing, patch size,
normalisation, network kind and width, classes. It is written into the model card
(``model.json``) and read back at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ...core.classes import distinct_colors

NETWORKS = ("unet3d", "unet2d", "unet2.5d", "swinunetr")
NORMS = ("instance", "group", "batch", "layer")


@dataclass
class Plan:
    """What a model was trained with; arrays are (z, y, x), physical sizes (x, y, z) in mm.

    Attributes
    ----------
    network : one of NETWORKS
        ``unet3d`` residual 3D U-Net; ``unet2d`` / ``unet2.5d`` slice-wise 2D U-Nets (2.5D sees
        ``context_slices`` neighbours on each side as extra channels); ``swinunetr`` hybrid
        CNN-transformer.
    in_channels, num_classes : int
        Input channels; output classes including background.
    target_spacing_xyz : list of 3 floats (mm)
    patch_size_zyx : list of 3 ints (voxels), divisible by the network's total stride
    normalization : "zscore" (per case, MRI) or "ct" (clip to the dataset's foreground
        0.5-99.5 percentiles, then the dataset's mean/std)
    intensity : per channel {"mean", "std", "p00_5", "p99_5"} from the fingerprint
    features : channels per U-Net level
    full_resolution_level : the first level keeps the input resolution (stride 1) and passes
        full-resolution features to the decoder; otherwise (MONAI's usual set-up) the first
        unit already down-samples and the finest skip connection is at half resolution
    norm : one of NORMS
    dropout : dropout probability in the U-Net units (also used for MC dropout)
    aspp : a dilated (atrous) bottleneck block
    sdf_head : an auxiliary output of K-1 channels regressing each class's signed distance
        (trained with ``losses.SignedDistanceLoss``; inference reads the K logits only)
    """

    network: str = "unet3d"
    in_channels: int = 1
    num_classes: int = 2
    target_spacing_xyz: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    patch_size_zyx: List[int] = field(default_factory=lambda: [64, 64, 64])
    normalization: str = "zscore"
    intensity: List[Dict[str, float]] = field(default_factory=list)
    features: List[int] = field(default_factory=lambda: [16, 32, 64, 128])
    full_resolution_level: bool = False
    norm: str = "instance"
    dropout: float = 0.1
    aspp: bool = False
    sdf_head: bool = False
    context_slices: int = 1
    class_names: Dict[str, str] = field(default_factory=dict)
    class_colors: Dict[str, List[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Plan":
        known = {k: v for k, v in d.items() if k in Plan.__dataclass_fields__}
        return Plan(**known)

    @property
    def stride(self) -> int:
        """Total down-sampling factor of the network along each (in-plane) axis."""
        return 32 if self.network == "swinunetr" else int(np.prod(self.level_strides))

    @property
    def level_strides(self) -> List[int]:
        """Down-sampling stride into each level after the first (MONAI UNet's ``strides``)."""
        strides = [2] * (len(self.features) - 1)
        if self.full_resolution_level and strides:
            strides[0] = 1
        return strides


def _round_up(v: float, m: int) -> int:
    return int(np.ceil(v / m) * m)


def make_plan(
    fingerprint: dict,
    *,
    network: Optional[str] = None,
    norm: str = "instance",
    features: Optional[List[int]] = None,
    full_resolution_level: bool = False,
    dropout: float = 0.1,
    aspp: bool = False,
    sdf_head: bool = False,
    class_names: Optional[Dict[int, str]] = None,
    max_patch_voxels: int = 128 ** 3 // 2,
) -> Plan:
    """Derive a plan from a fingerprint.

    Target spacing is the median spacing. A strongly anisotropic dataset (slice spacing over 3x
    the in-plane spacing) gets the 2.5D network unless one is named. The patch covers the
    median case at target spacing, rounded up to the network stride, and is shrunk (largest
    axis first) to at most ``max_patch_voxels``.
    """
    spacing = [float(s) for s in fingerprint["median_spacing_xyz"]]
    if network is None:
        network = "unet2.5d" if max(spacing) > 3 * min(spacing) else "unet3d"
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS}, got '{network}'")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got '{norm}'")
    feats = list(features or [16, 32, 64, 128])
    labels = [int(l) for l in fingerprint["labels"]]
    num_classes = max(labels) + 1
    names = {int(k): v for k, v in (class_names or {}).items()}
    colors = distinct_colors(num_classes - 1)
    plan = Plan(
        network=network,
        in_channels=len(fingerprint["intensity"]),
        num_classes=num_classes,
        target_spacing_xyz=spacing,
        normalization="ct" if any(str(n).upper() == "CT" for n in fingerprint.get("channel_names", [])) else "zscore",
        intensity=fingerprint["intensity"],
        features=feats,
        full_resolution_level=bool(full_resolution_level),
        norm=norm,
        dropout=dropout,
        aspp=aspp,
        sdf_head=sdf_head,
        class_names={str(l): names.get(l, f"Label {l}") for l in range(1, num_classes)},
        class_colors={str(l): list(colors[l - 1]) for l in range(1, num_classes)},
    )
    size_xyz = fingerprint["median_size_xyz"]
    zyx = [size_xyz[2], size_xyz[1], size_xyz[0]]
    stride = plan.stride
    patch = [_round_up(v, stride) for v in zyx]
    if network in ("unet2d", "unet2.5d"):
        patch[0] = max(1, min(zyx[0], 16))  # slices per training patch; the net is 2D
        patch[1:] = [_round_up(v, stride) for v in zyx[1:]]
    while int(np.prod(patch)) > max_patch_voxels:
        i = int(np.argmax(patch))
        patch[i] = max(stride, patch[i] - stride)
    plan.patch_size_zyx = [int(p) for p in patch]
    return plan
