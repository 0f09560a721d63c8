"""Radiomic features of a region: shape, first order and grey-level co-occurrence (GLCM).

Names and definitions follow pyradiomics (``original_shape_MeshVolume``,
``original_firstorder_Mean``, ``original_glcm_Contrast``, ...), so that a table from MedSegAI
can sit beside one from pyradiomics or Slicer's Radiomics extension. The implementation is
numpy/SimpleITK only (no compiled extension), and the tests check it against pyradiomics' own
baseline values for three real MR cases.

Notes
-----
Grey-level discretisation (first-order entropy/uniformity and GLCM) uses a fixed bin width W
as pyradiomics does: bin edges at multiples of W starting at the largest multiple of W not
above the region's minimum, bins half-open, levels numbered from 1. First-order energy uses an
intensity shift c (pyradiomics' ``voxelArrayShift``, default 0): Energy = sum (x + c)².

Shape features come from the region mask on the image's voxel grid: ``VoxelVolume`` counts
voxels; ``MeshVolume`` and ``SurfaceArea`` come from a marching-cubes surface
(:mod:`MedSegAILib.measure.mesh`); axis lengths are 4 sqrt(lambda) of the covariance
eigenvalues of the voxel-centre coordinates (mm); maximum diameters are the largest distances
between vertices of that surface, in 3D and within one slice, column or row of the grid.

GLCM: co-occurrences at distance 1 along the 13 directions of the 3D grid, made symmetric,
normalised per direction; each feature is computed per direction and averaged over directions
that have at least one pair (pyradiomics' default, no distance weighting).

References
----------
van Griethuysen JJM, et al. Computational Radiomics System to Decode the Radiographic
Phenotype. Cancer Research 2017;77(21):e104-e107 (pyradiomics).
Zwanenburg A, et al. The Image Biomarker Standardization Initiative. Radiology 2020;295:328-338.
Haralick RM, Shanmugam K, Dinstein I. Textural features for image classification. IEEE SMC 1973.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from .mesh import maximum_diameters, mesh_area_volume

FEATURE_CLASSES = ("shape", "firstorder", "glcm")

#: Instances with fewer voxels than this get only first-order and voxel-count shape features
#: from :func:`add_instance_radiomics`: a mesh, axis lengths or a co-occurrence matrix of a
#: handful of voxels describe the voxel grid more than the object.
MIN_VOXELS_FOR_TEXTURE = 27

#: Instances with more voxels than this (a tissue class spanning a full-size CT) get no GLCM
#: and no mesh or diameter features from :func:`add_instance_radiomics`, and the run says so:
#: on a 109-million-voxel CT those took 70 s and 7 GB for two tissue classes, for numbers
#: (the sphericity of "all soft tissue") that describe nothing. A liver at 0.7 mm is 4.5 M voxels.
MAX_VOXELS_FOR_TEXTURE = 20_000_000

_EPS = np.spacing(1)


# --------------------------------------------------------------------------------------------
# Discretisation


def bin_edges(values: np.ndarray, bin_width: float) -> np.ndarray:
    """Fixed-bin-width edges (pyradiomics convention): multiples of ``bin_width`` covering the values."""
    lo = values.min()
    low = lo - (lo % bin_width)
    edges = np.arange(low, values.max() + 2 * bin_width, bin_width)
    if len(edges) == 1:  # flat region exactly on an edge
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


def discretize(values: np.ndarray, bin_width: float) -> np.ndarray:
    """Grey levels 1..N of ``values`` with a fixed bin width: ``floor((v - low) / width) + 1``
    with ``low`` the largest multiple of the width at or below the minimum (the bins of
    :func:`bin_edges`), computed without listing the edges, so an intensity range of 1e12 costs
    nothing extra (``np.arange`` of its edges would ask for terabytes)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo = float(values.min())
    low = lo - (lo % bin_width)
    levels = np.floor((values - low) / bin_width).astype(np.int64) + 1
    if float(values.max()) == low:  # a flat region exactly on an edge: one level (as bin_edges)
        levels[:] = 1
    return levels


# --------------------------------------------------------------------------------------------
# First order


