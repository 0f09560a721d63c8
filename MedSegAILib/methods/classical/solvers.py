"""Minimisers and marginals of a Potts energy (:class:`~.energy.PottsProblem`).

- :func:`binary_graph_cut`: the exact minimum for two labels (one s-t min cut, PyMaxflow).
- :func:`alpha_expansion`: K labels; each move is an exact binary cut ("take label alpha or
  keep yours"), repeated over all labels until no move lowers the energy. For a Potts prior
  the result is within a factor 2 of the global minimum (Boykov, Veksler and Zabih 2001).
- :func:`icm`: iterated conditional modes, the fast approximate solver: every voxel takes its
  best label given its neighbours, one colour of a chessboard at a time (so the energy never
  rises), until nothing changes.
- :func:`mean_field_marginals`: per-node approximate posteriors q_i(l) of the Gibbs
  distribution exp(-E) by damped mean-field iterations; their entropy is the uncertainty.

Notes
-----
Expansion move (Kolmogorov and Zabih 2004): with y_i = 1 when node i takes alpha, an edge
(p, q) costs A = w[L_p != L_q], B = w[L_p != alpha], C = w[alpha != L_q] and D = 0 for
(y_p, y_q) = (0, 0), (0, 1), (1, 0), (1, 1). It is written as
A + (C - A) y_p - C y_q + (B + C - A) (1 - y_p) y_q; the last term is an arc p -> q of
capacity B + C - A >= 0 (the triangle inequality of the Potts metric).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .energy import PottsProblem, import_maxflow, potts_energy


def _terminal_caps(delta: np.ndarray):
    """Source/sink capacities for a per-node cost ``delta`` = cost(y=1) - cost(y=0).

    A node in the sink segment (y = 1) pays its source capacity, in the source segment its
    sink capacity; only the difference matters.
    """
    return np.maximum(delta, 0.0), np.maximum(-delta, 0.0)


def _cut(n: int, ei, ej, cap, rcap, delta) -> np.ndarray:
    """Min cut of a graph on n nodes; returns y (bool, True = sink side)."""
    maxflow = import_maxflow()
    g = maxflow.Graph[float](n, ei.size)
    g.add_nodes(n)
    ids = np.arange(n, dtype=np.int32)
    if ei.size:
        g.add_edges(ei.astype(np.int32), ej.astype(np.int32), cap.astype(np.float64), rcap.astype(np.float64))
    src, snk = _terminal_caps(delta.astype(np.float64))
    g.add_grid_tedges(ids, src, snk)
    g.maxflow()
    return np.asarray(g.get_grid_segments(ids), dtype=bool)


def binary_graph_cut(problem: PottsProblem) -> np.ndarray:
    """Exact minimiser of a two-label Potts energy.

    Returns
    -------
    labels : ndarray (N,) uint8 in {0, 1}
    """
    if problem.n_labels != 2:
        raise ValueError(f"binary_graph_cut needs 2 labels, got {problem.n_labels}")
    delta = problem.unary[:, 1].astype(np.float64) - problem.unary[:, 0]
    w = problem.w.astype(np.float64)
    y = _cut(problem.n_nodes, problem.ei, problem.ej, w, w, delta)
    return y.astype(np.uint8)


def alpha_expansion(
    problem: PottsProblem,
    labels: Optional[np.ndarray] = None,
    *,
    max_cycles: int = 5,
    progress: Optional[Callable[[float, str], None]] = None,
) -> np.ndarray:
    """Alpha-expansion minimisation of a K-label Potts energy.

    Parameters
    ----------
    problem : PottsProblem
    labels : ndarray (N,) int or None
        Initial labelling; default the unary minimum.
    max_cycles : int, default 5
        Sweeps over all labels (it usually converges in 2-3).
    progress : callable(fraction, message) or None

    Returns
    -------
    labels : ndarray (N,) uint8 (uint16 when K > 255)
    """
    k = problem.n_labels
    dtype = np.uint8 if k <= 255 else np.uint16
    lab = (problem.unary.argmin(axis=1) if labels is None else np.asarray(labels).reshape(-1)).astype(dtype)
    energy = potts_energy(problem, lab)
    n = problem.n_nodes
    rows = np.arange(n)
    ei, ej = problem.ei, problem.ej
    w = problem.w.astype(np.float64)
    for cycle in range(max_cycles):
        improved = False
        for alpha in range(k):
            if progress is not None:
                progress((cycle * k + alpha) / (max_cycles * k), f"alpha-expansion cycle {cycle + 1}, label {alpha}")
            lp, lq = lab[ei], lab[ej]
            a = w * (lp != lq)
            b = w * (lp != alpha)
            c = w * (lq != alpha)
            delta = problem.unary[:, alpha].astype(np.float64) - problem.unary[rows, lab]
            delta += np.bincount(ei, weights=c - a, minlength=n)
            delta -= np.bincount(ej, weights=c, minlength=n)
            cap = np.maximum(b + c - a, 0.0)
            y = _cut(n, ei, ej, cap, np.zeros_like(cap), delta)
            if not np.any(y & (lab != alpha)):
                continue
            trial = lab.copy()
            trial[y] = alpha
            e = potts_energy(problem, trial)
            if e < energy - 1e-9 * max(1.0, abs(energy)):
                lab, energy, improved = trial, e, True
        if not improved:
            break
    return lab


def _label_support(problem: PottsProblem, lab: np.ndarray, label: int) -> np.ndarray:
    """S_i = sum over neighbours j of w_ij [L_j == label]."""
    n = problem.n_nodes
    w = problem.w.astype(np.float64)
    return np.bincount(problem.ei, weights=w * (lab[problem.ej] == label), minlength=n) + np.bincount(
        problem.ej, weights=w * (lab[problem.ei] == label), minlength=n
    )


def icm(problem: PottsProblem, labels: Optional[np.ndarray] = None, *, max_iterations: int = 30) -> np.ndarray:
    """Iterated conditional modes (Besag 1986) with chessboard updates; never raises the energy.

    Returns
    -------
    labels : ndarray (N,) uint8 (uint16 when K > 255)
    """
    k = problem.n_labels
    dtype = np.uint8 if k <= 255 else np.uint16
    lab = (problem.unary.argmin(axis=1) if labels is None else np.asarray(labels).reshape(-1)).astype(dtype)
    n = problem.n_nodes
    w = problem.w.astype(np.float64)
    total = np.bincount(problem.ei, weights=w, minlength=n) + np.bincount(problem.ej, weights=w, minlength=n)
    for _ in range(max_iterations):
        changed = 0
        for colour in (0, 1):
            sel = np.flatnonzero(problem.colour == colour)
            # cost_l = U_l + (total weight - weight of neighbours already labelled l)
            cost = problem.unary[sel].astype(np.float64) + total[sel, None]
            for label in range(k):
                cost[:, label] -= _label_support(problem, lab, label)[sel]
            best = cost.argmin(axis=1)
            # Keep the current label on ties so the sweep terminates.
            current = cost[np.arange(sel.size), lab[sel]]
            move = cost[np.arange(sel.size), best] < current - 1e-12
            changed += int(move.sum())
            lab[sel[move]] = best[move]
        if changed == 0:
            break
    return lab


#: Extra log-odds (unitless) the MAP labelling gets in the mean field's starting point.
MAP_START_BONUS = 2.0


def mean_field_marginals(
    problem: PottsProblem, *, iterations: int = 10, damping: float = 0.5, start_labels: Optional[np.ndarray] = None
) -> np.ndarray:
    """Mean-field approximation q_i(l) of p(L) proportional to exp(-E(L)).

    q_i(l) is proportional to exp(-U_i(l) + sum_j w_ij q_j(l)) (the Potts cost w [l != L_j]
    averaged over q_j, up to a constant); updates are parallel and damped.

    ``start_labels`` (N,): the solver's MAP labelling. The mean field starts from
    softmax(-U + MAP_START_BONUS [l = L_i]) instead of softmax(-U), so it settles at the fixed
    point around the labels it describes: started from the unary alone, on the seeded graph
    cut of the hippocampus sample cases, its argmax disagreed with the cut on 7-9 % of the
    voxels (whole regions confidently given another label), started from the labels on
    0.1-0.4 %, and its entropy found the cut's errors better (AUROC 0.79-0.82 -> 0.81-0.85).

    Returns
    -------
    q : ndarray (N, K) float32, rows sum to 1
    """
    from scipy import sparse

    k = problem.n_labels
    n = problem.n_nodes
    u = problem.unary.astype(np.float32)
    # The symmetric edge weights as one sparse matrix: sum_j w_ij q_j is then one product per
    # iteration (a CSR product is several times faster than bincounts over both edge ends).
    ei, ej = np.asarray(problem.ei), np.asarray(problem.ej)
    w = problem.w.astype(np.float32)
    weights = sparse.csr_matrix((np.concatenate([w, w]), (np.concatenate([ei, ej]), np.concatenate([ej, ei]))), shape=(n, n))
    start = -u.copy()
    if start_labels is not None:
        start[np.arange(n), np.asarray(start_labels).reshape(-1)] += MAP_START_BONUS
    if k == 2:
        # Two labels: the softmax is the logistic function of the difference, q0 = 1 / (1 + exp(-d)),
        # d = (support0 - U0) - (support1 - U1) with support1 = sum_j w_ij - support0.
        total = np.asarray(weights.sum(axis=1)).ravel().astype(np.float32)
        offset = (u[:, 1] - u[:, 0] - total).astype(np.float32)
        q0 = (1.0 / (1.0 + np.exp(np.clip(start[:, 1] - start[:, 0], -80.0, 80.0)))).astype(np.float32)  # clipped: no float32 overflow
        for _ in range(iterations):
            d = 2.0 * (weights @ q0) + offset
            q0 = damping * q0 + (1.0 - damping) / (1.0 + np.exp(np.clip(-d, -80.0, 80.0)))
        q0 = q0.astype(np.float32)
        return np.stack([q0, 1.0 - q0], axis=1)

    def softmax(neg_energy):
        neg_energy = neg_energy - neg_energy.max(axis=1, keepdims=True)
        np.exp(neg_energy, out=neg_energy)
        neg_energy /= neg_energy.sum(axis=1, keepdims=True)
        return neg_energy

    q = softmax(start)
    for _ in range(iterations):
        new = softmax((weights @ q).astype(np.float32) - u)
        q = damping * q + (1.0 - damping) * new
    q /= q.sum(axis=1, keepdims=True)
    return q.astype(np.float32)


def minimise(problem: PottsProblem, solver: str = "graphcut", *, progress=None, max_cycles: int = 5) -> np.ndarray:
    """MAP labelling: exact cut for 2 labels, alpha-expansion for more ("graphcut"), or ICM."""
    if solver == "icm":
        return icm(problem)
    if solver != "graphcut":
        raise ValueError(f"solver must be 'graphcut' or 'icm', got '{solver}'")
    if problem.n_labels == 2:
        return binary_graph_cut(problem)
    return alpha_expansion(problem, max_cycles=max_cycles, progress=progress)
