"""``medsegai train``: train a segmentation network on an MSD/nnU-Net dataset folder."""

from __future__ import annotations

import sys

from ..core.errors import InputError, MissingDependencyError
from ..core.progress import TextProgressBar

NAME = "train"
HELP = "train a deep segmentation model on a dataset folder (imagesTr/, labelsTr/, dataset.json)"
DESCRIPTION = """\
Train a 3D (or 2D / 2.5D) U-Net on a dataset in the MSD/nnU-Net layout. A dataset fingerprint
(spacings, sizes, intensities) sets the plan (target spacing, patch size, normalisation), which
is stored with the model and reused at inference. The model folder gets model.safetensors,
model.json (model card: plan, classes, split, validation Dice), model.sha256,
learning_curves.png, a checkpoint for --resume, and model.onnx (the kept weights exported to
ONNX and checked against torch, so the model also runs with ONNX Runtime, without torch).

Example (a member of the shipped hippocampus ensemble: fold K of a five-fold split; the
folds are then joined with `medsegai ensemble`):
  medsegai train ../shared/data/hippocampus --output foldK --fold K --val-cases 40 \\
      --class-names "Anterior hippocampus,Posterior hippocampus" --time-budget-min 35 --budget-clock cpu \\
      --threads 1 --batch-size 2 --average-from 0.8 --val-every 10 --seed K --name hippocampus
"""


def add_arguments(p) -> None:
    p.add_argument("dataset", help="dataset folder with imagesTr/ and labelsTr/")
    p.add_argument("--output", "-o", required=True, metavar="MODEL_DIR", help="model folder to write")
    p.add_argument("--network", choices=("unet3d", "unet2d", "unet2.5d", "swinunetr"), help="network (default: from the plan: 3D, or 2.5D for strongly anisotropic data)")
    p.add_argument("--norm", choices=("instance", "group", "batch", "layer"), default="instance", help="normalisation layers (default instance)")
    p.add_argument("--features", default="16,32,64,128", help="channels per U-Net level (default 16,32,64,128)")
    p.add_argument("--full-resolution-level", action="store_true", help="the first U-Net level works at the input resolution (finer boundaries; about 3x the compute)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout probability, also used for MC dropout (default 0.1)")
    p.add_argument("--aspp", action="store_true", help="add a dilated (atrous) multi-scale block")
    p.add_argument("--sdf-head", action="store_true", help="add a signed-distance regression head (auxiliary shape task)")
    p.add_argument("--sdf-weight", type=float, default=0.5, help="weight of the signed-distance loss (default 0.5)")
    p.add_argument("--no-mixed-precision", action="store_true", help="train in float32 on CUDA too (default: float16 autocast on CUDA)")
    p.add_argument("--loss", default="dice_ce", choices=("dice_ce", "ce", "wbce", "dice", "tversky", "focal", "dice_focal", "dice_ce_boundary"), help="loss (default dice_ce)")
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs (default 200)")
    p.add_argument("--time-budget-min", type=float, help="stop after this many minutes; the learning-rate schedule spans the budget")
    p.add_argument("--budget-clock", choices=("wall", "cpu"), default="wall", help="measure --time-budget-min in elapsed (wall) or process CPU time (default wall)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 2e-3, polynomial decay)")
    p.add_argument("--val-cases", type=int, help="the last N cases by name validate (default: the cases dataset.json lists under medsegai.validation, as an exported training set does, else 40)")
    p.add_argument("--val-names", metavar="NAME,...", help="exactly these cases (by name, comma-separated) validate, instead of --val-cases")
    p.add_argument("--fold", type=int, help="cross-validation: the K-th block of --val-cases cases by name validates instead of the last (K from 0; the last fold also takes any remainder)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength, 0 = none (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--class-names", help='comma-separated names of labels 1..K (overrides dataset.json)')
    p.add_argument("--name", default="", help="model name recorded in the card")
    p.add_argument("--max-train-cases", type=int, help="use only the first N training cases (quick trials)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in MODEL_DIR")
    p.add_argument("--no-onnx", action="store_true", help="do not export the trained model to ONNX (model.onnx)")
    p.add_argument("--average-from", type=float, metavar="FRACTION", help="stochastic weight averaging: from this fraction of the schedule on (e.g. 0.5) the learning rate stays constant and the weights of every epoch are averaged; the average is the kept model instead of the best validation epoch")
    p.add_argument("--distributed", action="store_true", help="train on the processes torchrun starts (DistributedDataParallel: gloo on the CPU, NCCL on GPUs): torchrun --nproc_per_node N -m MedSegAILib.cli train ... --distributed")
    p.add_argument("--progress-lines", action="store_true", help="print progress as plain '[ 42.0%%] message' lines, one per 0.5%% (for programs that read it, such as the Slicer panel)")
    p.add_argument("--init-from", metavar="MODEL", help="start from a trained model's weights (name or folder; same plan), e.g. to continue with a new budget")


def run(args) -> int:
    try:
        from ..methods.deep.train import TrainOptions, train
        from ..methods.deep.training_set import names_from_text
    except ImportError as exc:
        raise MissingDependencyError("torch", "deep", "training") from exc
    try:
        features = [int(v) for v in args.features.split(",")]
    except ValueError:
        raise InputError(f"--features expects comma-separated integers, got '{args.features}'") from None
    names = {}
    if args.class_names:
        names = {i + 1: n.strip() for i, n in enumerate(args.class_names.split(","))}
    opts = TrainOptions(
        network=args.network, norm=args.norm, features=features, full_resolution_level=args.full_resolution_level, dropout=args.dropout, aspp=args.aspp,
        loss=args.loss, epochs=args.epochs, time_budget_min=args.time_budget_min, budget_clock=args.budget_clock, batch_size=args.batch_size,
        lr=args.lr, val_cases=args.val_cases, val_names=names_from_text(args.val_names) if args.val_names else None, fold=args.fold, val_every=args.val_every, seed=args.seed, augment=args.augment,
        threads=args.threads, max_train_cases=args.max_train_cases, device=args.device, class_names=names,
        name=args.name, sdf_head=args.sdf_head, sdf_weight=args.sdf_weight, mixed_precision=not args.no_mixed_precision,
        init_from=args.init_from, onnx_export=not args.no_onnx, average_from=args.average_from, distributed=args.distributed,
    )
    bar = TextProgressBar(lines=True, line_step=0.005) if args.progress_lines else TextProgressBar(delay=0.0)
    try:
        card = train(args.dataset, args.output, opts, resume=args.resume, progress=bar, log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        bar.close()
    v = card["validation"]
    print(f"model written to {args.output}: validation mean Dice {v['mean_dice']} (per class {v['dice_per_class']})")
    return 0
