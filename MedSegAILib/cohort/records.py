"""A case's summary row, and whether a case folder already holds this run's complete result.

A case folder is complete when it exists: the outputs are written into a temporary folder and
renamed into place in one step, ``provenance.json`` last (:mod:`MedSegAILib.outputs.files`).
``--resume`` skips a complete case only when its provenance says the same method and
parameters ran on the same input bytes (SHA-256); anything else is redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..io.images import file_sha256


def result_row(name: str, folder: Path, result, seconds: float) -> Dict[str, Any]:
    """The summary row of a case that ran: instances, their voxel-weighted mean uncertainty,
    the domain verdict where the method gives one."""
    table = result.instance_table
    voxels = sum(r.voxel_count for r in table)
    weighted = sum((r.mean_uncertainty or 0.0) * r.voxel_count for r in table)
    domain = (result.provenance.extra or {}).get("domain") or {}
    return {
        "case": name,
        "status": "ok",
        "seconds": round(seconds, 2),
        "instances": len(table),
        "mean_uncertainty": round(weighted / voxels, 6) if voxels else None,
        "in_domain": domain.get("in_domain"),
        "output": str(folder),
        "error": "",
    }


def failure_row(name: str, folder: Path, seconds: float, message: str) -> Dict[str, Any]:
    return {"case": name, "status": "failed", "seconds": round(seconds, 2), "output": str(folder), "error": message}


def complete_record(folder: Path, channels: Sequence[str], method: str, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The provenance of ``folder`` when it holds the complete result of ``method`` with
    ``params`` (given ones must match) on the inputs' current bytes; None otherwise."""
    path = Path(folder) / "provenance.json"
    if not path.is_file():
        return None
    try:
        prov = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if prov.get("method") != method:
        return None
    used = prov.get("parameters") or {}
    if any(str(used.get(k)) != str(v) for k, v in (params or {}).items()):
        return None
    if list(prov.get("input_sha256") or []) != [file_sha256(c) for c in channels]:
        return None
    return prov


def skipped_row(name: str, folder: Path, prov: Dict[str, Any]) -> Dict[str, Any]:
    """The row of a case ``--resume`` skipped (figures from its provenance)."""
    domain = (prov.get("extra") or {}).get("domain") or {}
    return {
        "case": name,
        "status": "skipped (complete)",
        "seconds": prov.get("wall_time_s"),
        "instances": prov.get("instances"),
        "in_domain": domain.get("in_domain"),
        "output": str(folder),
        "error": "",
    }
