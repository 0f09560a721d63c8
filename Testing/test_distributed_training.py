"""``medsegai train --distributed`` under torchrun with two CPU processes (gloo): it trains,
the model folder has the single-process format (weights with their SHA-256, card, ONNX export),
only one process wrote it, and ``--resume`` continues from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

torch = pytest.importorskip("torch")


def _torchrun(dataset: Path, out: Path, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "MedSegAILib.cli", "train", str(dataset),
           "-o", str(out), "--distributed", "--features", "8,16,32", "--batch-size", "2", "--val-cases", "2", "--augment", "0", "--threads", "1",
           "--seed", "1", "--lr", "3e-3", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_two_processes_train_one_model_and_resume(tiny_dataset, tmp_path):
    dataset = tiny_dataset
    from MedSegAILib.methods.deep.model_store import read_verified_weights

    out = tmp_path / "ddp"
    proc = _torchrun(dataset, out, "--epochs", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((out / "model.json").read_text())
    assert card["status"] == "trained" and card["training"]["processes"] == 2 and card["training"]["epochs_run"] == 3
    hist = json.loads((out / "training_history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]  # one history: rank 0's
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert card["validation"]["mean_dice"] is not None
    read_verified_weights(out)  # the SHA-256 the card records matches the weights
    assert (out / "model.onnx").is_file()
    assert proc.stderr.count('"epoch": 1,') == 1  # rank 0 logs; the other process is quiet
    # --resume: the checkpoint's three epochs, then two more.
    proc = _torchrun(dataset, out, "--epochs", "5", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed at epoch 3" in proc.stderr
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["epochs_run"] == 5
    assert [h["epoch"] for h in json.loads((out / "training_history.json").read_text())] == [1, 2, 3, 4, 5]


def test_distributed_without_torchrun_is_a_one_line_error(tiny_dataset, tmp_path):
    dataset = tiny_dataset
    proc = subprocess.run([sys.executable, "-m", "MedSegAILib.cli", "train", str(dataset), "-o", str(tmp_path / "m"), "--distributed", "--epochs", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("medsegai: error: --distributed needs the process group that torchrun sets up")
