"""The predictive distribution of a deep run from its passes (TTA flips, MC-dropout samples).

Both runtimes (torch in :mod:`.inference`, ONNX Runtime in :mod:`.onnx_runtime`) feed their
per-pass logits here, so the mean probabilities and their uncertainty are computed one way.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np

from ...core.progress import Progress
from ...uncertainty.entropy import normalized_entropy


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    """Softmax of float logits along ``axis`` (float32)."""
    z = logits.astype(np.float32) - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def average_passes(logit_passes: Iterable[np.ndarray], n_passes: int, progress: Optional[Progress] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Mean softmax (K, Z, Y, X) and normalised mutual information (Z, Y, X) over passes.

    ``logit_passes`` yields each pass's logits (K, Z, Y, X); both runtimes feed this, so the
    predictive distribution and its uncertainty are computed one way.
    """
    mean = None
    mean_h = None
    passes = iter(logit_passes)
    try:
        for i, logits in enumerate(passes):
            p = softmax(logits, axis=0)
            h = normalized_entropy(p, axis=0)
            mean = p if mean is None else mean + p
            mean_h = h if mean_h is None else mean_h + h
            if progress is not None:
                progress.update((i + 1) / n_passes, f"pass {i + 1}/{n_passes}")
    finally:
        # A cancel raised by progress.update closes a generator now, so that its own clean-up
        # (torch's inference mode, dropout switched back off) runs before the error travels on.
        if hasattr(passes, "close"):
            passes.close()
    mean /= n_passes
    mean_h /= n_passes
    mi = np.clip(normalized_entropy(mean, axis=0) - mean_h, 0.0, 1.0)
    return mean.astype(np.float32), mi.astype(np.float32)


def average_members(member_results: Iterable[Tuple[np.ndarray, np.ndarray]], n_members: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[float], list]:
    """An ensemble's predictive distribution from its members' own (mean softmax, mutual
    information) pairs, as :func:`average_passes` gives them.

    Returns the mean softmax over members (K, Z, Y, X); the normalised mutual information over
    every pass of every member, H[E p] - E H[p] (Z, Y, X), which includes the members'
    disagreement; the members' mean own entropy, mean_m H[p_m] (Z, Y, X): what one member
    says of the input, comparable with a record of single members' outputs on cases they did
    not train on; and the members' agreement (:func:`label_agreement` of their labels; None
    for one member); and each member's labels (argmax, uint8). One member gives back its own
    probabilities, mutual information and entropy.
    """
    mean = own = expected = None
    labels = []
    for p, mi in member_results:
        h = normalized_entropy(p, axis=0)
        mean = p.astype(np.float32) if mean is None else mean + p
        own = h if own is None else own + h
        expected = h - mi if expected is None else expected + (h - mi)  # E over its passes of H[p]
        labels.append(np.argmax(p, axis=0).astype(np.uint8))
    mean /= n_members
    own /= n_members
    mi = np.clip(normalized_entropy(mean, axis=0) - expected / n_members, 0.0, 1.0)
    agreement = label_agreement(labels, mean.shape[0]) if len(labels) > 1 else None
    return mean.astype(np.float32), mi.astype(np.float32), own.astype(np.float32), agreement, labels


def label_agreement(labels, n_classes: int) -> float:
    """How far models agree on a case: the mean over pairs of models of the mean Dice of their
    object classes 1..K-1 (a class neither labels counts as agreement). ``labels``: one
    (Z, Y, X) labelmap per model, on one grid."""
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            dice = []
            for c in range(1, n_classes):
                a, b = labels[i] == c, labels[j] == c
                total = int(a.sum()) + int(b.sum())
                dice.append(1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total)
            pairs.append(float(np.mean(dice)))
    return float(np.mean(pairs))
