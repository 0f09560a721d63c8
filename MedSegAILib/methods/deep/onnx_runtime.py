"""Running a model's ONNX export with ONNX Runtime, without torch or MONAI.

A model folder may hold ``model.onnx``, exported from its safetensors weights by
``medsegai export-onnx`` (see :mod:`.onnx_export`); the card's ``onnx`` entry records the file's
SHA-256 and the SHA-256 of the weights it came from. Loading checks both: a changed file is
refused, an export of other weights is never run. The torch runtime stays the reference (and
the only one for Monte-Carlo dropout and GPUs); this one exists because a fresh process that
imports torch and MONAI spends about 4 s before the first voxel, which every case pays when
the Slicer module runs the CLI, and because ONNX Runtime (about 30 MB) is all a user of a
shipped model then has to install.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np

from ...core.errors import InputError, MissingDependencyError
from ...core.progress import Progress
from .model_store import (
    ONNX_FILE,
    WEIGHTS,
    Ensemble,
    is_ensemble,
    member_cards,
    plan_of,
    read_card,
    read_verified_bytes,
    resolve_model_dir,
    verify_file,
    weights_name,
)
from .plan import Plan
from .sliding_window import sliding_window_logits

RUNTIMES = ("auto", "torch", "onnx")


@dataclass
class OnnxModel:
    """A verified ONNX export and its session. ``sha256`` is the weights' (the model's identity)."""

    session: object
    plan: Plan
    card: dict
    sha256: str
    onnx_sha256: str
    folder: Path


def export_status(folder: Path, card: dict) -> str:
    """"none" (no export recorded), "stale" (exported from other weights) or "ready"; for an
    ensemble, "ready" only when every member's export is."""
    states = {_member_export_status(folder, c) for c in member_cards(card, folder)}
    return "none" if "none" in states else "stale" if "stale" in states else "ready"


def _member_export_status(folder: Path, card: dict) -> str:
    entry = card.get("onnx")
    if not isinstance(entry, dict) or not (Path(folder) / str(entry.get("file", ONNX_FILE))).exists():
        return "none"
    if entry.get("weights_sha256") != card.get("sha256"):
        return "stale"
    return "ready"


def export_problem(folder: Path, card: dict) -> Optional[str]:
    """What keeps the model's ONNX export from running, with the command that mends it; None
    when the export is current (its files are checked when it is loaded)."""
    status = export_status(folder, card)
    if status == "none":
        return f"the model has no ONNX export (create one with: medsegai export-onnx {folder})"
    if status == "stale":
        return f"the model's ONNX export was made from other weights than {WEIGHTS} (export it again with: medsegai export-onnx {folder})"
    return None


def load_onnx_model(model: Union[str, Path], threads: Optional[int] = None) -> Union[OnnxModel, Ensemble]:
    """Verify a model's ONNX export and open an ONNX Runtime session on the CPU (one per
    member, in an Ensemble, for an ensemble folder).

    Raises InputError when the model has no export, when the export came from other weights,
    or when the file does not match its recorded SHA-256.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise MissingDependencyError("onnxruntime", "onnx", "the ONNX runtime of the deep method")
    folder = resolve_model_dir(model)
    card = read_card(folder)
    problem = export_problem(folder, card)
    if problem:
        raise InputError(problem)
    members = [_open_member(folder, c, threads) for c in member_cards(card, folder)]
    if is_ensemble(card):
        return Ensemble(members, members[0].plan, card, card["sha256"], folder)
    return members[0]


def _open_member(folder: Path, card: dict, threads: Optional[int]) -> OnnxModel:
    """One network's verified export in an ONNX Runtime session (``card``: see member_cards)."""
    import onnxruntime

    # The export stands for the weights: both files must be the recorded ones, and the bytes
    # that were hashed are the bytes ONNX Runtime gets (never the path again).
    remedy = f"; export it again with: medsegai export-onnx {folder}, or run with --param runtime=torch"
    of = "" if "member" not in card else f" of member {card['member']}"
    verify_file(folder, weights_name(card), card.get("sha256"), "the weights" + of, "; the model cannot be trusted")
    entry = card["onnx"]
    data, digest = read_verified_bytes(folder, entry.get("file", ONNX_FILE), entry.get("sha256"), "the ONNX export" + of, remedy)
    plan = plan_of(card, folder)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a file that matches its digest but is no valid ONNX model
        raise InputError(f"the ONNX export of '{folder}' cannot be opened by ONNX Runtime: {str(exc).splitlines()[0]}") from None
    channels = session.get_outputs()[0].shape[1] if len(session.get_outputs()[0].shape) > 1 else None
    if isinstance(channels, int) and channels != int(plan.num_classes):
        raise InputError(f"the ONNX export of '{folder}' gives {channels} output channels, the card's plan {plan.num_classes} classes")
    return OnnxModel(session, plan, card, card["sha256"], digest, folder)


