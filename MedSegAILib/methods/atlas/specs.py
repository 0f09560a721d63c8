"""Registry entry of the atlas family (imports nothing heavy)."""

from ..registry import MethodSpec, ParameterInfo, register

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
        parameters={
            "fusion": ParameterInfo(
                "Label fusion",
                "How the registered atlases' labels are combined: local weights each atlas voxel by voxel by how "
                "well it matches the image nearby, bayesian and staple estimate each atlas's reliability, majority "
                "takes the most frequent label.",
                choices=("local", "bayesian", "staple", "majority"),
            ),
            "k": ParameterInfo(
                "Number of atlases",
                "How many of the best-matching atlases are registered and fused; more are usually more accurate "
                "but each costs time, and 0 (or at least the library size) uses every atlas without ranking.",
                minimum=0,
                maximum=1000,
            ),
            "affine_iterations": ParameterInfo(
                "Affine iterations",
                "Optimizer iterations per resolution level of the affine alignment; more can align better but "
                "take longer.",
                minimum=1,
                maximum=1000,
            ),
            "demons_iterations": ParameterInfo(
                "Deformable iterations",
                "Demons iterations at half resolution (half as many follow at full resolution); more let the atlas "
                "deform further towards the image, 0 keeps the affine alignment only.",
                minimum=0,
                maximum=1000,
            ),
            "demons_sigma": ParameterInfo(
                "Deformation smoothing",
                "Smoothing of the deformation after every Demons iteration; larger values give stiffer, smoother "
                "deformations, smaller ones follow local detail (and noise) more closely.",
                unit="voxels",
                minimum=0.0,
                maximum=10.0,
                step=0.25,
            ),
            "local_sigma_mm": ParameterInfo(
                "Local similarity window",
                "Size (Gaussian sigma) of the neighbourhood over which each atlas's match to the image is measured "
                "for local fusion; 0 compares single voxels.",
                unit="mm",
                minimum=0.0,
                maximum=20.0,
                step=0.5,
            ),
            "local_gain": ParameterInfo(
                "Local similarity gain",
                "How strongly local fusion favours the best-matching atlases at each voxel; 0 weights all atlases "
                "equally, larger values come close to taking the single best atlas.",
                minimum=0.0,
                maximum=20.0,
                step=0.5,
            ),
            "min_similarity": ParameterInfo(
                "Minimum similarity",
                "Registrations whose intensity correlation with the image ends below this value are dropped; higher "
                "values drop more poor registrations, -1 drops none for low correlation.",
                minimum=-1.0,
                maximum=1.0,
                step=0.05,
            ),
            "threads": ParameterInfo(
                "Threads",
                "CPU threads per registration filter; 1 is usually fastest for the small images that atlas "
                "libraries hold.",
                minimum=1,
                maximum=256,
            ),
        },
    )
)
