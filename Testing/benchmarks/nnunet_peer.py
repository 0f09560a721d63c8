"""nnU-Net v2 peer for the deep benchmark: same split, a wall-clock training budget on the CPU.

nnU-Net runs in its own venv beside the project (``.venv-peers/nnunet``: torch 2.14.1,
torchvision 0.29.1, nnunetv2), never as a project dependency; ``--setup`` creates it. Steps:

1. the 200 hippocampus cases in nnU-Net's raw layout (Dataset004_Hippocampus);
2. ``nnUNetv2_plan_and_preprocess -c 3d_fullres``, and ``splits_final.json`` with fold 0 =
   MedSegAI's split (validation = the last 40 cases by sorted name, training = the other 160);
3. nnU-Net's trainer (``nnunet_train_cpu.py``: its own ``get_trainer_from_args`` and
   ``run_training`` with a fixed torch thread count, augmentation in-process), stopped when the
   CPU (or wall) budget ends; nnU-Net writes ``checkpoint_final.pth`` when its reduced-epoch
   schedule completes, else ``checkpoint_best.pth`` is used;
4. ``nnUNetv2_predict`` of the 40 validation cases with that checkpoint, timed;
5. Dice per class with the project's own metric code; JSON with budget, epochs, CPU seconds.

With ``--beside MODEL_DIR`` a from-scratch ``medsegai train`` runs at the same time with the
same thread count and the same CPU (or wall) budget, so both sides share the machine alike; its
per-epoch history (validation Dice, CPU seconds) is copied to ``--beside-history`` for
``deep_benchmark.py``, which forms the ratio at nnU-Net's CPU time.

Usage (the run in docs/benchmarks/deep.md: one thread each, both budgets in CPU time):
  .venv/bin/python Testing/benchmarks/nnunet_peer.py --setup --budget-min 120 \
      --trainer nnUNetTrainer_1epoch --threads 1 --json docs/benchmarks/deep_peer_nnunet.json \
      --beside /tmp/medsegai_equal_cpu --beside-budget-min 75 \
      --beside-history docs/benchmarks/deep_equal_cpu_history.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import HIPPOCAMPUS, REPO  # noqa: E402
from deep_recipe import recipe_command  # noqa: E402

sys.path.insert(0, str(REPO))
from MedSegAILib.measure.metrics import evaluate_labelmaps  # noqa: E402

DATA = HIPPOCAMPUS
VENV = REPO / ".venv-peers" / "nnunet"
WORK = REPO / "Testing" / "benchmarks" / "work" / "nnunet"
DATASET = "Dataset004_Hippocampus"


def setup() -> None:
    if (VENV / "bin" / "nnUNetv2_train").exists():
        return
    subprocess.run(["python3.11", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "torch==2.14.1", "torchvision==0.29.1", "nnunetv2"], check=True)


def env() -> dict:
    e = dict(os.environ)
    e.update(
        nnUNet_raw=str(WORK / "raw"),
        nnUNet_preprocessed=str(WORK / "preprocessed"),
        nnUNet_results=str(WORK / "results"),
        nnUNet_n_proc_DA="1",  # one augmentation worker: the machine has 2 cores
        OMP_NUM_THREADS="2",
    )
    return e


def split():
    names = sorted(f.name[: -len(".nii.gz")] for f in (DATA / "imagesTr").glob("*.nii.gz"))
    return names[:-40], names[-40:]


def prepare() -> None:
    raw = WORK / "raw" / DATASET
    if not (raw / "dataset.json").exists():
        for sub in ("imagesTr", "labelsTr"):
            (raw / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((DATA / "imagesTr").glob("*.nii.gz")):
            shutil.copy(f, raw / "imagesTr" / f.name.replace(".nii.gz", "_0000.nii.gz"))
            shutil.copy(DATA / "labelsTr" / f.name, raw / "labelsTr" / f.name)
        meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2}, "numTraining": 200, "file_ending": ".nii.gz"}
        (raw / "dataset.json").write_text(json.dumps(meta, indent=1))
    pre = WORK / "preprocessed" / DATASET
    if not (pre / "nnUNetPlans.json").exists():
        subprocess.run([str(VENV / "bin" / "nnUNetv2_plan_and_preprocess"), "-d", "4", "-c", "3d_fullres", "-np", "1", "--verify_dataset_integrity"], check=True, env=env())
    train, val = split()
    (pre / "splits_final.json").write_text(json.dumps([{"train": train, "val": val}], indent=1))


def _tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def train(budget_min: float, trainer: str, threads: int, clock: str) -> dict:
    """Train fold 0; stop when ``budget_min`` of CPU (or wall) time is spent."""
    log = WORK / "train.log"
    stats = WORK / "train_time.json"
    stats.unlink(missing_ok=True)
    e = env()
    e.update(OMP_NUM_THREADS=str(threads), nnUNet_n_proc_DA="0")  # augmentation in-process, as MedSegAI does
    t0 = time.perf_counter()
    cpu = 0.0
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(VENV / "bin" / "python"), str(Path(__file__).with_name("nnunet_train_cpu.py")), "4", trainer, str(threads), str(stats)],
            env=e, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        stopped = False
        while proc.poll() is None:
            time.sleep(5)
            cpu = max(cpu, _tree_cpu_seconds(proc.pid))
            spent = cpu if clock == "cpu" else time.perf_counter() - t0
            if spent >= budget_min * 60:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                stopped = True
    text = log.read_text(errors="replace")
    if proc.returncode != 0 and not stopped:
        raise SystemExit(f"nnU-Net's training failed (exit {proc.returncode}); see {log}")
    epochs = len(re.findall(r"Epoch time:", text))
    own = json.loads(stats.read_text()) if stats.exists() else {}
    return {
        "trainer": trainer,
        "threads": threads,
        "budget_min": budget_min,
        "budget_clock": clock,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(own.get("cpu_s", cpu), 1),
        "stopped_by_budget": stopped,
        "epochs_completed": epochs,
        "pseudo_dice_log": re.findall(r"Pseudo dice \[([^\]]*)\]", text)[-5:],
    }


def collect(budget_min: float, trainer: str, threads: int, clock: str) -> dict:
    """Figures of a training run that was left to finish on its own (its log and the CPU
    seconds ``nnunet_train_cpu.py`` wrote when it ended)."""
    text = (WORK / "train.log").read_text(errors="replace")
    own = json.loads((WORK / "train_time.json").read_text())
    return {
        "trainer": trainer,
        "threads": threads,
        "budget_min": budget_min,
        "budget_clock": clock,
        "wall_s": round(own["wall_s"], 1),
        "cpu_s": round(own["cpu_s"], 1),
        "stopped_by_budget": False,
        "ran_past_budget": own["cpu_s"] > budget_min * 60,
        "epochs_completed": len(re.findall(r"Epoch time:", text)),
        "pseudo_dice_log": re.findall(r"Pseudo dice \[([^\]]*)\]", text)[-5:],
    }


def start_medsegai(model_dir: str, budget_min: float, threads: int, clock: str) -> subprocess.Popen:
    """A from-scratch MedSegAI training on the same split, started beside nnU-Net's."""
    if Path(model_dir, "model.json").exists():
        raise SystemExit(f"'{model_dir}' already holds a model; choose another --beside folder")
    cmd = recipe_command(DATA, model_dir, budget_min=budget_min, clock=clock, threads=threads, epochs=100000)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(model_dir) / "train.log", "w") as log:  # the child keeps its own handle
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def predict(trainer: str, cases=None, tag: str = "val") -> dict:
    """Time ``nnUNetv2_predict`` (one process, no TTA) on ``cases`` (default: the 40 validation
    cases) and score it; inputs and outputs go to ``work/nnunet/<tag>_in`` and ``<tag>_out``."""
    val = list(cases) if cases is not None else split()[1]
    fold = WORK / "results" / DATASET / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"
    ckpt = next((c for c in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth") if (fold / c).exists()), None)
    if ckpt is None:
        return {"checkpoint": None, "note": "no checkpoint was written within the budget"}
    inp, out = WORK / f"{tag}_in", WORK / f"{tag}_out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(inp, ignore_errors=True)
    inp.mkdir(parents=True)
    for n in val:
        shutil.copy(DATA / "imagesTr" / f"{n}.nii.gz", inp / f"{n}_0000.nii.gz")
    t0 = time.perf_counter()
    subprocess.run(
        [str(VENV / "bin" / "nnUNetv2_predict"), "-i", str(inp), "-o", str(out), "-d", "4", "-c", "3d_fullres", "-f", "0",
         "-tr", trainer, "-chk", ckpt, "-device", "cpu", "--disable_tta", "-npp", "1", "-nps", "1"],
        check=True, env=env(), capture_output=True,
    )
    seconds = time.perf_counter() - t0
    d1, d2 = [], []
    for n in val:
        rep = evaluate_labelmaps(sitk.ReadImage(str(out / f"{n}.nii.gz")), sitk.ReadImage(str(DATA / "labelsTr" / f"{n}.nii.gz")))
        d1.append(rep["classes"].get("1", {}).get("dice", 0.0))
        d2.append(rep["classes"].get("2", {}).get("dice", 0.0))
    return {
        "checkpoint": ckpt,
        "dice": {"1": float(np.mean(d1)), "2": float(np.mean(d2))},
        "dice_mean": float((np.mean(d1) + np.mean(d2)) / 2),
        "predict_seconds_per_case": seconds / len(val),
        "validation_cases": val,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--setup", action="store_true", help="create the peer venv when missing")
    ap.add_argument("--budget-min", type=float, default=30.0)
    ap.add_argument("--trainer", default="nnUNetTrainer_1epoch", help="reduced-epoch trainer (nnU-Net's training_length variants)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    ap.add_argument("--budget-clock", choices=("cpu", "wall"), default="cpu", help="budget in CPU (default) or wall time")
    ap.add_argument("--collect", action="store_true", help="do not train: read the finished run's log and CPU time, then predict")
    ap.add_argument("--json", default=str(WORK.parent / "nnunet_peer.json"))
    ap.add_argument("--beside", metavar="MODEL_DIR", help="also train MedSegAI from scratch into MODEL_DIR at the same time, same threads and clock")
    ap.add_argument("--beside-budget-min", type=float, help="MedSegAI's budget (default: --budget-min)")
    ap.add_argument("--beside-history", default=str(WORK.parent / "deep_equal_cpu_history.json"), help="where to copy MedSegAI's per-epoch history")
    args = ap.parse_args(argv)
    if args.beside and args.collect:
        ap.error("--beside trains, --collect does not: use one of them")
    if args.setup:
        setup()
    WORK.mkdir(parents=True, exist_ok=True)
    prepare()
    result = {"peer": "nnU-Net v2 3d_fullres", "split": "validation = last 40 by sorted name; training = other 160"}
    run = collect if args.collect else train
    beside = start_medsegai(args.beside, args.beside_budget_min or args.budget_min, args.threads, args.budget_clock) if args.beside else None
    try:
        result["training"] = run(args.budget_min, args.trainer, args.threads, args.budget_clock)
    except BaseException:
        if beside is not None:  # no run left behind holding a core
            beside.terminate()
        raise
    if beside is not None:
        if beside.wait() != 0:
            raise SystemExit(f"the MedSegAI training beside nnU-Net failed; see {args.beside}/train.log")
        shutil.copy(Path(args.beside) / "training_history.json", args.beside_history)
        result["beside"] = {"model": args.beside, "history": args.beside_history}
    result.update(predict(args.trainer))
    ver = subprocess.run([str(VENV / "bin" / "python"), "-c", "import torch, importlib.metadata as m; print(torch.__version__, m.version('nnunetv2'))"], capture_output=True, text=True)
    result["versions"] = ver.stdout.strip()
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "validation_cases"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
