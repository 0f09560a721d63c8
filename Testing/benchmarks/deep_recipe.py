"""The deep training recipe of docs/benchmarks/deep.md as one ``medsegai train`` command.

Shared by the benchmarks that train it (``nnunet_peer.py --beside``, ``deep_crossval.py``), so
the recipe they measure cannot drift apart: batch 2, seed, class names, a budget on one clock.
Imports nothing heavy: the peer script runs it without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bench_paths import REPO
CLASS_NAMES = "Anterior hippocampus,Posterior hippocampus"


def recipe_command(dataset: Path, output, *, budget_min: float, clock: str = "cpu", threads: int = 1, seed: int = 0,
                   epochs: int = 2000, extra: Sequence[str] = ()) -> list:
    """``medsegai train`` from scratch with the recipe; ``extra`` adds options (e.g. ``--fold``).

    The budget (minutes on ``clock``) ends the run and sets the learning-rate schedule; ``epochs``
    is only a ceiling above it.
    """
    return [
        str(REPO / ".venv" / "bin" / "medsegai"), "train", str(dataset), "--output", str(output),
        "--time-budget-min", str(budget_min), "--budget-clock", clock, "--threads", str(threads),
        "--epochs", str(epochs), "--batch-size", "2", "--seed", str(seed), "--class-names", CLASS_NAMES, *extra,
    ]
