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
NORMALIZATIONS = ("zscore", "ct")
#: Bounds a plan from a model card must keep (beyond them a run cannot work or would not fit).
MAX_CHANNELS, MAX_CLASSES, MAX_PATCH = 16, 256, 512
MIN_SPACING_MM, MAX_SPACING_MM = 0.05, 50.0


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

    def problems(self) -> List[str]:
        """What makes this plan unusable (a card from elsewhere is data, not trusted code):
        empty when the network can be built and run on it."""
        out: List[str] = []

        def integers(values, n, low, high):
            return isinstance(values, (list, tuple)) and len(values) == n and all(
                isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values
            )

        if self.network not in NETWORKS:
            out.append(f"network '{self.network}' is not one of {', '.join(NETWORKS)}")
        if self.norm not in NORMS:
            out.append(f"norm '{self.norm}' is not one of {', '.join(NORMS)}")
        if self.normalization not in NORMALIZATIONS:
            out.append(f"normalization '{self.normalization}' is not one of {', '.join(NORMALIZATIONS)}")
        if self.normalization == "ct":
            keys = {"mean", "std", "p00_5", "p99_5"}
            if not (isinstance(self.intensity, list) and len(self.intensity) == self.in_channels
                    and all(isinstance(s, dict) and keys <= set(s) for s in self.intensity)):
                out.append(f"normalization 'ct' needs intensity statistics ({', '.join(sorted(keys))}) for each of the {self.in_channels} channels")
        if not (isinstance(self.in_channels, int) and 1 <= self.in_channels <= MAX_CHANNELS):
            out.append(f"in_channels must be 1 to {MAX_CHANNELS}, got {self.in_channels!r}")
        if not (isinstance(self.num_classes, int) and 2 <= self.num_classes <= MAX_CLASSES):
            out.append(f"num_classes must be 2 to {MAX_CLASSES}, got {self.num_classes!r}")
        spacing = self.target_spacing_xyz
        if not (isinstance(spacing, (list, tuple)) and len(spacing) == 3
                and all(isinstance(s, (int, float)) and not isinstance(s, bool) and MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in spacing)):
            out.append(f"target_spacing_xyz must be 3 spacings of {MIN_SPACING_MM} to {MAX_SPACING_MM} mm, got {spacing!r}")
        if not integers(self.patch_size_zyx, 3, 1, MAX_PATCH):
            out.append(f"patch_size_zyx must be 3 whole numbers of 1 to {MAX_PATCH} voxels, got {self.patch_size_zyx!r}")
        if not (isinstance(self.features, (list, tuple)) and 1 <= len(self.features) <= 8
                and all(isinstance(f, int) and not isinstance(f, bool) and 1 <= f <= 1024 for f in self.features)):
            out.append(f"features must be 1 to 8 channel counts of 1 to 1024, got {self.features!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            out.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        for key, color in (self.class_colors or {}).items():
            if not (isinstance(color, (list, tuple)) and len(color) == 3
                    and all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0.0 <= c <= 1.0 for c in color)):
                out.append(f"class colour {key} must be 3 numbers of 0 to 1 (red, green, blue), got {color!r}")
                break
        return out

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
