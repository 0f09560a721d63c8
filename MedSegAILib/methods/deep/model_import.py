"""One entry for importing a model trained elsewhere: an nnU-Net v2 results folder or a
MONAI bundle, told apart by their files, each imported by its own importer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ...core.errors import InputError
from .imported_files import NNUNET
from .monai_bundle.config import INFERENCE_FILES

KINDS = ("nnunet", "monai-bundle")


def detect_kind(folder) -> str:
    """"nnunet" for a folder with plans.json and dataset.json, "monai-bundle" for one with
    configs/inference.json (or .yaml); InputError for anything else."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the model folder '{folder}' does not exist")
    if (folder / "plans.json").is_file() and (folder / "dataset.json").is_file():
        return "nnunet"
    if any((folder / "configs" / n).is_file() for n in INFERENCE_FILES):
        return "monai-bundle"
    raise InputError(f"'{folder}' is neither an nnU-Net v2 results folder (plans.json, dataset.json, fold_K/) "
                     "nor a MONAI bundle (configs/inference.json, models/model.pt)")


def import_model(source, output, *, kind: str = "auto", folds: Optional[Sequence[int]] = None, configuration: Optional[str] = None,
                 checkpoint: str = "", name: str = "", log=print) -> dict:
    """Import ``source`` into the new model folder ``output``; returns the model card.
    ``kind``: "nnunet", "monai-bundle" or "auto" (:func:`detect_kind`)."""
    kind = detect_kind(source) if kind == "auto" else kind
    if kind == "nnunet":
        from .nnunet.importer import import_nnunet

        return import_nnunet(source, output, folds=folds, configuration=configuration, checkpoint=checkpoint, name=name, log=log)
    if kind == "monai-bundle":
        if folds or configuration or checkpoint:
            raise InputError("--folds, --configuration and --checkpoint belong to nnU-Net imports; a MONAI bundle has one network")
        from .monai_bundle.importer import import_monai_bundle

        return import_monai_bundle(source, output, name=name, log=log)
    raise InputError(f"unknown model kind '{kind}' (one of: {', '.join(KINDS)}, auto)")


def describe(card: dict) -> str:
    """One line: the imported model's name, networks and classes."""
    if card.get("format") == NNUNET:
        labels, nets = card["nnunet"]["labels"], f"{len(card['folds'])} fold(s)"
    else:
        labels, nets = card["bundle"]["labels"], f"MONAI {card['bundle']['network']['_target_']}"
    return f"{card['name']}, {nets}, classes {', '.join(v for k, v in labels.items() if k != '0')}"
