"""Potts energies on voxel grids: pairwise weights from physical spacing, problem assembly,
energy evaluation and memory estimates.

A labelling problem here is a :class:`PottsProblem`: per-node unary costs (N, K) and a list of
undirected edges (i, j, w) with the Potts pairwise cost ``w * [L_i != L_j]``. Nodes are the
voxels of a grid (all of them, or a band); edges join 6-neighbours. The energy is

    E(L) = sum_i U[i, L_i] + sum_(i,j) w_ij [L_i != L_j]

Pairwise weights are inversely proportional to the physical distance between voxel centres,
normalised so that a neighbour at the smallest spacing has weight 1 (times beta or lambda).
An anisotropic volume is therefore smoothed less across its thick slices than within them.
The contrast-sensitive form (Boykov and Jolly 2001) multiplies by
``exp(-(I_i - I_j)^2 / (2 sigma^2))`` so cuts prefer image edges.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ...core.errors import MissingDependencyError, ResourceError
from ...core.memory import available_memory_bytes

# Cost used to make a seed a hard constraint: large against any unary or summed pairwise cost
# that the models here produce (unaries are negative log-likelihoods clipped to < 50 nats).
HARD_COST = 1.0e6

# Bytes of PyMaxflow's graph (Kolmogorov's maxflow 3.0, double capacities): one node record
# and two arc records per edge. Measured: ru_maxrss grew by 300 bytes a node for a
# 2-million-node graph with 3 edges a node (56 + 3 * 80 = 296).
_GRAPH_NODE_BYTES = 56
_GRAPH_EDGE_BYTES = 80


def import_maxflow():
    """Import PyMaxflow lazily, with a clear error when it is missing."""
    try:
        import maxflow  # noqa: F401  (GPL-3.0, an optional extra)
    except ImportError:
        raise MissingDependencyError("PyMaxflow", "graphcut", "Graph-cut segmentation (mrf, crf, graphcut)") from None
    return maxflow


@dataclass
class PottsProblem:
    """A Potts labelling problem over N nodes with K labels.

    Attributes
    ----------
    unary : ndarray (N, K) float32
        Cost of each label at each node (contributions of fixed neighbours included).
    ei, ej : ndarray (M,) int64
        Edge endpoints (node indices), each undirected edge once.
    w : ndarray (M,) float32
        Potts weight of each edge (>= 0).
    grid_shape : (3,) int
        Shape of the grid the nodes lie on.
    nodes : ndarray (N,) int
        Flat index of each node in that grid.
    """

    unary: np.ndarray
    ei: np.ndarray
    ej: np.ndarray
    w: np.ndarray
    grid_shape: Tuple[int, int, int]
    nodes: np.ndarray

    @functools.cached_property
    def colour(self) -> np.ndarray:
        """(N,) uint8 parity (z + y + x) % 2 of each node: nodes of one colour are never
        6-neighbours (ICM's chessboard); computed when first asked for."""
        return grid_colour(self.grid_shape, self.nodes)

    @property
    def n_nodes(self) -> int:
        return int(self.unary.shape[0])

    @property
    def n_labels(self) -> int:
        return int(self.unary.shape[1])


def axis_weights(spacing_zyx: Sequence[float]) -> np.ndarray:
    """Pairwise weight factor of the 6-neighbour along each array axis (z, y, x).

    ``min(spacing) / spacing[axis]``: 1 for the finest axis, smaller across thick slices, so
    weights are proportional to 1 / distance in mm.

    >>> axis_weights((5.0, 1.0, 1.0)).tolist()
    [0.2, 1.0, 1.0]
    """
    s = np.asarray(spacing_zyx, dtype=np.float64)
    if s.shape != (3,) or np.any(s <= 0):
        raise ValueError(f"spacing must be three positive numbers (z, y, x) in mm, got {tuple(spacing_zyx)}")
    return s.min() / s


def contrast_sigma(arr: np.ndarray, mask: Optional[np.ndarray] = None, max_samples: int = 2_000_000) -> float:
    """Data-driven sigma for contrast-sensitive weights: RMS of 6-neighbour differences
    (GrabCut's choice, beta = 1 / (2 <dI^2>)), over ``mask`` when given."""
    sq, cnt = 0.0, 0
    for axis in range(3):
        a = np.moveaxis(arr, axis, 0)
        d = a[1:] - a[:-1]
        if mask is not None:
            m = np.moveaxis(mask, axis, 0)
            d = d[m[1:] & m[:-1]]
        d = d.ravel()
        if d.size > max_samples:
            d = d[:: d.size // max_samples + 1]
        sq += float(np.sum(d.astype(np.float64) ** 2))
        cnt += d.size
    return float(np.sqrt(sq / cnt)) if cnt and sq > 0 else 1.0


def estimate_memory_bytes(n_nodes: int, n_labels: int, *, graph: bool = True, n_edges: Optional[int] = None) -> int:
    """Peak bytes that one solve on ``n_nodes`` nodes is expected to need.

    Counts the unary array and its temporaries (about four (N, K) float32 copies), the edge
    arrays with their temporaries (about 40 bytes per edge), the mean-field marginals and,
    when ``graph`` is set, PyMaxflow's graph (56 bytes a node, 80 an edge).
    """
    n_edges = 3 * n_nodes if n_edges is None else n_edges
    total = n_nodes * (4 * 4 * n_labels + 24) + n_edges * 40
    if graph:
        total += n_nodes * _GRAPH_NODE_BYTES + n_edges * _GRAPH_EDGE_BYTES
    return int(total)


def check_memory(
    n_nodes: int,
    n_labels: int,
    *,
    max_memory_gb: float = 0.0,
    what: str = "graph cut",
    graph: bool = True,
    extra_bytes: int = 0,
) -> int:
    """Raise ResourceError when the estimated need (plus ``extra_bytes`` already held, e.g.
    full-resolution outputs) exceeds the limit.

    The limit is ``max_memory_gb`` when positive, else 80% of the memory available now.
    Returns the estimate in bytes.
    """
    need = estimate_memory_bytes(n_nodes, n_labels, graph=graph) + int(extra_bytes)
    limit = max_memory_gb * (1 << 30) if max_memory_gb > 0 else 0.8 * available_memory_bytes()
    if need > limit:
        raise ResourceError(
            f"the {what} on {n_nodes:,} voxels with {n_labels} labels would need about {need / (1 << 30):.1f} GB "
            f"of memory, more than the {limit / (1 << 30):.1f} GB allowed; use mode=banded (coarse-to-fine), "
            f"crop the volume, or raise max_memory_gb"
        )
    return need


def grid_colour(shape: Tuple[int, int, int], flat_index: np.ndarray) -> np.ndarray:
    """(z + y + x) % 2 of flat indices into a C-ordered grid of ``shape``."""
    z, y, x = np.unravel_index(flat_index, shape)
    return ((z + y + x) & 1).astype(np.uint8)


def build_problem(
    arr: np.ndarray,
    spacing_zyx: Sequence[float],
    unary_fn,
    n_labels: int,
    *,
    weight: float,
    sigma: Optional[float] = None,
    seeds: Optional[np.ndarray] = None,
    band: Optional[np.ndarray] = None,
    fixed_labels: Optional[np.ndarray] = None,
) -> Tuple[PottsProblem, np.ndarray]:
    """Assemble the Potts problem of a 3D grid (or of a band of it).

    Parameters
    ----------
    arr : ndarray (z, y, x) float32
        Intensities (used by ``unary_fn`` and by contrast-sensitive weights).
    spacing_zyx : (3,) mm
    unary_fn : callable(values (n,) float32, flat_index (n,)) -> (n, K) float32
    n_labels : int
    weight : float
        Potts weight (beta or lambda) for a neighbour at the smallest spacing.
    sigma : float or None
        Contrast sigma in intensity units; None gives the plain Potts prior.
    seeds : ndarray (z, y, x) int or None
        Hard constraints: label index 0..K-1 at seeded voxels, -1 elsewhere.
    band : ndarray (z, y, x) bool or None
        Nodes to solve for; None = every voxel.
    fixed_labels : ndarray (z, y, x) int or None
        Labels of voxels outside ``band``; their edges to band voxels become unary terms.

    Returns
    -------
    problem : PottsProblem
    nodes : ndarray (N,) int64, flat indices of the nodes in ``arr``
    """
    arr = np.ascontiguousarray(arr)  # the neighbours come from C-order strides (a view of a crop has others)
    shape = arr.shape
    if band is None:
        nodes = np.arange(arr.size, dtype=np.int64)
        node_of = None
    else:
        if fixed_labels is None:
            raise ValueError("fixed_labels is needed with a band")
        nodes = np.flatnonzero(band)
        # int32 where it fits: a full-size CT's node map is then 435 MB, not 870.
        index_type = np.int32 if nodes.size < 2**31 - 1 else np.int64
        node_of = np.full(arr.size, -1, dtype=index_type)
        node_of[nodes] = np.arange(nodes.size, dtype=index_type)
    flat = arr.reshape(-1)
    unary = np.ascontiguousarray(unary_fn(flat[nodes], nodes), dtype=np.float32)
    if unary.shape != (nodes.size, n_labels):
        raise ValueError(f"unary_fn returned shape {unary.shape}, expected {(nodes.size, n_labels)}")
    if seeds is not None:
        s = seeds.reshape(-1)[nodes]
        seeded = np.flatnonzero(s >= 0)
        if seeded.size:
            unary[seeded] = HARD_COST
            unary[seeded, s[seeded]] = 0.0
    factors = axis_weights(spacing_zyx)
    strides = np.asarray(arr.strides) // arr.itemsize
    inv2s2 = None if not sigma else 1.0 / (2.0 * float(sigma) ** 2)
    ei_parts, ej_parts, w_parts = [], [], []
    fixed_flat = None if fixed_labels is None else fixed_labels.reshape(-1)
    for axis in range(3):
        if shape[axis] < 2:
            continue
        # Flat indices p with a neighbour q = p + stride along this axis.
        sl = [slice(None)] * 3
        sl[axis] = slice(0, shape[axis] - 1)
        base = np.zeros(shape, dtype=bool)
        base[tuple(sl)] = True
        if band is None:
            p = np.flatnonzero(base)
        else:
            shifted = np.zeros(shape, dtype=bool)
            shifted[tuple(sl)] = band.take(np.arange(1, shape[axis]), axis=axis)
            p = np.flatnonzero(base & (band | shifted))
        del base
        q = p + int(strides[axis])
        w = np.full(p.size, factors[axis] * weight, dtype=np.float32)
        if inv2s2 is not None:
            d = flat[p].astype(np.float32) - flat[q].astype(np.float32)
            w *= np.exp(-(d * d) * np.float32(inv2s2))
        if node_of is None:
            ei_parts.append(p)
            ej_parts.append(q)
            w_parts.append(w)
            continue
        ip, iq = node_of[p], node_of[q]
        both = (ip >= 0) & (iq >= 0)
        ei_parts.append(ip[both])
        ej_parts.append(iq[both])
        w_parts.append(w[both])
        # An edge to a fixed voxel costs w for every label but the fixed one.
        for inside, outside in ((ip, q), (iq, p)):
            sel = (inside >= 0) & ~both
            if np.any(sel):
                n_in, lab, ww = inside[sel], fixed_flat[outside[sel]], w[sel]
                # Histograms, not np.add.at (ten times slower on millions of edges).
                total = np.bincount(n_in, weights=ww, minlength=nodes.size)
                for label in range(n_labels):
                    own = lab == label
                    unary[:, label] += (total - np.bincount(n_in[own], weights=ww[own], minlength=nodes.size)).astype(np.float32)
    problem = PottsProblem(
        unary=unary,
        ei=np.concatenate(ei_parts) if ei_parts else np.zeros(0, np.int64),
        ej=np.concatenate(ej_parts) if ej_parts else np.zeros(0, np.int64),
        w=np.concatenate(w_parts) if w_parts else np.zeros(0, np.float32),
        grid_shape=tuple(shape),
        nodes=nodes,
    )
    return problem, nodes


def potts_energy(problem: PottsProblem, labels: np.ndarray) -> float:
    """E(L) = sum_i U[i, L_i] + sum_edges w [L_i != L_j] (float64)."""
    labels = np.asarray(labels).reshape(-1)
    u = problem.unary[np.arange(problem.n_nodes), labels].astype(np.float64).sum()
    cut = labels[problem.ei] != labels[problem.ej]
    return float(u + problem.w[cut].astype(np.float64).sum())
