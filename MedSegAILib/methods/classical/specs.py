"""Registry entries of the classical family (imports nothing heavy)."""

from ..registry import MethodSpec, ParameterInfo, register

# Multi-Otsu (SimpleITK) searches every combination of thresholds: at 128 bins, 5 classes take
# under a second, 6 about 10 s and 7 minutes, so the class count stops at 8 (with fewer bins).
_N_CLASSES = ParameterInfo(
    "Number of classes",
    "Number of intensity classes, darkest first (class 0 is background); above 5 classes the exhaustive "
    "multi-Otsu search becomes slow unless the histogram bins are reduced.",
    minimum=2,
    maximum=8,
)
_OTSU_BINS = ParameterInfo(
    "Histogram bins",
    "Number of histogram bins used to find the Otsu thresholds; it must be at least twice the number of "
    "classes, and more bins give finer thresholds but slow the multi-Otsu search.",
    minimum=4,
    maximum=1024,
)
_SOLVER = ParameterInfo(
    "Solver",
    "graphcut finds the exact optimum for two classes and a near-optimal one for more (alpha-expansion, needs "
    "PyMaxflow); icm is a faster local approximation that can stop in a worse labelling.",
    choices=("graphcut", "icm"),
)
_PRIOR_BIAS = ParameterInfo(
    "Class prior bias",
    "Optional comma-separated numbers, one per class (e.g. 0,0.5,0), added to each class's log-prior so that "
    "positive values favour that class; empty means no bias.",
)
_EM_ITERATIONS = ParameterInfo(
    "EM iterations",
    "Iterations of the Gaussian-mixture fit started from the multi-Otsu split; 0 keeps the Otsu classes' "
    "means and spreads, and many iterations can drift to fits that merge tissue classes.",
    minimum=0,
    maximum=200,
)

_SOLVE_DEFAULTS = {"mode": "auto", "coarse_voxels": 1_000_000, "band_width": -1, "mf_iterations": 10, "max_memory_gb": 0.0}

_SOLVE_PARAMETERS = {
    "mode": ParameterInfo(
        "Resolution mode",
        "full solves every voxel at full resolution; banded solves a reduced volume first and then only a band "
        "around its boundaries at full resolution (faster, may miss structures thinner than a coarse voxel); "
        "auto uses banded above 2 million voxels.",
        choices=("auto", "full", "banded"),
    ),
    "coarse_voxels": ParameterInfo(
        "Coarse level size",
        "Number of voxels of the reduced volume in banded mode; larger is more accurate but slower and uses more "
        "memory.",
        unit="voxels",
        minimum=1_000,
        maximum=100_000_000,
    ),
    "band_width": ParameterInfo(
        "Band width",
        "Half-width of the band around the coarse boundaries that is re-solved at full resolution in banded mode; "
        "0 re-solves only the boundary voxels themselves, larger values fix more coarse errors but cost time; "
        "-1 chooses 1, or 0 when the band would exceed 2.5 million voxels (a full-size CT, where it halves the time).",
        unit="coarse voxels",
        minimum=-1,
        maximum=20,
    ),
    "mf_iterations": ParameterInfo(
        "Mean-field iterations",
        "Iterations of the mean-field estimate of the class probabilities that give the uncertainty map; 0 skips "
        "it (no probabilities or uncertainty are output).",
        minimum=0,
        maximum=100,
    ),
    "max_memory_gb": ParameterInfo(
        "Memory limit",
        "The run stops with an error instead of starting a solve estimated to need more memory than this; 0 means "
        "80% of the memory available at the time.",
        unit="GB",
        minimum=0.0,
        maximum=1024.0,
        step=1.0,
    ),
}

register(
    MethodSpec(
        "otsu",
        "classical",
        "MedSegAILib.methods.classical.otsu",
        "Otsu (2 classes) or multi-Otsu (K classes) thresholding of channel 0; uncertainty from "
        "the posterior of a Gaussian mixture fitted to the Otsu classes",
        defaults={"n_classes": 2, "bins": 128, "smoothing_mm": 0.0},
        parameters={
            "n_classes": _N_CLASSES,
            "bins": _OTSU_BINS,
            "smoothing_mm": ParameterInfo(
                "Smoothing",
                "Width (Gaussian sigma) of the smoothing applied before thresholding, which reduces speckle and "
                "small islands; 0 means no smoothing.",
                unit="mm",
                minimum=0.0,
                maximum=20.0,
                step=0.5,
            ),
        },
        stuff=True,
    )
)

#: The contrast scale of crf's and graphcut's edge-sensitive weights.
_EDGE_SIGMA = ParameterInfo(
    "Edge contrast scale (sigma)",
    "Intensity difference, in image intensity units, above which neighbours count as separated by an "
    "edge (smaller values make more steps count as edges); 0 estimates it from the image.",
    minimum=0.0,
    maximum=100_000.0,
)

