"""Standard terminology codes for segments, in the form 3D Slicer stores them.

Slicer keeps a segment's meaning in the segment tag ``TerminologyEntry``: seven fields joined by
``~``, each coded field a ``scheme^value^meaning`` triple joined by ``^``::

    <terminology context>~<category>~<type>~<type modifier>~<anatomic context>~<region>~<region modifier>

for example (Slicer 5.x, ``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry``)::

    Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^

Empty fields stay as ``^^``. The codes below were checked against Slicer's own terminology
tables (``Modules/Loadable/Terminologies/Resources/SegmentationCategoryTypeModifier-DICOM-Master.json``):
every type listed here occurs there under the category given, so Slicer's terminology
selector recognises the entry. Look codes up by a class name with :func:`lookup_terminology`.
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from .classes import ANATOMICAL_STRUCTURE, MORPHOLOGICALLY_ALTERED, TISSUE, ClassInfo, Code, Terminology

#: Terminology context of every code below (Slicer's DICOM master list).
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
#: Anatomic context Slicer writes by default in the region fields.
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

LEFT: Code = ("SCT", "7771000", "Left")
RIGHT: Code = ("SCT", "24028007", "Right")
RIGHT_AND_LEFT: Code = ("SCT", "51440002", "Right and left")


def _anat(value: str, meaning: str, modifier: Optional[Code] = None) -> Terminology:
    return Terminology(ANATOMICAL_STRUCTURE, ("SCT", value, meaning), modifier)


def _tissue(value: str, meaning: str) -> Terminology:
    return Terminology(TISSUE, ("SCT", value, meaning))


def _altered(value: str, meaning: str) -> Terminology:
    return Terminology(MORPHOLOGICALLY_ALTERED, ("SCT", value, meaning))


#: Known codes by lower-case name (synonyms map to the same entry).
KNOWN_TERMINOLOGY: Dict[str, Terminology] = {
    # brain
    "hippocampus": _anat("5366008", "Hippocampus"),
    "brain": _anat("12738006", "Brain"),
    "brain ventricle": _anat("35764002", "Brain ventricle"),
    "brain stem": _anat("119238007", "Brain stem"),
    "cerebellum": _anat("113305005", "Cerebellum"),
    "thalamus": _anat("42695009", "Thalamus"),
    "amygdala": _anat("4958002", "Amygdala"),
    "putamen": _anat("89278009", "Putamen"),
    # thorax and abdomen
    "liver": _anat("10200004", "Liver"),
    "spleen": _anat("78961009", "Spleen"),
    "pancreas": _anat("15776009", "Pancreas"),
    "kidney": _anat("64033007", "Kidney"),
    "kidney left": _anat("64033007", "Kidney", LEFT),
    "kidney right": _anat("64033007", "Kidney", RIGHT),
    "adrenal gland": _anat("23451007", "Adrenal gland"),
    "adrenal gland left": _anat("23451007", "Adrenal gland", LEFT),
    "adrenal gland right": _anat("23451007", "Adrenal gland", RIGHT),
    "lung": _anat("39607008", "Lung"),
    "lung left": _anat("39607008", "Lung", LEFT),
    "lung right": _anat("39607008", "Lung", RIGHT),
    "heart": _anat("80891009", "Heart"),
    "aorta": _anat("15825003", "Aorta"),
    "inferior vena cava": _anat("64131007", "Inferior vena cava"),
    "portal vein": _anat("32764006", "Portal vein"),
    "stomach": _anat("69695003", "Stomach"),
    "gallbladder": _anat("28231008", "Gallbladder"),
    "esophagus": _anat("32849002", "Esophagus"),
    "trachea": _anat("44567001", "Trachea"),
    "duodenum": _anat("38848004", "Duodenum"),
    "small intestine": _anat("30315005", "Small Intestine"),
    "colon": _anat("71854001", "Colon"),
    "thyroid": _anat("69748006", "Thyroid"),
    "prostate": _anat("41216001", "Prostate"),
    # skeleton
    "vertebra": _anat("51282000", "Vertebra"),
    "rib": _anat("113197003", "Rib"),
    "sacrum": _anat("54735007", "Sacrum"),
    "skull": _anat("89546000", "Skull"),
    "femur": _anat("71341001", "Femur"),
    # tissues
    "tissue": _tissue("85756007", "Tissue"),
    "bone": _tissue("272673000", "Bone"),
    "fat": _tissue("248300009", "Body fat"),
    "muscle": _tissue("71616004", "Muscle"),
    "skin": _tissue("39937001", "Skin"),
    # lesions
    "neoplasm": _altered("108369006", "Neoplasm"),
    "mass": _altered("4147007", "Mass"),
    "cyst": _altered("367643001", "Cyst"),
    "edema": _altered("79654002", "Edema"),
    "necrosis": _altered("6574001", "Necrosis"),
}

_SYNONYMS = {
    "body fat": "fat",
    "adipose tissue": "fat",
    "tumor": "neoplasm",
    "tumour": "neoplasm",
    "brain tumor": "neoplasm",
    "brain tumour": "neoplasm",
    "lesion": "neoplasm",
    "oedema": "edema",
    "small bowel": "small intestine",
    "thyroid gland": "thyroid",
    "left kidney": "kidney left",
    "right kidney": "kidney right",
    # MSD hippocampus parts: the whole-structure code is the closest standard code.
    "hippocampus anterior": "hippocampus",
    "hippocampus posterior": "hippocampus",
    "anterior hippocampus": "hippocampus",
    "posterior hippocampus": "hippocampus",
}


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def lookup_terminology(name: str) -> Optional[Terminology]:
    """The standard code for a class name, or None.

    Matching ignores case, underscores and hyphens ("kidney_left", "Kidney left"); a few
    synonyms are known ("tumour" -> Neoplasm, "fat" -> Body fat). "Anterior hippocampus" and
    "posterior hippocampus" map to Hippocampus, the nearest code Slicer's tables hold; bare
    "Anterior"/"Posterior" (MSD's label names) are too vague to code.
    """
    key = _normalise(name)
    key = _SYNONYMS.get(key, key)
    return KNOWN_TERMINOLOGY.get(key)


def with_terminology(info: ClassInfo) -> ClassInfo:
    """``info`` with its terminology filled from :func:`lookup_terminology` when it has none."""
    if info.terminology is not None:
        return info
    term = lookup_terminology(info.name)
    return info if term is None else ClassInfo(info.label, info.name, info.color, term)


def _triple(code: Optional[Code]) -> str:
    if not code:
        return "^^"
    scheme, value, meaning = code
    return f"{scheme}^{value}^{meaning}"


def terminology_entry_string(info: ClassInfo) -> str:
    """The ``TerminologyEntry`` segment tag value for a class, in Slicer 5.x's format.

    Uses ``info.terminology`` or, when that is None, :func:`lookup_terminology` on its name.
    Returns "" when no code is known (the caller then leaves the tag unset and Slicer shows
    its default).

    Examples
    --------
    >>> from MedSegAILib.core.classes import ClassInfo
    >>> terminology_entry_string(ClassInfo(1, "Liver", (0.9, 0.5, 0.4)))
    'Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^'
    """
    term = info.terminology or lookup_terminology(info.name)
    if term is None:
        return ""
    return "~".join(
        [
            TERMINOLOGY_CONTEXT,
            _triple(term.category),
            _triple(term.type),
            _triple(term.type_modifier),
            ANATOMIC_CONTEXT,
            "^^",
            "^^",
        ]
    )


def parse_terminology_entry(entry: str) -> Optional[Terminology]:
    """Inverse of :func:`terminology_entry_string` (category, type and type modifier only)."""
    parts = entry.split("~")
    if len(parts) < 3:
        return None

    def code(field: str) -> Optional[Code]:
        bits = field.split("^")
        if len(bits) != 3 or not any(bits):
            return None
        return (bits[0], bits[1], bits[2])

    category, type_ = code(parts[1]), code(parts[2])
    if category is None or type_ is None:
        return None
    modifier = code(parts[3]) if len(parts) > 3 else None
    return Terminology(category, type_, modifier)
