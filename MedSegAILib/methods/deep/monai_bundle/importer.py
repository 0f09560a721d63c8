"""Import a MONAI bundle into a MedSegAI model folder, and load it back.

The folder holds ``network.safetensors`` (the bundle's ``models/model.pt`` state dict, every
tensor checked against the network the config describes) with its SHA-256, where the inferer
has a fixed window and the exporter is installed an ONNX export at that size checked against
torch (otherwise the card says why there is none), and ``model.json`` with ``format:
"monai-bundle"``, the checked description of :func:`.config.read_bundle` and the provenance of
the import (source folder, SHA-256 of the config files and of ``model.pt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ....core.checksums import sha256_of_file
from ....core.errors import InputError
from ..imported_files import (MONAI_BUNDLE, export_note, load_exactly, load_saved_tensors, networks_of, read_imported_card, refuse_occupied, save_network,
                              torch_load_weights_only, write_card, writing_model_folder)
from .config import inference_file, network_arguments, network_constructor, read_bundle

FORMAT = MONAI_BUNDLE


def build_network(description: dict, where="the bundle"):
    """The bundle's network: the class its ``_target_`` names in MONAI's networks
    (:func:`.config.network_constructor`), called with the checked literal arguments
    (:func:`.config.network_arguments`; checked again when a card is loaded)."""
    network = dict(description["network"])
    cls = network_constructor(network.get("_target_"))
    args = network_arguments(network, where)
    try:
        return cls(**args)
    except Exception as exc:
        said = str(exc).splitlines()[-1][:200] if str(exc) else type(exc).__name__
        raise InputError(f"the network {network['_target_']} cannot be built from the bundle's arguments ({said})") from None


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

    data = torch_load_weights_only(path)
    if isinstance(data, dict) and not all(isinstance(v, torch.Tensor) for v in data.values()):
        data = next((data[k] for k in ("model", "state_dict", "network") if isinstance(data.get(k), dict)), data)
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"'{path}' is not a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in data.items()}


def import_monai_bundle(bundle, output, *, name: str = "", log=print) -> dict:
    """Import the bundle folder ``bundle`` into the new folder ``output``; returns the card.
    Nothing from the bundle is executed: the config is read as data and checked
    (:func:`.config.read_bundle`), the weights are loaded with ``weights_only=True``."""

    src, out = Path(bundle), Path(output)
    description = read_bundle(src)
    refuse_occupied(out)
    pt = _bundle_weights(src)
    net = build_network(description, inference_file(src)).eval()
    load_exactly(net, read_state_dict(pt), f"'{pt}'", "the bundle's config")
    inferer = description["inferer"]
    fixed = inferer["kind"] == "sliding_window" and all(r > 0 for r in inferer["roi_size"])
    with writing_model_folder(out):
        member = save_network(net, out, "network", (description["in_channels"], *inferer["roi_size"]) if fixed else None)
        log(f"{pt.name}: {len(net.state_dict())} tensors, all used; {export_note(member)}")
        labels, meta, config_file = description["labels"], description["metadata"], inference_file(src)
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
        write_card(out, card)
    return card


@dataclass
class ImportedBundle:
    """An imported bundle whose files were checked against the SHA-256 in its card."""

    folder: Path
    card: dict

    def load_networks(self) -> list:
        """The torch network (evaluation mode), in a list as for the other imported formats;
        rebuilt from the card with the same checks as at import."""
        net = build_network(self.card["bundle"], self.folder / "model.json")
        return [load_saved_tensors(net, self.folder / networks_of(self.card)[0]["weights"], "model.json")]


def load_bundle_model(folder) -> ImportedBundle:
    """An imported bundle with every weights and ONNX file it names checked (SHA-256)."""
    return ImportedBundle(Path(folder), read_imported_card(folder, FORMAT, "an imported MONAI bundle"))
