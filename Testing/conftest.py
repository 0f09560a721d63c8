"""Shared fixtures: the real data beside the project (../shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSEGAI_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; the suite needs it (CI runs with shared/ beside the clone)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set MEDSEGAI_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hippocampus_case(shared_data):
    """(image path, label path) of one real hippocampus case."""
    return (
        shared_data / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz",
        shared_data / "hippocampus" / "labelsTr" / "hippocampus_001.nii.gz",
    )
