"""Training data in the MSD/nnU-Net layout, and its fingerprint.

A dataset folder holds ``imagesTr/`` and ``labelsTr/``. Single-channel cases are
``imagesTr/case.nii.gz`` (MSD) or ``imagesTr/case_0000.nii.gz`` (nnU-Net); further channels are
``case_0001``, ... . ``dataset.json`` (optional) names the classes and the channels
(``"modality"`` / ``"channel_names"``; a channel named CT gets CT windowing).

The fingerprint (spacings, sizes, foreground intensity statistics) drives the plan, as in
nnU-Net: the plan is derived, written next to the model, and reused at inference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ...core.classes import ClassTable
from ...core.errors import InputError

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
_CHANNEL = re.compile(r"^(.*)_(\d{4})$")


def _stem(path: Path) -> Optional[str]:
    for s in _SUFFIXES:
        if path.name.lower().endswith(s):
            return path.name[: -len(s)]
    return None


@dataclass
class TrainingCase:
    """One case: its channel files (in order) and its labelmap file."""

    name: str
    images: List[Path]
    label: Path


@dataclass
class TrainingDataset:
    """A dataset folder read into case lists, class names and channel names."""

    root: Path
    cases: List[TrainingCase]
    class_names: Dict[int, str] = field(default_factory=dict)
    channel_names: List[str] = field(default_factory=list)
    meta: Dict = field(default_factory=dict)  # dataset.json as read ({} when there is none)


def read_dataset(root) -> TrainingDataset:
    """Read an MSD/nnU-Net dataset folder; raises InputError naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"the dataset folder '{root}' does not exist")
    img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise InputError(f"the dataset folder '{root}' needs imagesTr/ and labelsTr/ subfolders")
    channels: Dict[str, Dict[int, Path]] = {}
    for f in sorted(img_dir.iterdir()):
        stem = _stem(f)
        if stem is None or f.name.startswith("."):
            continue
        m = _CHANNEL.match(stem)
        case, ch = (m.group(1), int(m.group(2))) if m else (stem, 0)
        channels.setdefault(case, {})[ch] = f
    cases = []
    for case in sorted(channels):
        label = next((lab_dir / f"{case}{s}" for s in _SUFFIXES if (lab_dir / f"{case}{s}").exists()), None)
        if label is None:
            continue
        chans = channels[case]
        if sorted(chans) != list(range(len(chans))):
            raise InputError(f"case '{case}' in '{img_dir}' has channels {sorted(chans)}; they must be numbered from 0 without gaps")
        cases.append(TrainingCase(case, [chans[i] for i in range(len(chans))], label))
    if not cases:
        raise InputError(f"no image in '{img_dir}' has a labelmap of the same name in '{lab_dir}'")
    n_ch = {len(c.images) for c in cases}
    if len(n_ch) > 1:
        raise InputError(f"cases in '{root}' have different numbers of channels: {sorted(n_ch)}")
    meta = read_dataset_json(root)
    names = {c.label: c.name for c in ClassTable.from_dataset_json(meta).classes}
    chan_meta = meta.get("channel_names") or meta.get("modality") or {}
    channel_names = [str(chan_meta.get(str(i), f"channel {i}")) for i in range(n_ch.pop())]
    return TrainingDataset(root, cases, names, channel_names, meta)


def read_json_object(path) -> dict:
    """A JSON file that must hold an object; InputError naming the file otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"'{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' must hold a JSON object")
    return data


def read_dataset_json(root) -> dict:
    """A dataset folder's ``dataset.json`` ({} when there is none); InputError if unreadable."""
    path = Path(root) / "dataset.json"
    return read_json_object(path) if path.exists() else {}


def load_case_arrays(case: TrainingCase):
    """(image (C, z, y, x) float32, label (z, y, x) uint8, reference image) of one case."""
    imgs = [sitk.ReadImage(str(p)) for p in case.images]
    lab = sitk.ReadImage(str(case.label))
    arr = np.stack([sitk.GetArrayFromImage(i).astype(np.float32) for i in imgs])
    lab_arr = sitk.GetArrayFromImage(lab)
    if lab_arr.shape != arr.shape[1:]:
        raise InputError(f"case '{case.name}': label size {lab.GetSize()} differs from image size {imgs[0].GetSize()}")
    return arr, lab_arr.astype(np.uint8), imgs[0]


