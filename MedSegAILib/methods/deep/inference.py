"""Inference: sliding window with Gaussian blending, test-time flips, Monte-Carlo dropout,
predictive entropy and mutual information, back onto the input's exact grid.

The predictive distribution is the mean softmax over T passes (flips x dropout samples).
Uncertainty = normalised predictive entropy H[E p] / log K (total); the epistemic part is the
mutual information H[E p] - E H[p] (also normalised by log K).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError, MissingDependencyError, ResourceError
from ...core.memory import available_memory_bytes
from ...core.progress import Progress
from ...core.slabs import worker_count
from ...uncertainty.entropy import normalized_entropy
from .model_cache import PROCESS_MODELS
from .model_store import resolve_model_dir
from .pass_averaging import average_members, average_passes
from .preprocess import prepare_channels

FLIPS_3D = ((), (2,), (3,), (4,))  # tensor axes (B, C, Z, Y, X): none, z, y, x


def resolve_device(device: str = "auto") -> str:
    """"auto" -> CUDA if available, then Apple MPS, then CPU; an unavailable choice is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is available to torch here; use --device auto or cpu")
    if device not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device '{device}'; use auto, cpu or cuda")
    return device


def estimate_memory_bytes(shape_zyx: Sequence[int], plan, passes: int) -> int:
    """Rough peak memory of inference: the volume's probability buffers (K floats a voxel,
    sliding-window accumulators and the running mean/entropy sums) plus the network's
    activations on two patches (about 6 feature maps of the widest level)."""
    voxels = int(np.prod(shape_zyx))
    k = plan.num_classes
    volume = voxels * 4 * (3 * k + 4)
    patch = int(np.prod(plan.patch_size_zyx)) * 4 * sum(plan.features) * 6 * 2
    return volume + patch + 300 * 1024**2


def _enable_dropout(net) -> None:
    import torch

    for m in net.modules():
        if isinstance(m, (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d)):
            m.train()


