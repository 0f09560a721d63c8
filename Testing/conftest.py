"""Shared fixtures: the real data beside the project (../shared/data)."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.fixture
def damaged_model_copy(tmp_path):
    """A function (model folder, file name, byte index) -> a copy of the folder in which that
    byte of that file is flipped: what a tampered or damaged download looks like."""

    def make(source: Path, name: str, index: int) -> Path:
        copy = tmp_path / f"damaged_{name}"
        shutil.copytree(source, copy)
        data = bytearray((copy / name).read_bytes())
        data[index] ^= 0xFF
        (copy / name).write_bytes(bytes(data))
        return copy

    return make


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, shared_data):
    """Ten real hippocampus cases in the MSD layout (8 train, 2 validation)."""
    root = tmp_path_factory.mktemp("hippo_small")
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir()
        for f in sorted((shared_data / "hippocampus" / sub).glob("*.nii.gz"))[:10]:
            shutil.copy(f, root / sub / f.name)
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}))
    return root
