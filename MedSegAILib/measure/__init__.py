"""Measurement: agreement with a reference (overlap, surface distances, panoptic quality) and
radiomic features of regions and instances.

- :func:`~MedSegAILib.measure.metrics.evaluate_labelmaps` — per-class Dice, IoU, HD95, ASSD,
  NSD, volumes, and panoptic quality (``medsegai evaluate``).
- :func:`~MedSegAILib.measure.panoptic.panoptic_quality` — PQ/SQ/RQ of two instance maps.
- :func:`~MedSegAILib.measure.radiomics.compute_radiomics` — shape, first-order and GLCM
  features with pyradiomics names (``medsegai radiomics``);
  :func:`~MedSegAILib.measure.radiomics.add_instance_radiomics` fills the instance table.

Metrics judge results; nothing here imports a segmentation method.
"""

from .metrics import evaluate_labelmaps
from .panoptic import lesion_detection, panoptic_quality
from .radiomics import add_instance_radiomics, compute_radiomics

__all__ = ["evaluate_labelmaps", "panoptic_quality", "lesion_detection", "compute_radiomics", "add_instance_radiomics"]
