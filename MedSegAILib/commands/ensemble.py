"""``medsegai ensemble``: assemble trained models of one plan into one ensemble model folder."""

from __future__ import annotations

NAME = "ensemble"
HELP = "assemble trained models of one plan (e.g. the folds of a cross-validation) into one ensemble model"
DESCRIPTION = """\
Assemble model folders trained with the same plan (typically `medsegai train --fold K` for
K = 0..4) into one model folder: one card, each member's weights and ONNX export with its
SHA-256, verified before they are copied. `medsegai segment --method deep --model FOLDER`
then averages the members' probabilities; the uncertainty includes their disagreement.

Record the domain check of the ensemble afterwards from each member's outputs on its own
validation cases (Testing/benchmarks/deep_ensemble.py does this for the shipped model).

Example:
  medsegai ensemble fold0 fold1 fold2 fold3 fold4 --output my_ensemble --name hippocampus
"""


def add_arguments(p) -> None:
    p.add_argument("members", nargs="+", metavar="MODEL", help="model folders (or shipped names) of one plan")
    p.add_argument("--output", "-o", required=True, metavar="MODEL_DIR", help="ensemble folder to write (must not exist)")
    p.add_argument("--name", help="model name recorded in the card (default: the first member's)")


def run(args) -> int:
    from ..methods.deep.ensemble import assemble_ensemble

    card = assemble_ensemble(args.members, args.output, name=args.name)
    onnx = "with" if all("onnx" in m for m in card["members"]) else "without"
    print(f"{args.output}: ensemble of {len(card['members'])} models ({onnx} ONNX exports), identity SHA-256 {card['sha256'][:12]}...")
    return 0
