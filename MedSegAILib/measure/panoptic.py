"""Instance-level agreement: matching, panoptic quality (PQ = SQ x RQ) and lesion-wise detection.

Arrays are numpy, indexed (z, y, x), on one grid. An instance map holds 0 for background and a
positive id per object. Within one semantic class, instances are the 26-connected components of
the class mask unless instance maps are given.

Notes
-----
Panoptic quality (Kirillov et al. 2019) matches a predicted and a reference instance when their
intersection over union exceeds 0.5. Because each instance covers its voxels exclusively, at most
one partner can exceed 0.5, so the matching is unique without any assignment step. With TP the
matched pairs, FP the unmatched predictions and FN the unmatched references::

    PQ = sum_{(p, g) in TP} IoU(p, g) / (|TP| + |FP|/2 + |FN|/2)
       = SQ x RQ,   SQ = mean IoU over TP,   RQ = |TP| / (|TP| + |FP|/2 + |FN|/2)

Lesion-wise detection is looser on purpose: a reference lesion counts as detected when any
predicted instance of its class overlaps it (at least one voxel), and a predicted instance is a
false positive when it overlaps no reference lesion. This is the usual clinical reading of
"found the lesion" (e.g. small metastases, where IoU > 0.5 is rarely reached).

References
----------
Kirillov A, He K, Girshick R, Rother C, Dollar P. Panoptic Segmentation. CVPR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def connected_instances(mask: np.ndarray, connectivity: int = 26) -> np.ndarray:
    """Label the connected components of a binary mask (z, y, x) as 1..N (UInt32), largest first.

    ``connectivity`` is 26 (faces, edges, corners) or 6 (faces).
    """
    if connectivity not in (6, 26):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity}")
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint32)
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), connectivity == 26)
    cc = sitk.RelabelComponent(cc, sortByObjectSize=True)
    return sitk.GetArrayFromImage(cc).astype(np.uint32)


def _relabel_consecutive(inst: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Map ids to 1..N (0 stays 0); returns (relabelled array, original ids of 1..N)."""
    nz = inst > 0
    vals = inst[nz]
    ids = np.unique(vals)
    out = np.zeros(inst.shape, dtype=np.int64)
    out[nz] = np.searchsorted(ids, vals) + 1
    return out, ids


def union_box(*masks: np.ndarray, margin: int = 0) -> Optional[Tuple[slice, ...]]:
    """Bounding box (slices) of the union of masks, grown by ``margin``; None when all are empty."""
    fg = np.zeros(masks[0].shape, dtype=bool)
    for m in masks:
        fg |= m
    if not fg.any():
        return None
    box = []
    for d in range(fg.ndim):
        idx = np.flatnonzero(fg.any(axis=tuple(a for a in range(fg.ndim) if a != d)))
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + margin + 1, fg.shape[d])))
    return tuple(box)