#: What mrf and crf share beyond their pairwise weights.
_RANDOM_FIELD_PARAMETERS = {
    "solver": _SOLVER,
    "prior_bias": _PRIOR_BIAS,
    "bins": _OTSU_BINS,
    "em_iterations": _EM_ITERATIONS,
    **_SOLVE_PARAMETERS,
}

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
        parameters={
            "n_classes": _N_CLASSES,
            "beta": ParameterInfo(
                "Potts weight (beta)",
                "Penalty for neighbouring voxels having different classes, against the intensity evidence; larger "
                "values give smoother regions with fewer small islands, 0 classifies each voxel by intensity alone.",
                minimum=0.0,
                maximum=100.0,
                step=0.1,
            ),
            **_RANDOM_FIELD_PARAMETERS,
        },
        stuff=True,
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
        parameters={
            "n_classes": _N_CLASSES,
            "lam": ParameterInfo(
                "Smoothness weight (lambda)",
                "Penalty for neighbouring voxels of similar intensity having different classes; larger values give "
                "smoother regions whose boundaries follow image edges, 0 classifies each voxel by intensity alone.",
                minimum=0.0,
                maximum=100.0,
                step=0.5,
            ),
            "sigma": _EDGE_SIGMA,
            **_RANDOM_FIELD_PARAMETERS,
        },
        stuff=True,
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
                  "seed_connected": True, "solver": "graphcut", "prior_weight": 2.0, "stability": 2.0, "stability_mm": 10.0,
                  "local_update_voxels": 1_000_000,
                  **_SOLVE_DEFAULTS},
        parameters={
            "background_label": ParameterInfo(
                "Background seed label",
                "Seed label value that marks background; 0 means the highest label painted in the seeds.",
                minimum=0,
                maximum=65535,
            ),
            "lam": ParameterInfo(
                "Smoothness weight (lambda)",
                "Penalty for cutting between neighbouring voxels of similar intensity; larger values give smoother, "
                "more compact objects whose boundaries follow image edges, smaller values follow the seeds' "
                "intensities voxel by voxel.",
                minimum=0.0,
                maximum=100.0,
                step=0.5,
            ),
            "sigma": _EDGE_SIGMA,
            "intensity_model": ParameterInfo(
                "Intensity model",
                "How each label's intensities are learned from its seeds: gaussian fits one mean and spread per "
                "label, histogram uses the seeds' smoothed intensity histogram (better for labels of mixed "
                "intensities, needs more seeds).",
                choices=("gaussian", "histogram"),
            ),
            "bins": ParameterInfo(
                "Histogram bins",
                "Number of bins of the seed histograms over the image's intensity range (histogram model only); "
                "more bins resolve finer intensity differences but need more seeds.",
                minimum=2,
                maximum=1024,
            ),
            "geodesic_weight": ParameterInfo(
                "Distance-to-seed weight",
                "How much a label's cost grows per mm of edge-aware distance from its seeds, which keeps a label from "
                "spreading to distant regions of similar intensity; 0 turns it off.",
                unit="per mm",
                minimum=0.0,
                maximum=10.0,
                step=0.05,
            ),
            "seed_connected": ParameterInfo(
                "Keep only seeded regions",
                "When on, object regions that are not connected to a seed of their own label are given to background.",
            ),
            "prior_weight": ParameterInfo(
                "Model prior weight",
                "How strongly a prior (a model's label probabilities, when one is given) pulls the cut towards the "
                "model's answer; the strokes always win where they are painted; 0 ignores the prior.",
                minimum=0.0,
                maximum=20.0,
                step=0.5,
            ),
            "stability": ParameterInfo(
                "Stability",
                "In an interactive session, how strongly the previous result is kept away from the latest strokes, "
                "so that a stroke corrects its surroundings without moving boundaries elsewhere; 0 recomputes "
                "everything from the seeds alone.",
                minimum=0.0,
                maximum=20.0,
                step=0.5,
            ),
            "stability_mm": ParameterInfo(
                "Stroke reach",
                "Distance from a new stroke within which the result may change freely; beyond it the previous result "
                "is held with the full stability weight.",
                unit="mm",
                minimum=0.0,
                maximum=200.0,
                step=1.0,
            ),
            "local_update_voxels": ParameterInfo(
                "Local updates above",
                "In an interactive session, volumes with more voxels than this re-solve only a box around the "
                "latest strokes (three stroke reaches beyond them) and keep the rest of the previous result, which "
                "makes updates of large volumes fast; 0 always solves the whole volume.",
                unit="voxels",
                minimum=0,
                maximum=2_000_000_000,
            ),
            "solver": _SOLVER,
            **_SOLVE_PARAMETERS,
        },
    )
)
