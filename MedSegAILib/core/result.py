"""The one result type every method returns, and the method output it is built from.

A method (classical, atlas or deep) returns a :class:`MethodOutput`: a semantic labelmap, and
class posteriors or an uncertainty map. :func:`MedSegAILib.pipeline.segment` turns it into a
:class:`SegmentationResult` by post-processing, splitting classes into instances, measuring
them and recording provenance. All images are SimpleITK images on the input's exact grid
(origin, spacing, direction), arrays inside are indexed (z, y, x).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import SimpleITK as sitk

from .classes import ClassInfo


@dataclass
class MethodOutput:
    """What a segmentation method returns before post-processing.

    Attributes
    ----------
    labels : sitk.Image
        Semantic labelmap (UInt8 or UInt16), 0 = background, on the input grid.
    classes : list of ClassInfo
        One per object label that may appear in ``labels``.
    probabilities : sitk.Image or None
        Vector image (float32), component k = posterior probability of label k
        (component 0 = background); components sum to 1 per voxel.
    uncertainty : sitk.Image or None
        Per-voxel uncertainty in [0, 1] (float32). Computed from ``probabilities`` as the
        normalised entropy when the method gives none.
    parameters : dict
        Every parameter the method used, defaults included (JSON-serialisable).
    model_hash : str or None
        SHA-256 of the model weights, for learned methods.
    extra : dict
        Method-specific diagnostics (e.g. thresholds, energies), JSON-serialisable.
    member_uncertainty : sitk.Image or None
        For an ensemble of models: the members' mean own normalised entropy in [0, 1]
        (float32), what a single member says of the input; the domain check compares it with
        single members' outputs on cases they did not train on. None otherwise.
    label_samples : list of sitk.Image or None
        For an ensemble run that keeps its probabilities: each member's own labelmap (UInt8,
        on the input grid), samples of the segmentation for the feature intervals. None otherwise.
    """

    labels: sitk.Image
    classes: List[ClassInfo]
    probabilities: Optional[sitk.Image] = None
    uncertainty: Optional[sitk.Image] = None
    parameters: Dict[str, Any] = field(default_factory=dict)
    model_hash: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    member_uncertainty: Optional[sitk.Image] = None
    label_samples: Optional[List[sitk.Image]] = None


@dataclass
class InstanceRecord:
    """One object instance: a connected component of one class.

    Centroid is in patient coordinates (LPS, mm, as SimpleITK/DICOM); the bounding box is in
    voxel indices (x, y, z order as SimpleITK indexes), inclusive start and size.
    """

    instance_id: int
    class_label: int
    class_name: str
    voxel_count: int
    volume_mm3: float
    centroid_lps_mm: List[float]
    bbox_start_xyz: List[int]
    bbox_size_xyz: List[int]
    mean_uncertainty: Optional[float] = None
    segment_name: str = ""
    measurements: Dict[str, float] = field(default_factory=dict)

    def to_row(self) -> Dict[str, Any]:
        """Flat dict for CSV/table output; measurement columns follow the fixed ones."""
        row = {
            "instance_id": self.instance_id,
            "segment_name": self.segment_name,
            "class_label": self.class_label,
            "class_name": self.class_name,
            "voxel_count": self.voxel_count,
            "volume_mm3": round(self.volume_mm3, 4),
            "centroid_x_mm": round(self.centroid_lps_mm[0], 4),
            "centroid_y_mm": round(self.centroid_lps_mm[1], 4),
            "centroid_z_mm": round(self.centroid_lps_mm[2], 4),
            "bbox_start_x": self.bbox_start_xyz[0],
            "bbox_start_y": self.bbox_start_xyz[1],
            "bbox_start_z": self.bbox_start_xyz[2],
            "bbox_size_x": self.bbox_size_xyz[0],
            "bbox_size_y": self.bbox_size_xyz[1],
            "bbox_size_z": self.bbox_size_xyz[2],
            "mean_uncertainty": None if self.mean_uncertainty is None else round(self.mean_uncertainty, 6),
        }
        row.update(self.measurements)
        return row


@dataclass
class Provenance:
    """How a result was made: enough to reproduce it and to know what it rests on."""

    method: str
    family: str
    parameters: Dict[str, Any]
    software_version: str
    input_files: List[str]
    input_sha256: List[str]
    model_hash: Optional[str] = None
    wall_time_s: float = 0.0
    created_utc: str = ""
    library_versions: Dict[str, str] = field(default_factory=dict)
    postprocessing: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)
    #: Wall time (s) and peak memory (MiB) of each stage of the run (see core.stages).
    stages: List[Dict[str, Any]] = field(default_factory=list)
    intended_use: str = "Research use only. Not a medical device; not for diagnosis or treatment."

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class SegmentationResult:
    """Everything a run produces, on the input's grid.

    Attributes
    ----------
    labels : sitk.Image
        Semantic labelmap (UInt16), 0 = background.
    instances : sitk.Image
        Instance map (UInt8, UInt16 or UInt32: the smallest that holds N), 0 = background,
        1..N = instance ids matching ``instances_table``.
    uncertainty : sitk.Image
        Per-voxel uncertainty in [0, 1] (Float32, in steps of 2**-16).
    probabilities : sitk.Image or None
        Class posteriors (vector Float32), when the run was asked to keep them
        (``segment(..., keep_probabilities=True)``).
    label_samples : list of sitk.Image or None
        With ``keep_probabilities``, an ensemble's members' own labelmaps (see MethodOutput).
    classes : list of ClassInfo
    instance_table : list of InstanceRecord
    provenance : Provenance
    """

    labels: sitk.Image
    instances: sitk.Image
    uncertainty: sitk.Image
    classes: List[ClassInfo]
    instance_table: List[InstanceRecord]
    provenance: Provenance
    probabilities: Optional[sitk.Image] = None
    label_samples: Optional[List[sitk.Image]] = None

    def class_info(self, label: int) -> ClassInfo:
        for c in self.classes:
            if c.label == label:
                return c
        raise KeyError(f"no class with label {label}")
