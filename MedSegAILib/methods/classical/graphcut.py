"""Seeded graph cut (interactive segmentation from scribbles), with mean-field uncertainty.

The user paints a seed labelmap: labels 1..K are the classes and the highest label (or
``background_label``) is background, as in Slicer's "Grow from seeds". Seeds are hard
constraints; an intensity model of each label is learned from its seeds; the labelling
minimises a contrast-sensitive Potts energy in 3D by an exact min cut (one object) or
alpha-expansion (several), coarse-to-fine on large volumes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ...core.classes import ClassInfo, distinct_colors
from ...core.slabs import take_by_slab
from ...core.errors import InputError
from ...core.result import MethodOutput
from ...uncertainty.entropy import entropy_by_slab, probabilities_image, uncertainty_image
from ..registry import MethodRequest
from .banded import MODES, check_full_solve_fits, coarse_factors, solve_potts_grid
from .energy import contrast_sigma, import_maxflow
from .guidance import PreviousCut, check_prior, grow_box, hold_outside, level_factors, local_region, prior_unary, stability_cost, stability_weight

# Unary costs are clipped here (nats) so that one outlier intensity cannot outvote its
# neighbourhood without bound.
MAX_UNARY = 20.0

#: A local update re-solves this many ``stability_mm`` beyond the changed seeds: there the
#: stability term has reached 1 - exp(-3) = 95 % of its weight.
LOCAL_MARGIN = 3.0


def check_seeds(image: sitk.Image, seeds: sitk.Image, background_label: int = 0) -> Tuple[np.ndarray, List[int], int]:
    """Validate a seed labelmap against ``image`` and map it to label indices.

    Returns
    -------
    index : ndarray (z, y, x) int16
        0 for background seeds, 1..K-1 for object seeds (ascending seed value), -1 unseeded.
    objects : list of int
        Seed values of the objects, in output-label order (output label i+1 = objects[i]).
    background : int
        Seed value of background.
    """
    if seeds is None:
        raise InputError("seeded graph cut needs a seed labelmap (--seeds): objects 1..K, background the highest label")
    if seeds.GetDimension() != 3:
        raise InputError(f"the seed labelmap is {seeds.GetDimension()}D; a 3D labelmap on the image grid is needed")
    if seeds.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the seed labelmap must be a scalar labelmap, not a vector image")
    tol = 1e-4 * max(1.0, max(image.GetSpacing()))
    same = (
        seeds.GetSize() == image.GetSize()
        and np.allclose(seeds.GetSpacing(), image.GetSpacing(), atol=tol)
        and np.allclose(seeds.GetOrigin(), image.GetOrigin(), atol=tol)
        and np.allclose(seeds.GetDirection(), image.GetDirection(), atol=1e-5)
    )
    if not same:
        raise InputError(
            f"the seed labelmap is not on the image grid (size {seeds.GetSize()} vs {image.GetSize()}, spacing "
            f"{tuple(round(s, 4) for s in seeds.GetSpacing())} vs {tuple(round(s, 4) for s in image.GetSpacing())}); "
            "resample it onto the image first (segment_files does this for seed files)"
        )
    arr = sitk.GetArrayViewFromImage(seeds)
    if np.issubdtype(arr.dtype, np.floating) and np.any(arr != np.round(arr)):
        raise InputError("the seed labelmap holds non-integer values; seeds must be integer labels")
    if np.any(arr < 0):
        raise InputError("the seed labelmap holds negative values; seeds must be labels 1..K (0 = unseeded)")
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise InputError("the seed labelmap has no seeds: paint at least one object label and one background label")
    background = int(background_label) if background_label else max(values)
    if background not in values:
        raise InputError(f"there is no background seed: background_label {background} is not painted (seed labels: {values})")
    objects = [v for v in values if v != background]
    if not objects:
        raise InputError(
            f"the seeds hold only one label ({background}), taken as background; paint at least one object label "
            "(lower than the background label) as well"
        )
    if len(values) > 255:
        raise InputError(f"at most 255 seed labels are supported, got {len(values)}")
    lut = np.full(int(arr.max()) + 1, -1, dtype=np.int16)
    lut[background] = 0
    for i, v in enumerate(objects, start=1):
        lut[v] = i
    return take_by_slab(lut, arr, np.int16), objects, background


def histogram_model(arr: np.ndarray, seeds: np.ndarray, k: int, *, bins: int = 64, smoothing_bins: float = 1.5):
    """Per-label intensity likelihoods from seed histograms, as a unary function.

    Bins span the 0.5-99.5 percentile range of the image (values outside are clamped to the
    end bins); each histogram is Gaussian-smoothed and mixed with 1% of a uniform density
    so unseen intensities are unlikely but not impossible.
    """
    sample = arr.reshape(-1)[:: max(1, arr.size // 1_000_000)]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    scale = bins / (hi - lo)
    seeded = seeds >= 0
    idx = np.clip(((arr[seeded] - lo) * scale).astype(np.int64), 0, bins - 1)
    lab = seeds[seeded]
    cost = np.empty((bins, k), dtype=np.float32)
    for label in range(k):
        h = np.bincount(idx[lab == label], minlength=bins).astype(np.float64)
        if smoothing_bins > 0:
            h = ndimage.gaussian_filter1d(h, smoothing_bins, mode="nearest")
        h = h / h.sum()
        h = 0.99 * h + 0.01 / bins
        cost[:, label] = np.minimum(-np.log(h), MAX_UNARY)
    # Costs relative to the best label: only differences matter to the cut.
    cost -= cost.min(axis=1, keepdims=True)

    def unary(values, _index=None):
        i = np.clip(((values - lo) * scale).astype(np.int64), 0, bins - 1)
        return cost[i]

    return unary, {"kind": "histogram", "bins": bins, "range": [float(lo), float(hi)]}


def gaussian_model(arr: np.ndarray, seeds: np.ndarray, k: int):
    """Per-label Gaussian likelihoods fitted to the seed intensities, as a unary function."""
    seeded = seeds >= 0
    v, lab = arr[seeded].astype(np.float64), seeds[seeded]
    floor = 1e-3 * (float(arr.std()) or 1.0)
    mu = np.array([v[lab == i].mean() for i in range(k)])
    sd = np.array([max(v[lab == i].std(), floor) for i in range(k)])

    def unary(values, _index=None):
        c = 0.5 * ((values[:, None].astype(np.float64) - mu) / sd) ** 2 + np.log(sd)
        c -= c.min(axis=1, keepdims=True)
        return np.minimum(c, MAX_UNARY).astype(np.float32)

    return unary, {"kind": "gaussian", "mean": mu.tolist(), "std": sd.tolist()}


def geodesic_graph(arr: np.ndarray, spacing_zyx, sigma: float):
    """The image's 6-neighbour graph for :func:`geodesic_seed_distances` (CSR, N x N): a step
    costs d_mm * (1 + |I_i - I_j| / sigma). It does not depend on the seeds, so an
    interactive session builds it once."""
    from scipy.sparse import coo_matrix

    shape, n = arr.shape, arr.size
    flat = arr.reshape(-1).astype(np.float32)
    idx = np.arange(n, dtype=np.int64).reshape(shape)
    rows, cols, costs = [], [], []
    for axis, step in enumerate(spacing_zyx):
        sl_a = [slice(None)] * 3
        sl_b = [slice(None)] * 3
        sl_a[axis], sl_b[axis] = slice(0, -1), slice(1, None)
        p, q = idx[tuple(sl_a)].ravel(), idx[tuple(sl_b)].ravel()
        rows.append(p)
        cols.append(q)
        costs.append(float(step) * (1.0 + np.abs(flat[p] - flat[q]) / float(sigma)))
    return coo_matrix((np.concatenate(costs), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()


def geodesic_seed_distances(arr: np.ndarray, spacing_zyx, seeds: np.ndarray, k: int, sigma: float, *, graph=None) -> np.ndarray:
    """Geodesic distance (mm) from every voxel to the nearest seed of each label.

    A step between 6-neighbours costs d_mm * (1 + |I_i - I_j| / sigma), so paths that cross
    image edges are long: the competition of seeds behind GrowCut, as a distance. ``graph``
    is :func:`geodesic_graph` of the same image, when already built.

    Returns
    -------
    ndarray (z, y, x, K) float32; inf where a label cannot be reached.
    """
    from scipy.sparse.csgraph import dijkstra

    shape = arr.shape
    if graph is None:
        graph = geodesic_graph(arr, spacing_zyx, sigma)
    out = np.empty(shape + (k,), dtype=np.float32)
    s = seeds.reshape(-1)
    for label in range(k):
        src = np.flatnonzero(s == label)
        if src.size == 0:
            out[..., label] = np.inf
            continue
        out[..., label] = dijkstra(graph, directed=False, indices=src, min_only=True).reshape(shape)
    return out


def keep_seed_connected(labels: np.ndarray, seeds: np.ndarray, marginals=None) -> int:
    """Give back to background (label 0) every object component that holds no seed of its
    label (face connectivity), in place; their marginals swap object and background so
    the posterior's argmax follows the label. Returns the number of voxels changed."""
    changed = 0
    for label in range(1, int(labels.max()) + 1):
        mask = labels == label
        if not mask.any():
            continue
        comp, n = ndimage.label(mask)
        keep = np.zeros(n + 1, dtype=bool)
        keep[np.unique(comp[(seeds == label) & mask])] = True
        keep[0] = False
        drop = mask & ~keep[comp]
        if drop.any():
            changed += int(drop.sum())
            labels[drop] = 0
            if marginals is not None:
                m = marginals[drop]
                m[:, [0, label]] = m[:, [label, 0]]
                marginals[drop] = m
    return changed


