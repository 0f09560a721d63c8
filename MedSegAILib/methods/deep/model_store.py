"""Models on disk: safetensors weights, a JSON model card, and a SHA-256 — never pickle.

A model folder holds ``model.safetensors``, ``model.json`` (plan, classes, training data,
validation figures, software versions, the weights' SHA-256) and ``model.sha256``, and may hold
``model.onnx``, an export of the same weights (see ``onnx_export``), recorded in both. Loading
checks the weights' SHA-256 against both records and refuses a mismatch, so a tampered or
truncated file is never run. Shipped models live in ``Resources/Models/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from ...core.errors import InputError
from ...resources import models_dir
from .plan import Plan

WEIGHTS = "model.safetensors"
CARD = "model.json"
CHECKSUM = "model.sha256"
ONNX_FILE = "model.onnx"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_dir(model: Union[str, Path]) -> Path:
    """A model folder from a shipped name (``hippocampus``) or a path."""
    p = Path(model)
    if p.is_dir():
        return p
    shipped = models_dir() / str(model)
    if shipped.is_dir():
        return shipped
    names = sorted(d.name for d in models_dir().iterdir() if (d / CARD).exists()) if models_dir().is_dir() else []
    raise InputError(f"no model folder or shipped model named '{model}'; shipped models: {', '.join(names) or 'none'}")


def save_model(folder: Path, state_dict: Dict, plan: Plan, card: Dict) -> str:
    """Write weights, card and checksum; returns the weights' SHA-256."""
    import safetensors.torch
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # An ONNX export belongs to the weights it came from; new weights make it stale.
    (folder / ONNX_FILE).unlink(missing_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    safetensors.torch.save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    digest = sha256_file(folder / WEIGHTS)
    full = dict(card)
    full.update(
        {
            "plan": plan.to_dict(),
            "weights": WEIGHTS,
            "sha256": digest,
            "versions": {"python": platform.python_version(), "torch": torch.__version__, **_versions()},
        }
    )
    (folder / CARD).write_text(json.dumps(full, indent=2))
    (folder / CHECKSUM).write_text(f"{digest}  {WEIGHTS}\n")
    return digest


def _versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("monai", "medsegai", "safetensors", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class LoadedModel:
    network: object
    plan: Plan
    card: dict
    sha256: str
    folder: Path


def read_card(folder: Path) -> dict:
    folder = Path(folder)
    if not (folder / CARD).exists() or not (folder / WEIGHTS).exists():
        raise InputError(f"'{folder}' is not a MedSegAI model folder (it needs {WEIGHTS} and {CARD})")
    return json.loads((folder / CARD).read_text())


@dataclass
class VerifiedWeights:
    """A model folder's card, plan and weights, read after the SHA-256 check."""

    state_dict: Dict
    plan: Plan
    card: dict
    sha256: str
    folder: Path


def recorded_checksums(folder: Path) -> Dict[str, str]:
    """{file name: SHA-256} from ``model.sha256`` (``<digest>  <file>`` lines)."""
    path = Path(folder) / CHECKSUM
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[1]] = parts[0]
    return out


def verify_file(folder: Path, name: str, card_digest: Optional[str], what: str, remedy: str = "") -> str:
    """SHA-256 of ``folder/name`` once it equals the card's digest and the ``model.sha256``
    line (when listed); raises InputError naming the file otherwise. Imports nothing heavy."""
    path = Path(folder) / name
    digest = sha256_file(path)
    recorded = {card_digest}
    listed = recorded_checksums(folder).get(name)
    if listed:
        recorded.add(listed)
    if recorded != {digest}:
        raise InputError(
            f"the SHA-256 of {what} '{path}' does not match the recorded one "
            f"(file {digest[:12]}..., recorded {', '.join(sorted(r[:12] + '...' for r in recorded if r))}); "
            f"the file was changed or damaged, refusing to load it{remedy}"
        )
    return digest


def read_verified_weights(model: Union[str, Path]) -> VerifiedWeights:
    """Read a model's weights (safetensors, no pickle) once their SHA-256 matches the card and
    ``model.sha256``; raises InputError on a mismatch. Builds no network."""
    import safetensors.torch

    folder = resolve_model_dir(model)
    card = read_card(folder)
    digest = verify_file(folder, WEIGHTS, card.get("sha256"), "the weights")
    state = safetensors.torch.load_file(str(folder / WEIGHTS), device="cpu")
    return VerifiedWeights(state, Plan.from_dict(card["plan"]), card, digest, folder)


def load_model(model: Union[str, Path], device: Optional[str] = "cpu") -> LoadedModel:
    """Verify and load a model; raises InputError when the checksum does not match."""
    from .networks import build_network

    w = read_verified_weights(model)
    net = build_network(w.plan)
    net.load_state_dict(w.state_dict)
    net.to(device or "cpu")
    net.eval()
    return LoadedModel(net, w.plan, w.card, w.sha256, w.folder)
