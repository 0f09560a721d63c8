"""A picture of a deep run's explanation map: one axial slice per structure, the occlusion
sensitivity in red-to-yellow over the image, the structure's outline in white."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw


def _gray(slice_: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(slice_, (1, 99))
    return np.clip((slice_ - lo) / max(hi - lo, 1e-6), 0, 1)


def write_explanation_png(image: sitk.Image, explanation: sitk.Image, labels: sitk.Image, names: Sequence[str], path, *, scale: int = 6) -> Path:
    """Write ``path`` (PNG): for structure k (component k-1 of ``explanation``), the axial slice
    through the middle of all structures, the positive sensitivity over the image (opaque where
    it is highest), and the outline of label k."""
    from scipy import ndimage

    img = sitk.GetArrayFromImage(image).astype(np.float32)
    exp = sitk.GetArrayFromImage(explanation)
    lab = sitk.GetArrayFromImage(labels)
    zs = np.nonzero(lab.any(axis=(1, 2)))[0]
    z = int(zs[len(zs) // 2]) if zs.size else img.shape[0] // 2
    panels = []
    for k in range(exp.shape[-1]):
        g = _gray(img[z])
        e = np.clip(exp[z, :, :, k], 0, None)
        top = float(exp[..., k].max())
        heat = e / top if top > 0 else e
        rgb = np.stack([g, g, g], axis=-1)
        colour = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1)  # red -> yellow
        alpha = (0.75 * heat)[..., None]
        rgb = (1 - alpha) * rgb + alpha * colour
        mask = lab[z] == k + 1
        rgb[mask & ~ndimage.binary_erosion(mask)] = 1.0
        panel = Image.fromarray((rgb[::-1] * 255).astype(np.uint8)).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
        ImageDraw.Draw(panel).text((4, 4), str(names[k]) if k < len(names) else f"structure {k + 1}", fill=(255, 255, 255))
        panels.append(panel)
    width = sum(p.width for p in panels) + 4 * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (0, 0, 0))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 4
    path = Path(path)
    out.save(path)
    return path
