"""An atlas library: intensity images with expert labelmaps, in the MSD/nnU-Net folder layout.

A library is a folder with ``imagesTr/`` and ``labelsTr/`` holding one image and one labelmap
per atlas (NIfTI, NRRD or MetaImage), paired by name: ``imagesTr/case.nii.gz`` (MSD) or
``imagesTr/case_0000.nii.gz`` (nnU-Net, channel 0) with ``labelsTr/case.nii.gz``. An optional
``dataset.json`` names the classes (``{"labels": {"1": "Anterior hippocampus", ...}}``).
A shipped library (``Resources/Atlases/<name>``) may be given by its name.

Images are read lazily and kept once read, so ranking a large library reads each file once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ...core.classes import ClassInfo, ClassTable, generic_classes
from ...core.errors import InputError, first_line
from ...resources import atlases_dir

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_CHANNEL = re.compile(r"_(\d{4})$")


def _stem(path: Path) -> Optional[str]:
    """File name without its image suffix, or None when it is not an image file."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


@dataclass
class AtlasCase:
    """One atlas: an intensity image and its labelmap (read on first use)."""

    name: str
    image_path: Path
    label_path: Path
    _image: Optional[sitk.Image] = field(default=None, repr=False)
    _labels: Optional[sitk.Image] = field(default=None, repr=False)
    cache: Dict[str, sitk.Image] = field(default_factory=dict, repr=False)  # derived images (e.g. normalised)

    @property
    def image(self) -> sitk.Image:
        """The atlas intensity image (Float32, its own grid)."""
        if self._image is None:
            self._image = _read_3d(self.image_path, "atlas image")
        return self._image

    @property
    def labels(self) -> sitk.Image:
        """The atlas labelmap (UInt16) on the atlas image's grid."""
        if self._labels is None:
            labels = _read_3d(self.label_path, "atlas labelmap", pixel=None)
            arr = sitk.GetArrayViewFromImage(labels)
            if np.issubdtype(arr.dtype, np.floating) and not np.allclose(arr, np.round(arr)):
                raise InputError(f"the atlas labelmap '{self.label_path}' holds non-integer values; a labelmap is needed")
            labels = sitk.Cast(sitk.Round(sitk.Cast(labels, sitk.sitkFloat32)) if np.issubdtype(arr.dtype, np.floating) else labels, sitk.sitkUInt16)
            image = self.image
            if labels.GetSize() != image.GetSize():
                raise InputError(
                    f"the atlas '{self.name}' has an image of size {image.GetSize()} but a labelmap of size {labels.GetSize()}"
                )
            # Headers written by different tools differ in the last digits; the label belongs to its image.
            labels.CopyInformation(image)
            self._labels = labels
        return self._labels


@dataclass
class AtlasLibrary:
    """A set of atlases and the classes their labelmaps use.

    Attributes
    ----------
    folder : Path
    cases : list of AtlasCase, sorted by name
    classes : list of ClassInfo
        From ``dataset.json`` when present, else "Label k" for every label found.
    """

    folder: Path
    cases: List[AtlasCase]
    classes: List[ClassInfo]

    @property
    def label_values(self) -> List[int]:
        """Object labels (1..K as used by the classes), sorted."""
        return sorted(c.label for c in self.classes)

    def __len__(self) -> int:
        return len(self.cases)

    def subset(self, names: Sequence[str]) -> "AtlasLibrary":
        """A library of the named cases only (shares the already-read images)."""
        wanted = set(names)
        unknown = wanted - {c.name for c in self.cases}
        if unknown:
            raise InputError(f"the atlas library '{self.folder}' has no case {sorted(unknown)[0]}")
        return AtlasLibrary(self.folder, [c for c in self.cases if c.name in wanted], self.classes)


def _read_3d(path: Path, what: str, pixel=sitk.sitkFloat32) -> sitk.Image:
    from ...io.file_checks import check_image_file

    try:  # a truncated atlas is refused here, so the run drops it instead of fusing zeros
        check_image_file(path)
    except InputError as exc:
        raise InputError(f"cannot read the {what}: {exc}") from None
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"cannot read the {what} '{path}': {first_line(exc, 'unreadable')}") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the {what} '{path}' is not a 3D scalar image")
    return sitk.Cast(img, pixel) if pixel is not None else img


