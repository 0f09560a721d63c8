"""Registry entry of the deep family (imports nothing heavy)."""

from ..registry import MethodSpec, register

register(
    MethodSpec(
        "deep",
        "deep",
        "MedSegAILib.methods.deep.method",
        "a trained network (shipped name such as 'hippocampus', or a model folder); sliding-window "
        "inference with Gaussian blending, test-time flips and optional Monte-Carlo dropout; "
        "uncertainty = predictive entropy (or mutual information); runtime auto / torch / onnx (ONNX "
        "Runtime on the CPU, without torch, for models with an ONNX export)",
        needs=("model",),
        defaults={"tta": True, "mc_samples": 0, "uncertainty": "entropy", "runtime": "auto"},
    )
)
