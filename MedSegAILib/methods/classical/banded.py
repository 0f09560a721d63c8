"""Solve a Potts problem on a 3D grid, in full or coarse-to-fine (banded).

:func:`solve_potts_grid` is the common driver of ``mrf``, ``crf`` and ``graphcut``.

Banded mode (Lombaert et al. 2005, "A multilevel banded graph cuts method"): the volume is
reduced by block averaging to about ``coarse_voxels`` voxels (axes with thick slices are
reduced less), the whole coarse problem is solved, and only a band around the coarse
boundaries is solved again at full resolution, with the voxels outside the band fixed to the
coarse labels (their edges into the band become unary terms). Structures thinner than a
coarse voxel that the coarse cut misses entirely stay missed; ``mode="full"`` solves every
voxel at full resolution.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .energy import build_problem, check_memory, potts_energy
from .solvers import mean_field_marginals, minimise

MODES = ("auto", "full", "banded")

#: The band half-width (coarse voxels) of ``band_width=-1`` while the band fits one slab.
AUTO_BAND_WIDTH = 1


def coarse_factors(shape: Sequence[int], spacing_zyx: Sequence[float], target_voxels: int) -> Tuple[int, int, int]:
    """Integer reduction factor per axis (z, y, x) giving at most ``target_voxels`` voxels,
    with coarse voxels as close to isotropic as the factors allow."""
    shape = np.asarray(shape)
    s = np.asarray(spacing_zyx, dtype=np.float64)
    if shape.prod() <= target_voxels:
        return (1, 1, 1)
    target = s.min()
    while True:
        target *= 1.1
        f = np.maximum(1, np.round(target / s)).astype(int)
        f = np.minimum(f, shape)
        if np.prod(-(-shape // f)) <= target_voxels or np.all(f == shape):
            return tuple(int(v) for v in f)


def _block_view(arr: np.ndarray, f: Sequence[int]) -> np.ndarray:
    pad = [(0, (-n) % k) for n, k in zip(arr.shape, f)]
    a = np.pad(arr, pad, mode="edge") if any(p[1] for p in pad) else arr
    z, y, x = a.shape
    return a.reshape(z // f[0], f[0], y // f[1], f[1], x // f[2], f[2])


def block_mean(arr: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """Mean over blocks of ``f`` voxels (edge-padded), float32."""
    return _block_view(arr.astype(np.float32, copy=False), f).mean(axis=(1, 3, 5), dtype=np.float32)


def block_seeds(seeds: np.ndarray, f: Sequence[int], n_labels: int) -> np.ndarray:
    """Coarse seeds: the most frequent seed label of each block, -1 where it holds none."""
    counts = []
    for label in range(n_labels):
        b = _block_view((seeds == label).astype(np.uint16), f)
        # Padding replicates edges; counts only rank labels, so that is harmless.
        counts.append(b.sum(axis=(1, 3, 5), dtype=np.int32))
    counts = np.stack(counts, axis=-1)
    out = counts.argmax(axis=-1).astype(np.int16)
    out[counts.max(axis=-1) == 0] = -1
    return out


def upsample(arr: np.ndarray, f: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a coarse array (extra trailing axes kept) to ``shape``."""
    out = arr
    for axis in range(3):
        if f[axis] > 1:
            out = np.repeat(out, f[axis], axis=axis)
    return out[: shape[0], : shape[1], : shape[2]]


