"""Deep benchmark: the shipped hippocampus model on its 40 validation cases.

Prints a table and writes docs/benchmarks/deep.json and the measured block of deep.md:
- Dice per class (1 anterior, 2 posterior) and mean, with and without test-time flips;
- expected calibration error and AUROC of the uncertainty for misclassified voxels, over the
  voxels within 3 mm of either segmentation (whole-crop figures are dominated by easy
  background);
- inference seconds per case in-process; for a fresh ``medsegai segment`` process (start-up
  and every output included) on one case; and for one process on all N cases (start-up
  shared, the way a batch is run), as total seconds / N;
- the nnU-Net v2 peer's figures from ``nnunet_peer.py`` (same split, CPU-time budget) when its
  JSON exists: the Dice ratio MedSegAI / nnU-Net at equal CPU training time, read from
  MedSegAI's training history (validation Dice against CPU seconds, both without TTA), and a
  picture of the two (``deep_equal_cpu.png``);
- Dice without TTA on every 4th training case, beside the validation figure: the gap between
  the two says how much is lost to generalisation rather than to fitting.

Usage: .venv/bin/python Testing/benchmarks/deep_benchmark.py [--model NAME|PATH] [--peer-json PATH]
           [--history PATH] [--cases N] [--json PATH --no-docs]
(``--json PATH --no-docs`` measures a model that is not shipped without touching deep.md.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
from MedSegAILib.methods.deep.inference import segment_with_model  # noqa: E402
from MedSegAILib.methods.deep.model_store import load_model  # noqa: E402
from MedSegAILib.methods.deep.onnx_runtime import export_status, load_onnx_model  # noqa: E402
from MedSegAILib.uncertainty.calibration import error_detection_auroc, expected_calibration_error, structure_region  # noqa: E402

DATA = HIPPOCAMPUS
DOCS = REPO / "docs" / "benchmarks"
# Validation Dice against CPU seconds of a MedSegAI run trained from scratch beside the peer,
# each on one thread (copied from that run's training_history.json).
EQUAL_CPU_HISTORY = DOCS / "deep_equal_cpu_history.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="hippocampus_single", help="a single model with one validation split (default hippocampus_single; the shipped ensemble is measured by deep_ensemble.py --measure)")
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--peer-json", default=str(DOCS / "deep_peer_nnunet.json"))
    ap.add_argument("--history", default=None, help="training history for the equal-CPU comparison (default: deep_equal_cpu_history.json in docs/benchmarks when present, else the model folder's training_history.json)")
    ap.add_argument("--json", default=str(DOCS / "deep.json"), help="where to write the figures")
    ap.add_argument("--no-docs", action="store_true", help="write only --json; leave deep.md and deep_equal_cpu.png as they are")
    ap.add_argument("--repeats", type=int, default=3, help="fresh one-case processes per runtime; the median is reported (default 3)")
    ap.add_argument("--peer-timing", action="store_true", help="also time nnUNetv2_predict in this run (needs .venv-peers/nnunet and the checkpoint of nnunet_peer.py)")
    ap.add_argument("--peer-trainer", default="nnUNetTrainer_1epoch", help="the nnU-Net trainer whose checkpoint --peer-timing uses")
    args = ap.parse_args(argv)

    model = load_model(args.model, "cpu")
    onnx_model = load_onnx_model(args.model) if export_status(model.folder, model.card) == "ready" else None
    card = model.card
    cases = card["training"]["validation_cases"][: args.cases]
    rows = []
    for name in cases:
        img, ref = read_case(name)
        r = sitk.GetArrayFromImage(ref)
        row = {"case": name}
        if onnx_model is not None:
            t0 = time.perf_counter()
            out = segment_with_model([img], onnx_model, tta=True)
            row["seconds_tta_onnx"] = time.perf_counter() - t0
            row["dice1_tta_onnx"], row["dice2_tta_onnx"] = class_dice(out.labels, ref)
        for tag, tta in (("tta", True), ("plain", False)):
            t0 = time.perf_counter()
            out = segment_with_model([img], model, device="cpu", tta=tta)
            row[f"seconds_{tag}"] = time.perf_counter() - t0
            row[f"dice1_{tag}"], row[f"dice2_{tag}"] = class_dice(out.labels, ref)
            if tta:
                pred = sitk.GetArrayFromImage(out.labels)
                prob = np.moveaxis(sitk.GetArrayFromImage(out.probabilities), -1, 0)
                unc = sitk.GetArrayFromImage(out.uncertainty)
                region = structure_region(pred, r)
                row["ece_region"] = expected_calibration_error(prob, r, mask=region)
                row["ece_all"] = expected_calibration_error(prob, r)
                row["auroc_region"] = error_detection_auroc(unc, pred != r, mask=region)
        rows.append(row)
        print(f"{name}: Dice {row['dice1_tta']:.3f} / {row['dice2_tta']:.3f}  ECE {row['ece_region']:.3f}  AUROC {row['auroc_region']:.3f}", flush=True)

    # The same figure on cases the model was trained on (no TTA).
    train_rows = []
    for name in card["training"]["train_cases"][::4]:
        img, ref = read_case(name)
        train_rows.append(class_dice(segment_with_model([img], model, device="cpu", tta=False).labels, ref))

    timing = process_timings(args.model, cases, repeats=args.repeats, peer_trainer=args.peer_trainer if args.peer_timing else None)

    def mean(key):
        return float(np.nanmean([r[key] for r in rows]))

    result = {
        "model": str(model.folder.relative_to(REPO)) if model.folder.is_relative_to(REPO) else str(model.folder),
        "model_sha256": model.sha256,
        "validation_cases": cases,
        "split": card["training"]["split"],
        "training_wall_time_min": card["training"]["wall_time_min"],
        "training_epochs": card["training"]["epochs_run"],
        "dice_tta": {"1": mean("dice1_tta"), "2": mean("dice2_tta"), "mean": (mean("dice1_tta") + mean("dice2_tta")) / 2},
        "dice_plain": {"1": mean("dice1_plain"), "2": mean("dice2_plain"), "mean": (mean("dice1_plain") + mean("dice2_plain")) / 2},
        "training_cases_dice_plain": {"cases": "every 4th training case", "n": len(train_rows), "1": float(np.mean([r[0] for r in train_rows])), "2": float(np.mean([r[1] for r in train_rows])), "mean": float(np.mean(train_rows))},
        "ece_region": mean("ece_region"),
        "ece_all_voxels": mean("ece_all"),
        "auroc_uncertainty_errors": mean("auroc_region"),
        "seconds_per_case_tta": mean("seconds_tta"),
        "seconds_per_case_plain": mean("seconds_plain"),
        "onnx": None if onnx_model is None else {
            "sha256": onnx_model.onnx_sha256,
            "seconds_per_case_tta": mean("seconds_tta_onnx"),
            "dice_tta": {"1": mean("dice1_tta_onnx"), "2": mean("dice2_tta_onnx"), "mean": (mean("dice1_tta_onnx") + mean("dice2_tta_onnx")) / 2},
            "largest_case_dice_difference_to_torch": max(max(abs(r["dice1_tta_onnx"] - r["dice1_tta"]), abs(r["dice2_tta_onnx"] - r["dice2_tta"])) for r in rows),
        },
        "process_timings": timing,
        "seconds_cli_one_case_with_startup": timing["medsegai"]["auto"]["one_case_s"],
        "seconds_per_case_cli_batch_with_startup": timing["medsegai"]["auto"]["batch_per_case_s"],
        "cli_batch_cases": len(cases),
        "per_case": rows,
    }
    hist_path = Path(args.history) if args.history else EQUAL_CPU_HISTORY if EQUAL_CPU_HISTORY.exists() else model.folder / "training_history.json"
    history = json.loads(hist_path.read_text()) if hist_path.exists() else []
    history = history.get("history", history) if isinstance(history, dict) else history
    peer_path = Path(args.peer_json)
    if peer_path.exists():
        peer = json.loads(peer_path.read_text())
        result["peer_nnunet"] = peer
        result["equal_cpu"] = equal_cpu_comparison(history, peer)
        result["equal_cpu"]["medsegai_history"] = str(hist_path.relative_to(REPO)) if hist_path.is_relative_to(REPO) else str(hist_path)
        if not args.no_docs:
            plot_equal_cpu(history, peer, DOCS / "deep_equal_cpu.png")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))

    lines = [
        "| figure | MedSegAI (TTA) | MedSegAI (no TTA) |",
        "| --- | --- | --- |",
        f"| Dice anterior (1) | {result['dice_tta']['1']:.4f} | {result['dice_plain']['1']:.4f} |",
        f"| Dice posterior (2) | {result['dice_tta']['2']:.4f} | {result['dice_plain']['2']:.4f} |",
        f"| mean Dice | {result['dice_tta']['mean']:.4f} | {result['dice_plain']['mean']:.4f} |",
        f"| mean Dice on {len(train_rows)} training cases (every 4th) | | {result['training_cases_dice_plain']['mean']:.4f} |",
        f"| seconds per case (in process, 2 cores) | {result['seconds_per_case_tta']:.3f} | {result['seconds_per_case_plain']:.3f} |",
        f"| ECE within 3 voxels of the structures | {result['ece_region']:.4f} | |",
        f"| ECE over all voxels | {result['ece_all_voxels']:.4f} | |",
        f"| AUROC of uncertainty for errors | {result['auroc_uncertainty_errors']:.4f} | |",
    ]
    if result["onnx"]:
        o = result["onnx"]
        lines += [
            f"| mean Dice, ONNX Runtime (largest per-case difference to torch) | {o['dice_tta']['mean']:.4f} ({o['largest_case_dice_difference_to_torch']:.1e}) | |",
            f"| seconds per case in process, ONNX Runtime | {o['seconds_per_case_tta']:.3f} | |",
        ]
    lines += ["", timing_table(timing, len(cases))]
    eq = result.get("equal_cpu")
    if eq:
        lines += [
            "",
            "| equal CPU training time (validation mean Dice, no TTA) | MedSegAI CPU-min | MedSegAI | nnU-Net v2 CPU-min | nnU-Net v2 | ratio MedSegAI / nnU-Net |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in eq["rows"]:
            nn = "none (no checkpoint)" if row["nnunet"] is None else format(row["nnunet"], ".4f")
            ratio = "undefined" if row["ratio"] is None else format(row["ratio"], ".3f")
            lines.append(f"| {row['label']} | {row['medsegai_cpu_min']:.1f} | {row['medsegai']:.4f} | {row['nnunet_cpu_min']:.1f} | {nn} | {ratio} |")
    table = "\n".join(lines)
    print("\n" + table)
    if not args.no_docs:
        write_measured_block(DOCS / "deep.md", table)
    return 0


def _seconds(command: list) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - t0


def process_timings(model: str, cases: list, *, repeats: int = 3, peer_trainer=None) -> dict:
    """Wall seconds of fresh processes, start-up included, as a user runs them.

    For each MedSegAI runtime (``auto``, which takes ONNX Runtime for a model with an export,
    and ``torch``): the median of ``repeats`` one-case ``medsegai segment`` processes (every
    output but radiomics), and one process on all ``cases`` (every output) per case. With
    ``peer_trainer``, ``nnUNetv2_predict`` (its own venv, no TTA) on one case and on all cases,
    in the same run.
    """
    exe = str(REPO / ".venv" / "bin" / "medsegai")
    inputs = [str(DATA / "imagesTr" / f"{c}.nii.gz") for c in cases]
    out = {"medsegai": {}, "repeats": repeats}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in ("auto", "torch"):
            base = [exe, "segment", "--method", "deep", "--model", model, "--param", f"runtime={runtime}", "-q", "--overwrite"]
            one = [_seconds(base + [inputs[0], "-o", f"{tmp}/{runtime}_one", "--no-radiomics"]) for _ in range(repeats)]
            batch = _seconds(base + inputs + ["-o", f"{tmp}/{runtime}_batch"])
            prov = json.loads((Path(tmp) / f"{runtime}_one" / "provenance.json").read_text())
            out["medsegai"][runtime] = {
                "ran_on": prov["extra"]["runtime"],
                "one_case_s": float(np.median(one)),
                "one_case_runs_s": one,
                "batch_per_case_s": batch / len(cases),
            }
    if peer_trainer:
        import nnunet_peer

        one = nnunet_peer.predict(peer_trainer, cases[:1], tag="timing_one")
        batch = nnunet_peer.predict(peer_trainer, cases, tag="timing_batch")
        if one.get("checkpoint") and batch.get("checkpoint"):
            out["nnunet"] = {
                "trainer": peer_trainer,
                "one_case_s": one["predict_seconds_per_case"],
                "batch_per_case_s": batch["predict_seconds_per_case"],
                "dice_mean": batch["dice_mean"],
            }
    return out


def timing_table(timing: dict, n: int) -> str:
    """Markdown table of :func:`process_timings`, with ratios to nnU-Net when it was timed."""
    nn = timing.get("nnunet")
    rows = [
        f"| fresh process, start-up included (same run) | one case (median of {timing['repeats']}) | {n} cases in one process, per case |",
        "| --- | --- | --- |",
    ]
    for runtime, label in (("auto", "`medsegai segment`, default runtime"), ("torch", "`medsegai segment --param runtime=torch`")):
        t = timing["medsegai"][runtime]
        rows.append(f"| {label} ({t['ran_on']}, TTA 4 flips, all outputs) | {t['one_case_s']:.2f} s | {t['batch_per_case_s']:.2f} s |")
    if nn:
        rows.append(f"| `nnUNetv2_predict` ({nn['trainer']}, no TTA, labels only) | {nn['one_case_s']:.2f} s | {nn['batch_per_case_s']:.2f} s |")
        t = timing["medsegai"]["auto"]
        rows.append(f"| time ratio MedSegAI default / nnU-Net (below 1: faster) | {t['one_case_s'] / nn['one_case_s']:.2f} | {t['batch_per_case_s'] / nn['batch_per_case_s']:.2f} |")
    return "\n".join(rows)


def read_case(name: str) -> tuple:
    """One shared case: the image (float32) and its reference labelmap."""
    img = sitk.Cast(sitk.ReadImage(str(DATA / "imagesTr" / f"{name}.nii.gz")), sitk.sitkFloat32)
    return img, sitk.ReadImage(str(DATA / "labelsTr" / f"{name}.nii.gz"))


def class_dice(labels: sitk.Image, ref: sitk.Image) -> tuple:
    """Dice of classes 1 (anterior) and 2 (posterior) against the reference."""
    rep = evaluate_labelmaps(labels, ref)
    return rep["classes"]["1"]["dice"], rep["classes"]["2"]["dice"]


MEASURED_START = "<!-- measured by Testing/benchmarks/deep_benchmark.py: this block is rewritten on each run -->"
MEASURED_END = "<!-- end of measured block -->"


def write_measured_block(path: Path, table: str) -> None:
    """Put ``table`` between the measured-block markers of ``path`` (appended when the markers
    are missing), leaving the hand-written text around it as it is."""
    text = path.read_text() if path.exists() else ""
    block = f"{MEASURED_START}\n{table}\n{MEASURED_END}"
    if MEASURED_START in text and MEASURED_END in text:
        head, rest = text.split(MEASURED_START, 1)
        text = head + block + rest.split(MEASURED_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def _dice_at_cpu(history: list, cpu_s: float):
    """The last validated epoch's mean Dice within ``cpu_s`` CPU seconds (None if none)."""
    done = [h for h in history if h.get("val_mean_dice") is not None and h.get("cpu_s", float("inf")) <= cpu_s]
    return (done[-1]["val_mean_dice"], done[-1]["cpu_s"], done[-1]["epoch"]) if done else (None, None, None)


