"""Semantic classes: label value, name, colour and a standard terminology code.

A terminology code follows DICOM/Slicer usage: a category (e.g. SCT 123037004 "Anatomical
Structure") and a type (e.g. SCT 10200004 "Liver"), each a (coding scheme, code value, code
meaning) triple. Slicer stores them on a segment as a ``TerminologyEntry`` tag; see
:func:`MedSegAILib.core.terminology.terminology_entry_string`.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence, Tuple

Code = Tuple[str, str, str]  # (coding scheme designator, code value, code meaning)

ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
TISSUE: Code = ("SCT", "85756007", "Tissue")
MORPHOLOGICALLY_ALTERED: Code = ("SCT", "49755003", "Morphologically Altered Structure")


@dataclass(frozen=True)
class Terminology:
    """A category/type pair of codes, with an optional type modifier (e.g. left/right)."""

    category: Code
    type: Code
    type_modifier: Optional[Code] = None


@dataclass(frozen=True)
class ClassInfo:
    """One semantic class of a labelmap.

    Attributes
    ----------
    label : int
        Voxel value in the labelmap (1..K; 0 is background and has no ClassInfo).
    name : str
        Human-readable name; segment names are "<name> <n>".
    color : (r, g, b)
        Display colour, each in [0, 1].
    terminology : Terminology or None
        Standard code, where one is known.
    """

    label: int
    name: str
    color: Tuple[float, float, float]
    terminology: Optional[Terminology] = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["color"] = list(self.color)
        return d

    @staticmethod
    def from_dict(d: dict) -> "ClassInfo":
        term = d.get("terminology")
        terminology = None
        if term:
            terminology = Terminology(
                category=tuple(term["category"]),
                type=tuple(term["type"]),
                type_modifier=tuple(term["type_modifier"]) if term.get("type_modifier") else None,
            )
        return ClassInfo(int(d["label"]), str(d["name"]), tuple(float(c) for c in d["color"]), terminology)


def distinct_colors(n: int) -> list:
    """``n`` well-separated, saturated colours as (r, g, b) in [0, 1] (golden-ratio hue steps)."""
    colors = []
    hue = 0.08
    for _ in range(n):
        colors.append(tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue % 1.0, 0.75, 0.95)))
        hue += 0.618033988749895
    return colors


def generic_classes(labels: Sequence[int], prefix: str = "Class", terminology: Optional[Terminology] = None):
    """ClassInfo for labels that carry no anatomical meaning (e.g. Otsu intensity classes)."""
    colors = distinct_colors(len(labels))
    return [ClassInfo(int(l), f"{prefix} {int(l)}", colors[i], terminology) for i, l in enumerate(labels)]


def class_by_label(classes: Sequence[ClassInfo]) -> dict:
    return {c.label: c for c in classes}


@dataclass
class ClassTable:
    """Classes of a dataset, as read from an MSD/nnU-Net ``dataset.json``'s ``labels``."""

    classes: list = field(default_factory=list)

    @staticmethod
    def from_dataset_json(meta: dict) -> "ClassTable":
        """Read classes from ``{"labels": {"0": "background", "1": "Anterior", ...}}`` or the
        nnU-Net v2 form ``{"labels": {"background": 0, "Anterior": 1}}``."""
        labels = meta.get("labels", {})
        pairs = []
        for k, v in labels.items():
            if str(k).lstrip("-").isdigit():
                pairs.append((int(k), str(v)))
            elif isinstance(v, int) or str(v).isdigit():
                pairs.append((int(v), str(k)))
        bad = [l for l, _ in pairs if not 0 <= l <= 255]
        if bad:
            from .errors import InputError

            raise InputError(f"dataset.json names the label {bad[0]}; labels are whole numbers 0-255 (0 = background)")
        pairs = sorted(p for p in pairs if p[0] != 0)
        colors = distinct_colors(len(pairs))
        return ClassTable([ClassInfo(l, n, colors[i]) for i, (l, n) in enumerate(pairs)])