def resolve_atlas_folder(atlases: Union[str, Path]) -> Path:
    """The library folder for ``atlases``: a folder path, or the name of a shipped library."""
    if atlases is None or str(atlases).strip() == "":
        raise InputError("the atlas method needs --atlases: a library folder (imagesTr/, labelsTr/) or a shipped atlas name")
    path = Path(atlases).expanduser()
    if path.is_dir():
        return path
    shipped = atlases_dir() / str(atlases)
    if not path.is_absolute() and len(path.parts) == 1 and shipped.is_dir():
        return shipped
    names = sorted(p.name for p in atlases_dir().glob("*") if p.is_dir()) if atlases_dir().is_dir() else []
    hint = f"; shipped atlas libraries: {', '.join(names)}" if names else ""
    if path.exists():
        raise InputError(f"the atlas library '{atlases}' is a file; give a folder with imagesTr/ and labelsTr/{hint}")
    raise InputError(f"the atlas library '{atlases}' is neither a folder nor a shipped atlas name{hint}")


def _classes_from(folder: Path, cases: List[AtlasCase]) -> List[ClassInfo]:
    meta_path = folder / "dataset.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"the atlas library's '{meta_path}' is not valid JSON ({exc})") from None
        table = ClassTable.from_dataset_json(meta if isinstance(meta, dict) else {})
        if table.classes:
            return table.classes
    # No names given: every label value found in the first few labelmaps gets a generic name.
    found = set()
    for case in cases[:5]:
        found |= set(np.unique(sitk.GetArrayViewFromImage(case.labels)).tolist())
    found.discard(0)
    if not found:
        raise InputError(f"the atlas labelmaps in '{folder / 'labelsTr'}' hold no labels (all zero)")
    return generic_classes(sorted(int(v) for v in found), prefix="Label")


def load_atlas_library(atlases: Union[str, Path]) -> AtlasLibrary:
    """Find the atlases of a library folder (or shipped library name) and their classes.

    Parameters
    ----------
    atlases : str or Path
        A folder with ``imagesTr/`` and ``labelsTr/`` (MSD or nnU-Net naming), or the name of
        a library under ``Resources/Atlases``.

    Returns
    -------
    AtlasLibrary (images are read when first used).

    Raises
    ------
    InputError
        Missing folder or sub-folders, no image/label pairs, an image without a labelmap,
        multi-channel nnU-Net libraries, unreadable dataset.json.
    """
    folder = resolve_atlas_folder(atlases)
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    for sub in (images_dir, labels_dir):
        if not sub.is_dir():
            raise InputError(
                f"the atlas library '{folder}' has no {sub.name}/ folder; it needs imagesTr/ (images) and labelsTr/ (labelmaps)"
            )
    labels = {s: p for p in labels_dir.iterdir() if not p.name.startswith(".") and (s := _stem(p)) is not None}
    cases, unpaired, channels = [], [], set()
    for p in sorted(images_dir.iterdir()):
        stem = _stem(p)
        if stem is None or p.name.startswith("."):
            continue
        name = stem
        m = _CHANNEL.search(stem)
        if stem not in labels and m:
            name = stem[: m.start()]
            channels.add(m.group(1))
            if m.group(1) != "0000":
                continue  # further channels of a multi-channel case
        if name not in labels:
            unpaired.append(p.name)
            continue
        cases.append(AtlasCase(name, p, labels[name]))
    if len(channels) > 1:
        raise InputError(f"the atlas library '{folder}' has {len(channels)} channels per case; the atlas method uses one-channel atlases")
    if unpaired:
        raise InputError(
            f"the atlas library '{folder}' has {len(unpaired)} image(s) without a labelmap in labelsTr/ (e.g. {unpaired[0]})"
        )
    if not cases:
        raise InputError(f"the atlas library '{folder}' holds no image/labelmap pairs in imagesTr/ and labelsTr/")
    cases.sort(key=lambda c: c.name)
    return AtlasLibrary(folder, cases, _classes_from(folder, cases))
