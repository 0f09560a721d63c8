"""Agreement between a predicted and a reference labelmap, per class, in physical units.

Overlap: Dice, IoU (Jaccard), sensitivity, precision, volumes (mm³). Surface: the 95th
percentile Hausdorff distance (HD95), the average symmetric surface distance (ASSD) and the
normalised surface Dice (NSD) at a tolerance in mm. Instance level: panoptic quality and
lesion-wise detection (:mod:`MedSegAILib.measure.panoptic`).

Notes
-----
The surface of a mask is its set of boundary voxels: mask voxels with at least one of their six
face neighbours outside the mask (``mask XOR erode(mask)``, 6-connected cross, with the outside
of the image counted as background). Distances are Euclidean, between voxel centres, in mm:
the voxel index differences are scaled by the spacing. A direction matrix is a rotation, which
preserves distances, so distances in index space scaled by spacing equal distances in patient
space for any orientation; anisotropic spacing is taken into account exactly. For each boundary
voxel of one mask, its distance to the nearest boundary voxel of the other is read from a
Euclidean distance transform (``scipy.ndimage.distance_transform_edt`` with ``sampling`` =
spacing). This is the convention of MONAI's ``compute_hausdorff_distance`` and
``compute_average_surface_distance`` with ``spacing`` given and ``use_subvoxels=False``:

- HD95 = max(P95(d(S_pred -> S_ref)), P95(d(S_ref -> S_pred))), percentiles with linear
  interpolation (numpy's default).
- ASSD = (sum d(S_pred -> S_ref) + sum d(S_ref -> S_pred)) / (|S_pred| + |S_ref|).
- NSD(tau) = (|{a in S_pred: d(a, S_ref) <= tau}| + |{b in S_ref: d(b, S_pred) <= tau}|)
  / (|S_pred| + |S_ref|), counting boundary voxels (Nikolov et al. 2021 weight by surface
  element area instead; on voxel boundaries the two differ by a few percent at most).

Empty classes. When both masks are empty the class is not scored unless asked for (``labels``),
and then every overlap and surface score is perfect (1, or 0 mm). When exactly one side is
empty: Dice, IoU and NSD are 0, HD95 and ASSD are infinite (``inf`` in Python, ``null`` in
JSON, with ``pred_empty``/``ref_empty`` set), sensitivity is 0 (empty prediction) or undefined
(``None``, empty reference), precision likewise. Class means skip undefined values and infinite
distances; the mean block counts how many were skipped.

References
----------
Taha AA, Hanbury A. Metrics for evaluating 3D medical image segmentation: analysis, selection,
and tool. BMC Med Imaging 2015;15:29.
Nikolov S, et al. Clinically applicable segmentation of head and neck anatomy for radiotherapy.
J Med Internet Res 2021;23(7):e26151 (surface Dice).
Maier-Hein L, Reinke A, et al. Metrics reloaded. Nat Methods 2024;21:195-212.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..core.errors import InputError
from .panoptic import _merge_boxes, label_boxes, panoptic_labelmaps

_CROSS = ndimage.generate_binary_structure(3, 1)

CLASS_KEYS = (
    "dice",
    "iou",
    "sensitivity",
    "precision",
    "volume_pred_mm3",
    "volume_ref_mm3",
    "volume_diff_mm3",
    "volume_diff_percent",
    "hd95_mm",
    "assd_mm",
    "nsd",
)


# --------------------------------------------------------------------------------------------
# Masks (numpy, z, y, x)


def overlap_metrics(pred: np.ndarray, ref: np.ndarray, voxel_volume_mm3: float = 1.0) -> Dict[str, Optional[float]]:
    """Dice, IoU, sensitivity, precision and volumes of two binary masks (same shape).

    Returns a dict with ``dice``, ``iou``, ``sensitivity`` (TP / |ref|), ``precision``
    (TP / |pred|), ``volume_pred_mm3``, ``volume_ref_mm3``, ``volume_diff_mm3`` (pred - ref) and
    ``volume_diff_percent`` (100 (pred - ref) / ref). Undefined ratios are None; both masks
    empty gives Dice = IoU = 1.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    n_p = int(np.count_nonzero(pred))
    n_r = int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref))
    union = n_p + n_r - tp
    v_p, v_r = n_p * voxel_volume_mm3, n_r * voxel_volume_mm3
    return {
        "dice": 1.0 if n_p + n_r == 0 else 2.0 * tp / (n_p + n_r),
        "iou": 1.0 if union == 0 else tp / union,
        "sensitivity": None if n_r == 0 else tp / n_r,
        "precision": None if n_p == 0 else tp / n_p,
        "voxels_pred": n_p,
        "voxels_ref": n_r,
        "volume_pred_mm3": v_p,
        "volume_ref_mm3": v_r,
        "volume_diff_mm3": v_p - v_r,
        "volume_diff_percent": None if n_r == 0 else 100.0 * (v_p - v_r) / v_r,
    }


