"""Is a target like an atlas library's images, and did the atlases register to it as they do
to in-domain targets? A verdict before registration and after fusion.

A library may hold ``domain.json``, recorded from in-domain targets (cases of the library's
population that are not atlases): the range of their input features (spacing, field of view,
intensity distribution, noise; the same features and margins as a deep model's check, see
:mod:`..deep.domain`), of what fusion said about them (uncertainty near the structures, volume
and pieces per class), and of the registration quality: the mean intensity correlation (NCC)
of the fused atlases after the affine and after the deformable step, and the share of the
registered atlases that passed quality control.

The registration margins: a mean NCC below 0.8x the lowest recorded, or a share of fused
atlases more than 0.2 below the lowest recorded, is a reason. A library without
``domain.json`` is not checked, and its verdict says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...core.errors import InputError
from ..deep.domain import DomainVerdict, build_record, check_output, output_features

RECORD_FILE = "domain.json"


def read_record(folder: Path) -> Optional[dict]:
    """The library's ``domain.json``, or None when it has none."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"the atlas library's '{path}' is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("registration"), dict):
        raise InputError(f"the atlas library's '{path}' is not a domain record (it needs a 'registration' entry)")
    return record


def registration_features(extra: dict) -> dict:
    """Registration quality of one atlas run from its ``extra["registrations"]``: mean NCC of the
    fused atlases after the affine and after the deformable step, and the share fused."""
    regs = extra.get("registrations", [])
    fused = [r for r in regs if r.get("ok")]

    def mean(key):
        values = [r[key] for r in fused if r.get(key) is not None]
        return float(np.mean(values)) if values else 0.0

    return {"mean_affine_ncc": mean("affine_ncc"), "mean_ncc": mean("ncc"), "fused_fraction": len(fused) / max(len(regs), 1)}


def result_features(out) -> dict:
    """What the after-fusion check compares for one atlas run (MethodOutput)."""
    features = output_features(out.labels, out.uncertainty, [c.label for c in out.classes])
    features["registration"] = registration_features(out.extra or {})
    return features


def build_atlas_record(inputs: Sequence[dict], outputs: Sequence[dict], *, source: str = "") -> dict:
    """The library's domain record from in-domain targets' input features and result features."""
    record = build_record(inputs, outputs, source=source)
    keys = ("mean_affine_ncc", "mean_ncc", "fused_fraction")
    record["registration"] = {k: [float(min(o["registration"][k] for o in outputs)), float(max(o["registration"][k] for o in outputs))] for k in keys}
    return record


def check_result(record: Optional[dict], out) -> DomainVerdict:
    """After fusion: the registration quality, then the result's uncertainty, volumes and pieces."""
    features = result_features(out)
    if not record:
        return DomainVerdict(None, [], {"output": features}, "not checked: the atlas library records no domain")
    names = {str(c.label): c.name for c in out.classes}
    verdict = check_output(record, {k: v for k, v in features.items() if k != "registration"}, names)
    reasons = []
    reg, rec = features["registration"], record["registration"]
    for key, what in (("mean_affine_ncc", "after the affine step"), ("mean_ncc", "after the deformable step")):
        low = rec[key][0]
        if reg[key] < 0.8 * low:
            reasons.append(f"the atlases match the target poorly {what} (mean correlation {reg[key]:.2f}, in-domain targets at least {low:.2f})")
    if reg["fused_fraction"] < rec["fused_fraction"][0] - 0.2:
        reasons.append(f"only {reg['fused_fraction']:.0%} of the atlases passed the registration checks (in-domain targets at least {rec['fused_fraction'][0]:.0%})")
    reasons += verdict.reasons
    return DomainVerdict(not reasons, reasons, {"output": features}, "after fusion")
