"""Work over a large volume in slabs of whole slices, on a thread pool.

NumPy releases the GIL in its element-wise loops, so slabs of a (Z, Y, X) array processed by
one thread each use every core without copies of the volume; each slab's temporaries are a few
million voxels, not the volume's size.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Tuple

import numpy as np

#: Voxels per slab: large enough that per-call overhead vanishes, small enough that a slab's
#: (n, K) float64 temporaries stay in tens of megabytes.
SLAB_VOXELS = 1 << 20


def worker_count() -> int:
    """CPUs this process may use: ``MEDSEGAI_THREADS`` when set (a cohort's Dask worker sets 1),
    else its affinity mask where the system has one, else the CPU count."""
    env = os.environ.get("MEDSEGAI_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def slab_bounds(depth: int, plane_voxels: int, slab_voxels: int = SLAB_VOXELS) -> List[Tuple[int, int]]:
    """[(z0, z1), ...] covering 0..depth in slabs of about ``slab_voxels`` voxels (at least one slice)."""
    step = max(1, slab_voxels // max(plane_voxels, 1))
    return [(z, min(z + step, depth)) for z in range(0, depth, step)]


def take_by_slab(table, index: np.ndarray, dtype) -> np.ndarray:
    """``table[index]`` as a new array of ``dtype`` (shape of ``index``, a (Z, ...) array), taken
    slab by slab: NumPy turns the indices it looks up into 8-byte integers, which for a whole
    volume would be a temporary of 8 bytes a voxel."""
    out = np.empty(index.shape, dtype=dtype)
    table = np.asarray(table, dtype=dtype)

    def slab(z0, z1):
        np.take(table, index[z0:z1], out=out[z0:z1])

    for_each_slab(index.shape[0], int(np.prod(index.shape[1:])), slab)
    return out


def for_each_slab(depth: int, plane_voxels: int, fn: Callable[[int, int], None], *, slab_voxels: int = SLAB_VOXELS) -> None:
    """Call ``fn(z0, z1)`` for every slab, on :func:`worker_count` threads; ``fn`` writes its
    results into preallocated arrays (slabs never overlap). Exceptions propagate."""
    bounds = slab_bounds(depth, plane_voxels, slab_voxels)
    workers = min(worker_count(), len(bounds))
    if workers <= 1:
        for z0, z1 in bounds:
            fn(z0, z1)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(fn, z0, z1) for z0, z1 in bounds]:
            future.result()
