"""Import an nnU-Net v2 results folder into a MedSegAI model folder, and load it back.

The model folder holds, for each fold, the weights as ``fold<k>.safetensors`` (each tensor
once; nnU-Net's aliases are rebuilt by :mod:`.network`) with its SHA-256, and ``model.json``:
``format: "nnunet-v2"``, the checked configuration (:func:`.plans.read_configuration`) with the
folds and mirroring axes, the classes, and the provenance of the import (source folder,
SHA-256 of plans.json, dataset.json and each checkpoint, the trainer and plans identifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ....core.checksums import sha256_of_file
from ....core.errors import InputError
from ..imported_files import NNUNET, export_note, load_saved_tensors, read_imported_card, refuse_occupied, save_network, write_card, writing_model_folder
from ..model_store import ensemble_digest
from .checkpoint import fold_checkpoint, load_strictly, network_weights, read_checkpoint
from .network import NnUNet
from .plans import read_configuration

FORMAT = NNUNET


def _folds(folder: Path) -> List[int]:
    return sorted(int(p.name[5:]) for p in folder.glob("fold_*") if p.is_dir() and p.name[5:].isdigit())


def _configuration_of(folder: Path, given: Optional[str], first_checkpoint: dict) -> str:
    if given:
        return given
    name = (first_checkpoint.get("init_args") or {}).get("configuration")
    if isinstance(name, str) and name:
        return name
    parts = folder.name.split("__")  # <trainer>__<plans>__<configuration>
    if len(parts) == 3:
        return parts[2]
    raise InputError(f"cannot tell the configuration of '{folder}'; pass --configuration")


def import_nnunet(results_folder, output, *, folds: Optional[Sequence[int]] = None, configuration: Optional[str] = None,
                  checkpoint: str = "", name: str = "", log=print) -> dict:
    """Import ``results_folder`` (``<trainer>__<plans>__<configuration>`` with ``fold_K/``) into
    the new folder ``output``; returns the card. Every tensor of every checkpoint must fit the
    network the plans describe (InputError otherwise); nothing from the folder is executed."""

    src, out = Path(results_folder), Path(output)
    if not src.is_dir():
        raise InputError(f"the nnU-Net results folder '{src}' does not exist")
    refuse_occupied(out)  # before any checkpoint is read
    folds = list(folds) if folds else _folds(src)
    if not folds:
        raise InputError(f"'{src}' has no fold_K folders with checkpoints")
    paths = [fold_checkpoint(src, f, checkpoint) for f in folds]
    first = read_checkpoint(paths[0][0])
    conf = read_configuration(src, _configuration_of(src, configuration, first))
    if len(conf["patch_size"]) != 3:
        raise InputError(f"configuration '{conf['configuration']}' is 2D; only 3D configurations (3d_fullres, 3d_lowres) are imported so far")
    mirror = first.get("inference_allowed_mirroring_axes")
    mirror = [int(a) for a in mirror] if mirror is not None else []
    n_in, n_out = len(conf["channel_names"]), len(conf["labels"])
    members, provenance = [], []
    with writing_model_folder(out):
        for fold, (path, file_name) in zip(folds, paths):
            ck = first if path == paths[0][0] else read_checkpoint(path)
            net = NnUNet(conf["architecture"], n_in, n_out)
            load_strictly(net, network_weights(ck), f"fold {fold} ({path.name})")
            member = {"fold": fold, **save_network(net, out, f"fold{fold}", (n_in, *conf["patch_size"]))}
            members.append(member)
            provenance.append({"fold": fold, "checkpoint": file_name, "sha256": sha256_of_file(path), "trainer": ck.get("trainer_name"), "epoch": ck.get("current_epoch")})
            log(f"fold {fold}: {file_name} imported ({len(net.state_dict())} tensors, all used); {export_note(member)}")
        labels = conf["labels"]
        card = {
            "name": name or f"{conf['dataset_name'] or src.parent.name} ({conf['configuration']}, nnU-Net v2)",
            "status": "trained",
            "format": FORMAT,
            "task": f"segmentation of {', '.join(v for k, v in labels.items() if k != '0')}",
            "nnunet": {**conf, "folds": folds, "mirror_axes": mirror},
            "folds": members,
            "sha256": ensemble_digest([m["sha256"] for m in members]),
            "import": {
                "source": str(src.resolve()), "plans_sha256": sha256_of_file(src / "plans.json"), "dataset_json_sha256": sha256_of_file(src / "dataset.json"),
                "plans_name": conf["plans_name"], "trainer": first.get("trainer_name"), "checkpoints": provenance,
            },
            "validation": {"mean_dice": None, "note": "not measured by MedSegAI; see the nnU-Net training's own validation"},
            "intended_use": "As the source model's; research use only unless its own terms say otherwise.",
        }
        write_card(out, card)
    return card


@dataclass
class ImportedModel:
    """An imported model whose files were checked against the SHA-256 in its card."""

    folder: Path
    card: dict

    def load_networks(self) -> list:
        """The folds' torch networks (evaluation mode)."""
        conf = self.card["nnunet"]
        return [load_saved_tensors(NnUNet(conf["architecture"], len(conf["channel_names"]), len(conf["labels"])), self.folder / m["weights"], "model.json")
                for m in self.card["folds"]]


def load_imported(folder) -> ImportedModel:
    """An imported model with every weights and ONNX file it names checked (SHA-256)."""
    return ImportedModel(Path(folder), read_imported_card(folder, FORMAT, "an imported nnU-Net model"))
