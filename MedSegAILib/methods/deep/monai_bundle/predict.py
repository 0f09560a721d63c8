"""An imported MONAI bundle run the way its transforms and MONAI's inferer run it.

MONAI reads an image as an array in (x, y, z) order with a RAS affine; ``Orientationd`` turns
its axes (as SimpleITK's ``DICOMOrient`` does: both name the direction each axis runs
towards), ``Spacingd`` resamples onto the target spacing keeping the first voxel's position
and ``round((n - 1) * old / new) + 1`` voxels, values beyond the last voxel held at the border
(as MONAI's "border" padding). Intensity steps follow MONAI's formulas. The sliding window is
:func:`..sliding_window.sliding_window_logits` (MONAI's window placement, constant or Gaussian
blending); ``Invertd`` brings the softmax back onto the input grid (linear, or nearest
neighbour when the bundle asks), and the labels are its argmax there.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
import SimpleITK as sitk


def _to_spacing(image: sitk.Image, pixdim: Sequence[float], mode: str) -> sitk.Image:
    """``image`` resampled onto ``pixdim`` (x, y, z mm), same origin and direction."""
    old = np.array(image.GetSpacing())
    if np.allclose(old, pixdim, rtol=1e-3):
        return image
    size = [int(max(1, round((n - 1) * o / p + 1))) for n, o, p in zip(image.GetSize(), old, pixdim)]
    interp = sitk.sitkNearestNeighbor if mode == "nearest" else sitk.sitkLinear
    # The last sample may lie up to half a new voxel beyond the last voxel. MONAI's "border"
    # padding clamps that coordinate and still interpolates along the other axes; one replicated
    # voxel on every side (zero-flux Neumann padding) gives the same values.
    padded = sitk.ZeroFluxNeumannPad(image, [1, 1, 1], [1, 1, 1])
    return sitk.Resample(padded, size, sitk.Transform(), interp, image.GetOrigin(), [float(p) for p in pixdim], image.GetDirection(),
                         0.0, sitk.sitkFloat32, True)


def _intensity(data: np.ndarray, step: dict) -> np.ndarray:
    """One intensity step on (C, ...) float32, MONAI's formulas."""
    op = step["op"]
    if op == "scale_range":
        a0, a1, b0, b1 = step["a_min"], step["a_max"], step["b_min"], step["b_max"]
        if a1 == a0:
            return data - a0 + (b0 or 0.0)
        out = (data - a0) / (a1 - a0)
        if b0 is not None and b1 is not None:
            out = out * (b1 - b0) + b0
        return np.clip(out, b0, b1) if step["clip"] else out
    if op == "normalize":
        def norm(x):
            x = x.astype(np.float32, copy=True)
            sel = x != 0 if step["nonzero"] else np.ones(x.shape, dtype=bool)
            if not sel.any():
                return x
            vals = x[sel].astype(np.float64)
            sd = float(vals.std()) or 1.0
            x[sel] = ((vals - vals.mean()) / sd).astype(np.float32)
            return x
        return np.stack([norm(c) for c in data]) if step["channel_wise"] else norm(data)
    if op == "scale":
        lo, hi = float(data.min()), float(data.max())
        if hi == lo:
            return data * step["minv"] if step["minv"] is not None else data
        out = (data - lo) / (hi - lo)
        return out if step["minv"] is None or step["maxv"] is None else out * (step["maxv"] - step["minv"]) + step["minv"]
    raise ValueError(op)