def predict_array(
    net,
    arr: np.ndarray,
    plan,
    *,
    device: str = "cpu",
    flips: Sequence[Tuple[int, ...]] = FLIPS_3D,
    mc_samples: int = 0,
    overlap: float = 0.25,
    progress: Optional[Progress] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Mean softmax (K, Z, Y, X) and mutual information (Z, Y, X) of ``net`` on ``arr`` (C, Z, Y, X)."""
    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(arr[None])).to(device)
    roi = list(plan.patch_size_zyx)
    runs = [(f, False) for f in flips] + [((), True)] * int(mc_samples)

    def passes():
        # Mixed precision on CUDA (half the memory, tensor cores); probabilities are taken in float32.
        amp = torch.autocast("cuda", dtype=torch.float16, enabled=str(device).startswith("cuda"))
        net.eval()
        try:
            with torch.inference_mode(), amp:
                for flip, dropout in runs:
                    if dropout:
                        _enable_dropout(net)
                    xi = torch.flip(x, flip) if flip else x
                    logits = sliding_window_inference(xi, roi, 2, net, overlap=overlap, mode="gaussian", padding_mode="constant")
                    if flip:
                        logits = torch.flip(logits, flip)
                    yield logits[0].float().cpu().numpy()
        finally:
            net.eval()

    return average_passes(passes(), len(runs), progress)


def onto_input_grid(arr: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A (Z, Y, X) map on the plan grid ``grid`` brought onto the input's grid (linear, float32)."""
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def probabilities_to_input_grid(prob: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Bring (K, Z, Y, X) probabilities from the plan grid to the input grid (linear), renormalised."""
    from ...io.images import same_grid

    if same_grid(grid, reference):
        return prob
    out = []
    for k in range(prob.shape[0]):
        img = sitk.GetImageFromArray(prob[k])
        img.CopyInformation(grid)
        out.append(sitk.GetArrayFromImage(sitk.Resample(img, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)))
    p = np.stack(out)
    p[0] += np.maximum(0.0, 1.0 - p.sum(axis=0))  # outside the resampled field: background
    return p / np.maximum(p.sum(axis=0, keepdims=True), 1e-8)


def segment_with_model(
    channels: List[sitk.Image],
    model,
    *,
    device: str = "auto",
    tta: bool = True,
    mc_samples: int = 0,
    uncertainty: str = "entropy",
    runtime: str = "auto",
    progress: Optional[Progress] = None,
    keep_samples: bool = False,
):
    """Run a loaded or named model on co-registered channels; returns a MethodOutput.

    Parameters
    ----------
    channels : list of sitk.Image
        As many channels as the model's plan has, on one grid.
    model : LoadedModel (torch), OnnxModel, an Ensemble of either, or a shipped model name / model folder
        An ensemble averages its members' probabilities (each with the same flips and
        dropout passes); its mutual information includes their disagreement, and the output's
        ``member_uncertainty`` is the members' mean own entropy (for the domain check).
    device : "auto", "cpu" or "cuda"
    tta : bool
        Average over flips along each axis (4 passes).
    mc_samples : int
        Extra passes with dropout active (Monte-Carlo dropout; torch runtime only).
    uncertainty : "entropy" (total) or "mutual_information" (epistemic)
    runtime : "auto", "torch" or "onnx"
        Which engine runs the network; see :func:`.onnx_runtime.choose_runtime`. Both give the
        same probabilities to about 1e-4 (checked by the tests on real cases).
    keep_samples : bool
        For an ensemble, keep each member's labelmap in the output's ``label_samples``.
    """
    from ...core.classes import ClassInfo
    from ...core.result import MethodOutput
    from ...core.terminology import lookup_terminology
    from ...uncertainty.entropy import probabilities_image
    from .onnx_runtime import OnnxModel, choose_runtime, load_onnx_model, predict_array_onnx

    progress = progress or Progress()
    if uncertainty not in ("entropy", "mutual_information"):
        raise InputError(f"uncertainty must be 'entropy' or 'mutual_information', got '{uncertainty}'")
    from .model_store import Ensemble, LoadedModel, load_model

    given_onnx = isinstance(model, OnnxModel) or (isinstance(model, Ensemble) and isinstance(model.members[0], OnnxModel))
    if given_onnx:
        engine, why = "onnx", "model loaded in ONNX Runtime"
        if mc_samples or runtime == "torch" or device not in ("auto", "cpu"):
            raise InputError(
                "the model given is an ONNX Runtime session (CPU, no Monte-Carlo dropout); pass the model's "
                "name or folder, or load it with load_model, to run with torch"
            )
    else:
        engine, why = choose_runtime(model, runtime, device, mc_samples)
    if engine == "onnx":
        dev = "cpu"
        progress.update(0.0, f"runtime: ONNX Runtime on the CPU ({why})")
        if not given_onnx:
            folder = resolve_model_dir(model if isinstance(model, (str, Path)) else model.folder)
            # Read and verified once per process while its files are unchanged (a cohort worker's next cases).
            model = PROCESS_MODELS.get("onnx", folder, "cpu", lambda: load_onnx_model(folder, threads=worker_count()))
    else:
        try:
            import monai  # noqa: F401
            import torch
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "torch", "deep", f"the torch runtime of the deep method (chosen because {why})") from exc
        dev = resolve_device(device)
        progress.update(0.0, f"runtime: torch, device: {dev} ({why})")
        if not isinstance(model, (LoadedModel, Ensemble)):
            folder = resolve_model_dir(model)
            model = PROCESS_MODELS.get("torch", folder, dev, lambda: load_model(folder, dev))
        else:
            for member in _members(model):
                member.network.to(dev)
    plan = model.plan
    members = _members(model)
    if len(channels) != plan.in_channels:
        raise InputError(f"the model expects {plan.in_channels} input channel(s), {len(channels)} given")
    arr, grid = prepare_channels(channels, plan)
    flips = FLIPS_3D if tta else ((),)
    need = estimate_memory_bytes(arr.shape[1:], plan, len(flips) + mc_samples)
    have = available_memory_bytes()
    if need > 0.9 * have:
        raise ResourceError(f"inference would need about {need / 1e9:.1f} GB of memory, {have / 1e9:.1f} GB are available; crop the volume or use a machine with more memory")
    if engine == "torch":
        torch.set_num_threads(worker_count())

    def member_results():
        span = 0.85 / len(members)
        for i, member in enumerate(members):
            part = progress.sub(0.05 + i * span, 0.05 + (i + 1) * span)
            if engine == "onnx":
                yield predict_array_onnx(member, arr, flips=flips, progress=part)
            else:
                yield predict_array(member.network, arr, plan, device=dev, flips=flips, mc_samples=mc_samples, progress=part)

    prob, mi, own, agreement, member_labels = average_members(member_results(), len(members))
    prob = probabilities_to_input_grid(prob, grid, channels[0])
    labels = np.argmax(prob, axis=0).astype(np.uint8)
    label_img = sitk.GetImageFromArray(labels)
    label_img.CopyInformation(channels[0])
    prob_img = probabilities_image(np.moveaxis(prob, 0, -1), channels[0])
    if uncertainty == "mutual_information":
        unc = onto_input_grid(mi, grid, channels[0])
    else:
        unc = sitk.GetImageFromArray(normalized_entropy(prob, axis=0))
        unc.CopyInformation(channels[0])
    member_unc = samples = None
    if len(members) > 1 and keep_samples:
        samples = []
        for lab_m in member_labels:
            img = sitk.GetImageFromArray(lab_m)
            img.CopyInformation(grid)
            samples.append(sitk.Resample(img, channels[0], sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    del member_labels
    if len(members) > 1:
        member_unc = onto_input_grid(own, grid, channels[0])
    classes = []
    for lab in range(1, plan.num_classes):
        name = plan.class_names.get(str(lab), f"Label {lab}")
        color = tuple(plan.class_colors.get(str(lab), (0.5, 0.5, 0.5)))
        classes.append(ClassInfo(lab, name, color, lookup_terminology(name)))
    progress.update(1.0, "deep inference done")
    return MethodOutput(
        labels=label_img,
        classes=classes,
        probabilities=prob_img,
        uncertainty=unc,
        parameters={"model": str(model.folder), "device": dev, "runtime": engine, "tta": tta, "mc_samples": mc_samples, "uncertainty": uncertainty},
        model_hash=model.sha256,
        member_uncertainty=member_unc,
        label_samples=samples,
        extra={
            "network": plan.network,
            "model_name": model.card.get("name"),
            "device": dev,
            "runtime": "onnxruntime" if engine == "onnx" else "torch",
            "runtime_reason": why,
            **({"ensemble_members": [m.sha256 for m in members], "member_agreement": round(agreement, 4)} if len(members) > 1 else {}),
            **({"onnx_sha256": members[0].onnx_sha256 if len(members) == 1 else [m.onnx_sha256 for m in members]} if engine == "onnx" else {}),
        },
    )


def _members(model) -> list:
    """The networks of a loaded model: an Ensemble's members, or the model itself."""
    from .model_store import Ensemble

    return list(model.members) if isinstance(model, Ensemble) else [model]
