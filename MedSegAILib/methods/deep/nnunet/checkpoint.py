"""nnU-Net v2 checkpoints (``fold_K/checkpoint_final.pth``) read without executing pickled code.

``torch.load(weights_only=True)`` refuses every global it does not know; nnU-Net's checkpoints
hold numpy scalars in their training log, so exactly those numpy types are allowed (under
their numpy 2 and numpy 1 names) and nothing else. A checkpoint that needs any other object
(a pickled class, a function) is refused with the name torch reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from ....core.errors import InputError

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth")


def _numpy_globals() -> list:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    scalar = core.multiarray.scalar
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, type(np.dtype(np.float32)), type(np.dtype(np.float64)), type(np.dtype(np.int64))]


def read_checkpoint(path) -> dict:
    """The checkpoint's dict, loaded with ``weights_only=True`` (InputError if it needs more)."""
    from ..imported_files import torch_load_weights_only

    ck = torch_load_weights_only(path, _numpy_globals())
    if not isinstance(ck, dict) or not isinstance(ck.get("network_weights"), dict):
        raise InputError(f"'{path}' is not an nnU-Net v2 checkpoint (no network_weights)")
    return ck


def network_weights(ck: dict) -> Dict[str, "object"]:
    """The weights with DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes removed."""
    out = {}
    for k, v in ck["network_weights"].items():
        k = k[len("module."):] if k.startswith("module.") else k
        out[k.replace("_orig_mod.", "")] = v
    return out


def load_strictly(net, weights: Dict[str, "object"], source: str) -> None:
    """Load ``weights`` into ``net``: every tensor used and every shape equal, or InputError."""
    from ..imported_files import load_exactly

    unused = [k for k in weights if k not in net.state_dict()]
    if unused and any(k.endswith(("running_mean", "running_var")) for k in unused):
        raise InputError(f"{source}: the network has batch-norm statistics (a trainer that changes the plan's network, e.g. nnUNetTrainerBN); only the plan's instance-norm networks are supported")
    load_exactly(net, weights, source, "the plans")


def fold_checkpoint(folder: Path, fold: int, name: str = "") -> Tuple[Path, str]:
    """(path, file name) of a fold's checkpoint: ``name``, else final, else best."""
    fold_dir = Path(folder) / f"fold_{fold}"
    if not fold_dir.is_dir():
        raise InputError(f"'{folder}' has no fold_{fold}")
    for candidate in ((name,) if name else CHECKPOINTS):
        if (fold_dir / candidate).is_file():
            return fold_dir / candidate, candidate
    raise InputError(f"'{fold_dir}' has no {' or '.join((name,) if name else CHECKPOINTS)}")
