"""Writing a result to a case folder: the six standard outputs.

``labels.nii.gz``, ``instances.nii.gz``, ``uncertainty.nii.gz``, ``segmentation.seg.nrrd``,
``instances.csv`` and ``provenance.json``. Every image keeps the input's geometry. A folder
that already holds results is refused unless ``overwrite`` is set, so nothing the user had is
lost; files are written under temporary names and moved into place at the end, so a failure
or cancel leaves no half-written case.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.result import SegmentationResult

OUTPUT_FILES = (
    "labels.nii.gz",
    "instances.nii.gz",
    "uncertainty.nii.gz",
    "segmentation.seg.nrrd",
    "instances.csv",
    "provenance.json",
)


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Raise InputError if ``folder`` already holds any MedSegAI output and ``overwrite`` is off."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the output '{folder}' exists and is not a folder")
    if not overwrite and folder.is_dir():
        existing = [f for f in OUTPUT_FILES if (folder / f).exists()]
        if existing:
            raise InputError(
                f"the output folder '{folder}' already holds results ({existing[0]}); "
                "choose another folder or pass --overwrite"
            )


def write_instance_csv(result: SegmentationResult, path: Path) -> None:
    rows: List[Dict] = [r.to_row() for r in result.instance_table]
    columns: List[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    if not columns:
        from ..core.result import InstanceRecord

        columns = list(InstanceRecord(0, 0, "", 0, 0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0]).to_row())
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow(row)


def provenance_dict(result: SegmentationResult) -> Dict:
    d = result.provenance.to_dict()
    d["classes"] = [c.to_dict() for c in result.classes]
    d["instances"] = len(result.instance_table)
    return d


def write_case_outputs(result: SegmentationResult, folder, *, overwrite: bool = False) -> Dict[str, Path]:
    """Write the six outputs of one case into ``folder``; returns name -> path.

    Raises InputError if the folder holds results and ``overwrite`` is False.
    """
    from .seg_nrrd import write_seg_nrrd

    folder = Path(folder)
    check_output_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".medsegai-", dir=folder))
    try:
        sitk.WriteImage(result.labels, str(tmp / "labels.nii.gz"), useCompression=True)
        sitk.WriteImage(result.instances, str(tmp / "instances.nii.gz"), useCompression=True)
        sitk.WriteImage(result.uncertainty, str(tmp / "uncertainty.nii.gz"), useCompression=True)
        write_seg_nrrd(result, tmp / "segmentation.seg.nrrd")
        write_instance_csv(result, tmp / "instances.csv")
        with open(tmp / "provenance.json", "w") as fh:
            json.dump(provenance_dict(result), fh, indent=2, default=str)
        paths = {}
        for name in OUTPUT_FILES:
            os.replace(tmp / name, folder / name)
            paths[name] = folder / name
        return paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
