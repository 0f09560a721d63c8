"""Files of an imported model folder (nnU-Net v2, MONAI bundle): checked, exported, opened.

An imported model folder keeps one or more networks, each as ``<name>.safetensors`` with its
SHA-256 and, where the exporter is installed, ``<name>.onnx`` checked against torch. The card's
``format`` says where the model came from; :data:`IMPORTED_FORMATS` lists the formats and
:func:`networks_of` the card's list of networks (an nnU-Net model's folds, a bundle's network).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

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
    """``folder/name``, inside the folder (``model_store.model_file``: no absolute names, no
    ``..``, no links out) and matching ``digest`` (SHA-256), or InputError."""
    from .model_store import model_file

    path = model_file(folder, name, "the file")
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
    if not exporter_installed():
        return None
    import onnxruntime
    import torch

    from .onnx_export import OPSET, export_and_compare

    worst = export_and_compare(net.eval(), input_shape, path, seed=seed)
    if worst > tolerance:
        path.unlink()
        raise InputError(f"ONNX Runtime differs from torch by {worst:.2e} (relative) on a random patch; the export was refused")
    return {"file": path.name, "sha256": sha256_of_file(path), "opset": OPSET, "max_relative_logit_difference": worst,
            "checked_with": f"onnxruntime {onnxruntime.__version__}", "exporter": f"torch.onnx (dynamo) {torch.__version__}"}


def save_network(net, out: Path, stem: str, input_shape: Optional[Sequence[int]]) -> dict:
    """Write ``net`` as ``<stem>.safetensors`` and, for inputs of ``input_shape`` (C, *patch;
    None: no fixed shape, no export), ``<stem>.onnx`` checked against torch. Returns the card's
    entry ``{"weights", "sha256", "onnx"?, "onnx_note"?}``; an export that fails or differs from
    torch is left out with the reason (the model then runs with torch)."""
    import safetensors.torch

    weights = f"{stem}.safetensors"
    safetensors.torch.save_file(canonical_tensors(net), str(out / weights), metadata={"format": "pt"})
    member = {"weights": weights, "sha256": sha256_of_file(out / weights)}
    if input_shape is None:
        member["onnx_note"] = "no fixed input size (whole-image inferer): no ONNX export"
        return member
    try:
        onnx = export_onnx_checked(net, input_shape, out / f"{stem}.onnx")
    except InputError as exc:
        onnx, member["onnx_note"] = None, str(exc)
    except Exception as exc:  # the exporter cannot trace this network
        (out / f"{stem}.onnx").unlink(missing_ok=True)
        onnx, member["onnx_note"] = None, f"the ONNX exporter failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
    if onnx:
        member["onnx"] = onnx
    elif "onnx_note" not in member:
        member["onnx_note"] = "onnxscript or onnxruntime is not installed: no ONNX export"
    return member


def export_note(member: dict) -> str:
    if member.get("onnx"):
        return f"ONNX export matches torch to {member['onnx']['max_relative_logit_difference']:.1e}"
    return f"{member.get('onnx_note', 'no ONNX export')}; runs with PyTorch"


def canonical_tensors(net) -> dict:
    """Each parameter and buffer once, under its first name (aliases share the tensor)."""
    return {k: v.detach().contiguous() for k, v in list(net.named_parameters()) + list(net.named_buffers())}


def refuse_occupied(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise InputError(f"'{out}' already exists and is not empty; choose a new folder for the model")


@contextlib.contextmanager
def writing_model_folder(out: Path):
    """The new (or empty) folder ``out`` to write an imported model into; when the import
    fails, what it wrote is removed (the folder too, unless it existed before)."""
    out = Path(out)
    refuse_occupied(out)
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if existed:
            for child in out.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise


def write_card(out: Path, card: dict) -> None:
    """``model.json`` and ``model.sha256`` (every network's weights and ONNX file)."""
    from .model_store import CARD, CHECKSUM

    (out / CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
    lines = []
    for m in networks_of(card):
        lines.append(f"{m['sha256']}  {m['weights']}\n")
        if m.get("onnx"):
            lines.append(f"{m['onnx']['sha256']}  {m['onnx']['file']}\n")
    (out / CHECKSUM).write_text("".join(lines))


def read_imported_card(folder, fmt: str, what: str) -> dict:
    """The card of an imported model folder of format ``fmt`` (read by ``model_store.read_card``),
    every file it names checked."""
    from .model_store import read_card

    folder = Path(folder)
    card = read_card(folder)
    if card.get("format") != fmt:
        raise InputError(f"'{folder}' is not {what}")
    check_network_files(folder, card)
    return card


def torch_load_weights_only(path: Path, safe_globals: Iterable = ()):
    """``torch.load(path, weights_only=True)`` with ``safe_globals`` allowed: no pickled code
    runs. InputError naming the refused global, or saying the file is not a checkpoint."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"the checkpoint '{path}' does not exist")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses any other global with an UnpicklingError
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if type(exc).__name__ == "UnpicklingError":
            first = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), said)
            raise InputError(f"'{path}' holds pickled objects that are not plain weights ({first[:160]}); it was refused, nothing in it was run") from None
        raise InputError(f"'{path}' is not a readable PyTorch checkpoint ({said[:160]})") from None


def load_exactly(net, weights: dict, source: str, described_by: str) -> None:
    """Load ``weights`` into ``net``: every tensor used and every shape equal, or InputError
    (``described_by``: what describes the network, for the message)."""
    mine = net.state_dict()
    missing = [k for k in mine if k not in weights]
    unused = [k for k in weights if k not in mine]
    if missing or unused:
        raise InputError(f"{source}: the weights do not fit the network {described_by} describes ({len(missing)} missing, e.g. {missing[:1]}; "
                         f"{len(unused)} unused, e.g. {unused[:1]})")
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in mine.items() if tuple(weights[k].shape) != tuple(v.shape)]
    if wrong:
        k, theirs, ours = wrong[0]
        raise InputError(f"{source}: tensor '{k}' has shape {theirs}, the network {described_by} describes needs {ours}")
    net.load_state_dict(weights, strict=True)


def load_saved_tensors(net, path: Path, what: str):
    """``net`` with the tensors an import saved at ``path`` (each once, as
    :func:`canonical_tensors` wrote them); aliases of a shared tensor are filled through it."""
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(path))
    if set(tensors) != set(canonical_tensors(net)):
        raise InputError(f"'{path}' does not fit the network {what} describes")
    net.load_state_dict(tensors, strict=False)
    return net.eval()


def torch_modules(card: dict) -> tuple:
    """What the torch runtime of an imported model imports (a bundle's network is MONAI's)."""
    return ("torch", "safetensors", "monai") if card.get("format") == MONAI_BUNDLE else ("torch", "safetensors")


def network_forwards(folder: Path, card: dict, load_torch_networks, runtime: str = "auto"):
    """(one forward function per network, the engine): ONNX Runtime when every network has an
    export and ``runtime`` is "onnx", or "auto" while the torch runtime's packages
    (:func:`torch_modules`) are not all installed; else torch, with the networks from
    ``load_torch_networks()``. Each forward maps a float32 batch (B, C, *patch) to its logits
    (B, K, *patch) as NumPy arrays."""
    from ...core.slabs import worker_count

    have_onnx = has_onnx_exports(card) and importlib.util.find_spec("onnxruntime") is not None
    if runtime == "onnx" and not have_onnx:
        raise InputError("runtime=onnx cannot be used: the imported model has no ONNX export or onnxruntime is not installed")
    torch_ready = all(importlib.util.find_spec(m) is not None for m in torch_modules(card))
    if runtime == "onnx" or (runtime == "auto" and have_onnx and not torch_ready):
        return [lambda x, s=s: s.run(None, {"image": x})[0] for s in onnx_sessions(folder, card, threads=worker_count())], "onnx"
    import torch

    torch.set_num_threads(worker_count())

    def torch_forward(net):
        def forward(x):
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()
        return forward

    return [torch_forward(net) for net in load_torch_networks()], "torch"
