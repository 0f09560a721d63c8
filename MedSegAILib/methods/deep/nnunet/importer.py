"""Import an nnU-Net v2 results folder into a MedSegAI model folder, and load it back.

The model folder holds, for each fold, the weights as ``fold<k>.safetensors`` (each tensor
once; nnU-Net's aliases are rebuilt by :mod:`.network`) with its SHA-256, and ``model.json``:
``format: "nnunet-v2"``, the checked configuration (:func:`.plans.read_configuration`) with the
folds and mirroring axes, the classes, and the provenance of the import (source folder,
SHA-256 of plans.json, dataset.json and each checkpoint, the trainer and plans identifier).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from ....core.checksums import sha256_of_file
from ....core.errors import InputError
from ..imported_files import NNUNET, canonical_tensors, check_network_files, export_onnx_checked, refuse_occupied
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
    import safetensors.torch

    src, out = Path(results_folder), Path(output)
    if not src.is_dir():
        raise InputError(f"the nnU-Net results folder '{src}' does not exist")
    refuse_occupied(out)
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
    out.mkdir(parents=True, exist_ok=True)
    try:
        for fold, (path, file_name) in zip(folds, paths):
            ck = first if path == paths[0][0] else read_checkpoint(path)
            net = NnUNet(conf["architecture"], n_in, n_out)
            load_strictly(net, network_weights(ck), f"fold {fold} ({path.name})")
            weights = f"fold{fold}.safetensors"
            safetensors.torch.save_file(canonical_tensors(net), str(out / weights), metadata={"format": "pt"})
            digest = sha256_of_file(out / weights)
            member = {"fold": fold, "weights": weights, "sha256": digest}
            onnx = export_onnx_checked(net, (n_in, *conf["patch_size"]), out / f"fold{fold}.onnx")
            if onnx:
                member["onnx"] = onnx
            members.append(member)
            provenance.append({"fold": fold, "checkpoint": file_name, "sha256": sha256_of_file(path), "trainer": ck.get("trainer_name"), "epoch": ck.get("current_epoch")})
            log(f"fold {fold}: {file_name} imported ({len(net.state_dict())} tensors, all used)" +
                (f"; ONNX export matches torch to {onnx['max_relative_logit_difference']:.1e}" if onnx else "; no ONNX export (onnxscript or onnxruntime missing)"))
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
        (out / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
        (out / "model.sha256").write_text("".join(f"{m['sha256']}  {m['weights']}\n" + (f"{m['onnx']['sha256']}  {m['onnx']['file']}\n" if m.get("onnx") else "") for m in members))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return card


@dataclass
class ImportedModel:
    """An imported model whose files were checked against the SHA-256 in its card."""

    folder: Path
    card: dict

    def load_networks(self) -> list:
        """The folds' torch networks (evaluation mode)."""
        import safetensors.torch

        conf = self.card["nnunet"]
        nets = []
        for m in self.card["folds"]:
            net = NnUNet(conf["architecture"], len(conf["channel_names"]), len(conf["labels"]))
            tensors = safetensors.torch.load_file(str(self.folder / m["weights"]))
            _missing, unexpected = net.load_state_dict(tensors, strict=False)
            names = set(dict(net.named_parameters())) | set(dict(net.named_buffers()))
            if unexpected or names - set(tensors):
                raise InputError(f"'{self.folder / m['weights']}' does not fit the network model.json describes")
            nets.append(net.eval())
        return nets


def load_imported(folder) -> ImportedModel:
    """An imported model with every weights and ONNX file it names checked (SHA-256)."""
    folder = Path(folder)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    if card.get("format") != FORMAT:
        raise InputError(f"'{folder}' is not an imported nnU-Net model")
    check_network_files(folder, card)
    return ImportedModel(folder, card)