def _merge_boxes(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def label_boxes(labels: np.ndarray, wanted: Sequence[int]) -> Dict[int, Optional[Tuple[slice, ...]]]:
    """Bounding box of each wanted label value (None when absent), in one pass."""
    lab = labels if labels.dtype.kind in "iu" and labels.dtype.itemsize <= 8 else labels.astype(np.int64)
    top = max([int(v) for v in wanted] + [0])
    # find_objects on a clipped copy: labels above the largest wanted one are irrelevant here.
    objs = ndimage.find_objects(np.where(lab <= top, lab, 0).astype(np.int64), max_label=top) if top else []
    return {int(v): (objs[int(v) - 1] if 0 < int(v) <= len(objs) else None) for v in wanted}


@dataclass
class InstanceMatching:
    """Result of matching predicted to reference instances of one class.

    Attributes
    ----------
    pairs : list of (pred_id, ref_id, iou)
        Matched pairs (IoU > threshold), ids as in the input maps.
    unmatched_pred, unmatched_ref : list of int
        Ids of false-positive predictions and missed references.
    pred_ids, ref_ids : list of int
        All instance ids present.
    overlapping_pred, overlapping_ref : set of int
        Ids with any overlap with the other side (for lesion-wise detection).
    """

    pairs: List[Tuple[int, int, float]] = field(default_factory=list)
    unmatched_pred: List[int] = field(default_factory=list)
    unmatched_ref: List[int] = field(default_factory=list)
    pred_ids: List[int] = field(default_factory=list)
    ref_ids: List[int] = field(default_factory=list)
    overlapping_pred: set = field(default_factory=set)
    overlapping_ref: set = field(default_factory=set)


def match_instances(pred: np.ndarray, ref: np.ndarray, *, iou_threshold: float = 0.5) -> InstanceMatching:
    """Match the instances of two instance maps of one class by IoU.

    Parameters
    ----------
    pred, ref : ndarray of int, same shape (z, y, x)
        Instance maps, 0 = background.
    iou_threshold : float
        A pair matches when IoU > ``iou_threshold`` (strictly). Values below 0.5 are refused:
        the matching is only guaranteed unique at 0.5 and above.

    Returns
    -------
    InstanceMatching
    """
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref must have the same shape, got {pred.shape} and {ref.shape}")
    if not 0.5 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0.5, 1), got {iou_threshold}")
    box = union_box(pred > 0, ref > 0)
    if box is None:
        return InstanceMatching()
    p, p_ids = _relabel_consecutive(pred[box])
    r, r_ids = _relabel_consecutive(ref[box])
    n_p, n_r = p_ids.size, r_ids.size
    out = InstanceMatching(pred_ids=[int(i) for i in p_ids], ref_ids=[int(i) for i in r_ids])
    p_size = np.bincount(p.ravel(), minlength=n_p + 1)
    r_size = np.bincount(r.ravel(), minlength=n_r + 1)
    both = (p > 0) & (r > 0)
    inter = np.bincount(p[both] * (n_r + 1) + r[both], minlength=(n_p + 1) * (n_r + 1)).reshape(n_p + 1, n_r + 1)
    pi, ri = np.nonzero(inter)
    matched_p, matched_r = set(), set()
    for a, b in zip(pi, ri):
        i = inter[a, b]
        iou = i / float(p_size[a] + r_size[b] - i)
        out.overlapping_pred.add(int(p_ids[a - 1]))
        out.overlapping_ref.add(int(r_ids[b - 1]))
        if iou > iou_threshold:
            out.pairs.append((int(p_ids[a - 1]), int(r_ids[b - 1]), float(iou)))
            matched_p.add(a)
            matched_r.add(b)
    out.unmatched_pred = [int(p_ids[a - 1]) for a in range(1, n_p + 1) if a not in matched_p]
    out.unmatched_ref = [int(r_ids[b - 1]) for b in range(1, n_r + 1) if b not in matched_r]
    return out


def panoptic_quality(pred: np.ndarray, ref: np.ndarray, *, iou_threshold: float = 0.5) -> Dict[str, Optional[float]]:
    """Panoptic, segmentation and recognition quality of one class's instance maps.

    Parameters
    ----------
    pred, ref : ndarray of int (z, y, x)
        Instance maps of one class, 0 = background.
    iou_threshold : float
        Matching threshold (IoU > threshold); 0.5 as in Kirillov et al. 2019.

    Returns
    -------
    dict with ``pq``, ``sq``, ``rq`` (None when neither side has an instance), ``tp``, ``fp``,
    ``fn``, ``sum_iou``.

    Examples
    --------
    >>> a = np.zeros((1, 4, 8), int); a[0, :, :4] = 1; a[0, :, 5:] = 2
    >>> panoptic_quality(a, a)["pq"]
    1.0
    """
    m = match_instances(pred, ref, iou_threshold=iou_threshold)
    return _pq_from_counts(len(m.pairs), len(m.unmatched_pred), len(m.unmatched_ref), sum(p[2] for p in m.pairs))


def _pq_from_counts(tp: int, fp: int, fn: int, sum_iou: float) -> Dict[str, Optional[float]]:
    denom = tp + 0.5 * fp + 0.5 * fn
    return {
        "pq": None if denom == 0 else sum_iou / denom,
        "sq": None if denom == 0 else (sum_iou / tp if tp else 0.0),
        "rq": None if denom == 0 else tp / denom,
        "tp": int(tp),
        "fp": int(fp),
        "fn": int(fn),
        "sum_iou": float(sum_iou),
    }


def lesion_detection(pred: np.ndarray, ref: np.ndarray) -> Dict[str, Optional[float]]:
    """Lesion-wise detection of one class: any-overlap criterion (see module Notes).

    Returns
    -------
    dict with ``ref_lesions``, ``pred_lesions``, ``detected`` (reference lesions overlapped by a
    prediction), ``missed``, ``false_positives`` (predictions overlapping no reference lesion),
    ``sensitivity`` (detected / ref_lesions; None without reference lesions) and ``precision``
    (overlapping predictions / pred_lesions; None without predictions).
    """
    m = match_instances(pred, ref)
    return _detection_from_matching(m)


