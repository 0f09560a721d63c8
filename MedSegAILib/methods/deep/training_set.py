"""A training set from a user's own segmentations: checked, then written in the MSD layout.

The input is a list of :class:`LabelledCase` (an image and a labelmap on that image's own grid,
with a record of where both came from: scene node names and IDs, or files). The Slicer side
(:mod:`MedSegAILib.slicer_bridge.training_nodes`) builds them from volume and segmentation
nodes; scripts build them from files. :func:`check_cases` refuses a set that cannot train a
model, naming the first problem; :func:`write_training_set` writes::

    imagesTr/<case>_0000.nii.gz   the image, its own geometry (LPS, as SimpleITK)
    labelsTr/<case>.nii.gz        labels 1..K in the order of the segment names, 0 elsewhere
    dataset.json                  nnU-Net v2 form (channel_names, labels, numTraining,
                                  file_ending) and a "medsegai" block: the segment names and
                                  their terminology, each case's source and the validation cases

``medsegai train`` reads that block: the validation cases it names validate (so a retrain
keeps them), and the model card records the sources and segment names.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError

#: The fewest cases a training set may have: at least 2 to train on and 1 to validate.
MIN_CASES = 3
#: Share of the cases that validate (at least one).
VALIDATION_FRACTION = 0.2
#: Geometry agreement between an image and its labelmap: spacing (relative), origin (mm), direction.
GEOMETRY_TOLERANCE = 1e-4

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class LabelledCase:
    """One training case.

    Attributes
    ----------
    name : str
        Case name; becomes the file stem (made safe and unique by :func:`case_names`).
    image : sitk.Image
        The volume, 3D, one channel, on its own grid.
    label : sitk.Image
        Labels 1..K (the order of the segment names) on the image's grid, 0 elsewhere.
    source : dict
        Where image and labels came from (node names and IDs, or files), kept in dataset.json
        and the model card.
    """

    name: str
    image: sitk.Image
    label: sitk.Image
    source: Dict[str, object] = field(default_factory=dict)


def names_from_text(text: Optional[str]) -> List[str]:
    """Names from comma-separated text ("a, b,,c" -> ["a", "b", "c"]; empty names dropped)."""
    return [n.strip() for n in str(text or "").split(",") if n.strip()]


def case_names(names: Sequence[str]) -> List[str]:
    """File-safe, unique case names in the given order ("Case 1" -> "Case_1", repeats get _2, _3)."""
    out, seen = [], set()
    for n in names:
        base = _SAFE.sub("_", str(n)).strip("_") or "case"
        name, k = base, 2
        while name.lower() in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name.lower())
        out.append(name)
    return out


def validation_count(n_cases: int) -> int:
    """How many of ``n_cases`` validate: :data:`VALIDATION_FRACTION` of them, at least one."""
    return max(1, int(round(VALIDATION_FRACTION * n_cases)))


def same_grid(a: sitk.Image, b: sitk.Image) -> Optional[str]:
    """None when ``a`` and ``b`` share size, spacing, origin and direction; else what differs."""
    if a.GetSize() != b.GetSize():
        return f"size {b.GetSize()} vs {a.GetSize()}"
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if np.any(np.abs(sa - sb) > GEOMETRY_TOLERANCE * sa):
        return f"spacing {tuple(round(float(v), 4) for v in sb)} vs {tuple(round(float(v), 4) for v in sa)} mm"
    if np.any(np.abs(np.array(a.GetOrigin()) - np.array(b.GetOrigin())) > max(GEOMETRY_TOLERANCE, 1e-3 * float(sa.min()))):
        return f"origin {tuple(round(float(v), 2) for v in b.GetOrigin())} vs {tuple(round(float(v), 2) for v in a.GetOrigin())} mm"
    if np.any(np.abs(np.array(a.GetDirection()) - np.array(b.GetDirection())) > GEOMETRY_TOLERANCE):
        return "direction cosines"
    return None


def check_cases(cases: Sequence[LabelledCase], segment_names: Sequence[str], *, min_cases: int = MIN_CASES) -> None:
    """Refuse a training set that cannot train a model (InputError naming the first problem).

    Checked: segment names given, unique and non-empty; at least ``min_cases`` cases; every
    image 3D with one channel; every labelmap on its image's grid, with labels only in
    0..K and every segment present (a case without it would teach the network that the
    structure is absent).
    """
    names = [str(n).strip() for n in segment_names]
    if not names or any(not n for n in names):
        raise InputError("name the segments to learn (the same names in every case)")
    if len({n.lower() for n in names}) != len(names):
        raise InputError(f"the segment names repeat: {', '.join(names)}")
    if len(cases) < min_cases:
        raise InputError(f"{len(cases)} case{'s' if len(cases) != 1 else ''} given; training needs at least {min_cases} (2 to learn from, 1 to validate)")
    for case in cases:
        where = _where(case)
        if case.image.GetDimension() != 3 or case.image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{where}: the image must be 3D with one channel (it is {case.image.GetDimension()}D with {case.image.GetNumberOfComponentsPerPixel()} components)")
        differs = same_grid(case.image, case.label)
        if differs:
            raise InputError(f"{where}: the segmentation is not on the volume's grid ({differs}); use the volume it was drawn on")
        lab = sitk.GetArrayFromImage(case.label)
        present = set(int(v) for v in np.unique(lab))
        extra = sorted(v for v in present if not 0 <= v <= len(names))
        if extra:
            raise InputError(f"{where}: label {extra[0]} is not one of the {len(names)} segments")
        missing = [n for k, n in enumerate(names, start=1) if k not in present]
        if missing:
            raise InputError(f"{where}: segment '{missing[0]}' is empty or missing; every case needs every segment")


def image_digest(image: sitk.Image) -> str:
    """SHA-256 of an image's voxels and geometry: the same scan, however it was loaded."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(sitk.GetArrayFromImage(image)).tobytes())
    def rounded(values, digits):  # + 0.0 turns -0.0 into 0.0: a file round trip may change the sign of a zero
        return [round(float(v), digits) + 0.0 for v in values]

    h.update(json.dumps([list(image.GetSize()), rounded(image.GetSpacing(), 4), rounded(image.GetOrigin(), 3),
                         rounded(image.GetDirection(), 4), image.GetPixelIDTypeAsString()]).encode())
    return h.hexdigest()


