"""Registry entry of the atlas family (imports nothing heavy)."""

from ..registry import MethodSpec, register

register(
    MethodSpec(
        "atlas",
        "atlas",
        "MedSegAILib.methods.atlas.segmentation",
        "Multi-atlas segmentation: the best k atlases by similarity after affine alignment are "
        "registered (affine Mattes MI + symmetric-forces Demons), their labels transferred as "
        "probability maps and fused (local, bayesian, staple or majority); uncertainty from the "
        "fused posterior",
        needs=("atlases",),
        defaults={
            "fusion": "local",
            "k": 25,
            "affine_iterations": 100,
            "demons_iterations": 40,
            "demons_sigma": 1.0,
            "local_sigma_mm": 1.5,
            "local_gain": 3.0,
            "min_similarity": 0.3,
            "threads": 1,
        },
    )
)
