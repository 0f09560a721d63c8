"""Registry entries of the classical family (imports nothing heavy)."""

from ..registry import MethodSpec, register

register(
    MethodSpec(
        "otsu",
        "classical",
        "MedSegAILib.methods.classical.otsu",
        "Otsu (2 classes) or multi-Otsu (K classes) thresholding of channel 0; uncertainty from "
        "the posterior of a Gaussian mixture fitted to the Otsu classes",
        defaults={"n_classes": 2, "bins": 128, "smoothing_mm": 0.0},
    )
)
