"""Benchmark: the "train in Slicer" loop on the shared hippocampus cases, as a user runs it.

For each size N (default 5, 10, 20, 40) the first N cases by name (of the 160 the shipped
single model trained on) are loaded into an MRML scene (slicer-core) as a volume node and a
segmentation node with the segments "anterior" and "posterior", exported by the library
(``training_nodes.cases_from_node_pairs`` + ``training_set.write_training_set``: the last 20 %
of the N validate) and trained by ``runs.training_run.TrainingRun`` in a real background
process with the default budget and recipe on all cores (2 here). Each model is then run (ONNX
Runtime, test-time flips, as ``medsegai segment``) on the 40 cases the shipped single model
validated on (the last 40 by name), which none of these models saw; the shipped single model
runs on them in the same process as the reference.

"Add and retrain": the 5-case model's training set gets the next 5 cases
(``training_set.extend_training_set``; the validation case stays) and training continues from
that model (``--init-from``) with the same budget.

Prints a table and writes ``docs/benchmarks/train_in_slicer.json``.
Run: ``.venv/bin/python Testing/benchmarks/train_in_slicer.py [--sizes 5,10,20,40] [--budget-min 10]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import HIPPOCAMPUS, REPO  # noqa: E402

sys.path.insert(0, str(REPO))
from MedSegAILib.measure.metrics import evaluate_labelmaps  # noqa: E402
from MedSegAILib.methods.deep.domain import check_input, check_result, input_features  # noqa: E402
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import read_card  # noqa: E402
from MedSegAILib.methods.deep.training_set import extend_training_set, write_training_set  # noqa: E402
from MedSegAILib.runs.subprocess_launcher import EventLoop, SubprocessLauncher  # noqa: E402
from MedSegAILib.runs.training_run import DEFAULT_BUDGET_MIN, TRAINING_SET, TrainingRun, TrainingSettings  # noqa: E402

SEGMENTS = ("anterior", "posterior")
OUT = REPO / "docs" / "benchmarks" / "train_in_slicer.json"


def case_names() -> list:
    return sorted(p.name[: -len(".nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))


def scene_cases(names):
    """The cases as a user has them in Slicer: (volume node, segmentation node) pairs, exported."""
    import slicer

    from MedSegAILib.slicer_bridge.segmentation_node import segmentation_node_from_labels, sitk_to_volume_node
    from MedSegAILib.slicer_bridge.training_nodes import cases_from_node_pairs

    scene = slicer.vtkMRMLScene()
    pairs = []
    for n in names:
        volume = sitk_to_volume_node(sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz")), scene, n)
        labels = sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{n}.nii.gz"))
        pairs.append((volume, segmentation_node_from_labels(labels, SEGMENTS, scene, f"{n} segmentation", volume)))
    return cases_from_node_pairs(pairs, SEGMENTS)


def train(models_root: Path, name: str, write, budget_min: float, init_from: str = "", clock: str = "wall") -> dict:
    """One TrainingRun to its end; returns its outcome figures."""
    loop = EventLoop()
    done = []
    run = TrainingRun(
        TrainingSettings(name, SEGMENTS, budget_min=budget_min, init_from=init_from, budget_clock=clock), SubprocessLauncher(loop),
        models_root=models_root, python_executable=sys.executable, library_parent=str(REPO), call_soon=loop.call_soon,
        on_finished=done.append,
    )
    t0 = time.perf_counter()
    run.start(write)
    loop.run_until(lambda: bool(done), 4 * 3600)
    outcome = done[0]
    if not outcome.ok:
        raise SystemExit(f"{name}: training {outcome.status}: {outcome.message}\n" + "\n".join(outcome.log_tail))
    card = read_card(outcome.output_folder)
    return {
        "model": str(outcome.output_folder), "wall_s": round(time.perf_counter() - t0, 1),
        "epochs": card["training"]["epochs_run"], "cpu_min": card["training"]["cpu_time_min"], "own_validation_dice": card["validation"]["mean_dice"],
        "train_cases": len(card["training"]["train_cases"]), "validation_cases": card["training"]["validation_cases"],
    }


def evaluate(model: str, names) -> dict:
    """Mean Dice (both classes) on ``names`` with the segment defaults, and the domain verdicts."""
    card = read_card(model)
    record = card.get("domain")
    dice, flagged, checked = [], 0, 0
    for n in names:
        img = sitk.Cast(sitk.ReadImage(str(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz")), sitk.sitkFloat32)
        ref = sitk.ReadImage(str(HIPPOCAMPUS / "labelsTr" / f"{n}.nii.gz"))
        out = segment_with_model([img], model)
        rep = evaluate_labelmaps(out.labels, ref)["classes"]
        dice.append(np.mean([rep["1"]["dice"], rep["2"]["dice"]]))
        verdicts = [check_input(record, input_features([img])), check_result(record, out)]
        if any(v.in_domain is not None for v in verdicts):
            checked += 1
            flagged += any(v.in_domain is False for v in verdicts)
    return {"mean_dice": round(float(np.mean(dice)), 4), "sd_dice": round(float(np.std(dice)), 4),
            "domain_checked": checked, "domain_flagged": flagged}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,10,20,40")
    ap.add_argument("--budget-min", type=float, default=DEFAULT_BUDGET_MIN)
    ap.add_argument("--no-retrain", action="store_true")
    ap.add_argument("--budget-clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the budget is the training process's CPU minutes (on a shared machine; "
                         "10 wall-minutes on the 2 idle cores here are 17.6 CPU-minutes)")
    ap.add_argument("--output", default=str(OUT))
    args = ap.parse_args(argv)
    names = case_names()
    pool, held_out = names[:160], names[-40:]
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    shipped = str(REPO / "Resources" / "Models" / "hippocampus_single")
    reference = {"model": "hippocampus_single (shipped; 160 cases, 35 CPU-minutes)", **evaluate(shipped, held_out)}
    print(f"shipped single model on the 40 held-out cases: Dice {reference['mean_dice']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="medsegai-train-bench-") as tmp:
        root = Path(tmp) / "models"
        for n in sizes:
            t0 = time.perf_counter()
            cases, terms = scene_cases(pool[:n])
            export_s = time.perf_counter() - t0
            row = {"cases": n, "export_s": round(export_s, 2),
                   **train(root, f"hippocampus {n}", lambda f, c=cases, t=terms: write_training_set(c, SEGMENTS, f, terminology=t), args.budget_min, clock=args.budget_clock)}
            row.update(evaluate(row["model"], held_out))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if n == 5 and not args.no_retrain:
                start = row["model"]
                more, _ = scene_cases(pool[5:10])
                rt = {"cases": 10, "retrain_from": "the 5-case model, 5 cases added",
                      **train(root, "hippocampus 5+5", lambda f: extend_training_set(Path(start) / TRAINING_SET, more, f), args.budget_min, init_from=start, clock=args.budget_clock)}
                rt.update(evaluate(rt["model"], held_out))
                rt["gain_over_start"] = round(rt["mean_dice"] - row["mean_dice"], 4)
                rows.append(rt)
                print(json.dumps(rt), flush=True)
    result = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "budget_min": args.budget_min, "budget_clock": args.budget_clock, "threads": "all (2 cores)", "held_out_cases": held_out,
        "reference": reference, "runs": rows,
    }
    Path(args.output).write_text(json.dumps(result, indent=1))
    print()
    print("| cases (train + validate) | how | wall time (min) | CPU time (min) | epochs | own validation Dice | Dice on the 40 held-out cases | domain flags |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        how = "retrain from the 5-case model" if r.get("retrain_from") else "from scratch"
        flags = f"{r['domain_flagged']}/{r['domain_checked']}" if r["domain_checked"] else "not checked (too few cases)"
        print(f"| {r['cases']} ({r['train_cases']} + {len(r['validation_cases'])}) | {how} | {r['wall_s'] / 60:.1f} | {r['cpu_min']:.1f} | {r['epochs']} | {r['own_validation_dice']} | {r['mean_dice']} ± {r['sd_dice']} | {flags} |")
    print(f"| 200 (160 + 40) | shipped single model | - | 35 (one thread) | - | 0.8704 | {reference['mean_dice']} ± {reference['sd_dice']} | {reference['domain_flagged']}/{reference['domain_checked']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
