"""nnU-Net v2's sliding-window prediction, reproduced, and a MedSegAI run of an imported model.

Tiles of the plan's patch size at half-patch steps, each weighted by a Gaussian (sigma 1/8
of the patch, peak 10); mirroring averages the logits of the input and of every combination
of flips along the allowed axes; folds average their logits. Accumulation is in float16, as
nnU-Net does, so the labels are nnU-Net's to the voxel.
"""

from __future__ import annotations

import itertools
from typing import List, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def gaussian_weights(patch: Sequence[int]) -> np.ndarray:
    """float16 importance map: a Gaussian (sigma = patch / 8) with peak 10, no zeros."""
    impulse = np.zeros(patch, dtype=np.float64)
    impulse[tuple(p // 2 for p in patch)] = 1.0
    g = ndimage.gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0)
    g = (g / (g.max() / 10.0)).astype(np.float16)
    g[g == 0] = g[g != 0].min()
    return g


def tile_starts(size: int, tile: int, step: float = 0.5) -> List[int]:
    """Start indices along one axis (nnU-Net's rule: evenly spread, at most step * tile apart)."""
    n = int(np.ceil((size - tile) / (tile * step))) + 1
    spacing = (size - tile) / (n - 1) if n > 1 else 99999999999
    return [int(np.round(spacing * i)) for i in range(n)]


def _pad(data: np.ndarray, patch: Sequence[int]):
    """Zero-pad axes shorter than the patch (centred); returns the array and the crop back."""
    pads, back = [(0, 0)], [slice(None)]
    for n, p in zip(data.shape[1:], patch):
        d = max(p - n, 0)
        pads.append((d // 2, d - d // 2))
        back.append(slice(d // 2, d // 2 + n))
    return np.pad(data, pads, mode="constant", constant_values=0), tuple(back)


def predict_logits(forwards, data: np.ndarray, patch: Sequence[int], mirror_axes, progress=None) -> np.ndarray:
    """Mean logits (K, z, y, x) float16 of the folds on ``data`` (C, z, y, x).

    ``forwards``: one function per fold from a float32 batch (1, C, *patch) to its logits
    (1, K, *patch) (torch or ONNX Runtime; see :func:`fold_forwards`).
    """
    padded, back = _pad(data, patch)
    g = gaussian_weights(patch)
    starts = [tile_starts(n, p) for n, p in zip(padded.shape[1:], patch)]
    tiles = list(itertools.product(*starts))
    axes = [a + 2 for a in (mirror_axes or ())]
    flips = [c for r in range(1, len(axes) + 1) for c in itertools.combinations(axes, r)]
    total = None
    for f, forward in enumerate(forwards):
        logits = None
        weight = np.zeros(padded.shape[1:], dtype=np.float16)
        for t, corner in enumerate(tiles):
            sl = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            tile = np.ascontiguousarray(padded[(slice(None), *sl)][None])
            pred = forward(tile).astype(np.float32, copy=True)
            for c in flips:
                pred += np.flip(forward(np.ascontiguousarray(np.flip(tile, c))), c)
            pred /= len(flips) + 1
            pred = pred[0] * g  # float32 times the float16 map: float32, as in nnU-Net
            if logits is None:
                logits = np.zeros((pred.shape[0], *padded.shape[1:]), dtype=np.float16)
            logits[(slice(None), *sl)] += pred.astype(np.float16)
            weight[sl] += g
            if progress is not None:
                progress.update((f + (t + 1) / len(tiles)) / len(forwards), f"fold {f + 1} of {len(forwards)}: tile {t + 1} of {len(tiles)}")
        np.divide(logits, weight, out=logits)
        total = logits if total is None else total + logits
    if len(forwards) > 1:
        total /= np.float16(len(forwards))
    return np.ascontiguousarray(total[back])


def fold_forwards(model, runtime: str = "auto"):
    """(one forward function per fold, the engine); see :func:`..imported_files.network_forwards`."""
    from ..imported_files import network_forwards

    return network_forwards(model.folder, model.card, model.load_networks, runtime)


def segment_imported(channels: List[sitk.Image], folder, *, tta: bool = True, runtime: str = "auto", progress=None):
    """Run an imported nnU-Net model folder on co-registered channels; returns a MethodOutput
    (labels, softmax probabilities, normalised entropy, on the input's grid)."""
    from ....core.errors import InputError
    from ....core.progress import Progress
    from ..imported_output import imported_output
    from .importer import load_imported
    from .preprocess import preprocess, restore

    from ..model_cache import PROCESS_MODELS

    progress = progress or Progress()

    def load():
        model = load_imported(folder)  # every file's SHA-256 checked
        return (model, *fold_forwards(model, runtime))

    # Read, verified and opened once per process while its files are unchanged (a cohort's next cases).
    model, forwards, engine = PROCESS_MODELS.get(f"nnunet:{runtime}", folder, "cpu", load)
    conf = model.card["nnunet"]
    if len(channels) != len(conf["channel_names"]):
        raise InputError(f"the model expects {len(conf['channel_names'])} input channel(s) ({', '.join(conf['channel_names'].values())}), {len(channels)} given")
    progress.update(0.0, f"nnU-Net preprocessing (runtime: {engine})")
    data, context = preprocess(channels, conf)
    logits = predict_logits(forwards, data, conf["patch_size"], conf["mirror_axes"] if tta else None, progress.sub(0.05, 0.9))
    labels, prob = restore(logits, context, conf)
    progress.update(1.0, "nnU-Net inference done")
    return imported_output(
        labels, prob, channels[0], conf["labels"], card=model.card,
        parameters={"model": str(model.folder), "device": "cpu", "runtime": engine, "tta": tta},
        extra={"network": f"nnU-Net v2 {conf['architecture']['network']}", "runtime": "onnxruntime" if engine == "onnx" else "torch",
               "runtime_reason": f"imported nnU-Net model ({engine})", "folds": conf["folds"]},
    )