def _detection_from_matching(m: InstanceMatching) -> Dict[str, Optional[float]]:
    n_ref, n_pred = len(m.ref_ids), len(m.pred_ids)
    detected = len(m.overlapping_ref)
    fp = n_pred - len(m.overlapping_pred)
    return {
        "ref_lesions": n_ref,
        "pred_lesions": n_pred,
        "detected": detected,
        "missed": n_ref - detected,
        "false_positives": fp,
        "sensitivity": None if n_ref == 0 else detected / n_ref,
        "precision": None if n_pred == 0 else (n_pred - fp) / n_pred,
    }


def class_instances(
    labels: np.ndarray, label: int, instances: Optional[np.ndarray] = None, *, connectivity: int = 26
) -> np.ndarray:
    """Instance map of one class: given instance ids restricted to the class, or its components."""
    mask = labels == label
    if instances is None:
        return connected_instances(mask, connectivity)
    return np.where(mask, instances, 0)


def panoptic_labelmaps(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    labels: Sequence[int],
    *,
    pred_instances: Optional[np.ndarray] = None,
    ref_instances: Optional[np.ndarray] = None,
    connectivity: int = 26,
    iou_threshold: float = 0.5,
) -> Dict:
    """PQ per class and overall, plus lesion-wise detection, from two semantic labelmaps.

    Parameters
    ----------
    pred_labels, ref_labels : ndarray of int (z, y, x)
        Semantic labelmaps on one grid.
    labels : sequence of int
        Object classes to score.
    pred_instances, ref_instances : ndarray of int or None
        Instance maps; when None, instances are the ``connectivity``-connected components of
        each class. An instance that spans several classes is split by class.

    Returns
    -------
    dict with ``pq``, ``sq``, ``rq`` (means over classes that have an instance on either side, as
    Kirillov et al. average PQ over classes), ``tp``, ``fp``, ``fn`` (summed), ``iou_threshold``,
    ``per_class`` (label -> the :func:`panoptic_quality` dict) and ``detection`` (summed
    lesion-wise counts, sensitivity and false positives for this case, plus ``per_class``).
    """
    per_class: Dict[str, Dict] = {}
    detection_per_class: Dict[str, Dict] = {}
    boxes_p = label_boxes(pred_labels, labels)
    boxes_r = label_boxes(ref_labels, labels)
    for lab in labels:
        # Components are computed inside the class's bounding box (plus one voxel, so that
        # connectivity is unaffected by the crop); results equal those on the full volume.
        box = _merge_boxes(boxes_p[lab], boxes_r[lab])
        if box is None:
            box = tuple(slice(0, 0) for _ in pred_labels.shape)
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, pred_labels.shape))
        p = class_instances(pred_labels[box], lab, None if pred_instances is None else pred_instances[box], connectivity=connectivity)
        r = class_instances(ref_labels[box], lab, None if ref_instances is None else ref_instances[box], connectivity=connectivity)
        m = match_instances(p, r, iou_threshold=iou_threshold)
        per_class[str(lab)] = _pq_from_counts(len(m.pairs), len(m.unmatched_pred), len(m.unmatched_ref), sum(x[2] for x in m.pairs))
        detection_per_class[str(lab)] = _detection_from_matching(m)
    scored = [v for v in per_class.values() if v["pq"] is not None]

    def _mean(key):
        return None if not scored else float(np.mean([v[key] for v in scored]))

    det = {k: sum(d[k] for d in detection_per_class.values()) for k in ("ref_lesions", "pred_lesions", "detected", "missed", "false_positives")}
    det["sensitivity"] = None if det["ref_lesions"] == 0 else det["detected"] / det["ref_lesions"]
    det["false_positives_per_case"] = det["false_positives"]
    det["criterion"] = "any overlap"
    det["per_class"] = detection_per_class
    return {
        "pq": _mean("pq"),
        "sq": _mean("sq"),
        "rq": _mean("rq"),
        "tp": sum(v["tp"] for v in per_class.values()),
        "fp": sum(v["fp"] for v in per_class.values()),
        "fn": sum(v["fn"] for v in per_class.values()),
        "iou_threshold": iou_threshold,
        "instances": {
            side: ("given instance map" if given is not None else f"{connectivity}-connected components")
            for side, given in (("pred", pred_instances), ("ref", ref_instances))
        },
        "per_class": per_class,
        "detection": det,
    }