def firstorder_features(values: np.ndarray, *, bin_width: float = 25.0, voxel_volume_mm3: float = 1.0, voxel_array_shift: float = 0.0) -> Dict[str, float]:
    """First-order statistics of the intensities ``values`` (1D) of a region.

    Returns pyradiomics' first-order features without prefix (``Mean``, ``Energy``, ...).
    Variance, skewness and kurtosis are population moments; kurtosis is not excess kurtosis.
    """
    x = np.asarray(values, dtype=float).ravel()
    n = x.size
    mean = x.mean()
    d = x - mean
    m2 = np.mean(d**2)
    m3 = np.mean(d**3)
    m4 = np.mean(d**4)
    p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90])
    robust = x[(x >= p10) & (x <= p90)]
    _, counts = np.unique(discretize(x, bin_width), return_counts=True)  # no array as long as the range
    p = counts / n
    energy = float(np.sum((x + voxel_array_shift) ** 2))
    return {
        "Energy": energy,
        "TotalEnergy": energy * voxel_volume_mm3,
        "Entropy": float(-np.sum(p * np.log2(p + _EPS))),
        "Minimum": float(x.min()),
        "10Percentile": float(p10),
        "90Percentile": float(p90),
        "Maximum": float(x.max()),
        "Mean": float(mean),
        "Median": float(p50),
        "InterquartileRange": float(p75 - p25),
        "Range": float(x.max() - x.min()),
        "MeanAbsoluteDeviation": float(np.mean(np.abs(d))),
        # NaN when no value lies in [P10, P90] (two distinct values), as pyradiomics.
        "RobustMeanAbsoluteDeviation": float(np.mean(np.abs(robust - robust.mean()))) if robust.size else float("nan"),
        "RootMeanSquared": float(math.sqrt(energy / n)),
        "StandardDeviation": float(math.sqrt(m2)),
        "Skewness": float(0.0 if m2 == 0 else m3 / m2**1.5),
        "Kurtosis": float(0.0 if m2 == 0 else m4 / m2**2),
        "Variance": float(m2),
        "Uniformity": float(np.sum(p**2)),
    }


# --------------------------------------------------------------------------------------------
# Shape


def coordinate_covariance(mask: np.ndarray, spacing_zyx: Sequence[float]) -> Tuple[int, np.ndarray]:
    """Voxel count and (population) covariance (3, 3) of the voxel centres' coordinates in mm
    (z, y, x), from sums gathered one plane at a time: no (N, 3) coordinate list, which for a
    tissue class of a full-size CT would take gigabytes."""
    sp = np.asarray(spacing_zyx, dtype=np.float64)
    # Coordinates from the array's centre: the sums stay small and E[xx] - mean mean keeps its digits.
    centre = (np.asarray(mask.shape, dtype=np.float64) - 1) / 2 * sp
    n = 0
    first = np.zeros(3)
    second = np.zeros((3, 3))
    for z in range(mask.shape[0]):
        ys, xs = np.nonzero(mask[z])
        if ys.size == 0:
            continue
        c = np.empty((ys.size, 3))
        c[:, 0] = z * sp[0] - centre[0]
        c[:, 1] = ys * sp[1] - centre[1]
        c[:, 2] = xs * sp[2] - centre[2]
        n += ys.size
        first += c.sum(axis=0)
        second += c.T @ c
    if n == 0:
        return 0, np.zeros((3, 3))
    mean = first / n
    return n, second / n - np.outer(mean, mean)