def preprocess(channels: List[sitk.Image], description: dict) -> Tuple[np.ndarray, sitk.Image]:
    """(data (C, x, y, z) float32 as the network sees it, the grid it lies on as a SimpleITK image)."""
    images = [sitk.Cast(c, sitk.sitkFloat32) for c in channels]
    for step in description["preprocessing"]:
        if step["op"] == "orientation":
            images = [sitk.DICOMOrient(im, step["axcodes"]) for im in images]
        elif step["op"] == "spacing":
            images = [_to_spacing(im, step["pixdim"], step["mode"]) for im in images]
        else:
            data = _intensity(np.stack([sitk.GetArrayFromImage(im) for im in images]).astype(np.float32), step)
            new = [sitk.GetImageFromArray(np.ascontiguousarray(d, dtype=np.float32)) for d in data]
            for n, im in zip(new, images):
                n.CopyInformation(im)
            images = new
    data = np.stack([sitk.GetArrayFromImage(im).transpose(2, 1, 0) for im in images]).astype(np.float32)
    return np.ascontiguousarray(data), images[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return (e / e.sum(axis=0, keepdims=True)).astype(np.float32)


def window_logits(forward, data: np.ndarray, inferer: dict, batch: int, progress=None) -> np.ndarray:
    """Logits (K, x, y, z) of the network over ``data`` (C, x, y, z), as the bundle's inferer."""
    from ..sliding_window import gaussian_importance, sliding_window_logits

    if inferer["kind"] == "simple":
        return forward(data[None])[0].astype(np.float32)
    roi = [int(r) if r > 0 else int(n) for r, n in zip(inferer["roi_size"], data.shape[1:])]
    weight = gaussian_importance(roi, inferer["sigma_scale"]) if inferer["mode"] == "gaussian" else np.ones(roi, dtype=np.float32)
    return sliding_window_logits(forward, data, roi, overlap=inferer["overlap"], batch=batch, weight=weight)


def to_input_grid(prob: np.ndarray, grid: sitk.Image, reference: sitk.Image, nearest: bool) -> np.ndarray:
    """Probabilities (K, x, y, z) on ``grid`` to (K, z, y, x) on ``reference``'s grid."""
    zyx = [np.ascontiguousarray(p.transpose(2, 1, 0)) for p in prob]
    same = (grid.GetSize() == reference.GetSize() and np.allclose(grid.GetSpacing(), reference.GetSpacing())
            and np.allclose(grid.GetOrigin(), reference.GetOrigin()) and np.allclose(grid.GetDirection(), reference.GetDirection()))
    if same:
        return np.stack(zyx)
    out = []
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    for p in zyx:
        im = sitk.GetImageFromArray(p)
        im.CopyInformation(grid)
        im = sitk.ZeroFluxNeumannPad(im, [1, 1, 1], [1, 1, 1])  # border values beyond the grid, as in _to_spacing
        out.append(sitk.GetArrayFromImage(sitk.Resample(im, reference, sitk.Transform(), interp, 0.0, sitk.sitkFloat32, True)))
    return np.stack(out).astype(np.float32)


def segment_bundle(channels: List[sitk.Image], folder, *, runtime: str = "auto", progress=None):
    """Run an imported MONAI bundle folder on co-registered channels; returns a MethodOutput
    (labels, softmax probabilities, normalised entropy, on the input's grid)."""
    from ....core.errors import InputError
    from ....core.progress import Progress
    from ..imported_files import network_forwards
    from ..imported_output import imported_output
    from ..model_cache import PROCESS_MODELS
    from .importer import load_bundle_model

    progress = progress or Progress()

    def load():
        model = load_bundle_model(folder)  # every file's SHA-256 checked
        return (model, *network_forwards(model.folder, model.card, model.load_networks, runtime))

    model, forwards, engine = PROCESS_MODELS.get(f"monai-bundle:{runtime}", folder, "cpu", load)
    description = model.card["bundle"]
    if len(channels) != description["in_channels"]:
        raise InputError(f"the model expects {description['in_channels']} input channel(s), {len(channels)} given")
    progress.update(0.0, f"bundle preprocessing (runtime: {engine})")
    data, grid = preprocess(channels, description)
    progress.update(0.1, "bundle sliding window")
    batch = 1 if engine == "onnx" else int(description["inferer"].get("sw_batch_size", 1))
    logits = window_logits(forwards[0], data, description["inferer"], batch)
    progress.update(0.85, "back to the input grid")
    post = description["postprocessing"]
    prob = to_input_grid(softmax(logits), grid, channels[0], nearest=post["nearest_interp"])
    labels = np.argmax(prob, axis=0)
    progress.update(1.0, "bundle inference done")
    return imported_output(
        labels, prob, channels[0], description["labels"], card=model.card,
        parameters={"model": str(model.folder), "device": "cpu", "runtime": engine},
        extra={"network": f"MONAI {description['network']['_target_']} (bundle)", "runtime": "onnxruntime" if engine == "onnx" else "torch",
               "runtime_reason": f"imported MONAI bundle ({engine})"},
    )
