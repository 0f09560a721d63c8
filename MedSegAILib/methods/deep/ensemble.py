"""Assembling trained models into one ensemble folder (see :mod:`.model_store` for the layout).

The members must be single models of one plan (network, patch, spacing, normalisation,
classes); their weights and exports are verified before they are copied, so the ensemble holds
exactly the bytes that were checked. Each member's training and validation record goes into
its entry of the one card; the ensemble's own ``training`` lists the union of the members'
training cases (every case any member saw) and ``validation`` their figures on their own
validation cases (the cross-validated estimate when the members are folds).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

from ...core.errors import InputError
from .model_store import CARD, CHECKSUM, ONNX_FILE, ensemble_digest, is_ensemble, read_card, read_verified_bytes, resolve_model_dir, weights_name

#: Plan entries that must agree between members (the intensity statistics matter only to "ct").
_PLAN_KEYS = ("network", "in_channels", "num_classes", "target_spacing_xyz", "patch_size_zyx", "normalization", "features",
              "full_resolution_level", "norm", "dropout", "aspp", "sdf_head", "context_slices", "class_names")


def _plan_differences(a: dict, b: dict) -> list:
    keys = list(_PLAN_KEYS) + (["intensity"] if a.get("normalization") == "ct" else [])
    return [k for k in keys if a.get(k) != b.get(k)]


def assemble_ensemble(members: Sequence, output, *, name: Optional[str] = None, overwrite: bool = False) -> dict:
    """Write an ensemble folder at ``output`` from the model folders ``members``; returns its card.

    Every member is verified (weights, and its ONNX export when it has one) and must share the
    first member's plan. The exports are kept only when every member has a current one.
    An existing ``output`` is refused unless ``overwrite``; the folder is built beside it and
    moved into place, so a failure leaves nothing half-written.
    """
    from .onnx_runtime import export_status

    if len(members) < 2:
        raise InputError(f"an ensemble needs at least two member models, {len(members)} given")
    output = Path(output)
    if output.exists() and not overwrite:
        raise InputError(f"'{output}' exists; choose another folder or pass overwrite")
    folders = [resolve_model_dir(m) for m in members]
    cards = [read_card(f) for f in folders]
    for f, c in zip(folders, cards):
        if is_ensemble(c):
            raise InputError(f"'{f}' is itself an ensemble; assemble from single models")
        diff = _plan_differences(cards[0]["plan"], c.get("plan", {}))
        if diff:
            raise InputError(f"'{f}' was trained with another plan than '{folders[0]}' ({', '.join(diff)}); the members of an ensemble share one plan")
    with_onnx = all(export_status(f, c) == "ready" for f, c in zip(folders, cards))
    tmp = output.with_name(output.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        entries, lines = [], []
        for i, (f, c) in enumerate(zip(folders, cards)):
            data, digest = read_verified_bytes(f, weights_name(c), c.get("sha256"), f"the weights of '{f}'")
            (tmp / f"member{i}.safetensors").write_bytes(data)
            lines.append(f"{digest}  member{i}.safetensors")
            entry = {"weights": f"member{i}.safetensors", "sha256": digest, "source": f.name,
                     "training": c.get("training", {}), "validation": c.get("validation", {})}
            if with_onnx:
                onnx = dict(c["onnx"])
                blob, onnx_digest = read_verified_bytes(f, onnx.get("file", ONNX_FILE), onnx.get("sha256"), f"the ONNX export of '{f}'")
                onnx["file"] = f"member{i}.onnx"
                (tmp / onnx["file"]).write_bytes(blob)
                lines.append(f"{onnx_digest}  {onnx['file']}")
                entry["onnx"] = onnx
            entries.append(entry)
        first = cards[0]
        seen = sorted({n for c in cards for n in c.get("training", {}).get("train_cases", [])})
        validated = [e["validation"].get("mean_dice") for e in entries]
        card = {
            "name": name or first.get("name") or output.name,
            "status": "trained",
            "task": first.get("task"),
            "ensemble": f"mean of the probabilities of {len(entries)} models of one plan (each with the same test-time flips)",
            "training": {"train_cases": seen, "members_validation_cases": [e["training"].get("validation_cases", []) for e in entries]},
            "validation": {
                "note": "each member on its own validation cases (cases it did not train on); the ensemble itself has no held-out cases here",
                "members_mean_dice": validated,
                "mean_dice": round(sum(validated) / len(validated), 4) if None not in validated else None,
            },
            "intended_use": first.get("intended_use", "Research use only; not a medical device."),
            "plan": first["plan"],
            "sha256": ensemble_digest([e["sha256"] for e in entries]),
            "versions": first.get("versions", {}),
            "members": entries,
        }
        (tmp / CARD).write_text(json.dumps(card, indent=2))
        (tmp / CHECKSUM).write_text("\n".join(lines) + "\n")
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card
