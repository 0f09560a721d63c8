"""Occlusion sensitivity of a deep model: which parts of the input its structures depend on.

For each structure k, the score is the model's mean probability of k over the voxels it
labels k on the unchanged input. A cube of ``patch_mm`` is hidden (set to the normalised
image's mean, 0) at every position of a grid with step ``stride_mm``; the input is segmented
again (the plan's sliding window, no flips) and the drop of each score is credited to the
hidden voxels. A voxel's value is the mean drop over the cubes that covered it: positive where
hiding the voxel's neighbourhood makes the model less sure of the structure, negative where it
makes it surer. The map is on the input's grid, one component per structure
(``explanation.nii.gz``).

Cost: one forward pass of every member per cube: on a 35x50x35 hippocampus crop with the
defaults (8 mm cubes every 6 mm), about 320 cubes: 20-31 s on 2 shared cores.

Reference: Zeiler MD, Fergus R. Visualizing and understanding convolutional networks. ECCV 2014.
"""

from __future__ import annotations

import itertools
from typing import List, Optional

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError
from ...core.progress import Progress


def _forward(members, arr: np.ndarray, engine: str, device: str) -> np.ndarray:
    """Mean softmax (K, Z, Y, X) of ``members`` on ``arr`` (C, Z, Y, X), no flips."""
    from .inference import predict_array
    from .onnx_runtime import predict_array_onnx

    total = None
    for m in members:
        if engine == "onnx":
            p, _ = predict_array_onnx(m, arr, flips=((),))
        else:
            p, _ = predict_array(m.network, arr, m.plan, device=device, flips=((),))
        total = p if total is None else total + p
    return total / len(members)


def occlusion_sensitivity(
    channels: List[sitk.Image],
    model,
    *,
    patch_mm: float = 8.0,
    stride_mm: float = 6.0,
    runtime: str = "auto",
    device: str = "cpu",
    progress: Optional[Progress] = None,
) -> sitk.Image:
    """The occlusion-sensitivity map of ``model`` (name, folder or loaded model) on ``channels``.

    Returns a float32 vector image on ``channels[0]``'s grid, component k-1 = structure k
    (probability drop, unitless, in [-1, 1]).
    """
    from .inference import _members, onto_input_grid
    from .model_cache import PROCESS_MODELS
    from .model_store import load_model, resolve_model_dir
    from .onnx_runtime import choose_runtime, load_onnx_model
    from .preprocess import prepare_channels

    if not (patch_mm > 0 and stride_mm > 0):
        raise InputError(f"the occlusion cube and its step must be > 0 mm, got {patch_mm} and {stride_mm}")
    progress = progress or Progress()
    engine, _ = choose_runtime(model, runtime, device, 0)
    if isinstance(model, (str,)) or hasattr(model, "__fspath__"):
        folder = resolve_model_dir(model)
        model = PROCESS_MODELS.get(engine, folder, "cpu" if engine == "onnx" else device,
                                   (lambda: load_onnx_model(folder)) if engine == "onnx" else (lambda: load_model(folder, device)))
    members = _members(model)
    plan = model.plan
    if len(channels) != plan.in_channels:
        raise InputError(f"the model expects {plan.in_channels} input channel(s), {len(channels)} given")
    arr, grid = prepare_channels(channels, plan)
    base = _forward(members, arr, engine, device)
    labels = base.argmax(axis=0)
    k = base.shape[0]
    masks = [labels == c if (labels == c).any() else np.ones(labels.shape, bool) for c in range(1, k)]
    scores = np.array([base[c][m].mean() for c, m in zip(range(1, k), masks)])
    spacing_zyx = np.array(grid.GetSpacing()[::-1], dtype=float)
    size = np.maximum(1, np.round(patch_mm / spacing_zyx)).astype(int)
    step = np.maximum(1, np.round(stride_mm / spacing_zyx)).astype(int)
    starts = [range(-(s // 2), n - s // 2, st) for n, s, st in zip(labels.shape, size, step)]
    positions = list(itertools.product(*starts))
    drop = np.zeros((k - 1, *labels.shape), dtype=np.float64)
    count = np.zeros(labels.shape, dtype=np.float64)
    for i, (z, y, x) in enumerate(positions):
        box = tuple(slice(max(0, a), max(0, a + s)) for a, s in zip((z, y, x), size))
        hidden = arr.copy()
        hidden[(slice(None), *box)] = 0.0  # the normalised image's mean
        p = _forward(members, hidden, engine, device)
        d = scores - np.array([p[c][m].mean() for c, m in zip(range(1, k), masks)])
        drop[(slice(None), *box)] += d[:, None, None, None]
        count[box] += 1.0
        if i % 16 == 0:
            progress.update((i + 1) / len(positions), f"occlusion {i + 1}/{len(positions)}")
    sensitivity = (drop / np.maximum(count, 1.0)).astype(np.float32)
    out = [sitk.GetArrayFromImage(onto_input_grid(sensitivity[c], grid, channels[0])) for c in range(k - 1)]
    vector = sitk.GetImageFromArray(np.stack(out, axis=-1), isVector=True)
    vector.CopyInformation(channels[0])
    progress.update(1.0, "occlusion sensitivity done")
    return vector


def concentration_near(explanation: np.ndarray, structure: np.ndarray, spacing_zyx, within_mm: float = 5.0) -> dict:
    """How much of a map's positive mass lies within ``within_mm`` of a structure, against the
    share of the volume that is: a map that explains the structure concentrates near it.

    ``explanation`` and ``structure`` (bool) are (Z, Y, X) arrays on one grid."""
    from scipy import ndimage

    near = ndimage.distance_transform_edt(~structure, sampling=spacing_zyx) <= within_mm
    pos = np.clip(explanation, 0, None)
    total = float(pos.sum())
    return {"mass_near": float(pos[near].sum() / total) if total > 0 else 0.0, "volume_near": float(near.mean())}
