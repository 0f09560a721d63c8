"""Label transfer: bring an atlas labelmap onto the target as per-label probability maps.

Each label's one-hot indicator is resampled with linear interpolation, so a target voxel that
maps between atlas voxels of different labels gets fractional memberships instead of one
nearest-neighbour label; boundaries keep their sub-voxel position and the fusion rules see how
sure each atlas is. Linear weights sum to one, so the maps stay a partition of unity; target
voxels that map outside the atlas are background.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ...uncertainty.entropy import probabilities_image


def one_hot_probabilities(labels: sitk.Image, label_values: Sequence[int]) -> sitk.Image:
    """A labelmap as a probability vector image: component 0 background, component i label_values[i-1].

    Voxels holding a value not in ``label_values`` count as background.
    """
    arr = sitk.GetArrayViewFromImage(labels)
    prob = np.zeros(arr.shape + (len(label_values) + 1,), dtype=np.float32)
    for i, v in enumerate(label_values, start=1):
        prob[..., i] = arr == v
    prob[..., 0] = 1.0 - prob[..., 1:].sum(axis=-1)
    return probabilities_image(prob, labels)


def warp_label_probabilities(
    labels: sitk.Image, transform: sitk.Transform, reference: sitk.Image, label_values: Sequence[int]
) -> sitk.Image:
    """Per-label probability maps of ``labels`` on ``reference``'s grid.

    Parameters
    ----------
    labels : sitk.Image
        Atlas labelmap (integer), on the atlas grid.
    transform : sitk.Transform
        Reference (target) points -> atlas points.
    reference : sitk.Image
        Target grid.
    label_values : sequence of int
        Object labels 1..K to transfer, in component order.

    Returns
    -------
    sitk.Image
        Float32 vector image on ``reference``'s grid with K + 1 components (0 = background)
        summing to 1 per voxel.
    """
    arr = sitk.GetArrayViewFromImage(labels)
    shape = tuple(reversed(reference.GetSize()))
    prob = np.zeros(shape + (len(label_values) + 1,), dtype=np.float32)
    for i, v in enumerate(label_values, start=1):
        mask = arr == v
        if not mask.any():
            continue
        ind = sitk.GetImageFromArray(mask.astype(np.float32))
        ind.CopyInformation(labels)
        warped = sitk.Resample(ind, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        prob[..., i] = np.clip(sitk.GetArrayViewFromImage(warped), 0.0, 1.0)
    fg = prob[..., 1:].sum(axis=-1)
    over = fg > 1.0
    if over.any():  # rounding only; keep a partition of unity
        prob[over, 1:] /= fg[over, None]
        fg = np.minimum(fg, 1.0)
    prob[..., 0] = 1.0 - fg
    return probabilities_image(prob, reference)


def hard_labels(probabilities: sitk.Image, label_values: Sequence[int]) -> sitk.Image:
    """Argmax of a probability vector image as a UInt16 labelmap with the original label values."""
    arr = sitk.GetArrayViewFromImage(probabilities)
    lut = np.asarray([0] + list(label_values), dtype=np.uint16)
    out = sitk.GetImageFromArray(lut[np.argmax(arr, axis=-1)])
    out.CopyInformation(probabilities)
    return out
