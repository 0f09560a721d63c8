"""Train the small nnU-Net v2 models that ``nnunet_import.py`` imports and checks, with nnU-Net's
own planner and trainer in the peer venv (``.venv-peers/nnunet``; ``--setup`` creates it).

20 of the shared training cases (the first 20 by name; the 40 validation cases stay out) in
nnU-Net's raw layout as Dataset004_Hippocampus; ``nnUNetv2_plan_and_preprocess -c 3d_fullres``;
two folds (``splits_final.json``: 16 train / 4 validation each) trained by
``nnUNetTrainer_5epochs`` with each epoch shortened to ``--iterations`` training iterations
(``nnunet_train_cpu.py``). Few iterations make weak networks: the models check whether the import
reproduces nnU-Net's predictions, not how good they are. Prints the results folder.

Run: ``.venv/bin/python Testing/benchmarks/nnunet_verification_models.py --setup [--iterations 25] [--folds 0,1]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import HIPPOCAMPUS  # noqa: E402
from nnunet_peer import VENV, WORK as PEER_WORK, setup  # noqa: E402

WORK = PEER_WORK.parent / "nnunet_import"
DATASET = "Dataset004_Hippocampus"
TRAINER = "nnUNetTrainer_5epochs"


def env(augmentation_workers: int = 1) -> dict:
    """nnU-Net's folders; training augments in-process (0 workers), planning needs at least 1."""
    e = dict(os.environ)
    e.update(nnUNet_raw=str(WORK / "raw"), nnUNet_preprocessed=str(WORK / "preprocessed"), nnUNet_results=str(WORK / "results"),
             nnUNet_n_proc_DA=str(augmentation_workers), OMP_NUM_THREADS="2")
    return e


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="create the peer venv when missing")
    ap.add_argument("--iterations", type=int, default=25, help="training iterations per epoch")
    ap.add_argument("--folds", default="0,1")
    args = ap.parse_args(argv)
    if args.setup:
        setup()
    names = sorted(f.name[: -len(".nii.gz")] for f in (HIPPOCAMPUS / "imagesTr").glob("*.nii.gz"))[:-40][:20]
    raw = WORK / "raw" / DATASET
    if not (raw / "dataset.json").exists():
        for sub in ("imagesTr", "labelsTr"):
            (raw / sub).mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy(HIPPOCAMPUS / "imagesTr" / f"{n}.nii.gz", raw / "imagesTr" / f"{n}_0000.nii.gz")
            shutil.copy(HIPPOCAMPUS / "labelsTr" / f"{n}.nii.gz", raw / "labelsTr" / f"{n}.nii.gz")
        meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2}, "numTraining": len(names), "file_ending": ".nii.gz"}
        (raw / "dataset.json").write_text(json.dumps(meta, indent=1))
    pre = WORK / "preprocessed" / DATASET
    if not (pre / "nnUNetPlans.json").exists():
        subprocess.run([str(VENV / "bin" / "nnUNetv2_plan_and_preprocess"), "-d", "4", "-c", "3d_fullres", "-np", "1"], check=True, env=env())
    (pre / "splits_final.json").write_text(json.dumps([{"train": names[4:], "val": names[:4]}, {"train": names[:16], "val": names[16:]}], indent=1))
    for fold in [int(f) for f in args.folds.split(",")]:
        out = WORK / "results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres" / f"fold_{fold}"
        if (out / "checkpoint_final.pth").exists():
            continue
        subprocess.run([str(VENV / "bin" / "python"), str(Path(__file__).with_name("nnunet_train_cpu.py")), "4", TRAINER, "2",
                        str(WORK / f"train_fold{fold}.json"), str(fold), str(args.iterations)], check=True, env=env(0))
    print(WORK / "results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
