"""Make the bundled scribble seeds ``Resources/SampleData/<case>_seeds.nii.gz``.

Seeds for the demo's seeded graph cut, made from each sample's reference label with the
benchmark's scribble generator: on three axial slices, each hippocampus part eroded by 1 mm
(labels 1 anterior, 2 posterior) and the background farther than 3 mm from both (label 3, the
highest label = background, as Slicer's Grow from seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classical_seeds import scribble_seeds  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "Resources" / "SampleData"


def sample_seeds(reference: sitk.Image) -> sitk.Image:
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint8)
    for lab in (1, 2):
        s = sitk.GetArrayFromImage(scribble_seeds(reference, object_value=lab, erosion_mm=1.0, margin_mm=3.0))
        out[s == 1] = lab
    s = sitk.GetArrayFromImage(scribble_seeds(reference, erosion_mm=1.0, margin_mm=3.0))
    out[(s == 2) & (out == 0)] = 3
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(reference)
    return img


def main() -> int:
    for label in sorted(SAMPLES.glob("*_label.nii.gz")):
        case = label.name[: -len("_label.nii.gz")]
        seeds = sample_seeds(sitk.ReadImage(str(label)))
        sitk.WriteImage(seeds, str(SAMPLES / f"{case}_seeds.nii.gz"), useCompression=True)
        print(case, np.bincount(sitk.GetArrayViewFromImage(seeds).ravel()).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
