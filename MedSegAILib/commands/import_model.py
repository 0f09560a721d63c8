"""``medsegai import-model``: bring a model trained elsewhere into a MedSegAI model folder."""

from __future__ import annotations

NAME = "import-model"
HELP = "import a trained nnU-Net v2 model (results folder) or a MONAI bundle into a MedSegAI model folder"
DESCRIPTION = """\
Import the folds of a trained nnU-Net v2 model (the results folder
<trainer>__<plans>__<configuration> with dataset.json, plans.json and fold_K/checkpoint_final.pth,
the layout TotalSegmentator's models use too) into a MedSegAI model folder. The checkpoints are
read with torch.load(weights_only=True): one that needs pickled code is refused. The network
is rebuilt from plans.json (plain-convolution and residual-encoder U-Nets), every tensor is
checked against it, and preprocessing, sliding window, mirroring and fold averaging follow the
plans exactly, so labels equal nnUNetv2_predict's. nnunetv2 itself is not needed.

A MONAI bundle (configs/inference.json, configs/metadata.json, models/model.pt) is imported
the same way: the config is read as data through monai.bundle (a $-expression or a transform
MedSegAI cannot reproduce where it matters is refused with its name; nothing in the bundle is
run), the network is one of MONAI's, built from the config's literal arguments, and model.pt is
read with weights_only=True. A TorchScript-only bundle (models/model.ts) is refused.

Then: medsegai segment scan.nii.gz --method deep --model MODEL_DIR --output out/
(uncertainty, one segment per object, measurements and provenance as for every run).

Example:
  medsegai import-model nnunet nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres \\
      --output hippocampus_nnunet --folds 0,1,2,3,4
  medsegai import-model monai-bundle spleen_ct_segmentation --output spleen_monai
  medsegai import-model auto SOME_FOLDER --output MODEL_DIR
"""


def add_arguments(p) -> None:
    p.add_argument("kind", choices=("nnunet", "monai-bundle", "auto"),
                   help="the source format: nnunet (an nnU-Net v2 results folder), monai-bundle, or auto (told by the folder's files)")
    p.add_argument("source", help="the results folder or bundle folder")
    p.add_argument("--output", "-o", required=True, metavar="MODEL_DIR", help="model folder to write (new or empty)")
    p.add_argument("--folds", help="comma-separated folds to import (default: every fold_K with a checkpoint)")
    p.add_argument("--configuration", help="the plans configuration (default: the checkpoint's, e.g. 3d_fullres)")
    p.add_argument("--checkpoint", default="", help="checkpoint file name in each fold (default checkpoint_final.pth, else checkpoint_best.pth)")
    p.add_argument("--name", default="", help="model name recorded in the card")


def run(args) -> int:
    from ..core.errors import InputError, MissingDependencyError

    from ..methods.deep.model_import import describe, detect_kind, import_model

    kind = detect_kind(args.source) if args.kind == "auto" else args.kind
    for module in ("torch", "safetensors") + (("monai",) if kind == "monai-bundle" else ()):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(module, "deep", "importing a model") from None
    try:
        folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    except ValueError:
        raise InputError(f"--folds expects comma-separated fold numbers, got '{args.folds}'") from None
    card = import_model(args.source, args.output, kind=kind, folds=folds, configuration=args.configuration, checkpoint=args.checkpoint,
                        name=args.name, log=lambda m: print(m, flush=True))
    print(f"{args.output}: {describe(card)}")
    return 0
