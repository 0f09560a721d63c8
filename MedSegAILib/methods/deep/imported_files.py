"""Files of an imported model folder (nnU-Net v2, MONAI bundle): checked, exported, opened.

An imported model folder keeps one or more networks, each as ``<name>.safetensors`` with its
SHA-256 and, where the exporter is installed, ``<name>.onnx`` checked against torch. The card's
``format`` says where the model came from; :data:`IMPORTED_FORMATS` lists the formats and
:func:`networks_of` the card's list of networks (an nnU-Net model's folds, a bundle's network).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List, Optional, Sequence

from ...core.checksums import sha256_of_file
from ...core.errors import InputError

NNUNET = "nnunet-v2"
MONAI_BUNDLE = "monai-bundle"
IMPORTED_FORMATS = (NNUNET, MONAI_BUNDLE)


def is_imported(card: dict) -> bool:
    return card.get("format") in IMPORTED_FORMATS


def networks_of(card: dict) -> List[dict]:
    """The card's networks, each ``{"weights", "sha256", "onnx"?}`` (nnU-Net: one per fold)."""
    return list(card.get("folds") if card.get("format") == NNUNET else card.get("networks") or [])


def has_onnx_exports(card: dict) -> bool:
    nets = networks_of(card)
    return bool(nets) and all(m.get("onnx") for m in nets)


def checked_file(folder: Path, name: str, digest: str) -> Path:
    """``folder/name``, inside the folder and matching ``digest`` (SHA-256), or InputError."""
    path = Path(folder) / name
    if not path.is_file() or path.resolve().parent != Path(folder).resolve():
        raise InputError(f"'{folder}': the file '{name}' the card names is missing or outside the model folder")
    if sha256_of_file(path) != digest:
        raise InputError(f"'{path}' does not match the SHA-256 in model.json: the file was changed or damaged; import the model again")
    return path


def check_network_files(folder: Path, card: dict) -> None:
    """Every weights and ONNX file the card names checked against its SHA-256."""
    for m in networks_of(card):
        checked_file(folder, m["weights"], m["sha256"])
        if m.get("onnx"):
            checked_file(folder, m["onnx"]["file"], m["onnx"]["sha256"])


def onnx_sessions(folder: Path, card: dict, threads: int = 0) -> list:
    """One ONNX Runtime session per network (files checked when the model was loaded)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return [onnxruntime.InferenceSession(str(Path(folder) / m["onnx"]["file"]), options, providers=["CPUExecutionProvider"]) for m in networks_of(card)]


def exporter_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxscript", "onnxruntime"))


def export_onnx_checked(net, input_shape: Sequence[int], path: Path, *, tolerance: float = 1e-3, seed: int = 0) -> Optional[dict]:
    """Export ``net`` for inputs of ``input_shape`` (C, *patch) and check ONNX Runtime against
    torch on a random input; None (with nothing written) when the exporter is not installed.
    InputError (and no file) when the two differ by more than ``tolerance`` (relative)."""
    import numpy as np

    if not exporter_installed():
        return None
    import onnxruntime
    import torch

    from .onnx_export import OPSET, _quiet_exporter

    shape = tuple(int(s) for s in input_shape)
    with _quiet_exporter():
        program = torch.onnx.export(net.eval(), (torch.zeros((1, *shape)),), dynamo=True, input_names=["image"], output_names=["logits"], opset_version=OPSET, verbose=False)
        program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal((1, *shape)).astype(np.float32)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    worst = float(np.abs(session.run(None, {"image": x})[0] - ref).max() / max(1.0, float(np.abs(ref).max())))
    if worst > tolerance:
        path.unlink()
        raise InputError(f"ONNX Runtime differs from torch by {worst:.2e} (relative) on a random patch; the export was refused")
    return {"file": path.name, "sha256": sha256_of_file(path), "opset": OPSET, "max_relative_logit_difference": worst,
            "checked_with": f"onnxruntime {onnxruntime.__version__}", "exporter": f"torch.onnx (dynamo) {torch.__version__}"}


def canonical_tensors(net) -> dict:
    """Each parameter and buffer once, under its first name (aliases share the tensor)."""
    return {k: v.detach().contiguous() for k, v in list(net.named_parameters()) + list(net.named_buffers())}


def refuse_occupied(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise InputError(f"'{out}' already exists and is not empty; choose a new folder for the model")


def network_forwards(folder: Path, card: dict, load_torch_networks, runtime: str = "auto"):
    """(one forward function per network, the engine): ONNX Runtime when every network has an
    export and ``runtime`` is "onnx", or "auto" without torch installed; else torch, with the
    networks from ``load_torch_networks()``. Each forward maps a float32 batch (B, C, *patch) to
    its logits (B, K, *patch) as NumPy arrays."""
    from ...core.slabs import worker_count

    have_onnx = has_onnx_exports(card) and importlib.util.find_spec("onnxruntime") is not None
    if runtime == "onnx" and not have_onnx:
        raise InputError("runtime=onnx cannot be used: the imported model has no ONNX export or onnxruntime is not installed")
    if runtime == "onnx" or (runtime == "auto" and have_onnx and importlib.util.find_spec("torch") is None):
        return [lambda x, s=s: s.run(None, {"image": x})[0] for s in onnx_sessions(folder, card, threads=worker_count())], "onnx"
    import torch

    torch.set_num_threads(worker_count())

    def torch_forward(net):
        def forward(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        return forward

    return [torch_forward(net) for net in load_torch_networks()], "torch"
