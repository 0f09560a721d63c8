"""Import a MONAI bundle into a MedSegAI model folder, and load it back.

The folder holds ``network.safetensors`` (the bundle's ``models/model.pt`` state dict, every
tensor checked against the network the config describes) with its SHA-256, an ONNX export at
the inferer's window size checked against torch, and ``model.json`` with ``format:
"monai-bundle"``, the checked description of :func:`.config.read_bundle` and the provenance of
the import (source folder, SHA-256 of the config files and of ``model.pt``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ....core.checksums import sha256_of_file
from ....core.errors import InputError
from ..imported_files import MONAI_BUNDLE, canonical_tensors, check_network_files, export_onnx_checked, networks_of, refuse_occupied
from .config import inference_file, network_class, read_bundle

FORMAT = MONAI_BUNDLE
WEIGHTS = "network.safetensors"


def build_network(description: dict):
    """The bundle's network, instantiated by ``monai.bundle`` from literal arguments only
    (``_target_`` checked to be one of MONAI's networks first)."""
    from monai.bundle import ConfigParser

    network = dict(description["network"])
    network_class(network["_target_"])
    try:
        return ConfigParser({"network_def": network}).get_parsed_content("network_def", instantiate=True)
    except Exception as exc:
        raise InputError(f"the network {network['_target_']} cannot be built from the bundle's arguments ({str(exc).splitlines()[-1][:200]})") from None


def _bundle_weights(bundle: Path) -> Path:
    pt = bundle / "models" / "model.pt"
    if pt.is_file():
        return pt
    if any((bundle / "models").glob("*.ts")):
        raise InputError(f"'{bundle}' has only a TorchScript model (models/*.ts): TorchScript holds code, so it is not imported; "
                         "export the bundle's weights as models/model.pt (a state dict)")
    raise InputError(f"'{bundle}' has no models/model.pt")


def read_state_dict(path: Path) -> dict:
    """The state dict in ``path`` (plain, or under ``model`` / ``state_dict`` as MONAI's
    CheckpointSaver writes it), loaded with ``weights_only=True``: no pickled code runs."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln or "TorchScript" in ln), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if type(exc).__name__ == "UnpicklingError":
            raise InputError(f"'{path}' holds pickled objects that are not plain weights ({first[:160]}); it was refused, nothing in it was run") from None
        raise InputError(f"'{path}' is not a readable PyTorch state dict ({first[:160]})") from None
    if isinstance(data, dict) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        data = next((data[k] for k in ("model", "state_dict", "network") if isinstance(data.get(k), dict)), data)
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"'{path}' is not a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in data.items()}


def load_checked(net, weights: dict, source: str) -> None:
    """Every tensor used and every shape equal, or InputError."""
    mine = net.state_dict()
    missing = [k for k in mine if k not in weights]
    unused = [k for k in weights if k not in mine]
    if missing or unused:
        raise InputError(f"{source}: the weights do not fit the network the bundle's config describes ({len(missing)} missing, e.g. {missing[:1]}; "
                         f"{len(unused)} unused, e.g. {unused[:1]})")
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in mine.items() if tuple(weights[k].shape) != tuple(v.shape)]
    if wrong:
        k, theirs, ours = wrong[0]
        raise InputError(f"{source}: tensor '{k}' has shape {theirs}, the config's network needs {ours}")
    net.load_state_dict(weights, strict=True)


def import_monai_bundle(bundle, output, *, name: str = "", log=print) -> dict:
    """Import the bundle folder ``bundle`` into the new folder ``output``; returns the card.
    Nothing from the bundle is executed: the config is read as data and checked
    (:func:`.config.read_bundle`), the weights are loaded with ``weights_only=True``."""
    import safetensors.torch

    src, out = Path(bundle), Path(output)
    description = read_bundle(src)
    refuse_occupied(out)
    pt = _bundle_weights(src)
    net = build_network(description).eval()
    load_checked(net, read_state_dict(pt), f"'{pt}'")
    out.mkdir(parents=True, exist_ok=True)
    try:
        safetensors.torch.save_file(canonical_tensors(net), str(out / WEIGHTS), metadata={"format": "pt"})
        member = {"weights": WEIGHTS, "sha256": sha256_of_file(out / WEIGHTS)}
        inferer = description["inferer"]
        if inferer["kind"] == "sliding_window" and all(r > 0 for r in inferer["roi_size"]):
            onnx = export_onnx_checked(net, (description["in_channels"], *inferer["roi_size"]), out / "network.onnx")
            if onnx:
                member["onnx"] = onnx
        log(f"{pt.name}: {len(net.state_dict())} tensors, all used" +
            (f"; ONNX export matches torch to {member['onnx']['max_relative_logit_difference']:.1e}" if member.get("onnx") else "; no ONNX export (whole-image inferer, or onnxscript/onnxruntime missing): runs with PyTorch"))
        labels = description["labels"]
        meta = description["metadata"]
        config_file = inference_file(src)
        card = {
            "name": name or str(meta.get("name") or src.name) + " (MONAI bundle)",
            "status": "trained",
            "format": FORMAT,
            "task": str(meta.get("task") or f"segmentation of {', '.join(v for k, v in labels.items() if k != '0')}"),
            "bundle": description,
            "networks": [member],
            "sha256": member["sha256"],
            "import": {
                "source": str(src.resolve()), "config": config_file.name, "config_sha256": sha256_of_file(config_file),
                "metadata_sha256": sha256_of_file(src / "configs" / "metadata.json") if (src / "configs" / "metadata.json").is_file() else None,
                "weights": str(pt.relative_to(src)), "weights_sha256": sha256_of_file(pt), "bundle_version": meta.get("version"),
            },
            "validation": {"mean_dice": None, "note": "not measured by MedSegAI; see the bundle's own evaluation"},
            "intended_use": str(meta.get("intended_use") or "As the source bundle's; research use only unless its own terms say otherwise."),
        }
        (out / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        (out / "model.sha256").write_text(f"{member['sha256']}  {WEIGHTS}\n" + (f"{member['onnx']['sha256']}  {member['onnx']['file']}\n" if member.get("onnx") else ""))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return card


@dataclass
class ImportedBundle:
    """An imported bundle whose files were checked against the SHA-256 in its card."""

    folder: Path
    card: dict

    def load_networks(self) -> list:
        """The torch network (evaluation mode), in a list as for the other imported formats."""
        import safetensors.torch

        net = build_network(self.card["bundle"])
        path = self.folder / networks_of(self.card)[0]["weights"]
        tensors = safetensors.torch.load_file(str(path))
        if set(tensors) != set(canonical_tensors(net)):  # each tensor once, as the import wrote it
            raise InputError(f"'{path}' does not fit the network model.json describes")
        net.load_state_dict(tensors, strict=False)  # aliases of a shared tensor are filled through it
        return [net.eval()]


def load_bundle_model(folder) -> ImportedBundle:
    """An imported bundle with every weights and ONNX file it names checked (SHA-256)."""
    folder = Path(folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    if card.get("format") != FORMAT:
        raise InputError(f"'{folder}' is not an imported MONAI bundle")
    check_network_files(folder, card)
    return ImportedBundle(folder, card)