def refuse_repeated_images(named_digests: Sequence[tuple], validation: Sequence[str] = ()) -> None:
    """InputError when two cases hold the same image (``(name, digest)`` pairs): a scan
    that trains and validates would inflate the validation figures, one that trains twice
    would weigh double."""
    seen: Dict[str, str] = {}
    for name, digest in named_digests:
        if digest in seen:
            first = seen[digest]
            role = " (a validation case)" if first in validation else ""
            raise InputError(f"case '{name}' is the same image as case '{first}'{role}; each scan may be in a training set once")
        seen[digest] = name


def _where(case: LabelledCase) -> str:
    seg = case.source.get("segmentation") or case.source.get("label_file")
    return f"case '{case.name}'" + (f" (segmentation '{seg}')" if seg else "")


def write_training_set(
    cases: Sequence[LabelledCase],
    segment_names: Sequence[str],
    folder,
    *,
    terminology: Optional[Dict[str, str]] = None,
    validation: Optional[Sequence[str]] = None,
    channel_name: str = "image",
    name: str = "",
) -> Path:
    """Check ``cases`` and write them to a new dataset ``folder`` (see the module docstring).

    ``validation`` names the validation cases (by their written names); default the last
    :func:`validation_count` cases in the given order (the first cases a user segmented train).
    ``terminology`` maps a segment name to its Slicer terminology entry string. The folder must
    not exist or be empty: nothing already there is overwritten. Returns the folder.
    """
    check_cases(cases, segment_names)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"'{folder}' already holds files; choose a new folder for the training set")
    written = case_names([c.name for c in cases])
    digests = {n: image_digest(c.image) for n, c in zip(written, cases)}
    refuse_repeated_images(list(digests.items()))
    if validation is None:
        validation = written[-validation_count(len(cases)) :]
    unknown = sorted(set(validation) - set(written))
    if unknown:
        raise InputError(f"validation case '{unknown[0]}' is not one of the cases")
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    records = []
    for case, stem in zip(cases, written):
        records.append(_write_case(folder, case, stem, digests[stem]))
    seg_names = [str(n).strip() for n in segment_names]
    meta = {
        "name": name or folder.name,
        "channel_names": {"0": channel_name},
        "labels": {"background": 0, **{n: k for k, n in enumerate(seg_names, start=1)}},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "medsegai": {
            "segments": [{"label": k, "name": n, "terminology": (terminology or {}).get(n)} for k, n in enumerate(seg_names, start=1)],
            "cases": records,
            "validation": list(validation),
        },
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder


def _write_case(folder: Path, case: LabelledCase, stem: str, digest: str) -> dict:
    """Write one checked case as ``stem``; returns its dataset.json record (with the image's
    :func:`image_digest`, so that adding cases later need not read the images again)."""
    label = sitk.Cast(case.label, sitk.sitkUInt8)
    label.CopyInformation(case.image)  # equal within tolerance (checked): one geometry on disk
    sitk.WriteImage(case.image, str(folder / "imagesTr" / f"{stem}_0000.nii.gz"), useCompression=True)
    sitk.WriteImage(label, str(folder / "labelsTr" / f"{stem}.nii.gz"), useCompression=True)
    return {"case": stem, **case.source, "image_digest": digest}


def read_training_set(folder) -> dict:
    """The dataset.json of a training set written by :func:`write_training_set` (InputError if it is not one)."""
    path = Path(folder) / "dataset.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"'{folder}' is not a training set: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("medsegai"), dict) or "segments" not in meta["medsegai"]:
        raise InputError(f"'{folder}' is not a training set exported by MedSegAI (its dataset.json has no medsegai block)")
    return meta


def extend_training_set(source_folder, new_cases: Sequence[LabelledCase], folder) -> Path:
    """A new training set at ``folder``: every case of ``source_folder`` plus ``new_cases``
    (which train; the validation cases stay those of the source, so figures stay comparable
    and a model trained on the source can start the new training). The source is not changed."""
    meta = read_training_set(source_folder)
    names = [s["name"] for s in meta["medsegai"]["segments"]]
    check_cases(new_cases, names, min_cases=1)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"'{folder}' already holds files; choose a new folder for the training set")
    records = meta["medsegai"]["cases"]
    old = [r["case"] for r in records]
    written = case_names(old + [c.name for c in new_cases])[len(old) :]
    have = [(r["case"], r.get("image_digest") or image_digest(sitk.ReadImage(str(Path(source_folder) / "imagesTr" / f"{r['case']}_0000.nii.gz")))) for r in records]
    new = [(n, image_digest(c.image)) for n, c in zip(written, new_cases)]
    refuse_repeated_images(have + new, meta["medsegai"].get("validation", ()))
    shutil.copytree(source_folder, folder, dirs_exist_ok=True)
    for case, (stem, digest) in zip(new_cases, new):
        records.append(_write_case(folder, case, stem, digest))
    meta["numTraining"] = len(meta["medsegai"]["cases"])
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return folder
