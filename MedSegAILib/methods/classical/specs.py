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

_SOLVE_DEFAULTS = {"mode": "auto", "coarse_voxels": 1_000_000, "band_width": 1, "mf_iterations": 10, "max_memory_gb": 0.0}

register(
    MethodSpec(
        "mrf",
        "classical",
        "MedSegAILib.methods.classical.mrf",
        "K Gaussian intensity classes (EM from multi-Otsu) with a Potts prior (beta, weights ~ 1/distance "
        "in mm); MAP by graph cut (exact for 2, alpha-expansion for K) or ICM; coarse-to-fine on large "
        "volumes; uncertainty from mean-field marginals (needs PyMaxflow for the graph-cut solver)",
        defaults={"n_classes": 2, "beta": 1.0, "solver": "graphcut", "prior_bias": "", "bins": 128,
                  "em_iterations": 5, **_SOLVE_DEFAULTS},
    )
)

register(
    MethodSpec(
        "crf",
        "classical",
        "MedSegAILib.methods.classical.crf",
        "As mrf with contrast-sensitive pairwise weights lambda * exp(-dI^2 / (2 sigma^2)) / distance, so "
        "boundaries follow image edges (sigma 0 = from the image)",
        defaults={"n_classes": 2, "lam": 2.0, "sigma": 0.0, "solver": "graphcut", "prior_bias": "", "bins": 128,
                  "em_iterations": 5, **_SOLVE_DEFAULTS},
    )
)

register(
    MethodSpec(
        "graphcut",
        "classical",
        "MedSegAILib.methods.classical.graphcut",
        "Seeded graph cut (as Slicer's Grow from seeds: labels 1..K, the highest = background): seeds are "
        "hard constraints, intensity models from the seeds, contrast-sensitive cut in 3D (alpha-expansion "
        "for several objects), coarse-to-fine on large volumes; uncertainty from mean-field marginals",
        needs=("seeds",),
        defaults={"background_label": 0, "lam": 6.0, "sigma": 0.0, "intensity_model": "gaussian", "bins": 64, "geodesic_weight": 0.1,
                  "seed_connected": True, "solver": "graphcut", **_SOLVE_DEFAULTS},
    )
)
