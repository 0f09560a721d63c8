"""Radiomic features with an interval from the segmentation's own uncertainty.

A point value of a feature assumes the mask is right. The method's per-class probabilities say
how sure it is of each voxel, so the same instance is re-drawn at several probability levels
(the voxels of its class with probability at least 0.3, 0.4, ..., 0.7 that are connected to the
instance, inside its bounding box widened by a few voxels), and every feature is computed on
each mask. Each instance then gets, next to the point value ``f``, the columns ``f_mean``,
``f_sd``, ``f_min`` and ``f_max`` over those masks. The probabilities are the ones the run
kept: a single deep model's mean over its flips, a classical method's posterior or mean-field
marginals, an atlas fusion's fused probability. An ensemble draws its masks from its members
instead (each member's own labels, ``samples``). A method that is sure of its boundary gives
masks that do not change with the level, and an SD of 0.

The cost is one feature computation per level and instance, reported by the caller (the CLI's
``radiomics intervals`` stage): on the hippocampus crops 0.5-1.6 s, one to four times the point features.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from .radiomics import FEATURE_CLASSES, MAX_VOXELS_FOR_TEXTURE, MIN_VOXELS_FOR_TEXTURE, region_features

#: Probability levels the masks are drawn at.
LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7)
#: Voxels by which an instance's bounding box is widened to let a lower level grow.
MARGIN_VOXELS = 3
#: Below this Dice between an instance and its class's 0.5-probability region, the run warns
#: that the probabilities do not describe the labels (seen with the graph cut's mean-field
#: marginals, which can disagree with its cut).
MIN_AGREEMENT = 0.8
SUFFIXES = ("mean", "sd", "min", "max")


def connected_to(candidate: np.ndarray, instance: np.ndarray) -> Optional[np.ndarray]:
    """The parts of boolean ``candidate`` (26-connected) that touch ``instance``; None if none."""
    regions, _ = ndimage.label(candidate, structure=np.ones((3, 3, 3)))
    keep = np.unique(regions[instance & candidate])
    keep = keep[keep > 0]
    return np.isin(regions, keep) if keep.size else None


def level_masks(probability: np.ndarray, instance: np.ndarray, levels: Sequence[float] = LEVELS) -> list:
    """Boolean masks (same shape) of ``probability >= t`` connected to ``instance``, one per level
    that leaves a non-empty mask. ``probability`` is the instance's class probability and
    ``instance`` its own mask, both over one box (z, y, x)."""
    masks = (connected_to(probability >= t, instance) for t in levels)
    return [m for m in masks if m is not None]


def add_instance_intervals(
    result,
    image: sitk.Image,
    probabilities: sitk.Image,
    *,
    levels: Sequence[float] = LEVELS,
    features: Iterable[str] = FEATURE_CLASSES,
    bin_width: float = 25.0,
    samples: Optional[Sequence[sitk.Image]] = None,
) -> int:
    """Add ``<feature>_mean/_sd/_min/_max`` to each instance's ``measurements`` (in place) from
    masks drawn at ``levels`` of its class's probability; returns the number of masks measured.

    ``probabilities``: the run's vector image (component k = class k), on the result's grid.
    Instances are measured as :func:`.radiomics.add_instance_radiomics` measures them (the same
    texture limits), so each interval belongs to its point value. ``samples``: labelmaps drawn
    from the method itself (an ensemble's members, ``result.label_samples``); given, each
    instance's masks are its class in each sample, connected to it, instead of the levels.
    """
    from ..io.images import same_grid

    if probabilities is None:
        raise InputError("feature intervals need the method's probabilities (run with keep_probabilities, as --radiomics-intervals does)")
    if not same_grid(image, result.instances) or not same_grid(probabilities, result.instances):
        raise InputError("the image and probabilities are not on the segmentation's voxel grid")
    features = tuple(features)
    arr = sitk.GetArrayViewFromImage(image)
    inst = sitk.GetArrayViewFromImage(result.instances)
    prob = sitk.GetArrayViewFromImage(probabilities)  # (z, y, x, K)
    drawn = [sitk.GetArrayViewFromImage(s) for s in samples] if samples else None  # the images stay alive in ``samples``
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    shape = inst.shape
    measured, inconsistent = 0, []
    for rec in result.instance_table:
        x0, y0, z0 = rec.bbox_start_xyz
        sx, sy, sz = rec.bbox_size_xyz
        box = tuple(slice(max(0, a - MARGIN_VOXELS), min(n, a + s + MARGIN_VOXELS)) for a, s, n in zip((z0, y0, x0), (sz, sy, sx), shape))
        m = inst[box] == rec.instance_id
        if not m.any() or rec.class_label >= prob.shape[-1]:
            continue
        p = prob[box + (int(rec.class_label),)]
        half = level_masks(p, m, (0.5,))
        agreement = 2.0 * float((half[0] & m).sum()) / float(half[0].sum() + m.sum()) if half else 0.0
        if agreement < MIN_AGREEMENT:
            inconsistent.append(f"{rec.segment_name or rec.instance_id} (Dice {agreement:.2f})")
        texture = MIN_VOXELS_FOR_TEXTURE <= int(rec.voxel_count) <= MAX_VOXELS_FOR_TEXTURE
        if drawn is not None:
            masks = [x for x in (connected_to(d[box] == rec.class_label, m) for d in drawn) if x is not None]
        else:
            masks = level_masks(p, m, levels)
        measures = [region_features(arr[box], mask, spacing_zyx, bin_width=bin_width, features=features, prefix="", texture=texture) for mask in masks]
        measured += len(measures)
        if not measures:
            continue
        intervals = {}
        for name in measures[0]:
            values = np.array([s.get(name, math.nan) for s in measures], dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                intervals[name] = [float(f"{float(v):.10g}") for v in (values.mean(), values.std(), values.min(), values.max())]
        rec.measurements = _next_to_point_values(rec.measurements, intervals)
    if inconsistent:
        shown = ", ".join(inconsistent[:3]) + (f" and {len(inconsistent) - 3} more" if len(inconsistent) > 3 else "")
        result.provenance.extra.setdefault("warnings", []).append(
            f"radiomics intervals: the method's probabilities disagree with its labels for {shown}, the overlap of the "
            "instance with its class's 0.5-probability region; their intervals describe the probabilities, not the labels"
        )
    return measured


def _next_to_point_values(measurements: dict, intervals: dict) -> dict:
    """The measurements with each feature's interval columns right after its point value (an
    earlier interval of the same feature is replaced)."""
    out = {}
    fresh = set(intervals)
    for name, value in measurements.items():
        base, _, suffix = name.rpartition("_")
        if suffix in SUFFIXES and base in fresh:
            continue
        out[name] = value
        for suffix, v in zip(SUFFIXES, intervals.pop(name, ())):
            out[f"{name}_{suffix}"] = v
    for name, values in intervals.items():  # a feature without a point value (none today)
        out.update({f"{name}_{s}": v for s, v in zip(SUFFIXES, values)})
    return out
