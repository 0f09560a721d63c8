"""MedSegAILib: headless segmentation logic behind the MedSegAI 3D Slicer extension.

The package reads like the pipeline it implements:

- ``io``            reading images (NIfTI, NRRD, MHA, DICOM series) with their geometry
- ``core``          the result type, class descriptions, progress and cancellation, errors
- ``methods``       the method families (classical, atlas, deep) behind one registry
- ``postprocess``   island removal, largest-component rules, hole filling, instances
- ``uncertainty``   per-voxel uncertainty from class posteriors
- ``measure``       segmentation metrics and measurements
- ``outputs``       files on disk, overview pictures
- ``slicer_bridge`` MRML nodes (segmentation, volumes, tables) and surface export
- ``pipeline``      the one entry point the CLI, the Slicer module and the tests call
- ``cohort``        many cases in one run (Dask workers, resume, the summary table)

Nothing here imports Qt, the Slicer application, or torch at import time.
"""

__version__ = "0.1.0"