TORCH_STACK = ("torch", "monai", "safetensors")


def _find(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def torch_gpu_usable() -> bool:
    """Whether torch, if installed, could use a GPU here, judged without importing it: Apple
    silicon (MPS), or an NVIDIA device with a CUDA build of torch (``libtorch_cuda``)."""
    if platform.system() == "Darwin":
        return platform.machine() == "arm64"
    if not (glob.glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi")):
        return False
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return bool(glob.glob(str(lib / "*torch_cuda*")))


def choose_runtime(
    model: Union[str, Path, object],
    runtime: str,
    device: str,
    mc_samples: int,
    *,
    installed: Callable[[str], bool] = _find,
    gpu_usable: Callable[[], bool] = torch_gpu_usable,
) -> Tuple[str, str]:
    """("onnx" or "torch", the reason in words). The one rule, used by the run and by the
    Slicer module's install question (which passes ``installed`` with onnxruntime counted in).

    ``auto`` takes ONNX Runtime when the model has a current export, onnxruntime is installed,
    no Monte-Carlo dropout is asked for and the run is on the CPU: ``--device cpu``, or
    ``auto`` unless torch, MONAI and safetensors are all installed and torch could use a GPU.
    Otherwise torch. An explicit ``onnx`` that cannot be honoured is an error naming why.
    """
    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}; got '{runtime}'")
    if runtime == "torch":
        return "torch", "runtime=torch was asked for"
    if not isinstance(model, (str, Path)):
        if runtime == "auto":
            return "torch", "model already loaded in torch"
        model = model.folder
    folder = resolve_model_dir(model)
    problem = export_problem(folder, read_card(folder))
    blockers = [problem] if problem else []
    if not installed("onnxruntime"):
        blockers.append("onnxruntime is not installed")
    if mc_samples:
        blockers.append("Monte-Carlo dropout needs the torch runtime")
    if device not in ("auto", "cpu"):
        blockers.append(f"the ONNX runtime runs on the CPU, --device {device} was asked for")
    if runtime == "onnx":
        if blockers:
            raise InputError("runtime=onnx cannot be used: " + "; ".join(blockers))
        return "onnx", "runtime=onnx was asked for"
    if blockers:
        if blockers == ["onnxruntime is not installed"] and not installed("torch"):
            raise MissingDependencyError("onnxruntime", "onnx", "the deep method (this model runs with ONNX Runtime on the CPU)")
        return "torch", blockers[0]
    if device == "auto" and all(installed(m) for m in TORCH_STACK) and gpu_usable():
        return "torch", "torch can use a GPU here"
    return "onnx", "CPU run with a current ONNX export"


def predict_logit_passes(model: OnnxModel, arr: np.ndarray, flips: Sequence[Tuple[int, ...]], overlap: float = 0.25):
    """Yield the blended logits (K, Z, Y, X) of each flip pass over ``arr`` (C, Z, Y, X).

    ``flips`` are tensor axes of (B, C, Z, Y, X), as in the torch runtime.
    """
    name = model.session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return model.session.run(None, {name: batch})[0]

    for flip in flips:
        axes = tuple(a - 1 for a in flip)
        x = np.flip(arr, axes) if axes else arr
        logits = sliding_window_logits(forward, x, model.plan.patch_size_zyx, overlap=overlap)
        yield np.flip(logits, axes) if axes else logits


def predict_array_onnx(
    model: OnnxModel,
    arr: np.ndarray,
    *,
    flips: Sequence[Tuple[int, ...]],
    overlap: float = 0.25,
    progress: Optional[Progress] = None,
):
    """Mean softmax (K, Z, Y, X) and mutual information (Z, Y, X), as ``inference.predict_array``."""
    from .pass_averaging import average_passes

    return average_passes(predict_logit_passes(model, arr, flips, overlap), len(flips), progress)