def fingerprint(dataset: TrainingDataset, max_cases: int = 400) -> dict:
    """Spacings, sizes, labels present and foreground intensity statistics per channel."""
    spacings, sizes, labels = [], [], set()
    fg_values: List[List[np.ndarray]] = [[] for _ in dataset.channel_names]
    rng = np.random.default_rng(0)
    for case in dataset.cases[:max_cases]:
        arr, lab, ref = load_case_arrays(case)
        spacings.append(ref.GetSpacing())
        sizes.append(ref.GetSize())
        labels.update(int(v) for v in np.unique(lab))
        fg = lab > 0
        for c in range(arr.shape[0]):
            v = arr[c][fg] if fg.any() else arr[c].ravel()
            fg_values[c].append(rng.choice(v, size=min(v.size, 2000), replace=False))
    stats = []
    for vals in fg_values:
        v = np.concatenate(vals)
        stats.append(
            {
                "mean": float(v.mean()),
                "std": float(v.std()),
                "p00_5": float(np.percentile(v, 0.5)),
                "p99_5": float(np.percentile(v, 99.5)),
            }
        )
    return {
        "n_cases": len(dataset.cases),
        "median_spacing_xyz": [float(s) for s in np.median(np.array(spacings), axis=0)],
        "median_size_xyz": [int(s) for s in np.median(np.array(sizes), axis=0)],
        "max_size_xyz": [int(s) for s in np.max(np.array(sizes), axis=0)],
        "labels": sorted(labels),
        "intensity": stats,
        "channel_names": dataset.channel_names,
    }


#: Validation cases of a dataset that names none (the shipped model's split: 160 + 40).
DEFAULT_VAL_CASES = 40


def split_cases_by_name(cases: Sequence[TrainingCase], names: Sequence[str]) -> tuple:
    """(training cases, validation cases): exactly the named cases validate (sorted by name)."""
    ordered = sorted(cases, key=lambda c: c.name)
    wanted = set(names)
    unknown = sorted(wanted - {c.name for c in ordered})
    if unknown:
        raise InputError(f"validation case '{unknown[0]}' is not in the dataset" + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
    val = [c for c in ordered if c.name in wanted]
    train = [c for c in ordered if c.name not in wanted]
    if not train:
        raise InputError(f"the {len(val)} validation cases leave no training case")
    return train, val


def split_cases(cases: Sequence[TrainingCase], n_val: int, fold: Optional[int] = None) -> tuple:
    """Fixed split by sorted name: (training cases, validation cases).

    Without ``fold`` the last ``n_val`` cases validate (the shipped model's split). With
    ``fold`` = k the k-th block of ``n_val`` consecutive cases validates (k = 0 is the first
    block), so folds 0 .. len(cases) // n_val - 1 are disjoint and together form a
    cross-validation in which every case validates once: when ``n_val`` does not divide the
    count, the last fold also takes the remainder. When it does, the last fold is the default
    split.
    """
    ordered = sorted(cases, key=lambda c: c.name)
    if n_val <= 0:
        if fold is not None:
            raise InputError("--fold needs --val-cases above 0")
        return ordered, []
    if n_val >= len(ordered):
        raise InputError(f"--val-cases {n_val} leaves no training case out of {len(ordered)}")
    if fold is None:
        return ordered[:-n_val], ordered[-n_val:]
    n_folds = len(ordered) // n_val
    if not 0 <= fold < n_folds:
        raise InputError(f"--fold {fold} does not exist: {len(ordered)} cases in blocks of {n_val} give folds 0 to {n_folds - 1}")
    lo, hi = fold * n_val, (len(ordered) if fold == n_folds - 1 else (fold + 1) * n_val)
    return ordered[:lo] + ordered[hi:], ordered[lo:hi]
