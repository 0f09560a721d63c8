"""Does an input look like a model's training data? A verdict before and after inference.

A model card's ``domain`` entry records, from the training cases, what inputs looked like
(voxel spacing, field of view in mm, channels, the shape of the z-scored intensity
distribution) and, from the validation cases, what the model said about in-domain inputs (mean
uncertainty near its structures, volume and number of instances of each class). A run compares
its input with the first before inference, and its result with the second after; anything
outside the recorded range (with a margin, since new patients differ) is a reason, in words.

The margins: spacing 0.67x the smallest to 1.5x the largest recorded; field of view 0.5x to
2x; intensity percentiles by a quarter of the recorded spread beyond it; noise (the share of
the intensity spread that a one-voxel smoothing removes) at most 1.3x the largest recorded; predicted volume 0.5x
to 2x; instances at most one more than recorded; mean uncertainty near the structures at most
1.5x the largest recorded; for an ensemble, the members' agreement (``member_agreement``: the
mean Dice between their labels, recorded as [lowest, highest] on cases that several members
did not train on) at most 0.05 below the lowest recorded. A model without a ``domain`` entry
is not checked, and its verdict says so; nor is one whose record rests on too few cases
(:data:`MIN_RECORDED_INPUTS` training inputs, :data:`MIN_RECORDED_OUTPUTS` validation
outputs): the range of four cases would flag a new patient as often as not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

#: The fewest training inputs (validation outputs) a record needs before its input (output)
#: check is used: a model trained in Slicer on a handful of cases says "not checked" instead.
MIN_RECORDED_INPUTS = 10
MIN_RECORDED_OUTPUTS = 5

#: Percentiles of the z-scored intensities that describe an input's intensity distribution.
PERCENTILES = (1, 10, 25, 75, 90, 99)


@dataclass
class DomainVerdict:
    """``in_domain`` is None when the model records no domain; ``reasons`` say why not."""

    in_domain: Optional[bool]
    reasons: List[str] = field(default_factory=list)
    figures: Dict[str, object] = field(default_factory=dict)
    checked: str = ""  # "before inference", "after inference" or why nothing was checked

    def to_dict(self) -> dict:
        return asdict(self)


def input_features(channels: Sequence[sitk.Image]) -> dict:
    """What the before-inference check compares: spacing (mm), field of view (mm), channels and
    the percentiles of channel 0's z-scored intensities."""
    image = channels[0]
    # Noise: the share of the intensity spread that a 1-voxel smoothing removes.
    # A copy, not a view: the smoothed image is a temporary.
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), float(min(image.GetSpacing()))))
    full = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    roughness = float(np.std(full - smooth) / max(float(full.std()), 1e-6))
    arr = full.ravel()
    if arr.size > 200_000:
        arr = arr[:: arr.size // 200_000]
    z = (arr - arr.mean()) / max(float(arr.std()), 1e-6)
    return {
        "spacing_xyz": [float(s) for s in image.GetSpacing()],
        "extent_mm_xyz": [float(n * s) for n, s in zip(image.GetSize(), image.GetSpacing())],
        "channels": len(channels),
        "zscore_percentiles": [float(v) for v in np.percentile(z, PERCENTILES)],
        "roughness": roughness,
    }


def output_features(labels: sitk.Image, uncertainty: sitk.Image, class_labels: Sequence[int]) -> dict:
    """What the after-inference check compares: mean uncertainty within 3 voxels of the
    predicted structures, and each class's volume (mm³) and number of connected instances."""
    lab = sitk.GetArrayViewFromImage(labels)
    unc = sitk.GetArrayViewFromImage(uncertainty)
    voxel = float(np.prod(labels.GetSpacing()))
    near = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.Cast(labels > 0, sitk.sitkUInt8), [3, 3, 3])) > 0  # a copy: a temporary
    out = {"mean_uncertainty_near": float(unc[near].mean()) if near.any() else 0.0, "volume_mm3": {}, "instances": {}}
    for c in class_labels:
        mask = sitk.Cast(labels == int(c), sitk.sitkUInt8)
        cc = sitk.ConnectedComponentImageFilter()
        cc.FullyConnectedOn()
        cc.Execute(mask)
        out["volume_mm3"][str(c)] = float((lab == int(c)).sum() * voxel)
        out["instances"][str(c)] = int(cc.GetObjectCount())
    return out