def seeded_graph_cut(
    image: sitk.Image,
    seeds: sitk.Image,
    *,
    background_label: int = 0,
    lam: float = 6.0,
    sigma: float = 0.0,
    intensity_model: str = "gaussian",
    bins: int = 64,
    geodesic_weight: float = 0.1,
    seed_connected: bool = True,
    solver: str = "graphcut",
    mode: str = "auto",
    coarse_voxels: int = 1_000_000,
    band_width: int = -1,
    mf_iterations: int = 10,
    max_memory_gb: float = 0.0,
    prior_weight: float = 2.0,
    stability: float = 2.0,
    stability_mm: float = 10.0,
    local_update_voxels: int = 1_000_000,
    prior: Optional[sitk.Image] = None,
    previous: Optional[PreviousCut] = None,
    progress=None,
    cache=None,
    keep_probabilities: bool = True,
) -> MethodOutput:
    """Segment objects marked by seeds: contrast-sensitive Potts energy, cut in 3D.

    Parameters
    ----------
    image : sitk.Image
        3D scalar volume.
    seeds : sitk.Image
        Seed labelmap on ``image``'s grid: 0 unseeded, 1..K labels; the highest (or
        ``background_label``) is background.
    background_label : int, default 0
        Seed value of background; 0 means the highest seed value.
    lam : float, default 6.0
        lambda, the pairwise weight of a neighbour at the smallest spacing (nats).
    sigma : float, default 0
        Contrast sigma in intensity units; 0 = RMS of neighbour differences of the image.
    intensity_model : "gaussian" or "histogram", default "gaussian"
        One Gaussian per label fitted to its seeds, or smoothed seed histograms.
    bins : int, default 64
        Histogram bins over the image's 0.5-99.5 percentile range.
    geodesic_weight : float, default 0.1
        Nats per mm by which a label's cost grows with the geodesic distance to its seeds
        beyond the nearest label's (see :func:`geodesic_seed_distances`); 0 = none. It keeps
        a label from jumping to distant regions of similar intensity that only a thin or
        high-contrast path joins to its seeds.
    seed_connected : bool, default True
        Drop object components that hold no seed of their label.
    solver : "graphcut" or "icm"
    mode : "auto", "full" or "banded"
        Banded is coarse-to-fine (see :mod:`.banded`); auto is banded above 2 million voxels.
    coarse_voxels, band_width, mf_iterations, max_memory_gb
        See :func:`~.banded.solve_potts_grid`.
    prior_weight : float, default 2.0
        Weight of ``prior`` (nats per unit of -log probability).
    stability, stability_mm : float, default 2.0 and 10.0
        With ``previous``: nats a voxel pays for leaving its previous label, reached at
        ``stability_mm`` mm and beyond from the seeds that changed (see :mod:`.guidance`).
    local_update_voxels : int, default 1,000,000
        With ``previous``: on a volume of more voxels an update is local. Outside the box around
        the seeds that changed (``LOCAL_MARGIN * stability_mm`` beyond them) the previous labels
        are held, and when ``previous`` has its uncertainty (and ``keep_probabilities`` is off)
        only the box is solved. 0: every update may change the whole volume.
    prior : sitk.Image or None
        Label probabilities on the image grid, one component per label (background first,
        then the object seed values ascending), e.g. a deep model's posterior.
    previous : PreviousCut or None
        The previous update's labels and seeds (an interactive session passes them).
    progress : Progress or None
    cache : dict or None
        Kept by an interactive session between updates (contrast sigma, geodesic graph).
    keep_probabilities : bool, default True
        Return the marginals as well as their entropy.

    Returns
    -------
    MethodOutput
        labels (UInt8): 0 background, 1..K-1 the object seed values in ascending order;
        probabilities: mean-field marginals (component 0 = background), or None; uncertainty:
        their normalised entropy.

    Notes
    -----
    E(L) = sum_i -log p(I_i | L_i) + sum_(i,j) lambda * exp(-(I_i - I_j)^2 / (2 sigma^2))
    * s_min / d_ij * [L_i != L_j], with seeds fixed (Boykov and Jolly 2001). p is learned
    from the seeds. Two labels: one exact min cut; more: alpha-expansion.

    References
    ----------
    Boykov Y, Jolly M-P. Interactive graph cuts for optimal boundary & region segmentation of
    objects in N-D images. ICCV 2001.

    Examples
    --------
    >>> out = seeded_graph_cut(sitk.ReadImage("ct.nii.gz"), sitk.ReadImage("seeds.nii.gz"))
    """
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("seeded graph cut needs a 3D scalar image")
    if intensity_model not in ("histogram", "gaussian"):
        raise InputError(f"intensity_model must be 'histogram' or 'gaussian', got '{intensity_model}'")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if solver not in ("graphcut", "icm"):
        raise InputError(f"solver must be 'graphcut' or 'icm', got '{solver}'")
    if min(lam, sigma, geodesic_weight, prior_weight, stability, stability_mm) < 0:
        raise InputError("lam, sigma, geodesic_weight, prior_weight, stability and stability_mm must not be negative")
    if solver == "graphcut":
        import_maxflow()
    index, objects, background = check_seeds(image, seeds, background_label)
    k = len(objects) + 1
    n_voxels = int(np.prod(image.GetSize()))
    check_full_solve_fits(n_voxels, k, mode=mode, solver=solver, max_memory_gb=max_memory_gb)
    arr = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    spacing = image.GetSpacing()[::-1]
    if progress is not None:
        progress.update(0.02, "intensity models from the seeds")
    if intensity_model == "histogram":
        unary, model = histogram_model(arr, index, k, bins=bins)
    else:
        unary, model = gaussian_model(arr, index, k)
    cache = {} if cache is None else cache  # what does not depend on the seeds, kept by a session
    if sigma > 0:
        sig = float(sigma)
    else:
        if "contrast_sigma" not in cache:
            cache["contrast_sigma"] = contrast_sigma(arr)
        sig = cache["contrast_sigma"]
    prior_arr = None
    if prior is not None and prior_weight > 0:
        kept = cache.get("checked_prior")  # a session's prior is checked and read once
        if kept is not None and kept[0] is prior and kept[1].shape[-1] == k:
            prior_arr = kept[1]
        else:
            prior_arr = check_prior(prior, image, k)
            cache["checked_prior"] = (prior, prior_arr)
    raw_seeds = sitk.GetArrayViewFromImage(seeds)
    use_previous = previous is not None and stability > 0
    guided = {"prior": prior_arr is not None, "previous": False}

    def make_spatial(region_shape, region_prior, region_previous, region_raw, keep_graph=True):
        """The spatial unary of the region solved (the volume, or a box of it): (term on a
        solve level's grid, term at full resolution for a banded solve's band voxels), or
        (None, None) when no term is on."""
        if geodesic_weight <= 0 and region_prior is None and region_previous is None:
            return None, None
        coarse = coarse_factors(region_shape, spacing, coarse_voxels)
        seen = {}  # the coarse level's pieces, for the band voxels

        def spatial(level_arr, level_spacing, level_seeds):
            factors = level_factors(region_shape, level_arr.shape, coarse)
            out = np.zeros(level_arr.shape + (k,), np.float32)
            if geodesic_weight > 0:
                key = ("geodesic_graph", level_arr.shape, tuple(float(s) for s in level_spacing), sig)
                graph = cache.get(key) if keep_graph else None  # a box's graph is not kept: each update's box is another
                if graph is None:
                    graph = geodesic_graph(level_arr, level_spacing, sig)
                    if keep_graph:
                        cache[key] = graph
                d = geodesic_seed_distances(level_arr, level_spacing, level_seeds, k, sig, graph=graph)
                d -= d.min(axis=-1, keepdims=True)
                np.nan_to_num(d, copy=False, nan=MAX_UNARY, posinf=MAX_UNARY)
                geodesic = np.minimum(geodesic_weight * d, MAX_UNARY).astype(np.float32)
                out += geodesic
                seen["geodesic"] = geodesic.reshape(-1, k)
            if region_prior is not None:
                out += prior_unary(region_prior, factors, prior_weight)
            if region_previous is not None:
                held = stability_weight(region_previous, region_raw, objects, factors, level_spacing, stability=stability, stability_mm=stability_mm)
                if held is not None:
                    out += stability_cost(*held, k)
                    guided["previous"] = True
                    seen["weight"] = held[0].reshape(-1)
            seen["shape"], seen["factors"] = level_arr.shape, factors
            return out

        def fine(index):
            """Band voxels (flat indices into the region): the coarse geodesic and stability
            weight of their block, the prior and the previous label of the voxel itself."""
            z, y, x = np.unravel_index(index, region_shape)
            f = seen["factors"]
            block = np.ravel_multi_index((z // f[0], y // f[1], x // f[2]), seen["shape"])
            out = np.zeros((index.size, k), np.float32)
            if "geodesic" in seen:
                out += seen["geodesic"][block]
            if region_prior is not None:
                out += prior_unary(region_prior.reshape(-1, k)[index], (1, 1, 1), prior_weight)
            if "weight" in seen:
                out += stability_cost(seen["weight"][block], region_previous.labels.reshape(-1)[index], k)
            return out

        return spatial, fine

    solve = dict(
        weight=lam, sigma=sig, solver=solver, mode=mode, coarse_voxels=coarse_voxels, band_width=band_width,
        mf_iterations=mf_iterations, max_memory_gb=max_memory_gb, progress=progress,
    )
    # A large volume's update is local: outside the box around the seeds that changed
    # (LOCAL_MARGIN * stability_mm beyond them, where the stability term has reached 95 % of its
    # weight) the previous labels are held. With the previous uncertainty at hand only the box
    # (and one layer of held voxels around it) is solved; without it, the whole volume with the
    # same held voxels: the reference the box must match.
    box, unchanged = None, False
    if use_previous and 0 < local_update_voxels < n_voxels and previous.fits(raw_seeds, objects):
        box = local_region(previous, raw_seeds, spacing, LOCAL_MARGIN * stability_mm)
        unchanged = box is None  # no seed changed: every voxel is held
        if box is not None and np.prod([b.stop - b.start for b in box]) > n_voxels // 2:
            box = None  # most of the volume: solve it all
    crop = box is not None and previous.uncertainty is not None and not keep_probabilities
    if unchanged:
        labels = previous.labels.astype(np.uint8)
        marg = np.eye(k, dtype=np.float32)[labels] if keep_probabilities else None  # the held voxels are certain
        unc_arr = previous.uncertainty.copy() if previous.uncertainty is not None else np.zeros(labels.shape, np.float32)
        info = {"mode": "unchanged", "factors": [1, 1, 1], "solved_voxels": 0, "seconds": 0.0}
    elif not crop:
        held = index if box is None else hold_outside(index, previous.labels, box)
        spatial, fine = make_spatial(arr.shape, prior_arr, previous if use_previous else None, raw_seeds)
        labels, marg, info = solve_potts_grid(arr, spacing, unary, k, seeds=held, spatial_unary=spatial, fine_spatial_unary=fine, **solve)
        unc_arr = None if marg is None else entropy_by_slab(marg)
        if box is not None and unc_arr is not None and previous.uncertainty is not None:
            # The held voxels are seeds of this solve (no doubt); the user's doubt there is the previous one.
            inside = unc_arr[box].copy()
            unc_arr[...] = previous.uncertainty
            unc_arr[box] = inside
    else:
        outer = grow_box(box, 1, arr.shape)
        inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
        sub = np.ascontiguousarray(arr[outer])
        spatial, fine = make_spatial(sub.shape, None if prior_arr is None else prior_arr[outer], previous.crop(outer), raw_seeds[outer], keep_graph=False)
        sub_labels, sub_marg, info = solve_potts_grid(
            sub, spacing, unary, k, seeds=hold_outside(index[outer], previous.labels[outer], inner), spatial_unary=spatial,
            fine_spatial_unary=fine, **solve,
        )
        labels = previous.labels.copy()
        labels[box] = sub_labels[inner]
        unc_arr = previous.uncertainty.copy()
        if sub_marg is not None:
            unc_arr[box] = entropy_by_slab(np.ascontiguousarray(sub_marg[inner]))
        marg = None
    if box is not None:
        info["local_box_zyx"] = [[b.start, b.stop] for b in box]
    dropped = keep_seed_connected(labels, index, marg) if seed_connected else 0
    label_img = sitk.GetImageFromArray(labels.astype(np.uint8))
    label_img.CopyInformation(image)
    unc = None if unc_arr is None else uncertainty_image(unc_arr, image)
    prob_img = probabilities_image(marg, image) if marg is not None and keep_probabilities else None
    marg = None
    colors = distinct_colors(len(objects))
    classes = [ClassInfo(i + 1, f"Seed label {v}", colors[i]) for i, v in enumerate(objects)]
    params: Dict = dict(
        background_label=background_label, lam=lam, sigma=sigma, intensity_model=intensity_model, bins=bins,
        geodesic_weight=geodesic_weight, seed_connected=seed_connected, solver=solver, mode=mode, coarse_voxels=coarse_voxels,
        band_width=band_width, mf_iterations=mf_iterations, max_memory_gb=max_memory_gb, prior_weight=prior_weight,
        stability=stability, stability_mm=stability_mm, local_update_voxels=local_update_voxels,
    )
    extra = {
        "seed_label_map": {str(v): i + 1 for i, v in enumerate(objects)},
        "background_seed_value": background,
        "sigma_used": sig,
        "intensity_model": model,
        "dropped_unseeded_voxels": dropped,
        "prior_used": guided["prior"],
        "previous_cut_used": guided["previous"],
        "solve": info,
    }
    return MethodOutput(labels=label_img, classes=classes, probabilities=prob_img, uncertainty=unc, parameters=params, extra=extra)


def run(request: MethodRequest) -> MethodOutput:
    """Registry adapter: seeded graph cut of channel 0 with ``request.seeds``."""
    return seeded_graph_cut(
        request.channels[0], request.seeds, prior=request.prior, previous=request.previous, progress=request.progress,
        cache=request.cache, keep_probabilities=request.keep_probabilities, **request.params,
    )
