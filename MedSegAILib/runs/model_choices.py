"""The models the panel offers, each with a line that says what it does and what it takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from ..methods.deep.imported_files import MONAI_BUNDLE, NNUNET


@dataclass(frozen=True)
class ModelChoice:
    name: str  # what the run's --model gets: a shipped name or a model folder
    summary: str  # one line: task, inputs, validation figure
    label: str = ""  # what the list shows (default: the name)

    @property
    def text(self) -> str:
        return self.label or self.name


def model_summary(card: dict) -> str:
    """One line from a model card (``model.json``): task, input channels and grid, validation Dice."""
    plan = card.get("plan", {})
    parts = [str(card.get("task") or card.get("name") or "model")]
    channels = plan.get("in_channels")
    spacing = plan.get("target_spacing_xyz")
    if channels:
        text = f"{channels} input channel{'s' if channels != 1 else ''}"
        if plan.get("normalization"):
            text += f" ({plan['normalization']} intensities)"
        if spacing:
            text += " at " + " x ".join(f"{float(s):g}" for s in spacing) + " mm"
        parts.append(text)
    if card.get("format") == NNUNET:
        parts.append(f"imported nnU-Net v2 model ({card.get('nnunet', {}).get('configuration')}, {len(card.get('folds') or [])} fold(s))")
    elif card.get("format") == MONAI_BUNDLE:
        parts.append(f"imported MONAI bundle ({card.get('bundle', {}).get('network', {}).get('_target_')})")
    members = card.get("members") if isinstance(card.get("members"), list) else None
    if members:
        parts.append(f"ensemble of {len(members)} models")
    dice = card.get("validation", {}).get("mean_dice")
    if dice is not None:
        parts.append(f"validation Dice {float(dice):.3f}" + (" (members on their own validation cases)" if members else ""))
    if (all(isinstance(m, dict) and m.get("onnx") for m in members) if members else card.get("onnx")):
        parts.append("runs without PyTorch (ONNX export)")
    return "; ".join(parts)


def shipped_model_choices() -> List[ModelChoice]:
    """Every shipped model with its summary (cards are read as JSON, without torch)."""
    from ..methods.deep.model_store import read_card
    from ..resources import models_dir, shipped_model_names

    return [ModelChoice(name, model_summary(read_card(models_dir() / name))) for name in shipped_model_names()]
