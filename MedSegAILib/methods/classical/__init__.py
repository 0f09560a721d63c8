"""Classical methods: thresholds, Potts MRF / CRF by graph cut, seeded graph cut.

- :func:`.otsu.otsu_segmentation` (``otsu``)
- :func:`.mrf.potts_mrf_segmentation` (``mrf``) and :func:`.crf.contrast_crf_segmentation` (``crf``)
- :func:`.graphcut.seeded_graph_cut` (``graphcut``)
- building blocks: :mod:`.energy` (Potts problems, spacing-aware weights, memory estimates),
  :mod:`.solvers` (exact binary cut, alpha-expansion, ICM, mean-field marginals),
  :mod:`.banded` (full or coarse-to-fine solves on 3D grids).

PyMaxflow (GPL-3.0, the ``graphcut`` extra) is imported only when a graph cut runs.
"""
