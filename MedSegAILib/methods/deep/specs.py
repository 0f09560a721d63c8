"""Registry entry of the deep family (imports nothing heavy)."""

from ..registry import MethodSpec, ParameterInfo, register

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
        parameters={
            "tta": ParameterInfo(
                "Test-time flips",
                "When on, the prediction is averaged over the image and its flips along each axis (4 passes), which "
                "is usually a little more accurate and takes 4 times as long.",
            ),
            "mc_samples": ParameterInfo(
                "Monte-Carlo dropout passes",
                "Extra passes with dropout switched on, averaged into the prediction to estimate model uncertainty; "
                "each adds one pass of run time, needs the torch runtime, and 0 turns it off.",
                minimum=0,
                maximum=100,
            ),
            "uncertainty": ParameterInfo(
                "Uncertainty measure",
                "entropy maps the total uncertainty of the averaged prediction; mutual_information maps only the "
                "disagreement between passes (model uncertainty), which needs test-time flips or dropout passes.",
                choices=("entropy", "mutual_information"),
            ),
            "runtime": ParameterInfo(
                "Runtime",
                "Which engine runs the network: torch (CPU or GPU, needed for dropout passes), onnx (ONNX Runtime on "
                "the CPU, for models with an ONNX export), or auto to choose between them.",
                choices=("auto", "torch", "onnx"),
            ),
        },
    )
)
