"""Models on disk: safetensors weights, a JSON model card, and a SHA-256 — never pickle.

A model folder holds ``model.safetensors``, ``model.json`` (plan, classes, training data,
validation figures, software versions, the weights' SHA-256) and ``model.sha256``, and may hold
``model.onnx``, an export of the same weights (see ``onnx_export``), recorded in both. Loading
checks the weights' SHA-256 against both records and refuses a mismatch, so a tampered or
truncated file is never run. Shipped models live in ``Resources/Models/<name>``.

An ensemble is one folder with one card whose ``members`` list names each member's weights
(``member<k>.safetensors``), their SHA-256 and their ONNX export (``member<k>.onnx``), next to
the plan, classes and domain the members share; ``sha256`` is then the ensemble's identity, the
SHA-256 of the members' digests in order (:func:`ensemble_digest`). Every member file is
verified like a single model's weights. :func:`member_cards` gives each member as a card of
its own, so one code path loads, verifies and runs either kind.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ...core.errors import InputError
from ...resources import models_dir
from .imported_files import IMPORTED_FORMATS
from .plan import Plan

WEIGHTS = "model.safetensors"
CARD = "model.json"
CHECKSUM = "model.sha256"
ONNX_FILE = "model.onnx"


def sha256_file(path: Path) -> str:
    from ...core.checksums import sha256_of_file

    return sha256_of_file(path)


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


@dataclass
class Ensemble:
    """The verified members of an ensemble folder (each a LoadedModel or an OnnxModel), with
    the shared plan and the one card; ``sha256`` is the ensemble's identity."""

    members: List
    plan: Plan
    card: dict
    sha256: str
    folder: Path


