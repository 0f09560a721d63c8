"""Preprocessing shared by training and inference: resampling to the plan's spacing and
intensity normalisation. Being one function for both is what makes a model's input at
inference the same as in training."""

from __future__ import annotations

from typing import List

import numpy as np
import SimpleITK as sitk

from .plan import Plan


def needs_resampling(image: sitk.Image, plan: Plan, rtol: float = 0.01) -> bool:
    return not np.allclose(image.GetSpacing(), plan.target_spacing_xyz, rtol=rtol)


def resample_to_spacing(image: sitk.Image, spacing_xyz, interpolator=sitk.sitkLinear) -> sitk.Image:
    """Resample onto a grid with ``spacing_xyz`` (mm) covering the same physical extent."""
    size = [max(1, int(round(sz * sp / t))) for sz, sp, t in zip(image.GetSize(), image.GetSpacing(), spacing_xyz)]
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), tuple(spacing_xyz), image.GetDirection(), 0.0, image.GetPixelID())


def normalize(arr: np.ndarray, plan: Plan) -> np.ndarray:
    """Normalise (C, Z, Y, X) intensities as the plan says; returns float32."""
    out = np.empty(arr.shape, dtype=np.float32)
    for c in range(arr.shape[0]):
        a = arr[c].astype(np.float32)
        if plan.normalization == "ct":
            st = plan.intensity[c]
            a = np.clip(a, st["p00_5"], st["p99_5"])
            out[c] = (a - st["mean"]) / max(st["std"], 1e-6)
        else:
            out[c] = (a - a.mean()) / max(float(a.std()), 1e-6)
    return out


def prepare_channels(channels: List[sitk.Image], plan: Plan):
    """(normalised array (C, Z, Y, X), the grid it is on) for inference."""
    grid = channels[0]
    if needs_resampling(grid, plan):
        channels = [resample_to_spacing(sitk.Cast(c, sitk.sitkFloat32), plan.target_spacing_xyz) for c in channels]
        grid = channels[0]
    arr = np.stack([sitk.GetArrayFromImage(c) for c in channels]).astype(np.float32)
    return normalize(arr, plan), grid