def mask_surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a binary mask: voxels with a 6-neighbour outside (image border included)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def _bbox(mask: np.ndarray, margin: int = 1) -> Tuple[slice, ...]:
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != d))) for d in range(mask.ndim)]
    return tuple(slice(max(int(i[0]) - margin, 0), min(int(i[-1]) + margin + 1, mask.shape[d])) for d, i in enumerate(idx))


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float]) -> Tuple[np.ndarray, np.ndarray]:
    """Directed boundary distances (mm) between two non-empty binary masks.

    Parameters
    ----------
    pred, ref : ndarray of bool (z, y, x)
    spacing_zyx : three floats, voxel size in mm along (z, y, x)

    Returns
    -------
    d_pred_to_ref : distance from each boundary voxel of ``pred`` to the nearest of ``ref`` (mm)
    d_ref_to_pred : the converse
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    # Crop to the union's bounding box plus one voxel: every mask voxel keeps its six
    # neighbours (or the image border, which erosion treats as outside, as on the full
    # array), and the nearest boundary voxel of either mask lies inside the box, so the
    # distance transform on the crop is exact.
    box = _bbox(pred | ref)
    sp = mask_surface(pred[box])
    sr = mask_surface(ref[box])
    sampling = [float(s) for s in spacing_zyx]
    dt_ref = ndimage.distance_transform_edt(~sr, sampling=sampling)
    dt_pred = ndimage.distance_transform_edt(~sp, sampling=sampling)
    return dt_ref[sp], dt_pred[sr]


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing_zyx: Sequence[float], *, tolerance_mm: float = 1.0
) -> Dict[str, float]:
    """HD95, ASSD (mm) and NSD at ``tolerance_mm`` of two binary masks (see module Notes).

    Returns a dict with ``hd95_mm``, ``assd_mm``, ``hd_mm`` (maximum), ``nsd``, ``pred_empty``,
    ``ref_empty``. One side empty: distances ``inf`` and NSD 0; both empty: 0 mm and NSD 1.
    """
    if not 0 <= tolerance_mm < float("inf"):  # NaN fails too: NSD would be 0 for identical masks
        raise ValueError(f"tolerance_mm must be a finite distance >= 0, got {tolerance_mm}")
    p_any, r_any = bool(np.any(pred)), bool(np.any(ref))
    out = {"pred_empty": not p_any, "ref_empty": not r_any}
    if not p_any and not r_any:
        out.update(hd95_mm=0.0, assd_mm=0.0, hd_mm=0.0, nsd=1.0)
        return out
    if not p_any or not r_any:
        out.update(hd95_mm=math.inf, assd_mm=math.inf, hd_mm=math.inf, nsd=0.0)
        return out
    d_pr, d_rp = surface_distances(pred, ref, spacing_zyx)
    n = d_pr.size + d_rp.size
    out.update(
        hd95_mm=float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))),
        assd_mm=float((d_pr.sum() + d_rp.sum()) / n),
        hd_mm=float(max(d_pr.max(), d_rp.max())),
        nsd=float((np.count_nonzero(d_pr <= tolerance_mm) + np.count_nonzero(d_rp <= tolerance_mm)) / n),
    )
    return out


# --------------------------------------------------------------------------------------------
# Images


def read_labelmap(path) -> sitk.Image:
    """Read a labelmap file, or a MedSegAI output folder (its ``labels.nii.gz``).

    Raises InputError for a missing path, a non-image file, a non-3D or multi-component image,
    or non-integer voxel values.
    """
    from ..io.images import read_image

    p = Path(path)
    if p.is_dir():
        if (p / "labels.nii.gz").exists():
            p = p / "labels.nii.gz"
        else:
            raise InputError(f"the folder '{p}' is not a MedSegAI output folder (it has no labels.nii.gz)")
    img = read_image(p)
    return check_labelmap(img, name=f"'{p}'")


def check_labelmap(img: sitk.Image, name: str = "the labelmap") -> sitk.Image:
    """Check that ``img`` is a 3D scalar labelmap with non-negative integer values; return it as UInt32."""
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3:
        raise InputError(f"{name} is {img.GetDimension()}D; a 3D labelmap is needed")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name} has {img.GetNumberOfComponentsPerPixel()} components per voxel; a labelmap has one")
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{name} has non-integer voxel values; a labelmap holds integer labels")
    if arr.size and arr.min() < 0:
        raise InputError(f"{name} has negative labels ({arr.min()}); labels must be >= 0")
    return sitk.Cast(img, sitk.sitkUInt32)


def align_to_reference(pred: sitk.Image, ref: sitk.Image, *, name: str = "the prediction") -> Tuple[sitk.Image, bool]:
    """Bring ``pred`` onto ``ref``'s voxel grid.

    Returns ``(image, resampled)``: ``pred`` itself when the grids match (size, origin, spacing,
    direction within 1e-4), else ``pred`` resampled with nearest neighbour in physical space
    (voxels outside ``pred`` become 0). Raises InputError when the two images do not overlap in
    physical space or are not 3D.
    """
    from ..io.images import same_grid

    if pred.GetDimension() != 3 or ref.GetDimension() != 3:
        raise InputError("both labelmaps must be 3D")
    if same_grid(pred, ref):
        return pred, False
    # Physical overlap check on bounding boxes of voxel centres (any orientation).
    def _corners(img):
        sz = img.GetSize()
        pts = [img.TransformContinuousIndexToPhysicalPoint([c[0] * (sz[0] - 1), c[1] * (sz[1] - 1), c[2] * (sz[2] - 1)])
               for c in np.ndindex(2, 2, 2)]
        pts = np.array(pts)
        return pts.min(0), pts.max(0)

    (lo_p, hi_p), (lo_r, hi_r) = _corners(pred), _corners(ref)
    if np.any(hi_p < lo_r - 1e-3) or np.any(hi_r < lo_p - 1e-3):
        raise InputError(
            f"{name} and the reference do not overlap in physical space "
            "(check that both come from the same scan and keep its origin and direction)"
        )
    out = sitk.Resample(pred, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID())
    return out, True


def evaluate_labelmaps(
    pred: sitk.Image,
    ref: sitk.Image,
    *,
    labels: Optional[Iterable[int]] = None,
    tolerance_mm: float = 1.0,
    pred_instances: Optional[sitk.Image] = None,
    ref_instances: Optional[sitk.Image] = None,
    connectivity: int = 26,
    iou_threshold: float = 0.5,
) -> Dict:
    """Per-class overlap, surface-distance and panoptic agreement of two labelmaps.

    Parameters
    ----------
    pred, ref : sitk.Image
        Semantic labelmaps (integer, 0 = background). ``pred`` is resampled onto ``ref``'s grid
        with nearest neighbour when the grids differ (``"resampled": true`` in the result).
    labels : iterable of int or None
        Classes to score; default every non-zero label present in either image.
    tolerance_mm : float
        Tolerance of the normalised surface Dice, mm.
    pred_instances, ref_instances : sitk.Image or None
        Instance maps for panoptic quality; default the ``connectivity``-connected components
        of each class. They are brought onto ``ref``'s grid like ``pred``.
    connectivity : 6 or 26
    iou_threshold : float
        Instance matching threshold (IoU > threshold), 0.5 as in Kirillov et al. 2019.

    Returns
    -------
    dict (JSON-serialisable once infinities are mapped to null, see :func:`to_json_ready`):
    ``classes`` -> ``"<label>"`` -> :data:`CLASS_KEYS` (plus voxel counts, ``hd_mm``,
    ``pred_empty``, ``ref_empty``, ``pq``, ``sq``, ``rq``); ``mean`` -> the mean of each key over
    classes where it is defined and finite (with ``n_classes`` and ``n_skipped`` per key);
    ``panoptic`` -> ``pq``, ``sq``, ``rq``, ``tp``, ``fp``, ``fn``, ``per_class``, ``detection``;
    ``spacing_mm``, ``tolerance_mm``, ``resampled``.

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> ref = sitk.Image([20, 20, 20], sitk.sitkUInt8); ref[5:15, 5:15, 5:15] = 1
    >>> r = evaluate_labelmaps(ref, ref)
    >>> r["classes"]["1"]["dice"], r["classes"]["1"]["hd95_mm"], r["panoptic"]["pq"]
    (1.0, 0.0, 1.0)
    """
    if tolerance_mm < 0:
        raise InputError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
    if connectivity not in (6, 26):
        raise InputError(f"connectivity must be 6 or 26, got {connectivity}")
    ref = check_labelmap(ref, "the reference")
    pred = check_labelmap(pred, "the prediction")
    pred, resampled = align_to_reference(pred, ref)
    p_arr = sitk.GetArrayViewFromImage(pred)
    r_arr = sitk.GetArrayViewFromImage(ref)
    inst = []
    for img, nm in ((pred_instances, "the predicted instance map"), (ref_instances, "the reference instance map")):
        if img is None:
            inst.append(None)
            continue
        img = check_labelmap(img, nm)
        img, _ = align_to_reference(img, ref, name=nm)
        inst.append(sitk.GetArrayFromImage(img))

    if labels is None:
        present = np.union1d(np.unique(p_arr), np.unique(r_arr))
        labels = [int(v) for v in present if v != 0]
    else:
        labels = sorted({int(v) for v in labels})
        if any(v <= 0 for v in labels):
            raise InputError("labels to score must be positive (0 is background)")

    spacing_zyx = tuple(float(s) for s in reversed(ref.GetSpacing()))
    voxel_mm3 = float(np.prod(ref.GetSpacing()))
    panoptic = panoptic_labelmaps(
        p_arr, r_arr, labels, pred_instances=inst[0], ref_instances=inst[1], connectivity=connectivity, iou_threshold=iou_threshold
    )
    boxes_p = label_boxes(p_arr, labels)
    boxes_r = label_boxes(r_arr, labels)
    classes: Dict[str, Dict] = {}
    for lab in labels:
        # Every score depends only on the union of the two masks: crop to its bounding box plus
        # one voxel (distances and boundaries are unchanged, see surface_distances).
        box = _merge_boxes(boxes_p[lab], boxes_r[lab])
        if box is None:
            box = tuple(slice(0, 0) for _ in p_arr.shape)
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, p_arr.shape))
        pm = p_arr[box] == lab
        rm = r_arr[box] == lab
        m = overlap_metrics(pm, rm, voxel_mm3)
        m.update(surface_metrics(pm, rm, spacing_zyx, tolerance_mm=tolerance_mm))
        pq = panoptic["per_class"][str(lab)]
        m.update(pq=pq["pq"], sq=pq["sq"], rq=pq["rq"])
        classes[str(lab)] = m

    return {
        "classes": classes,
        "mean": _class_means(classes),
        "panoptic": panoptic,
        "labels": labels,
        "spacing_mm": list(ref.GetSpacing()),
        "tolerance_mm": tolerance_mm,
        "resampled": resampled,
        "conventions": {
            "surface": "boundary voxels (6-neighbour), Euclidean distance between voxel centres in mm",
            "hd95": "max of the two directed 95th percentiles",
            "empty": "one side empty: dice/iou/nsd 0, hd95/assd infinite (null in JSON)",
        },
    }


def _class_means(classes: Dict[str, Dict]) -> Dict:
    means: Dict = {"n_classes": len(classes), "n_skipped": {}}
    for key in CLASS_KEYS + ("pq", "sq", "rq"):
        vals = [c.get(key) for c in classes.values()]
        ok = [float(v) for v in vals if v is not None and math.isfinite(v)]
        means[key] = float(np.mean(ok)) if ok else None
        if len(ok) != len(vals):
            means["n_skipped"][key] = len(vals) - len(ok)
    return means


def to_json_ready(obj):
    """Replace non-finite floats by None (JSON null) and numpy scalars by Python ones, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_ready(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def format_table(result: Dict, class_names: Optional[Dict[int, str]] = None) -> str:
    """A readable text table of :func:`evaluate_labelmaps`'s result (one row per class, then the mean)."""
    cols = [
        ("dice", "Dice", "{:.4f}"),
        ("iou", "IoU", "{:.4f}"),
        ("sensitivity", "Sens", "{:.4f}"),
        ("precision", "Prec", "{:.4f}"),
        ("volume_pred_mm3", "Vpred mm3", "{:.1f}"),
        ("volume_ref_mm3", "Vref mm3", "{:.1f}"),
        ("volume_diff_percent", "dV %", "{:+.1f}"),
        ("hd95_mm", "HD95 mm", "{:.2f}"),
        ("assd_mm", "ASSD mm", "{:.2f}"),
        ("nsd", f"NSD@{result['tolerance_mm']:g}", "{:.4f}"),
        ("pq", "PQ", "{:.4f}"),
    ]

    def cell(v, fmt):
        if v is None:
            return "-"
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        return fmt.format(v)

    names = class_names or {}
    rows = [["class"] + [c[1] for c in cols]]
    for lab, m in result["classes"].items():
        label = f"{lab} {names[int(lab)]}" if int(lab) in names else lab
        rows.append([label] + [cell(m.get(k), f) for k, _, f in cols])
    rows.append(["mean"] + [cell(result["mean"].get(k), f) for k, _, f in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    pan = result["panoptic"]
    det = pan["detection"]

    def f4(v):
        return "-" if v is None else f"{v:.4f}"

    skipped = result["mean"].get("n_skipped", {})
    if not result["classes"]:
        lines.append("no object label in either labelmap")
    elif skipped:
        lines.append(
            "mean skips undefined or infinite values: "
            + ", ".join(f"{k} ({n} class{'es' if n != 1 else ''})" for k, n in skipped.items() if k in dict((c[0], 1) for c in cols))
        )
    lines.append("")
    lines.append(
        f"panoptic (IoU > {pan['iou_threshold']:g}): PQ {f4(pan['pq'])}  SQ {f4(pan['sq'])}  RQ {f4(pan['rq'])}  "
        f"TP {pan['tp']}  FP {pan['fp']}  FN {pan['fn']}"
    )
    lines.append(
        f"lesion-wise detection (any overlap): {det['detected']}/{det['ref_lesions']} reference objects found "
        f"(sensitivity {f4(det['sensitivity'])}), {det['false_positives']} false positive(s) in this case"
    )
    if result.get("resampled"):
        lines.append("note: the prediction was on another grid and was resampled onto the reference (nearest neighbour)")
    return "\n".join(lines)
