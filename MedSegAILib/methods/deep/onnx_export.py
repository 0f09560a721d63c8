"""Exporting a model's verified weights to ONNX, checked against torch before it is kept.

The export is derived from ``model.safetensors``: the weights are verified, the network is
built from the plan, torch's ONNX exporter (the ``torch.export`` based one) writes the graph
for patches of the plan's size with a free batch size, and ONNX Runtime must then reproduce the
torch logits on random patches (batch 1 and 3) within ``tolerance`` before the file replaces any
earlier export. The card's ``onnx`` entry and ``model.sha256`` record the file's SHA-256 and
the weights it came from; :mod:`.onnx_runtime` checks both before running it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Dict, Union

import numpy as np

from ...core.errors import InputError, MissingDependencyError
from .model_store import CARD, CHECKSUM, ONNX_FILE, WEIGHTS, Ensemble, load_model, sha256_file

OPSET = 18


@contextlib.contextmanager
def _quiet_exporter():
    """Hold back the exporter's progress lines and warnings about packages it does not need
    (torchvision operators); the loggers' levels are restored afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".partial")
    part.write_text(text)
    os.replace(part, path)


def _install_export(folder: Path, onnx_tmp: Path, entry: Dict, weights_sha256: str) -> None:
    """Move a checked export into place so that an interruption at any point leaves a folder
    that runs: first the card forgets any earlier export (runs go to torch), then the file and
    ``model.sha256`` are replaced, and only then does the card name the new export."""
    card = json.loads((folder / CARD).read_text())
    if card.pop("onnx", None) is not None:
        _write_atomic(folder / CARD, json.dumps(card, indent=2))
    os.replace(onnx_tmp, folder / ONNX_FILE)
    _write_atomic(folder / CHECKSUM, f"{weights_sha256}  {WEIGHTS}\n{entry['sha256']}  {ONNX_FILE}\n")
    card["onnx"] = entry
    _write_atomic(folder / CARD, json.dumps(card, indent=2))


def export_and_compare(net, shape, path: Path, *, batch_sizes=(1,), dynamic_batch: bool = False, seed: int = 0) -> float:
    """Export ``net`` (inputs (B, *shape) float32) to ``path`` with torch's dynamo exporter and
    return the largest difference between ONNX Runtime's and torch's logits on random batches of
    ``batch_sizes``, relative to the largest logit magnitude. ``dynamic_batch``: the batch axis
    of the export is free (else 1). InputError when the logits' shapes differ."""
    import onnxruntime
    import torch

    shape = tuple(int(s) for s in shape)
    if dynamic_batch:
        example = torch.zeros((2, *shape), dtype=torch.float32)
        extra = {"dynamic_shapes": ({0: torch.export.Dim("batch", min=1, max=1024)},)}
    else:
        example, extra = torch.zeros((1, *shape), dtype=torch.float32), {}
    with _quiet_exporter():
        program = torch.onnx.export(net, (example,), dynamo=True, input_names=["image"], output_names=["logits"], opset_version=OPSET, verbose=False, **extra)
        program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batch_sizes:
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {"image": x})[0]
        if got.shape != ref.shape:
            raise InputError(f"the ONNX export gives logits of shape {got.shape}, torch {ref.shape}; export refused")
        worst = max(worst, float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max()))))
    return worst


def export_onnx(model: Union[str, Path], *, tolerance: float = 1e-3, seed: int = 0) -> Dict:
    """Write ``model.onnx`` beside a model's weights and record it; returns the card's entry.

    Parameters
    ----------
    model : shipped model name or model folder
    tolerance : float
        Largest accepted difference between ONNX Runtime and torch logits, relative to the
        largest logit magnitude (logits are unitless).
    seed : int
        Seed of the random check patches.
    """
    for package, extra in (("torch", "deep"), ("onnxscript", "deep"), ("onnxruntime", "onnx")):
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, extra, "exporting a model to ONNX")
    import onnxruntime
    import torch

    loaded = load_model(model, "cpu")
    if isinstance(loaded, Ensemble):
        raise InputError(f"'{loaded.folder}' is an ensemble: export each member with medsegai export-onnx MEMBER_DIR, then assemble them again with medsegai ensemble")
    folder, plan, net = loaded.folder, loaded.plan, loaded.network.eval()
    shape = (plan.in_channels, *plan.patch_size_zyx)
    tmp = folder / (ONNX_FILE + ".partial")
    try:
        worst = export_and_compare(net, shape, tmp, batch_sizes=(1, 3), dynamic_batch=True, seed=seed)
        if worst > tolerance:
            raise InputError(f"ONNX Runtime differs from torch by {worst:.2e} (relative) on random patches, above {tolerance:.0e}; export refused")
        entry = {
            "file": ONNX_FILE,
            "sha256": sha256_file(tmp),
            "weights_sha256": loaded.sha256,
            "opset": OPSET,
            "input": {"name": "image", "shape": ["batch", *shape]},
            "exporter": f"torch.onnx (dynamo) {torch.__version__}",
            "checked_with": f"onnxruntime {onnxruntime.__version__}",
            "max_relative_logit_difference": worst,
        }
        _install_export(folder, tmp, entry, loaded.sha256)
    finally:
        if tmp.exists():
            tmp.unlink()
    return entry