def build_record(inputs: Sequence[dict], outputs: Sequence[dict], *, source: str = "") -> dict:
    """The card's ``domain`` entry: the range of every feature over the training inputs and
    the validation outputs."""
    def span(values):
        values = np.asarray(values, dtype=float)
        return [values.min(axis=0).tolist(), values.max(axis=0).tolist()]

    classes = sorted(outputs[0]["volume_mm3"]) if outputs else []
    return {
        "source": source,
        "n_training_inputs": len(inputs),
        "n_validation_outputs": len(outputs),
        "spacing_xyz": span([f["spacing_xyz"] for f in inputs]),
        "extent_mm_xyz": span([f["extent_mm_xyz"] for f in inputs]),
        "channels": int(inputs[0]["channels"]) if inputs else 1,
        "zscore_percentiles": {"percentiles": list(PERCENTILES), "range": span([f["zscore_percentiles"] for f in inputs])},
        "roughness": span([[f["roughness"]] for f in inputs]),
        "mean_uncertainty_near": span([[f["mean_uncertainty_near"]] for f in outputs]) if outputs else None,
        "volume_mm3": {c: span([[f["volume_mm3"][c]] for f in outputs]) for c in classes},
        "instances": {c: span([[f["instances"][c]] for f in outputs]) for c in classes},
    }


def _axes(values) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


#: How the reasons name what the input is compared with: a model's training images, or an
#: atlas library's images and in-domain targets.
TERMS = {
    "model": {"range": "the training range", "crops": "the model's training crops", "images": "the training images", "short": "training"},
    "atlas": {"range": "the library's range", "crops": "the library's images", "images": "the library's images", "short": "library"},
}


def check_input(record: Optional[dict], features: dict, terms: str = "model") -> DomainVerdict:
    """Before inference: the input's grid, field of view, channels and intensities; ``terms``
    ("model" or "atlas", see :data:`TERMS`) words the reasons."""
    if not record:
        return DomainVerdict(None, [], {"input": features}, "not checked: the model card records no training domain")
    n = record.get("n_training_inputs")
    if n is not None and n < MIN_RECORDED_INPUTS:
        return DomainVerdict(None, [], {"input": features}, f"not checked: the record has {n} training inputs, the check needs at least {MIN_RECORDED_INPUTS}")
    t = TERMS[terms]
    reasons = []
    lo, hi = record["spacing_xyz"]
    s = features["spacing_xyz"]
    if any(v < 0.67 * a or v > 1.5 * b for v, a, b in zip(s, lo, hi)):
        reasons.append(f"voxel spacing {_axes(s)} mm is outside {t['range']} {_axes(lo)} to {_axes(hi)} mm")
    lo, hi = record["extent_mm_xyz"]
    e = features["extent_mm_xyz"]
    big = [v / b for v, b in zip(e, hi) if v > 2 * b]
    if big:
        reasons.append(
            f"input field of view {_axes(e)} mm is {max(big):.1f}x {t['crops']} (at most {_axes(hi)} mm); "
            "crop a region of interest around the structure first (in Slicer: Crop Volume with an ROI)"
        )
    elif any(v < 0.5 * a for v, a in zip(e, lo)):
        reasons.append(f"input field of view {_axes(e)} mm is smaller than half {t['crops']} (at least {_axes(lo)} mm)")
    if features["channels"] != record.get("channels", features["channels"]):
        reasons.append(f"the input has {features['channels']} channels, the model was trained on {record['channels']}")
    lo, hi = record["zscore_percentiles"]["range"]
    p = features["zscore_percentiles"]
    off = [
        (q, v)
        for q, v, a, b in zip(record["zscore_percentiles"]["percentiles"], p, lo, hi)
        if v < a - 0.25 * (b - a) - 0.05 or v > b + 0.25 * (b - a) + 0.05
    ]
    if off:
        q, v = off[0]
        reasons.append(f"the intensity distribution differs from {t['images']} (its {q}th percentile is {v:.2f} SD from the mean, {t['short']} {lo[record['zscore_percentiles']['percentiles'].index(q)]:.2f} to {hi[record['zscore_percentiles']['percentiles'].index(q)]:.2f})")
    if record.get("roughness") is not None and "roughness" in features:
        top = record["roughness"][1][0]
        if features["roughness"] > 1.3 * top:
            reasons.append(f"the image is much noisier than {t['images']} (fine-detail share {features['roughness']:.2f}, {t['short']} at most {top:.2f})")
    return DomainVerdict(not reasons, reasons, {"input": features}, "before inference")


