"""Cross-validation of the deep training recipe on the 200 shared hippocampus cases.

The shipped model is validated on one split (the last 40 cases by name). How much of its
figure belongs to that split, and what a new patient should expect, is answered here: the same
recipe is trained five times, fold k validating on the k-th block of 40 cases by name
(``medsegai train --fold k``; fold 4 is the shipped split), all from scratch with one thread and
the same CPU-time budget each, run side by side.

For every fold it reports, on that fold's 40 validation cases:
- the validation Dice of the **last** epoch (no TTA, as logged during training): no epoch was
  chosen by looking at these cases, so this is the unbiased figure;
- the Dice of the kept model (the best epoch on these cases, which is how a shipped model is
  chosen, so slightly optimistic), with and without test-time flips, through the same
  ``segment_with_model`` a user's run goes through;
- where the kept model's errors are (TTA): the Dice of the whole structure (both classes merged)
  and the share of wrong voxels that are anterior/posterior swaps inside it.

The mean over folds is the cross-validated estimate (nnU-Net reports its hippocampus figures
the same way, as a 5-fold cross-validation mean). Prints a table, writes JSON and a picture of
the validation curves.

Usage:
  .venv/bin/python Testing/benchmarks/deep_crossval.py --train --budget-min 35   # train + measure
  .venv/bin/python Testing/benchmarks/deep_crossval.py                          # measure finished folds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import REPO  # noqa: E402

sys.path.insert(0, str(REPO))

from deep_benchmark import DATA, DOCS, class_dice, read_case  # noqa: E402
from deep_recipe import recipe_command  # noqa: E402

from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import load_model  # noqa: E402

WORK = REPO / "Testing" / "benchmarks" / "work" / "crossval"

def train_command(fold: int, budget_min: float, seed: int, work: Path = WORK, extra=()) -> list:
    """The ``medsegai train`` command of one fold (the recipe of deep.md, one thread), writing
    ``work/fold<k>``; ``extra`` adds options."""
    return recipe_command(DATA, work / f"fold{fold}", budget_min=budget_min, seed=seed, extra=("--fold", str(fold), "--val-cases", "40", *extra))


def recipe_text(budget_min: float, seed: int) -> str:
    """The fold command as a user types it from the project folder."""
    cmd = train_command(0, budget_min, seed)
    cmd[0] = "medsegai"
    text = " ".join(f'"{a}"' if " " in a else a for a in cmd)
    return text.replace(str(DATA), "../shared/data/hippocampus").replace(str(REPO) + "/", "").replace("fold0", "foldK").replace("--fold 0", "--fold K")


def train_folds(folds, budget_min: float, seed: int, work: Path = WORK, extra=(), seed_per_fold: bool = False) -> None:
    """Start every fold at once (one thread each) in ``work`` and wait; a CPU-time budget keeps
    them equal however the cores are shared. A failed fold stops the others. ``seed_per_fold``
    gives fold k the seed ``seed + k`` (members of an ensemble should differ)."""
    work.mkdir(parents=True, exist_ok=True)
    taken = [k for k in folds if (work / f"fold{k}" / "model.json").exists()]
    if taken:
        raise SystemExit(f"{', '.join(str(work / f'fold{k}') for k in taken)} already hold models; move them away to train again")
    procs = {}
    for k in folds:
        with open(work / f"fold{k}.log", "w") as log:  # the child keeps its own handle
            command = train_command(k, budget_min, seed + k if seed_per_fold else seed, work, extra)
            procs[k] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            codes = {k: p.poll() for k, p in procs.items()}
            failed = [k for k, c in codes.items() if c not in (None, 0)]
            if failed:
                raise SystemExit(f"fold {failed[0]} failed (exit {codes[failed[0]]}); see {work / f'fold{failed[0]}.log'}")
            if None not in codes.values():
                return
            time.sleep(5)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()


def whole_structure_and_swaps(pred: np.ndarray, ref: np.ndarray) -> tuple:
    """(Dice of the whole structure, all classes merged; share of the wrong voxels that lie
    inside both structures with the wrong class, i.e. anterior/posterior swaps). The rest of
    the wrong voxels are on the outer boundary."""
    a, b = pred > 0, ref > 0
    wrong = pred != ref
    whole = 2.0 * np.logical_and(a, b).sum() / max(int(a.sum() + b.sum()), 1)
    swaps = np.logical_and(wrong, np.logical_and(a, b)).sum() / max(int(wrong.sum()), 1)
    return float(whole), float(swaps)


def measure_fold(k: int) -> dict:
    folder = WORK / f"fold{k}"
    if not (folder / "training_history.json").exists():
        raise SystemExit(f"fold {k} has not finished training in {folder}: run with --train, or wait for the run under way")
    model = load_model(str(folder), "cpu")
    card = model.card
    history = json.loads((folder / "training_history.json").read_text())
    last = [h for h in history if h.get("val_dice")][-1]
    cases = card["training"]["validation_cases"]
    plain, tta, whole, swaps = [], [], [], []
    for name in cases:
        img, ref = read_case(name)
        plain.append(class_dice(segment_with_model([img], model, device="cpu", tta=False).labels, ref))
        labels = segment_with_model([img], model, device="cpu", tta=True).labels
        tta.append(class_dice(labels, ref))
        w, s = whole_structure_and_swaps(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(ref))
        whole.append(w)
        swaps.append(s)
    plain, tta = np.mean(plain, axis=0), np.mean(tta, axis=0)
    return {
        "fold": k,
        "validation_range": f"{cases[0]} ... {cases[-1]}",
        "n_cases": len(cases),
        "epochs": card["training"]["epochs_run"],
        "cpu_time_min": card["training"]["cpu_time_min"],
        "last_epoch_dice": last["val_dice"],
        "last_epoch_mean": last["val_mean_dice"],
        "best_epoch": card["validation"]["best_epoch"],
        "kept_plain_dice": [round(float(v), 4) for v in plain],
        "kept_plain_mean": round(float(plain.mean()), 4),
        "kept_tta_dice": [round(float(v), 4) for v in tta],
        "kept_tta_mean": round(float(tta.mean()), 4),
        "kept_tta_whole_structure_dice": round(float(np.mean(whole)), 4),
        "kept_tta_share_of_errors_that_are_class_swaps": round(float(np.mean(swaps)), 4),
        "history": [{"epoch": h["epoch"], "cpu_s": h["cpu_s"], "val_mean_dice": h.get("val_mean_dice")} for h in history],
    }


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        h = [x for x in r["history"] if x["val_mean_dice"] is not None]
        ax.plot([x["cpu_s"] / 60 for x in h], [x["val_mean_dice"] for x in h], label=f"fold {r['fold']} ({r['validation_range']})", lw=1)
    ax.set_ylim(0.78, 0.92)
    ax.set_xlabel("training CPU minutes (one thread)")
    ax.set_ylabel("validation mean Dice (no TTA)")
    ax.set_title(f"deep recipe, folds {', '.join(str(r['fold']) for r in rows)} of the cross-validation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(rows) -> str:
    lines = [
        "| fold | validation cases | epochs | CPU-min | last epoch (no TTA): anterior / posterior / mean | kept model, no TTA | kept model, TTA | whole structure, TTA | class swaps among wrong voxels |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        a, p = r["last_epoch_dice"]
        lines.append(f"| {r['fold']} | {r['validation_range']} | {r['epochs']} | {r['cpu_time_min']:.1f} | {a:.4f} / {p:.4f} / **{r['last_epoch_mean']:.4f}** | {r['kept_plain_mean']:.4f} | {r['kept_tta_mean']:.4f} | {r['kept_tta_whole_structure_dice']:.4f} | {r['kept_tta_share_of_errors_that_are_class_swaps']:.0%} |")
    m = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    s = lambda key: float(np.std([r[key] for r in rows], ddof=1)) if len(rows) > 1 else 0.0  # noqa: E731
    ant = float(np.mean([r["last_epoch_dice"][0] for r in rows]))
    post = float(np.mean([r["last_epoch_dice"][1] for r in rows]))
    lines.append(f"| mean ± SD over folds {', '.join(str(r['fold']) for r in rows)} | {sum(r['n_cases'] for r in rows)} cases | | | {ant:.4f} / {post:.4f} / **{m('last_epoch_mean'):.4f} ± {s('last_epoch_mean'):.4f}** | {m('kept_plain_mean'):.4f} | {m('kept_tta_mean'):.4f} | {m('kept_tta_whole_structure_dice'):.4f} | {m('kept_tta_share_of_errors_that_are_class_swaps'):.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="train the folds first (all at once, one thread each)")
    ap.add_argument("--budget-min", type=float, default=35.0, help="CPU minutes per fold (default 35)")
    ap.add_argument("--folds", default="0,1,2,3,4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(DOCS / "deep_crossval.json"))
    ap.add_argument("--png", default=str(DOCS / "deep_crossval.png"))
    args = ap.parse_args(argv)
    folds = [int(k) for k in args.folds.split(",")]
    if args.train:
        t0 = time.perf_counter()
        train_folds(folds, args.budget_min, args.seed)
        print(f"trained {len(folds)} folds in {(time.perf_counter() - t0) / 60:.1f} wall-min", flush=True)
    rows = [measure_fold(k) for k in folds]
    print(table(rows))
    plot(rows, Path(args.png))
    result = {
        "recipe": recipe_text(args.budget_min, args.seed),
        "budget_cpu_min_per_fold": args.budget_min,
        "folds": rows,
        "mean_last_epoch": round(float(np.mean([r["last_epoch_mean"] for r in rows])), 4),
        "mean_kept_tta": round(float(np.mean([r["kept_tta_mean"] for r in rows])), 4),
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
