"""Colour maps shared by the overview picture and the Slicer colour table of uncertainty."""

from __future__ import annotations

import numpy as np

# Anchor colours of the "inferno" map (perceptually uniform, readable in greyscale), as RGB in
# [0, 1] at equal steps from 0 to 1; values in between are interpolated linearly.
INFERNO_ANCHORS = np.array(
    [
        [0.001462, 0.000466, 0.013866],
        [0.258234, 0.038571, 0.406485],
        [0.578304, 0.148039, 0.404411],
        [0.865006, 0.316822, 0.226055],
        [0.987053, 0.645320, 0.039886],
        [0.988362, 0.998364, 0.644924],
    ]
)


def inferno(values: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] for ``values`` in [0, 1] (clipped); shape ``values.shape + (3,)``."""
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    x = np.linspace(0.0, 1.0, len(INFERNO_ANCHORS))
    return np.stack([np.interp(t, x, INFERNO_ANCHORS[:, c]) for c in range(3)], axis=-1)