def label_boundary(labels: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour of another label."""
    b = np.zeros(labels.shape, dtype=bool)
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        bb = np.moveaxis(b, axis, 0)
        d = a[1:] != a[:-1]
        bb[1:] |= d
        bb[:-1] |= d
    return b


#: The largest band solved as one graph. A larger band (a full-size CT's is 9 to 17 million
#: voxels) is solved in slabs of whole slices holding at most this many band voxels, one after
#: the other, each with the slices beside it held at their current labels; memory then stays
#: at one slab's graph (about 0.8 GB) instead of growing with the volume, at the cost of the
#: labels at the slab seams being solved with their neighbours fixed (block coordinate descent).
MAX_BAND_NODES = 2_500_000


def band_slabs(band: np.ndarray, max_nodes: int = MAX_BAND_NODES) -> List[Tuple[int, int]]:
    """[(z0, z1), ...]: consecutive slices, together covering every slice with band voxels,
    each slab holding at most ``max_nodes`` of them (or one slice, if a slice holds more)."""
    per_slice = band.reshape(band.shape[0], -1).sum(axis=1)
    slabs, start, count = [], None, 0
    for z, n in enumerate(per_slice):
        if start is not None and count + n > max_nodes:
            slabs.append((start, z))
            start, count = None, 0
        if n and start is None:
            start = z
        if start is not None:
            count += int(n)
    if start is not None:
        slabs.append((start, band.shape[0]))
    return slabs


def check_full_solve_fits(n_voxels: int, n_labels: int, *, mode: str, solver: str, max_memory_gb: float, full_max_voxels: int = 2_000_000) -> None:
    """Before any work: refuse (ResourceError) a whole-volume solve that would not fit, counting
    the full-resolution arrays held beside the graph (unary and spatial costs, marginals: about
    three (N, K) float32 arrays). Banded solves are checked level by level as they run."""
    if mode == "full" or (mode == "auto" and n_voxels <= full_max_voxels):
        check_memory(n_voxels, n_labels, max_memory_gb=max_memory_gb, graph=solver == "graphcut", extra_bytes=3 * 4 * n_voxels * n_labels)


def _solve_level(
    arr, spacing, unary_fn, k, *, weight, sigma, seeds, solver, mf_iterations, max_memory_gb, band=None, fixed=None,
    extra_bytes=0, progress=None,
):
    n_nodes = arr.size if band is None else int(band.sum())
    check_memory(n_nodes, k, max_memory_gb=max_memory_gb, graph=solver == "graphcut", extra_bytes=extra_bytes)
    problem, nodes = build_problem(
        arr, spacing, unary_fn, k, weight=weight, sigma=sigma, seeds=seeds, band=band, fixed_labels=fixed
    )
    lab = minimise(problem, solver, progress=progress)
    q = mean_field_marginals(problem, iterations=mf_iterations, start_labels=lab) if mf_iterations > 0 else None
    return lab, q, nodes, potts_energy(problem, lab)


def solve_potts_grid(
    arr: np.ndarray,
    spacing_zyx: Sequence[float],
    unary_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_labels: int,
    *,
    weight: float,
    sigma: Optional[float] = None,
    seeds: Optional[np.ndarray] = None,
    solver: str = "graphcut",
    mode: str = "auto",
    full_max_voxels: int = 2_000_000,
    coarse_voxels: int = 1_000_000,
    band_width: int = -1,
    mf_iterations: int = 10,
    max_memory_gb: float = 0.0,
    spatial_unary: Optional[Callable] = None,
    fine_spatial_unary: Optional[Callable] = None,
    progress=None,
    max_band_nodes: int = MAX_BAND_NODES,
) -> Tuple[np.ndarray, Optional[np.ndarray], Dict]:
    """MAP labels and mean-field marginals of a Potts energy over a 3D grid.

    Parameters
    ----------
    arr : ndarray (z, y, x)
        Intensities.
    spacing_zyx : (3,) mm
    unary_fn : callable(values (n,), flat_index (n,)) -> (n, K) float32
        Unary costs from intensities (indices refer to the grid being solved).
    n_labels : int
    weight, sigma : see :func:`~.energy.build_problem`.
    seeds : ndarray (z, y, x) int or None
        Hard constraints (label index, -1 = free).
    solver : "graphcut" or "icm"
    mode : "auto", "full" or "banded"
        "auto" is banded above ``full_max_voxels`` voxels.
    coarse_voxels : int
        Size of the coarse problem in banded mode.
    band_width : int
        Band half-width in coarse voxels around coarse boundaries; -1 (automatic) is 1, or 0
        when the band would hold more than ``max_band_nodes`` voxels (a full-size CT: it
        halves the time there, for the same Dice, docs/benchmarks/full_size.md).
    mf_iterations : int
        Mean-field iterations for the marginals (0 = no marginals).
    max_memory_gb : float
        Memory limit (0 = 80% of available); ResourceError beyond it.
    spatial_unary : callable(arr, spacing, seeds) -> (z, y, x, K) float32, or None
        Extra unary costs that depend on position (e.g. geodesic distances to seeds); computed
        once on the coarse grid in banded mode and looked up from it for band voxels.
    fine_spatial_unary : callable(flat_index (n,)) -> (n, K) float32, or None
        In banded mode, the position-dependent costs of band voxels at full resolution
        (indices into ``arr``), called after ``spatial_unary`` has seen the coarse grid; it
        replaces the coarse lookup there (a term that holds each voxel's own previous label
        must not see its block's majority).
    progress : Progress or None
    max_band_nodes : int
        A band with more voxels is solved in slabs (:func:`band_slabs`).

    Returns
    -------
    labels : ndarray (z, y, x) uint8
    marginals : ndarray (z, y, x, K) float32 or None
    info : dict (mode, factors, band voxels, energy, seconds)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if solver not in ("graphcut", "icm"):
        raise ValueError(f"solver must be 'graphcut' or 'icm', got '{solver}'")
    t0 = time.perf_counter()
    shape = arr.shape
    k = int(n_labels)

    def report(fraction, message):
        if progress is not None:
            progress.update(fraction, message)

    banded = mode == "banded" or (mode == "auto" and arr.size > full_max_voxels)
    f = coarse_factors(shape, spacing_zyx, coarse_voxels) if banded else (1, 1, 1)
    def with_spatial(extra, factors, level_shape):
        if extra is None:
            return unary_fn
        flat_extra = extra.reshape(-1, k)

        def fn(values, index):
            u = unary_fn(values, index)
            if factors is None:
                return u + flat_extra[index]
            z, y, x = np.unravel_index(index, shape)
            ci = np.ravel_multi_index((z // factors[0], y // factors[1], x // factors[2]), level_shape)
            return u + flat_extra[ci]

        return fn

    common = dict(weight=weight, sigma=sigma, solver=solver, mf_iterations=mf_iterations, max_memory_gb=max_memory_gb)
    if f == (1, 1, 1):
        report(0.05, f"{solver} on {arr.size:,} voxels")
        extra = None if spatial_unary is None else spatial_unary(arr, spacing_zyx, seeds)
        lab, q, _, energy = _solve_level(
            arr, spacing_zyx, with_spatial(extra, None, shape), k, seeds=seeds, progress=lambda x, m: report(0.05 + 0.8 * x, m), **common
        )
        info = {"mode": "full", "factors": [1, 1, 1], "solved_voxels": int(arr.size), "energy": energy}
        labels = lab.reshape(shape)
        marg = None if q is None else q.reshape(shape + (k,))
        info["seconds"] = round(time.perf_counter() - t0, 3)
        report(1.0, "solved")
        return labels, marg, info

    # Coarse level: the whole volume at reduced resolution.
    report(0.02, f"coarse level (factors {f})")
    carr = block_mean(arr, f)
    cseeds = None if seeds is None else block_seeds(seeds, f, k)
    cspacing = [s * ff for s, ff in zip(spacing_zyx, f)]
    cextra = None if spatial_unary is None else spatial_unary(carr, cspacing, cseeds)
    clab, cq, _, cenergy = _solve_level(
        carr, cspacing, with_spatial(cextra, None, carr.shape), k, seeds=cseeds, progress=lambda x, m: report(0.05 + 0.3 * x, "coarse: " + m), **common
    )
    clab = clab.reshape(carr.shape)
    report(0.4, "band around the coarse boundary")
    band_c = label_boundary(clab)
    width = AUTO_BAND_WIDTH if band_width < 0 else band_width
    if width > 0 and band_c.any():
        wide = ndimage.binary_dilation(band_c, ndimage.generate_binary_structure(3, 1), iterations=width)
        if band_width < 0 and int(wide.sum()) * int(np.prod(f)) > max_band_nodes:
            width = 0  # automatic: a band larger than one slab keeps the boundary voxels only
        else:
            band_c = wide
    labels = upsample(clab, f, shape).astype(np.uint8)
    band = upsample(band_c, f, shape)
    if seeds is not None:
        # A seed that the coarse labels contradict is always re-solved.
        band = band | ((seeds >= 0) & (seeds != labels))
    marg = None
    if cq is not None:
        marg = upsample(cq.reshape(carr.shape + (k,)), f, shape)
        marg = np.ascontiguousarray(marg)
    n_band = int(band.sum())
    info = {
        "mode": "banded",
        "factors": list(f),
        "coarse_voxels": int(carr.size),
        "coarse_energy": cenergy,
        "solved_voxels": n_band,
        "band_fraction": round(n_band / arr.size, 4),
        "band_width": width,
    }
    if n_band:
        held = arr.size * (k * 4 + 2 + 1)  # full-res labels, marginals, band
        slabs = band_slabs(band, max_band_nodes)
        info["band_slabs"] = len(slabs)
        energy = 0.0
        plane = shape[1] * shape[2]
        if fine_spatial_unary is not None:

            def band_fn(values, index):
                return unary_fn(values, index) + fine_spatial_unary(index)

        else:
            band_fn = with_spatial(cextra, f, carr.shape)
        for i, (z0, z1) in enumerate(slabs):
            # The slab and one slice either side, whose labels are held fixed.
            lo, hi = max(z0 - 1, 0), min(z1 + 1, shape[0])
            sub_band = band[lo:hi].copy()
            sub_band[: z0 - lo] = False
            sub_band[z1 - lo :] = False

            def slab_fn(values, index, offset=lo * plane):
                return band_fn(values, index + offset)

            def slab_report(x, m, i=i):
                report(0.45 + 0.5 * (i + x) / len(slabs), f"band{f' {i + 1}/{len(slabs)}' if len(slabs) > 1 else ''}: {m}")

            lab, q, nodes, part = _solve_level(
                arr[lo:hi], spacing_zyx, slab_fn, k, seeds=None if seeds is None else seeds[lo:hi], band=sub_band,
                fixed=labels[lo:hi], extra_bytes=held, progress=slab_report, **common,
            )
            labels[lo:hi].reshape(-1)[nodes] = lab  # a C-contiguous slab: reshape is a view
            if marg is not None and q is not None:
                marg[lo:hi].reshape(-1, k)[nodes] = q
            energy += part
        # With several slabs, each counts its edges to the fixed slices beside it as unaries:
        # the sum is not the band's energy, so it is kept under another name.
        info["band_energy" if len(slabs) == 1 else "band_energy_sum_of_slabs"] = energy
    info["seconds"] = round(time.perf_counter() - t0, 3)
    report(1.0, "solved")
    return labels, marg, info