def shape_features(mask: np.ndarray, spacing_zyx: Sequence[float], *, mesh: bool = True) -> Dict[str, float]:
    """3D shape features of a binary region (z, y, x) on a grid with ``spacing_zyx`` (mm).

    ``mesh=False`` skips the marching-cubes and diameter features (for tiny regions).
    """
    m = np.asarray(mask, dtype=bool)
    sp = np.asarray(spacing_zyx, dtype=float)
    n, covariance = coordinate_covariance(m, sp)
    out: Dict[str, float] = {"VoxelVolume": float(n * np.prod(sp))}
    ev = np.sort(np.linalg.eigvalsh(covariance))
    ev = np.maximum(ev, 0.0)  # rounding can leave a flat region's zero slightly negative
    major, minor, least = ev[2], ev[1], ev[0]
    out["MajorAxisLength"] = float(4 * math.sqrt(major))
    out["MinorAxisLength"] = float(4 * math.sqrt(minor))
    out["LeastAxisLength"] = float(4 * math.sqrt(least))
    out["Elongation"] = float(math.sqrt(minor / major)) if major > 0 else float("nan")
    out["Flatness"] = float(math.sqrt(least / major)) if major > 0 else float("nan")
    if not mesh:
        return out
    area, volume = mesh_area_volume(m, sp)
    out["MeshVolume"] = volume
    out["SurfaceArea"] = area
    out["SurfaceVolumeRatio"] = area / volume if volume > 0 else float("nan")
    out["Sphericity"] = (36 * math.pi * volume**2) ** (1 / 3) / area if area > 0 else float("nan")
    out.update(maximum_diameters(m, sp))
    return out


# --------------------------------------------------------------------------------------------
# GLCM

# One of each opposite pair of the 26 neighbour offsets (z, y, x): the 13 directions.
_DIRECTIONS = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]


