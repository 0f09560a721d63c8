"""Run inside the nnU-Net peer venv: train one fold on the CPU with a fixed thread count.

``nnUNetv2_train -device cpu`` sets torch to use every core; to compare with MedSegAI at equal
CPU time on a shared 2-core machine, this runner builds nnU-Net's own trainer through its
public ``get_trainer_from_args`` and sets the thread count first. Final validation is skipped
(the benchmark predicts the validation cases with ``nnUNetv2_predict`` afterwards). Writes
``{"cpu_s": ..., "wall_s": ...}`` to the JSON path given.

Usage (peer venv python): nnunet_train_cpu.py DATASET_ID TRAINER THREADS OUT_JSON [FOLD [ITERATIONS]]

ITERATIONS shortens each epoch to that many training iterations (validation to a fifth of it),
for the small verification models of ``nnunet_verification_models.py``.
"""

import json
import sys
import time

import torch
from nnunetv2.run.run_training import get_trainer_from_args


def main() -> int:
    dataset, trainer_name, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fold = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    iterations = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    w0, c0 = time.perf_counter(), time.process_time()
    trainer = get_trainer_from_args(dataset, "3d_fullres", fold, trainer_name, "nnUNetPlans", device=torch.device("cpu"))
    if iterations:
        trainer.num_iterations_per_epoch = iterations
        trainer.num_val_iterations_per_epoch = max(1, iterations // 5)
    trainer.run_training()
    with open(out, "w") as fh:
        json.dump({"cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0, "threads": threads}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
