"""Where the extension's bundled files are: sample data, shipped models, atlases.

``MEDSEGAI_RESOURCES`` overrides the location; otherwise ``Resources/`` beside the
``MedSegAILib`` package (the source tree, and the layout the Slicer extension installs).
"""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    env = os.environ.get("MEDSEGAI_RESOURCES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "Resources"


def sample_data_dir() -> Path:
    return resources_dir() / "SampleData"


def models_dir() -> Path:
    return resources_dir() / "Models"


def atlases_dir() -> Path:
    return resources_dir() / "Atlases"