def glcm_matrices(levels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Symmetric, normalised co-occurrence matrices (Ng, Ng, directions) at distance 1.

    ``levels`` holds grey levels 1..Ng inside ``mask``. Rows/columns are the grey levels present
    in the region (ascending); directions without any pair are dropped.
    """
    present, index = np.unique(levels[mask], return_inverse=True)  # ranks, not a table as long as the range
    g = np.full(levels.shape, -1, dtype=np.int64)
    g[mask] = index.reshape(-1)
    ng = present.size
    mats = []
    shape = g.shape
    for dz, dy, dx in _DIRECTIONS:
        src = tuple(slice(max(0, -d), s - max(0, d)) for d, s in zip((dz, dy, dx), shape))
        dst = tuple(slice(max(0, d), s - max(0, -d)) for d, s in zip((dz, dy, dx), shape))
        a, b = g[src], g[dst]
        ok = (a >= 0) & (b >= 0)
        p = np.bincount(a[ok] * ng + b[ok], minlength=ng * ng).reshape(ng, ng).astype(float)
        p += p.T
        if p.sum() > 0:
            mats.append(p / p.sum())
    if not mats:
        return np.zeros((ng, ng, 0))
    return np.stack(mats, axis=-1)


def glcm_features(levels: np.ndarray, mask: np.ndarray) -> Dict[str, float]:
    """GLCM features (pyradiomics names, no prefix) of a discretised region; see module Notes."""
    gl = np.unique(levels[mask]).astype(float)
    P = glcm_matrices(levels, mask)
    n_gl = int(gl.max())
    if P.shape[-1] == 0:
        return {}
    eps = _EPS
    i = gl[:, None, None]
    j = gl[None, :, None]
    px = P.sum(1, keepdims=True)  # (Ng, 1, A)
    py = P.sum(0, keepdims=True)  # (1, Ng, A)
    ux = (i * P).sum((0, 1))
    uy = (j * P).sum((0, 1))
    # p(x+y) and p(|x-y|) over the sums and differences that occur (pyradiomics lists every
    # value from 2 to 2 Ng; the absent ones hold 0 and add nothing to any feature, and a list
    # as long as the grey-level range would not fit for a range of 1e12).
    k_sum, s_idx = np.unique((gl[:, None] + gl[None, :]).ravel(), return_inverse=True)
    k_diff, d_idx = np.unique(np.abs(gl[:, None] - gl[None, :]).ravel(), return_inverse=True)
    n_a = P.shape[-1]
    p_sum = np.zeros((k_sum.size, n_a))
    p_diff = np.zeros((k_diff.size, n_a))
    np.add.at(p_sum, s_idx.ravel(), P.reshape(-1, n_a))
    np.add.at(p_diff, d_idx.ravel(), P.reshape(-1, n_a))
    hxy = -(P * np.log2(P + eps)).sum((0, 1))
    hx = -(px * np.log2(px + eps)).sum((0, 1))
    hy = -(py * np.log2(py + eps)).sum((0, 1))
    hxy1 = -(P * np.log2(px * py + eps)).sum((0, 1))
    hxy2 = -((px * py) * np.log2(px * py + eps)).sum((0, 1))
    sigx = np.sqrt((P * (i - ux) ** 2).sum((0, 1)))
    sigy = np.sqrt((P * (j - uy) ** 2).sum((0, 1)))
    corm = (P * (i - ux) * (j - uy)).sum((0, 1))
    corr = np.where(sigx * sigy == 0, 1.0, corm / (sigx * sigy + eps))
    div = np.fmax(hx, hy)
    imc1 = np.where(div != 0, (hxy - hxy1) / np.where(div != 0, div, 1), 0.0)
    with np.errstate(invalid="ignore"):
        imc2 = np.where(hxy2 == hxy, 0.0, np.sqrt(np.abs(1 - np.exp(-2 * (hxy2 - hxy)))))
    diff_avg = (k_diff[:, None] * p_diff).sum(0)
    f = {
        "Autocorrelation": (P * (i * j)).sum((0, 1)),
        "JointAverage": ux,
        "ClusterProminence": (P * ((i + j) - ux - uy) ** 4).sum((0, 1)),
        "ClusterShade": (P * ((i + j) - ux - uy) ** 3).sum((0, 1)),
        "ClusterTendency": (P * ((i + j) - ux - uy) ** 2).sum((0, 1)),
        "Contrast": (P * (i - j) ** 2).sum((0, 1)),
        "Correlation": corr,
        "DifferenceAverage": diff_avg,
        "DifferenceEntropy": -(p_diff * np.log2(p_diff + eps)).sum(0),
        "DifferenceVariance": (p_diff * (k_diff[:, None] - diff_avg) ** 2).sum(0),
        "JointEnergy": (P**2).sum((0, 1)),
        "JointEntropy": hxy,
        "Imc1": imc1,
        "Imc2": imc2,
        "Idm": (p_diff / (1 + k_diff[:, None] ** 2)).sum(0),
        "Idmn": (p_diff / (1 + k_diff[:, None] ** 2 / n_gl**2)).sum(0),
        "Id": (p_diff / (1 + k_diff[:, None])).sum(0),
        "Idn": (p_diff / (1 + k_diff[:, None] / n_gl)).sum(0),
        "InverseVariance": (p_diff[k_diff > 0] / k_diff[k_diff > 0, None] ** 2).sum(0),
        "MaximumProbability": P.max((0, 1)),
        "SumAverage": (k_sum[:, None] * p_sum).sum(0),
        "SumEntropy": -(p_sum * np.log2(p_sum + eps)).sum(0),
        "SumSquares": (P * (i - ux) ** 2).sum((0, 1)),
    }
    out = {k: float(np.mean(v)) for k, v in f.items()}
    # Maximal correlation coefficient: sqrt of the second largest eigenvalue of
    # Q(i, j) = sum_k p(i, k) p(j, k) / (px(i) py(k)), per direction.
    if P.shape[0] < 2:
        out["MCC"] = 1.0
    else:
        mcc = []
        for a in range(n_a):
            pa = P[:, :, a]
            q = (pa / (px[:, 0, a][:, None] * py[0, :, a][None, :] + eps)) @ pa.T
            ev = np.sort(np.linalg.eigvals(q))
            mcc.append(np.sqrt(ev[-2] + 0j).real)
        out["MCC"] = float(np.mean(mcc))
    return out


# --------------------------------------------------------------------------------------------
# Images


def only_label(lab: np.ndarray) -> int:
    """The one non-zero label of a labelmap array; InputError when there is none or several."""
    present = [int(v) for v in np.unique(lab) if v != 0]
    if not present:
        raise InputError(
            "the labelmap has no labelled voxels inside the image "
            "(do the image and the labelmap come from the same scan?)"
        )
    if len(present) != 1:
        raise InputError(f"the labelmap holds labels {present[:10]}; choose one with --label")
    return present[0]


def _region_mask(image: sitk.Image, mask_or_labels: sitk.Image, label: Optional[int]) -> Tuple[np.ndarray, np.ndarray, Tuple[slice, ...]]:
    from ..io.images import same_grid

    if image.GetDimension() != 3 or mask_or_labels.GetDimension() != 3:
        raise InputError("radiomics needs a 3D image and a 3D labelmap")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("radiomics needs a single-component image")
    if not same_grid(image, mask_or_labels):
        # e.g. a labelmap drawn on a resampled copy: nearest neighbour keeps labels intact
        mask_or_labels = sitk.Resample(mask_or_labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask_or_labels.GetPixelID())
    lab = sitk.GetArrayViewFromImage(mask_or_labels)
    if label is None:
        label = only_label(lab)
    m = lab == label
    if not m.any():
        raise InputError(f"label {label} is not present in the labelmap (on the image's grid)")
    box = ndimage.find_objects(m.astype(np.uint8))[0]
    return sitk.GetArrayViewFromImage(image), m, box


def compute_radiomics(
    image: sitk.Image,
    mask_or_labels: sitk.Image,
    label: Optional[int] = 1,
    bin_width: float = 25.0,
    *,
    features: Iterable[str] = FEATURE_CLASSES,
    voxel_array_shift: float = 0.0,
    prefix: str = "original_",
) -> Dict[str, float]:
    """Radiomic features of one labelled region, named as pyradiomics names them.

    Parameters
    ----------
    image : sitk.Image
        3D scalar image (intensities, e.g. MR signal or HU).
    mask_or_labels : sitk.Image
        Binary mask or labelmap; resampled onto ``image``'s grid (nearest neighbour) if needed.
    label : int or None
        Region's label value; None takes the only non-zero label present.
    bin_width : float
        Fixed bin width for grey-level discretisation (pyradiomics' ``binWidth``), in image units.
    features : iterable of {"shape", "firstorder", "glcm"}
    voxel_array_shift : float
        Intensity shift c for Energy, TotalEnergy and RootMeanSquared (pyradiomics'
        ``voxelArrayShift``; its default 0; its test baselines use 2000).
    prefix : str
        Prepended to every name (``original_`` as pyradiomics for the unfiltered image).

    Returns
    -------
    dict, e.g. ``{"original_shape_MeshVolume": 1234.5, "original_firstorder_Mean": 88.1, ...}``
    (volumes mm³, areas mm², lengths mm).

    Raises
    ------
    InputError
        Not 3D, the label absent, an unknown feature class, a non-positive bin width.

    Examples
    --------
    >>> img = sitk.GetImageFromArray(np.arange(1000, dtype=np.float32).reshape(10, 10, 10))
    >>> lab = sitk.Image(img.GetSize(), sitk.sitkUInt8); lab[2:8, 2:8, 2:8] = 1
    >>> round(compute_radiomics(img, lab)["original_shape_VoxelVolume"])
    216
    """
    features = tuple(features)
    unknown = set(features) - set(FEATURE_CLASSES)
    if unknown:
        raise InputError(f"unknown feature class(es) {sorted(unknown)}; choose from {', '.join(FEATURE_CLASSES)}")
    if not bin_width > 0:
        raise InputError(f"bin_width must be > 0, got {bin_width}")
    arr, m, box = _region_mask(image, mask_or_labels, label)
    m = m[box]
    values = arr[box].astype(float)
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    return region_features(values, m, spacing_zyx, bin_width=bin_width, features=features, voxel_array_shift=voxel_array_shift, prefix=prefix)


def region_features(
    values: np.ndarray,
    mask: np.ndarray,
    spacing_zyx: Sequence[float],
    *,
    bin_width: float = 25.0,
    features: Iterable[str] = FEATURE_CLASSES,
    voxel_array_shift: float = 0.0,
    prefix: str = "original_",
    texture: bool = True,
) -> Dict[str, float]:
    """Features of a region given as arrays (z, y, x): intensities ``values`` and boolean ``mask``.

    ``texture=False`` skips GLCM and the mesh/diameter shape features.
    """
    out: Dict[str, float] = {}
    voxel_mm3 = float(np.prod(spacing_zyx))
    if "shape" in features:
        for k, v in shape_features(mask, spacing_zyx, mesh=texture).items():
            out[f"{prefix}shape_{k}"] = v
    inside = np.asarray(values[mask], dtype=np.float64) if ("firstorder" in features or ("glcm" in features and texture)) else None
    if "firstorder" in features:
        for k, v in firstorder_features(inside, bin_width=bin_width, voxel_volume_mm3=voxel_mm3, voxel_array_shift=voxel_array_shift).items():
            out[f"{prefix}firstorder_{k}"] = v
    if "glcm" in features and texture:
        levels = np.zeros(mask.shape, dtype=np.int64)
        levels[mask] = discretize(inside, bin_width)
        for k, v in glcm_features(levels, mask).items():
            out[f"{prefix}glcm_{k}"] = v
    return out


def add_instance_radiomics(
    result,
    image: sitk.Image,
    *,
    features: Iterable[str] = FEATURE_CLASSES,
    bin_width: float = 25.0,
    min_voxels_for_texture: int = MIN_VOXELS_FOR_TEXTURE,
    max_voxels_for_texture: int = MAX_VOXELS_FOR_TEXTURE,
) -> None:
    """Fill each instance's ``measurements`` with its radiomic features (in place).

    Parameters
    ----------
    result : SegmentationResult
        Its ``instances`` map and ``instance_table``; ``instances.csv`` then gains one column
        per feature.
    image : sitk.Image
        The intensity image the result was computed from (channel 0), on the result's grid.
    features : iterable of {"shape", "firstorder", "glcm"}
    bin_width : float
        Grey-level bin width (image units) for entropy, uniformity and GLCM.
    min_voxels_for_texture : int
        Instances with fewer voxels get no GLCM and no mesh/diameter features (their columns
        stay empty): on a few voxels they measure the grid, not the object.
    max_voxels_for_texture : int
        Nor do instances with more voxels (:data:`MAX_VOXELS_FOR_TEXTURE`); the result's
        provenance warnings name them.

    Notes
    -----
    Each instance is cropped to its bounding box (from the instance table) before measuring,
    so the cost grows with the instances' size, not the image's: about 5 ms per small instance.
    Column names are pyradiomics' without the ``original_`` prefix (``shape_MeshVolume``).
    """
    from ..io.images import same_grid

    features = tuple(features)
    if not same_grid(image, result.instances):
        raise InputError("the image is not on the segmentation's voxel grid")
    arr = sitk.GetArrayViewFromImage(image)
    inst = sitk.GetArrayViewFromImage(result.instances)
    spacing_zyx = tuple(float(s) for s in reversed(image.GetSpacing()))
    too_large = []
    for rec in result.instance_table:
        x0, y0, z0 = rec.bbox_start_xyz
        sx, sy, sz = rec.bbox_size_xyz
        box = (slice(z0, z0 + sz), slice(y0, y0 + sy), slice(x0, x0 + sx))
        m = inst[box] == rec.instance_id
        if not m.any():
            continue
        n = int(rec.voxel_count)
        if n > max_voxels_for_texture:
            too_large.append(rec.segment_name or str(rec.instance_id))
        feats = region_features(
            arr[box],  # a view: the region's values are taken (as float64) inside the mask only
            m,
            spacing_zyx,
            bin_width=bin_width,
            features=features,
            prefix="",
            texture=min_voxels_for_texture <= n <= max_voxels_for_texture,
        )
        # 10 significant digits: enough for any feature, short in the CSV
        rec.measurements.update({k: (float(f"{v:.10g}") if math.isfinite(v) else None) for k, v in feats.items()})
    if too_large:
        shown = ", ".join(too_large[:3]) + (f" and {len(too_large) - 3} more" if len(too_large) > 3 else "")
        result.provenance.extra.setdefault("warnings", []).append(
            f"radiomics: no texture (GLCM), mesh or diameter features for {shown}: above {max_voxels_for_texture:,} voxels "
            "they would take minutes and gigabytes; first-order and axis features are given"
        )
