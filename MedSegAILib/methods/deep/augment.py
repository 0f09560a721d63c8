"""Training augmentation with imaging physics, from MONAI's transforms.

Per sample, on arrays (C, Z, Y, X) that are already normalised: random crop to the patch,
flips on every axis, small rotation and scaling (label resampled nearest-neighbour), random
gain, a smooth multiplicative bias field (MRI inhomogeneity), Rician noise (magnitude MRI),
and gamma. Seeded through MONAI's ``set_random_state`` so runs are reproducible.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandRicianNoised,
    RandScaleIntensityd,
    RandSpatialCropd,
    SpatialPadd,
)


def training_transforms(patch_size_zyx, *, strength: float = 1.0, seed: int = 0, is_2d: bool = False) -> Compose:
    """The augmentation pipeline for dicts {"image": (C,Z,Y,X), "label": (1,Z,Y,X)}."""
    rot = 0.26 * strength  # about 15 degrees
    keys = ["image", "label"]
    t = Compose(
        [
            SpatialPadd(keys, spatial_size=patch_size_zyx, mode="constant"),
            RandSpatialCropd(keys, roi_size=patch_size_zyx, random_size=False),
            RandFlipd(keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys, prob=0.5, spatial_axis=2),
            RandAffined(
                keys,
                prob=0.3 * strength,
                rotate_range=(0.0 if is_2d else rot, 0.0 if is_2d else rot, rot),
                scale_range=(0.15 * strength,) * 3,
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            RandScaleIntensityd("image", factors=0.15 * strength, prob=0.3),  # gain
            RandBiasFieldd("image", coeff_range=(0.0, 0.3 * strength), degree=3, prob=0.3),
            RandRicianNoised("image", prob=0.2, std=0.1 * strength, relative=False, sample_std=True),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), prob=0.3),  # gamma
        ]
    )
    t.set_random_state(seed=seed)
    return t


def crop_or_pad_transforms(patch_size_zyx) -> Compose:
    """Deterministic-size patch without augmentation (for a tiny smoke training)."""
    keys = ["image", "label"]
    return Compose([SpatialPadd(keys, spatial_size=patch_size_zyx), RandSpatialCropd(keys, roi_size=patch_size_zyx, random_size=False)])


def as_float(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)