def check_output(record: Optional[dict], features: dict, class_names: Dict[str, str]) -> DomainVerdict:
    """After inference: the result's uncertainty, volumes and instance counts."""
    if not record or record.get("mean_uncertainty_near") is None:
        return DomainVerdict(None, [], {"output": features}, "not checked: the model card records no validation outputs")
    n = record.get("n_validation_outputs")
    if n is not None and n < MIN_RECORDED_OUTPUTS:
        return DomainVerdict(None, [], {"output": features}, f"not checked: the record has {n} validation outputs, the check needs at least {MIN_RECORDED_OUTPUTS}")
    reasons = []
    top = record["mean_uncertainty_near"][1][0]
    if features["mean_uncertainty_near"] > 1.5 * top:
        reasons.append(f"the mean uncertainty near the structures is {features['mean_uncertainty_near']:.3f}, above 1.5x the validation cases' highest ({top:.3f})")
    for c, (lo, hi) in record["volume_mm3"].items():
        v = features["volume_mm3"].get(c, 0.0)
        name = class_names.get(c, f"class {c}")
        if v < 0.5 * lo[0] or v > 2 * hi[0]:
            reasons.append(f"the predicted {name} is {v:.0f} mm³, outside 0.5-2x the validation range {lo[0]:.0f}-{hi[0]:.0f} mm³")
    for c, (lo, hi) in record["instances"].items():
        n = features["instances"].get(c, 0)
        if n > hi[0] + 1:
            reasons.append(f"{n} separate {class_names.get(c, f'class {c}')} pieces were found; validation cases had at most {int(hi[0])}")
    if record.get("member_agreement") is not None and features.get("member_agreement") is not None:
        low = record["member_agreement"][0]
        if features["member_agreement"] < low - 0.05:
            reasons.append(f"the ensemble's members disagree (their labels overlap with a mean Dice of {features['member_agreement']:.2f}; on in-domain cases at least {low:.2f})")
    return DomainVerdict(not reasons, reasons, {"output": features}, "after inference")


def result_features(out) -> dict:
    """:func:`output_features` of a deep run's MethodOutput, on the uncertainty the check
    compares: an ensemble's members' own mean entropy (``member_uncertainty``, the terms of a
    record made from single members' out-of-fold outputs), else the run's uncertainty."""
    unc = out.member_uncertainty if out.member_uncertainty is not None else out.uncertainty
    features = output_features(out.labels, unc, [c.label for c in out.classes])
    if (out.extra or {}).get("member_agreement") is not None:
        features["member_agreement"] = float(out.extra["member_agreement"])
    return features


def check_result(record: Optional[dict], out) -> DomainVerdict:
    """:func:`check_output` of a deep run's MethodOutput (see :func:`result_features`)."""
    return check_output(record, result_features(out), {str(c.label): c.name for c in out.classes})


def case_output_features(case: Sequence, model) -> dict:
    """:func:`result_features` of ``model`` (a name or folder) on one case's channel files."""
    from .inference import segment_with_model

    return result_features(segment_with_model([sitk.Cast(sitk.ReadImage(str(p)), sitk.sitkFloat32) for p in case], str(model)))


def write_record(model_dir, record: dict) -> None:
    """Put ``record`` into ``model_dir``'s card as its ``domain`` entry; the weights and their
    SHA-256 are untouched."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "model.json"
    card = json.loads(path.read_text())
    card["domain"] = record
    path.write_text(json.dumps(card, indent=2))


def record_domain(model_dir, train_images: Sequence[Sequence], val_images: Sequence[Sequence], *, source: str = "") -> dict:
    """Write ``model_dir``'s card ``domain`` entry: the input features of ``train_images`` and
    the model's own output features on ``val_images`` (each item: one case's channel files).
    Returns the record. For an ensemble, build the record from each member's outputs on its
    own validation cases instead (:func:`case_output_features` with the member's folder)."""
    inputs = [input_features([sitk.ReadImage(str(p)) for p in case]) for case in train_images]
    outputs = [case_output_features(case, model_dir) for case in val_images]
    record = build_record(inputs, outputs, source=source or f"input features of the {len(inputs)} training cases, output features of the {len(outputs)} validation cases")
    write_record(model_dir, record)
    return record