def read_card(folder: Path) -> dict:
    folder = Path(folder)
    if not (folder / CARD).exists():
        raise InputError(f"'{folder}' is not a MedSegAI model folder (it needs {WEIGHTS} and {CARD})")
    try:
        card = json.loads((folder / CARD).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the model card '{folder / CARD}' is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise InputError(f"the model card '{folder / CARD}' is not a JSON object")
    # Ensembles keep member<k>.safetensors, imported models the files their card lists (imported_files).
    if not is_ensemble(card) and card.get("format") not in IMPORTED_FORMATS and not (folder / WEIGHTS).exists():
        raise InputError(f"'{folder}' is not a MedSegAI model folder (it needs {WEIGHTS} and {CARD})")
    return card


def is_ensemble(card: dict) -> bool:
    """Whether a card describes an ensemble (a ``members`` list)."""
    return "members" in card


def ensemble_digest(member_digests) -> str:
    """An ensemble's identity: the SHA-256 of its members' SHA-256 digests, in order."""
    return hashlib.sha256("\n".join(member_digests).encode()).hexdigest()


def member_cards(card: dict, folder: Path) -> List[dict]:
    """Each network of a model as a card of its own: ``[card]`` for one network; for an
    ensemble, the shared entries (plan, classes, domain, ...) with each member's ``weights``,
    ``sha256`` and ``onnx``. InputError when the members list is malformed or its recorded
    identity does not match the members' digests."""
    if not is_ensemble(card):
        return [card]
    members = card["members"]
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
        raise InputError(f"the model card of '{folder}' has an unusable members list (it needs one entry per member)")
    shared = {k: v for k, v in card.items() if k != "members"}
    out = []
    for i, m in enumerate(members):
        if not isinstance(m.get("weights"), str) or not isinstance(m.get("sha256"), str):
            raise InputError(f"member {i} of the ensemble '{folder}' names no weights file and SHA-256")
        out.append({**shared, **m, "member": i})
    if card.get("sha256") != ensemble_digest([m["sha256"] for m in members]):
        raise InputError(f"the ensemble identity recorded in '{folder / CARD}' does not match its members' SHA-256; the card was changed, refusing to load it")
    return out


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


def model_file(folder: Path, name: str, what: str) -> Path:
    """The file ``name`` that a model card names, resolved inside ``folder``.

    A card is data from wherever the model came from: a name that is absolute, climbs out with
    ``..``, or is a symbolic link leading out of the folder is refused (InputError), so every
    file that is checked and run lies in the model's own folder.
    """
    folder = Path(folder)
    text = str(name)
    pure = Path(text)
    if not text or pure.is_absolute() or text.startswith(("/", "\\")) or ".." in pure.parts or ":" in text:
        raise InputError(f"the model card of '{folder}' names {what} '{text}' outside the model folder; refusing to load it")
    path = folder / pure
    root = folder.resolve()
    try:
        path.resolve().relative_to(root)
    except ValueError:
        raise InputError(f"{what} '{path}' leads outside the model folder '{folder}' (a link?); refusing to load it") from None
    if not path.is_file():
        raise InputError(f"{what} '{path}' named by the model card does not exist")
    return path


def read_verified_bytes(folder: Path, name: str, card_digest: Optional[str], what: str, remedy: str = "") -> Tuple[bytes, str]:
    """(content, SHA-256) of the card-named file ``name``: read once, hashed, and returned only
    when the digest equals the card's and the ``model.sha256`` line (when listed), so the
    bytes that were checked are the bytes that run. InputError otherwise."""
    path = model_file(folder, name, what)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _check_digest(folder, path, name, digest, card_digest, what, remedy)
    return data, digest


def _check_digest(folder: Path, path: Path, name: str, digest: str, card_digest: Optional[str], what: str, remedy: str) -> None:
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


def verify_file(folder: Path, name: str, card_digest: Optional[str], what: str, remedy: str = "") -> str:
    """SHA-256 of ``folder/name`` once it equals the card's digest and the ``model.sha256``
    line (when listed); raises InputError naming the file otherwise. Imports nothing heavy."""
    path = model_file(folder, name, what)
    digest = sha256_file(path)
    _check_digest(folder, path, name, digest, card_digest, what, remedy)
    return digest


def read_verified_weights(model: Union[str, Path]) -> VerifiedWeights:
    """Read a single model's weights (safetensors, no pickle) once their SHA-256 matches the
    card and ``model.sha256``; raises InputError on a mismatch or for an ensemble (name one of
    its members' folders instead). Builds no network."""
    folder = resolve_model_dir(model)
    card = read_card(folder)
    if is_ensemble(card):
        raise InputError(f"'{folder}' is an ensemble of {len(card['members'])} models, not one set of weights; use one member's own model folder")
    return _verified_member(folder, card)


def read_verified_members(model: Union[str, Path]) -> List[VerifiedWeights]:
    """The verified weights of every network of a model (one for a single model)."""
    folder = resolve_model_dir(model)
    card = read_card(folder)
    return [_verified_member(folder, c) for c in member_cards(card, folder)]


def _verified_member(folder: Path, card: dict) -> VerifiedWeights:
    import safetensors.torch

    what = "the weights" if "member" not in card else f"the weights of member {card['member']}"
    data, digest = read_verified_bytes(folder, weights_name(card), card.get("sha256"), what)
    state = safetensors.torch.load(data)  # the verified bytes themselves, not the file again
    return VerifiedWeights(state, plan_of(card, folder), card, digest, folder)


_MEMBER_FILE = re.compile(r"member\d{1,3}\.safetensors")


def weights_name(card: dict) -> str:
    """The weights file a card names: ``model.safetensors``, or ``member<k>.safetensors`` for a
    member of an ensemble; no other name is accepted."""
    name = str(card.get("weights", WEIGHTS))
    if name != WEIGHTS and not ("member" in card and _MEMBER_FILE.fullmatch(name)):
        raise InputError(f"the model card names the weights '{name}'; MedSegAI models keep their weights in {WEIGHTS}")
    return name


def plan_of(card: dict, folder: Path) -> Plan:
    """The card's plan, with a one-line error when it is missing or malformed."""
    if not isinstance(card.get("plan"), dict):
        raise InputError(f"the model card of '{folder}' has no plan")
    try:
        plan = Plan.from_dict(card["plan"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"the model card of '{folder}' has an unusable plan ({type(exc).__name__}: {exc})") from None
    problems = plan.problems()
    if problems:
        raise InputError(f"the model card of '{folder}' has an unusable plan: {problems[0]}")
    names = card["plan"].get("class_names") or {}
    bad = [k for k in names if not str(k).isdigit() or not 1 <= int(k) < int(plan.num_classes)]
    if bad:
        raise InputError(f"the model card of '{folder}' names class {bad[0]}, outside the network's 1..{int(plan.num_classes) - 1}")
    return plan


def load_model(model: Union[str, Path], device: Optional[str] = "cpu") -> Union[LoadedModel, Ensemble]:
    """Verify and load a model in torch: a LoadedModel, or an Ensemble of them for an ensemble
    folder; raises InputError when a checksum does not match."""
    from .networks import build_network

    folder = resolve_model_dir(model)
    card = read_card(folder)
    loaded = []
    for w in (_verified_member(folder, c) for c in member_cards(card, folder)):
        net = build_network(w.plan)
        try:
            net.load_state_dict(w.state_dict)
        except RuntimeError as exc:  # shapes or names that the card's plan does not describe
            raise InputError(f"the weights in '{w.folder}' do not fit the network the model card describes: {str(exc).splitlines()[0]}") from None
        net.to(device or "cpu")
        net.eval()
        loaded.append(LoadedModel(net, w.plan, w.card, w.sha256, w.folder))
    if is_ensemble(card):
        return Ensemble(loaded, loaded[0].plan, card, card["sha256"], folder)
    return loaded[0]
