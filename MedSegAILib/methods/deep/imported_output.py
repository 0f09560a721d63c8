"""The MedSegAI result of an imported model (nnU-Net v2, MONAI bundle): labels, per-class
probabilities and normalised entropy on the input's grid, one class per named label."""

from __future__ import annotations

from typing import Dict

import numpy as np
import SimpleITK as sitk


def imported_output(labels: np.ndarray, prob: np.ndarray, reference: sitk.Image, names: Dict[str, str], *,
                    card: dict, parameters: dict, extra: dict):
    """A MethodOutput from ``labels`` (z, y, x) and ``prob`` (K, z, y, x) on ``reference``'s grid.

    ``names``: label value (as text, "0" the background) to class name.
    """
    from ...core.classes import ClassInfo, distinct_colors
    from ...core.result import MethodOutput
    from ...core.terminology import lookup_terminology
    from ...uncertainty.entropy import normalized_entropy, probabilities_image

    label_img = sitk.GetImageFromArray(labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16))
    label_img.CopyInformation(reference)
    unc = sitk.GetImageFromArray(normalized_entropy(prob, axis=0).astype(np.float32))
    unc.CopyInformation(reference)
    named = [(k, n) for k, n in names.items() if str(k) != "0"]
    colors = distinct_colors(len(named))
    classes = [ClassInfo(int(k), n, colors[i], lookup_terminology(n)) for i, (k, n) in enumerate(named)]
    return MethodOutput(
        labels=label_img, classes=classes, probabilities=probabilities_image(np.moveaxis(prob, 0, -1), reference), uncertainty=unc,
        parameters=parameters, model_hash=card["sha256"], extra={"model_name": card.get("name"), "device": "cpu", **extra},
    )
