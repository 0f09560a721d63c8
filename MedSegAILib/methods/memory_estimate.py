"""What a run will hold at its peak, estimated before it starts from the voxel count.

:func:`estimate_run_bytes` is checked against the memory the process may still use (cgroup,
``ulimit -v``, MemAvailable: :mod:`MedSegAILib.core.memory`) before any work, and a run that
needs more than :data:`NOTE_ABOVE_INPUT` times its input says so first. The figures are bytes
per voxel of what each stage keeps at full resolution, checked against the peaks measured on a
109-million-voxel CT (docs/benchmarks/full_size.md).

The coarse-to-fine solvers (mrf, crf, graphcut in ``mode=auto`` above 2 million voxels, or
``banded``) solve a band around the coarse boundaries whose size is known only after the coarse
solve: :data:`BAND_FRACTION` is the share assumed here (4 to 16 % was measured on the noisy
full-size CT), up to the slab size (:data:`~.classical.banded.MAX_BAND_NODES`) beyond which the
band is solved in slabs; each slab's own check (:func:`~.classical.energy.check_memory`) then
holds the real figure against the limit before it is solved.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

#: Bytes a voxel that the pipeline holds after the method, beside the input: the UInt16
#: labels, the float32 uncertainty and the instance map (up to UInt32). The peak of a run is
#: the input plus the larger of this and the method's own figure.
PIPELINE_BYTES_PER_VOXEL = 2 + 4 + 4

#: A run that needs more than this many times its input's float32 size, and more than
#: NOTE_MIN_BYTES, says so before it starts (a crop's few megabytes are not worth a note).
NOTE_ABOVE_INPUT = 4.0
NOTE_MIN_BYTES = 1 << 30

#: Share of the voxels the band of a coarse-to-fine solve is assumed to hold.
BAND_FRACTION = 0.2

#: Bytes a graph-cut node costs while it is solved: PyMaxflow's graph (56 a node, 80 an edge,
#: three edges a node) and the unary, edge and marginal arrays beside it (energy.estimate_memory_bytes).
_GRAPH_NODE_BYTES = 56 + 3 * 80
_PROBLEM_NODE_BYTES = 24 + 3 * 40


def _solver_bytes(params: Dict[str, Any], n_voxels: int, k: int) -> float:
    from .classical.banded import MAX_BAND_NODES

    mode = str(params.get("mode", "auto"))
    banded = mode == "banded" or (mode == "auto" and n_voxels > 2_000_000)
    # A band is solved in slabs of at most MAX_BAND_NODES voxels: the graph's size is bounded.
    nodes = min(BAND_FRACTION * n_voxels, MAX_BAND_NODES) if banded else n_voxels
    graph = _GRAPH_NODE_BYTES if params.get("solver", "graphcut") == "graphcut" else 0
    # Full resolution: the float32 working copy, labels, band, the upsampled marginals and
    # their entropy (and its image).
    full = 4 + 1 + 1 + 4 * k + 8
    return n_voxels * full + nodes * (graph + _PROBLEM_NODE_BYTES + 4 * 4 * k)


def method_bytes(method: str, params: Dict[str, Any], n_voxels: int, *, keep_probabilities: bool = False) -> Optional[float]:
    """Bytes that ``method`` holds beside the input at its peak, or None for the methods that
    check their own needs as they go (atlas registration, deep inference by windows)."""
    k = int(params.get("n_classes", 2))
    if method == "otsu":
        # labels (and their image), uncertainty (and its image), posteriors on request.
        return n_voxels * (2 + 8 + (8 * k if keep_probabilities else 0))
    if method in ("mrf", "crf"):
        return _solver_bytes(params, n_voxels, k)
    if method == "graphcut":
        return _solver_bytes(params, n_voxels, 3) + n_voxels * 2  # and the seed index
    return None


def estimate_run_bytes(method: str, params: Dict[str, Any], n_voxels: int, n_channels: int = 1, *, keep_probabilities: bool = False) -> Optional[int]:
    """Peak bytes of a whole run (pipeline and method) on ``n_voxels`` voxels, or None when the
    method checks its own needs."""
    own = method_bytes(method, params, n_voxels, keep_probabilities=keep_probabilities)
    if own is None:
        return None
    return int(4 * n_channels * n_voxels + max(PIPELINE_BYTES_PER_VOXEL * n_voxels, own))