def equal_cpu_comparison(history: list, peer: dict) -> dict:
    """MedSegAI's validation Dice at the CPU seconds nnU-Net's training used, and at the end of
    MedSegAI's run when that is later, each with the ratio MedSegAI / nnU-Net."""
    peer_cpu = float(peer.get("training", {}).get("cpu_s") or 0.0)
    peer_dice = peer.get("dice_mean")
    rows = []
    for label, limit in (("within nnU-Net's training CPU time", peer_cpu), ("at the end of MedSegAI's run", float("inf"))):
        d, c, e = _dice_at_cpu(history, limit)
        if d is None or any(r["medsegai_cpu_s"] == c for r in rows):
            continue
        rows.append({
            "label": f"{label} (MedSegAI epoch {e})", "medsegai_cpu_min": c / 60, "medsegai": d, "medsegai_cpu_s": c,
            "nnunet_cpu_min": peer_cpu / 60, "nnunet": peer_dice, "ratio": d / peer_dice if peer_dice else None,
        })
    return {"peer_training_cpu_s": peer_cpu, "peer_dice_mean": peer_dice, "rows": rows}


def plot_equal_cpu(history: list, peer: dict, path: Path) -> None:
    """Validation mean Dice against training CPU minutes: MedSegAI's curve, nnU-Net's point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(h["cpu_s"] / 60, h["val_mean_dice"]) for h in history if h.get("val_mean_dice") is not None and "cpu_s" in h]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    if pts:
        ax.plot(*zip(*pts), "-", color="#1f77b4", label="MedSegAI (validation, no TTA)")
    if peer.get("dice_mean") is not None:
        ax.plot([peer["training"]["cpu_s"] / 60], [peer["dice_mean"]], "o", color="#d62728", label=f"nnU-Net v2 ({peer['training']['trainer']})")
    ax.set_xlabel("training CPU minutes (one thread each, same machine)")
    ax.set_ylabel("mean validation Dice (40 cases)")
    ax.set_ylim(0.5, 0.95)  # the first epochs (below 0.5) are cut off
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Hippocampus: Dice at equal CPU training time")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
