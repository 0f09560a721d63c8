"""Training a model from the user's own cases in a background process, and the user's models.

The loop a Slicer user runs (segment a few cases, train, segment the next case with the model,
correct it, add it, train again) is, in the library:

1. the training set is written into the run's work folder, inside the model folder-to-be
   (``<work>/model/training_set``, by :func:`~MedSegAILib.methods.deep.training_set.write_training_set`
   or, to retrain, :func:`~MedSegAILib.methods.deep.training_set.extend_training_set`);
2. :class:`TrainingRun` starts ``medsegai train`` on it with the recipe of
   :func:`training_arguments` (a wall-clock budget, weight averaging over its last fifth);
   progress, log, cancel and failures are those of every :class:`~.runner.ProcessRun`, and
   :attr:`TrainingRun.learning_curve` is redrawn by the training as it goes;
3. on success the model folder (weights, ONNX export, card with validation figures and
   domain record, learning curves, and its training set) moves into the user's model folder
   under a new name (:func:`new_model_folder`); nothing there is ever overwritten. A cancelled
   or failed run leaves nothing behind.

:func:`user_model_choices` lists the user's models for the panel's model list.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from ..core.errors import InputError
from ..methods.deep.model_store import CARD, WEIGHTS  # file names; the module needs no torch
from .model_choices import ModelChoice, model_summary
from .runner import ProcessLauncher, ProcessRun, RunOutcome
from .settings import DEFAULT_TRAINING_BUDGET_MIN as DEFAULT_BUDGET_MIN
from .settings import DEVICES, field_named

#: Fraction of the budget after which the weights are averaged (the kept model is that mean,
#: so no epoch is picked on the handful of validation cases).
AVERAGE_FROM = 0.8
#: Validate (and redraw the learning curve) every this many epochs.
VALIDATE_EVERY = 5
#: The training set's folder inside a model folder.
TRAINING_SET = "training_set"

_SAFE = re.compile(r"[^A-Za-z0-9 _.-]+")


@dataclass(frozen=True)
class TrainingSettings:
    """What the user chose for one training run.

    Attributes
    ----------
    model_name : str
        Name of the new model (its folder name in the user's model folder, made unique).
    segments : tuple of str
        The segments to learn, by name, in label order.
    budget_min : float
        Wall-clock budget in minutes; the learning-rate schedule spans it.
    device : str
        "auto", "cpu" or "cuda".
    init_from : str
        A model folder to start from ("add this case and retrain"), "" to train from scratch.
    threads : int
        CPU threads for the training process (0 = all).
    budget_clock : str
        "wall" (the panel: minutes the user waits) or "cpu" (the process's CPU time: the
        benchmark, so that a busy machine does not change what is learnt).
    """

    model_name: str
    segments: tuple
    budget_min: float = DEFAULT_BUDGET_MIN
    device: str = "auto"
    init_from: str = ""
    threads: int = 0
    budget_clock: str = "wall"


def check_training_settings(settings: TrainingSettings) -> None:
    """Refuse settings that cannot train (InputError), before anything is written."""
    if not settings.model_name.strip():
        raise InputError("name the model to train")
    if not settings.segments or any(not str(s).strip() for s in settings.segments):
        raise InputError("name the segments to learn (the same names in every case)")
    budget = field_named("trainBudgetMin")
    if not budget.minimum <= float(settings.budget_min) <= budget.maximum:
        raise InputError(f"the training budget is {budget.minimum:g} to {budget.maximum:g} minutes, got {settings.budget_min}")
    if settings.device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got '{settings.device}'")
    if settings.init_from and not (Path(settings.init_from) / CARD).is_file():
        raise InputError(f"'{settings.init_from}' is not a model folder (no model.json) to retrain from")


def training_arguments(settings: TrainingSettings, dataset_dir, output_dir) -> List[str]:
    """Arguments after ``-m MedSegAILib.cli`` for ``medsegai train`` with the in-Slicer recipe.

    The budget, not an epoch count, ends the run; the validation cases are those the training
    set's dataset.json names; the weights of the last :data:`AVERAGE_FROM` of the schedule are
    averaged.
    """
    args = [
        "train", str(dataset_dir), "--output", str(output_dir),
        "--time-budget-min", f"{float(settings.budget_min):g}", "--epochs", "1000000",
        "--average-from", f"{AVERAGE_FROM:g}", "--val-every", str(VALIDATE_EVERY),
        "--name", settings.model_name.strip(), "--device", settings.device, "--progress-lines",
    ]
    if settings.budget_clock != "wall":
        args += ["--budget-clock", settings.budget_clock]
    if settings.threads:
        args += ["--threads", str(int(settings.threads))]
    if settings.init_from:
        args += ["--init-from", str(settings.init_from)]
    return args


def safe_model_name(name: str) -> str:
    """A folder name from a model name (letters, digits, space, _ . -)."""
    return _SAFE.sub("_", name.strip()).strip(" .") or "model"


def new_model_folder(models_root, name: str) -> Path:
    """A folder in ``models_root`` for a new model called ``name`` that does not exist yet
    (``name``, else ``name-2``, ``name-3``, ...)."""
    root = Path(models_root)
    base = safe_model_name(name)
    folder, k = root / base, 2
    while folder.exists():
        folder, k = root / f"{base}-{k}", k + 1
    return folder


def user_model_choices(models_root) -> List[ModelChoice]:
    """The models in the user's model folder, newest first: the choice's ``name`` is the
    folder (the run's ``--model``), its ``label`` the card's name."""
    root = Path(models_root)
    if not root.is_dir():
        return []
    from ..methods.deep.model_store import read_card

    out = []
    for folder in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            card = read_card(folder)
        except (InputError, OSError):  # not a model folder (or an unreadable card): not listed
            continue
        if card.get("status") != "trained" and not card.get("members"):
            continue
        out.append(ModelChoice(str(folder), model_summary(card), label=f"{card.get('name') or folder.name} (yours)"))
    return out


def has_training_set(model) -> bool:
    """Whether ``model`` (a folder; a shipped name is not) keeps its own training set, so that
    a case can be added to it and the model retrained."""
    return bool(model) and (Path(model) / TRAINING_SET / "dataset.json").is_file()


def training_set_of(model_folder) -> Path:
    """The training set kept in a model trained in Slicer (InputError for other models)."""
    if not has_training_set(model_folder):
        raise InputError(f"the model '{Path(model_folder).name}' has no training set of its own (only models trained here can be retrained with a new case)")
    return Path(model_folder) / TRAINING_SET



class TrainingRun(ProcessRun):
    """One run of ``medsegai train`` in a background process (see :class:`~.runner.ProcessRun`
    for the other parameters).

    ``models_root`` is the user's model folder: a succeeded run's model is moved there, into
    :func:`new_model_folder`, and ``outcome.output_folder`` is that folder.
    """

    what = "training"
    cancelled_message = "cancelled; no model was added"

    def __init__(self, settings: TrainingSettings, launcher: ProcessLauncher, *, models_root, **kwargs) -> None:
        super().__init__(launcher, **kwargs)
        self.settings = settings
        self.models_root = Path(models_root)
        self.staging: Optional[Path] = None

    @property
    def learning_curve(self) -> Optional[Path]:
        """The learning-curve PNG the training redraws as it goes (None until the first)."""
        if self.staging is None:
            return None
        path = self.staging / "learning_curves.png"
        return path if path.is_file() else None

    def start(self, write_training_set: Callable[[Path], object]) -> None:
        """Check the settings, let ``write_training_set(folder)`` write the training set into
        ``folder`` (a new folder in the run's work folder) and start the training."""
        if self.state != "idle":
            raise RuntimeError("a run starts once")
        check_training_settings(self.settings)
        self._launch(lambda work: write_training_set(work / "model" / TRAINING_SET))

    def _arguments(self, work_folder: Path, written) -> List[str]:
        self.staging = work_folder / "model"
        return training_arguments(self.settings, self.staging / TRAINING_SET, self.staging)

    def _complete(self, exit_code: int) -> RunOutcome:
        card_path = self.staging / CARD
        card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
        if card.get("status") != "trained" or not (self.staging / WEIGHTS).is_file():
            return self._succeeded_or_failed("no trained model was written", exit_code, None)
        for left in ("checkpoint.safetensors", "checkpoint.json"):  # resume state: not part of the model
            (self.staging / left).unlink(missing_ok=True)
        self.models_root.mkdir(parents=True, exist_ok=True)
        folder = new_model_folder(self.models_root, self.settings.model_name)
        shutil.move(str(self.staging), str(folder))
        self.output_folder = folder
        return self._succeeded_or_failed(None, exit_code, folder)

