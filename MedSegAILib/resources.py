"""Where the extension's bundled files are: sample data, shipped models, atlases.

``MEDSEGAI_RESOURCES`` overrides the location; otherwise ``Resources/`` beside the
``MedSegAILib`` package (the source tree, and the layout the Slicer extension installs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List


def resources_dir() -> Path:
    env = os.environ.get("MEDSEGAI_RESOURCES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "Resources"


def sample_data_dir() -> Path:
    return resources_dir() / "SampleData"


def models_dir() -> Path:
    return resources_dir() / "Models"


def atlases_dir() -> Path:
    return resources_dir() / "Atlases"


def shipped_model_names() -> list:
    """Names of the models in :func:`models_dir` (one folder each), sorted."""
    folder = models_dir()
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / "model.json").is_file()) if folder.is_dir() else []


def default_model_name() -> str:
    """The model a deep run uses when none is chosen: the first shipped model ("" if none)."""
    names = shipped_model_names()
    return names[0] if names else ""


@dataclass(frozen=True)
class SampleCase:
    name: str  # sample name shown in the Sample Data module
    image: Path
    label: Path
    image_sha256: str
    label_sha256: str


def sample_cases(sample_dir=None) -> List[SampleCase]:
    """The bundled sample cases (``hippocampus_<n>.nii.gz`` + ``_label``), with SHA-256 checksums."""
    from .core.checksums import sha256_of_file  # hashlib only: Slicer calls this at every start

    folder = Path(sample_dir) if sample_dir else sample_data_dir()
    cases = []
    for image in sorted(folder.glob("*.nii.gz")):
        if image.name.endswith("_label.nii.gz"):
            continue
        label = image.with_name(image.name[: -len(".nii.gz")] + "_label.nii.gz")
        if not label.exists():
            continue
        stem = image.name[: -len(".nii.gz")]
        cases.append(
            SampleCase(
                name=f"MedSegAI {stem.replace('_', ' ')}",
                image=image,
                label=label,
                image_sha256=sha256_of_file(image),
                label_sha256=sha256_of_file(label),
            )
        )
    return cases


def file_uri(path) -> str:
    """A file:// URI for a local file (Sample Data downloads from URIs)."""
    return Path(path).resolve().as_uri()
