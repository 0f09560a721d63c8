"""Which cases a cohort run holds: image files, DICOM folders, a folder of them, a glob, a CSV.

Every INPUT of ``medsegai segment`` is one of:

- an image file (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, ``.mhd``) or a DICOM series folder:
  one case; co-registered channels of one case joined by commas (``t1.nii.gz,t2.nii.gz``);
- a folder holding image files or DICOM series sub-folders (a cohort): one case per image file
  and per sub-folder that holds DICOM files, in name order;
- a glob pattern (``'data/*.nii.gz'``, quoted so that the program sees it): one case per match;
- a ``.csv`` file with a header: one row a case; the columns ``image`` (or ``channel0``,
  ``channel1``, ... for several channels), optionally ``case`` (its name) and ``seeds`` (a seed
  labelmap); relative paths are relative to the CSV's folder.
"""

from __future__ import annotations

import csv
import glob as globmod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..core.errors import InputError
from ..io.images import IMAGE_SUFFIXES, case_name

_GLOB_CHARS = set("*?[")


@dataclass
class CaseSpec:
    """One case: its name, its channel paths (channel 0 first) and optional seeds; ``listed``
    when it came from a folder of cases, a glob or a CSV (a cohort, even of one case)."""

    name: str
    channels: List[str]
    seeds: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)
    listed: bool = False


def _is_image_file(path: Path) -> bool:
    return path.is_file() and any(path.name.lower().endswith(s) for s in IMAGE_SUFFIXES) and not path.name.lower().endswith(".seg.nrrd")


def _holds_dicom(folder: Path) -> bool:
    """True when ``folder`` itself holds DICOM files (a series folder, one case)."""
    for f in folder.iterdir():
        if f.is_file():
            if f.suffix.lower() == ".dcm":
                return True
            try:
                with open(f, "rb") as fh:
                    fh.seek(128)
                    if fh.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False


def is_cohort_folder(path: Path) -> bool:
    """A folder that is not itself a DICOM series but holds image files or series folders."""
    return path.is_dir() and not _holds_dicom(path) and any(_is_image_file(f) or (f.is_dir() and _holds_dicom(f)) for f in path.iterdir())


def cases_in_folder(folder: Path) -> List[CaseSpec]:
    items = sorted(f for f in folder.iterdir() if _is_image_file(f) or (f.is_dir() and _holds_dicom(f)))
    return [CaseSpec(case_name(f), [str(f)], listed=True) for f in items]


def cases_in_csv(path: Path) -> List[CaseSpec]:
    """One case per row of a CSV with an ``image`` or ``channel0..`` column (see the module)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        channel_cols = sorted((c for c in columns if c.lower().startswith("channel")), key=lambda c: int("".join(ch for ch in c if ch.isdigit()) or 0))
        image_cols = [c for c in columns if c.lower() == "image"] or channel_cols
        if not image_cols:
            raise InputError(f"the case table '{path}' has no 'image' (or 'channel0', 'channel1', ...) column; its columns are: {', '.join(columns) or 'none'}")
        base = path.parent
        cases = []
        for i, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            channels = [row[c] for c in image_cols if row.get(c)]
            if not channels:
                raise InputError(f"row {i} of '{path}' names no image")
            channels = [str(p if Path(p).is_absolute() else base / p) for p in channels]
            seeds = row.get("seeds") or None
            if seeds and not Path(seeds).is_absolute():
                seeds = str(base / seeds)
            name = row.get("case") or case_name(channels[0])
            extra = {k: v for k, v in row.items() if k not in set(image_cols) | {"case", "seeds"}}
            cases.append(CaseSpec(name, channels, seeds, extra, listed=True))
    if not cases:
        raise InputError(f"the case table '{path}' has no rows")
    return cases


def expand_inputs(inputs: Sequence[str]) -> List[CaseSpec]:
    """The cases the INPUT arguments name, in order (see the module docstring); InputError for
    a path that does not exist, a pattern that matches nothing or two cases with one name."""
    cases: List[CaseSpec] = []
    for item in inputs:
        path = Path(item)
        if path.exists():
            if path.is_file() and path.suffix.lower() == ".csv":
                cases += cases_in_csv(path)
            elif is_cohort_folder(path):
                cases += cases_in_folder(path)
            else:
                cases.append(CaseSpec(case_name(path), [str(path)]))
            continue
        if _GLOB_CHARS & set(item) and "," not in item:
            matches = sorted(globmod.glob(item))
            if not matches:
                raise InputError(f"the pattern '{item}' matches no file")
            cases += [CaseSpec(case_name(m), [m], listed=True) for m in matches]
            continue
        channels = [c for c in item.split(",") if c]
        cases.append(CaseSpec(case_name(channels[0]) if channels else item, channels or [item]))
    for case in cases:
        for c in case.channels:
            if not Path(c).exists():
                raise InputError(f"the input '{c}' does not exist" + (f" (case '{case.name}')" if len(cases) > 1 else ""))
        if case.seeds and not Path(case.seeds).exists():
            raise InputError(f"the seeds '{case.seeds}' of case '{case.name}' do not exist")
    names = [c.name for c in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two inputs share the case name '{dup[0]}'; rename one so their outputs do not collide")
    return cases
