"""``medsegai export-onnx``: export a trained model to ONNX so it runs without torch."""

from __future__ import annotations

NAME = "export-onnx"
HELP = "export a trained model's weights to ONNX (model.onnx), checked against torch"
DESCRIPTION = """\
Export a model folder's verified weights to model.onnx beside them. ONNX Runtime must reproduce
the torch logits on random patches before the file is kept; its SHA-256, and that of the
weights it came from, go into model.json and model.sha256. `medsegai segment --method deep`
then runs the model with ONNX Runtime on the CPU (--param runtime=auto|torch|onnx), without
importing torch or MONAI: a fresh process starts about 3 s sooner. `medsegai train` exports
every model it trains; this command is for models trained before, or after --no-onnx.

Example:
  medsegai export-onnx Resources/Models/hippocampus_single
"""


def add_arguments(p) -> None:
    p.add_argument("model", metavar="MODEL", help="shipped model name or model folder")


def run(args) -> int:
    from ..methods.deep.onnx_export import export_onnx

    entry = export_onnx(args.model)
    print(
        f"{entry['file']} written (SHA-256 {entry['sha256'][:12]}...); ONNX Runtime matches torch to "
        f"{entry['max_relative_logit_difference']:.1e} of the largest logit"
    )
    return 0
