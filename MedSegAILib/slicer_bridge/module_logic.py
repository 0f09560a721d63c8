"""Every decision the Slicer module makes, as plain functions that pytest covers.

The module (``MedSegAI/MedSegAI.py``) is a thin panel: it reads the parameter node, asks these
functions what to do, runs ``PythonSlicer -m MedSegAILib.cli segment ...`` in a background
process, and loads the finished case folder with :func:`load_case_into_scene`. Nothing here
imports Qt or needs the Slicer application; MRML work goes through the bridge functions.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..methods.deep.onnx_runtime import TORCH_STACK

#: Method families in the order the panel shows them.
FAMILIES = ("classical", "atlas", "deep")

#: Device choices of the panel (the CLI's --device values).
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Requirement:
    """An optional Python package a method needs.

    ``installer`` is "pytorch" (through the PyTorch extension's PyTorchUtils, never a plain
    pip install of torch) or "pip" (``slicer.packaging.pip_ensure`` / ``slicer.util.pip_install``).
    """

    distribution: str  # the pip name, with a version specifier
    module: str  # the import name checked for presence
    installer: str = "pip"
    licence_note: str = ""


TORCH = Requirement("torch==2.13.0", "torch", "pytorch")
MONAI = Requirement("monai>=1.4", "monai")
SAFETENSORS = Requirement("safetensors>=0.4", "safetensors")
EINOPS = Requirement("einops>=0.6", "einops")  # MONAI's SwinUNETR needs it to run
ONNXRUNTIME = Requirement("onnxruntime>=1.17", "onnxruntime")
PYMAXFLOW = Requirement(
    "PyMaxflow>=1.3", "maxflow", licence_note="PyMaxflow is GPL-3.0; it is installed on request and not bundled"
)

#: Packages each family needs beyond numpy/scipy/SimpleITK (which Slicer ships). The deep
#: family's are the torch runtime's, as the runtime choice names them (``TORCH_STACK``).
FAMILY_REQUIREMENTS: Dict[str, Tuple[Requirement, ...]] = {
    "classical": (),
    "atlas": (),
    "deep": tuple({r.module: r for r in (TORCH, MONAI, SAFETENSORS)}[m] for m in TORCH_STACK),
}
#: Methods that need more than their family.
METHOD_REQUIREMENTS: Dict[str, Tuple[Requirement, ...]] = {
    "graphcut": (PYMAXFLOW,),
    # The default graph-cut solver of mrf/crf needs PyMaxflow (solver=icm does not).
    "mrf": (PYMAXFLOW,),
    "crf": (PYMAXFLOW,),
}


def methods_by_family() -> Dict[str, List[Any]]:
    """Registered methods (MethodSpec) grouped by family, families in :data:`FAMILIES` order."""
    from ..methods.registry import available_methods

    out: Dict[str, List[Any]] = {f: [] for f in FAMILIES}
    for spec in available_methods():
        out.setdefault(spec.family, []).append(spec)
    return {f: specs for f, specs in out.items() if specs}


def method_spec(name: str):
    from ..methods.registry import get_method

    return get_method(name)


def requirements_for(
    method: str, family: Optional[str] = None, *, model: Optional[str] = None, parameters: Optional[Dict[str, Any]] = None, device: str = "auto"
) -> List[Requirement]:
    """The optional packages ``method`` needs (family's first, then the method's own).

    A deep run that will go to ONNX Runtime (a model with a current ONNX export, no
    Monte-Carlo dropout, runtime not forced to torch, CPU or auto device) needs only
    onnxruntime: about 30 MB instead of PyTorch and MONAI. A SwinUNETR model run with torch
    needs einops too.
    """
    if family is None:
        family = method_spec(method).family
    family_reqs = FAMILY_REQUIREMENTS.get(family, ())
    if family == "deep" and _runs_on_onnx(model, parameters or {}, device):
        family_reqs = (ONNXRUNTIME,)
    elif family == "deep" and model and _network(model) == "swinunetr":
        family_reqs = (*family_reqs, EINOPS)
    reqs = list(family_reqs) + list(METHOD_REQUIREMENTS.get(method, ()))
    seen, out = set(), []
    for r in reqs:
        if r.module not in seen:
            seen.add(r.module)
            out.append(r)
    return out


def _network(model: str) -> Optional[str]:
    """The network kind in a model's card (read as JSON, without torch)."""
    from ..methods.deep.model_store import read_card, resolve_model_dir

    return read_card(resolve_model_dir(model)).get("plan", {}).get("network")


def _runs_on_onnx(model: Optional[str], parameters: Dict[str, Any], device: str) -> bool:
    """Whether a deep run of ``model`` would go to ONNX Runtime once onnxruntime is installed:
    the run's own rule (``onnx_runtime.choose_runtime``) with onnxruntime counted as present.
    A run that cannot work at all (unknown model, runtime=onnx without an export) raises
    InputError here, before anything is installed."""
    if not model:
        return False
    from ..methods.deep.onnx_runtime import choose_runtime

    present = lambda module: module == "onnxruntime" or importlib.util.find_spec(module) is not None  # noqa: E731
    engine, _ = choose_runtime(model, str(parameters.get("runtime", "auto")), device, int(parameters.get("mc_samples", 0) or 0), installed=present)
    return engine == "onnx"


def missing_requirements(
    method: str,
    family: Optional[str] = None,
    *,
    is_installed=None,
    model: Optional[str] = None,
    parameters: Optional[Dict[str, Any]] = None,
    device: str = "auto",
) -> List[Requirement]:
    """Which of :func:`requirements_for` are not importable (checked without importing them)."""
    check = is_installed or (lambda module: importlib.util.find_spec(module) is not None)
    return [r for r in requirements_for(method, family, model=model, parameters=parameters, device=device) if not check(r.module)]


def install_plan(missing: Sequence[Requirement]) -> Dict[str, List[str]]:
    """Group missing packages by installer: {"pytorch": [...], "pip": [...]} (empty lists dropped)."""
    plan: Dict[str, List[str]] = {}
    for r in missing:
        plan.setdefault(r.installer, []).append(r.distribution)
    return plan


def install_question(method: str, missing: Sequence[Requirement]) -> str:
    """The sentence the module shows before installing (untranslated; the module wraps it)."""
    names = ", ".join(r.distribution for r in missing)
    notes = " ".join(r.licence_note + "." for r in missing if r.licence_note)
    return (
        f"The method '{method}' needs Python packages that are not installed yet: {names}. "
        f"Install them now? This downloads them from the internet and can take several minutes. {notes}"
    ).strip()


def torch_version_requirement() -> str:
    """The version specifier passed to PyTorchUtilsLogic.installTorch (e.g. "==2.13.0")."""
    return TORCH.distribution[len("torch") :]


# --- parameters ---------------------------------------------------------------------------------


def parameter_kind(default: Any) -> str:
    """Widget kind for a method parameter: "bool", "int", "float", "list" or "text"."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, (list, tuple)):
        return "list"
    return "text"


def parameter_label(name: str) -> str:
    """"smoothing_mm" -> "Smoothing (mm)"; "n_classes" -> "Number of classes"."""
    words = name.split("_")
    unit = ""
    if words and words[-1] in ("mm", "mm3", "s", "hu"):
        unit = {"mm3": "mm³", "hu": "HU"}.get(words[-1], words[-1])
        words = words[:-1]
    if words and words[0] == "n":
        words = ["number", "of"] + words[1:]
    text = " ".join(words).strip().capitalize() or name
    return f"{text} ({unit})" if unit else text


def format_parameter(value: Any) -> str:
    """A parameter value as the CLI's ``--param key=value`` text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_parameter(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def parameters_to_json(values: Dict[str, Any]) -> str:
    """Method parameters as the JSON text kept in the parameter node (``methodParameters``)."""
    return json.dumps(values, sort_keys=True)


def parameters_from_json(text: str, method: str) -> Dict[str, Any]:
    """The method's defaults overlaid by the stored values that it knows (others dropped)."""
    defaults = dict(method_spec(method).defaults)
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        stored = {}
    if isinstance(stored, dict):
        for k, v in stored.items():
            if k in defaults:
                defaults[k] = v
    return defaults


# --- the background run -------------------------------------------------------------------------


@dataclass
class RunSettings:
    """What the panel's parameter node holds, in the CLI's terms.

    Field names match the parameter node wrapper's fields in ``MedSegAI.py``.
    """

    method: str = "otsu"
    methodParameters: str = "{}"
    model: str = ""
    atlasFolder: str = ""
    device: str = "auto"
    minIslandMm3: float = 0.0
    keepLargest: bool = False
    keepFraction: float = 0.0
    fillHoles: bool = False
    connectivity: int = 26
    radiomics: bool = True

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def build_segment_arguments(
    input_files: Sequence[str],
    output_dir,
    settings: RunSettings,
    *,
    seeds_file: Optional[str] = None,
) -> List[str]:
    """Arguments after ``-m MedSegAILib.cli`` for one case (channels joined by commas).

    Raises InputError when the method needs an input (seeds, atlases, model) that is missing,
    so the panel can say so before starting a process.
    """
    from ..core.errors import InputError

    if not input_files:
        raise InputError("select an input volume")
    spec = method_spec(settings.method)
    if "seeds" in spec.needs and not seeds_file:
        raise InputError(f"the method '{spec.name}' needs seeds: select a seed segmentation with painted segments")
    if "atlases" in spec.needs and not settings.atlasFolder:
        raise InputError(f"the method '{spec.name}' needs an atlas library folder")
    if "model" in spec.needs and not settings.model:
        raise InputError(f"the method '{spec.name}' needs a model")
    if settings.device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got '{settings.device}'")
    args = ["segment", ",".join(str(f) for f in input_files), "--method", spec.name, "--output", str(output_dir)]
    params = parameters_from_json(settings.methodParameters, spec.name)
    for key in sorted(params):
        if params[key] != spec.defaults.get(key):
            args += ["--param", f"{key}={format_parameter(params[key])}"]
    if seeds_file:
        args += ["--seeds", str(seeds_file)]
    if settings.atlasFolder and "atlases" in spec.needs:
        args += ["--atlases", settings.atlasFolder]
    if settings.model and "model" in spec.needs:
        args += ["--model", settings.model]
    if spec.family == "deep":
        args += ["--device", settings.device]
    if settings.minIslandMm3 > 0:
        args += ["--min-island-mm3", format_parameter(float(settings.minIslandMm3))]
    if settings.keepLargest:
        args.append("--keep-largest")
    if settings.keepFraction > 0:
        args += ["--keep-fraction", format_parameter(float(settings.keepFraction))]
    if settings.fillHoles:
        args.append("--fill-holes")
    if int(settings.connectivity) != 26:
        args += ["--connectivity", str(int(settings.connectivity))]
    if not settings.radiomics:
        args.append("--no-radiomics")
    args.append("--overwrite")  # the folder is a fresh temporary one the module made
    return args


def python_command(python_executable: str, arguments: Sequence[str]) -> List[str]:
    """The full command line: ``<PythonSlicer> -m MedSegAILib.cli <arguments>``."""
    return [python_executable, "-m", "MedSegAILib.cli", *arguments]


def subprocess_environment(base: Dict[str, str], library_parent: str) -> Dict[str, str]:
    """``base`` with ``library_parent`` (the folder holding MedSegAILib) first on PYTHONPATH.

    Progress lines are forced (the CLI prints "[ 42.0%] message" lines when stderr is no
    terminal) and Python output unbuffered so the panel sees them at once.
    """
    env = dict(base)
    parts = [library_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != library_parent]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


_PROGRESS = re.compile(r"\[\s*(\d+(?:\.\d+)?)%\]\s*(.*)")


def parse_progress_line(line: str) -> Optional[Tuple[float, str]]:
    """(fraction 0..1, message) from one CLI progress line, or None for other output."""
    m = _PROGRESS.search(line.strip().split("\r")[-1])
    if not m:
        return None
    return min(max(float(m.group(1)) / 100.0, 0.0), 1.0), m.group(2).strip()


def error_from_output(lines: Sequence[str], exit_code: int) -> str:
    """The one sentence to show when the process failed (the CLI's 'medsegai: error: ...')."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("medsegai:"):
            return line[len("medsegai:") :].strip().removeprefix("error:").strip()
    if exit_code == 130:
        return "cancelled"
    tail = [l.strip() for l in lines if l.strip()]
    return tail[-1] if tail else f"the segmentation process stopped with exit code {exit_code}"


# --- results into the scene ---------------------------------------------------------------------


def read_case_folder(folder):
    """A :class:`SegmentationResult` from the outputs ``medsegai segment`` wrote into ``folder``."""
    import SimpleITK as sitk

    from ..core.classes import ClassInfo
    from ..core.errors import InputError
    from ..core.result import InstanceRecord, Provenance, SegmentationResult

    folder = Path(folder)
    needed = ["labels.nii.gz", "instances.nii.gz", "uncertainty.nii.gz", "instances.csv", "provenance.json"]
    missing = [n for n in needed if not (folder / n).exists()]
    if missing:
        raise InputError(f"the result folder '{folder}' has no {missing[0]}")
    with open(folder / "provenance.json") as fh:
        prov = json.load(fh)
    classes = [ClassInfo.from_dict(c) for c in prov.pop("classes", [])]
    prov.pop("instances", None)
    known = set(Provenance.__dataclass_fields__)
    provenance = Provenance(**{k: v for k, v in prov.items() if k in known})
    fixed = set(InstanceRecord(0, 0, "", 0, 0.0, [0, 0, 0], [0, 0, 0], [0, 0, 0]).to_row())
    table = []
    with open(folder / "instances.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            unc = row.get("mean_uncertainty")
            measurements = {}
            for k, v in row.items():
                if k not in fixed and v not in ("", None):
                    try:
                        measurements[k] = float(v)
                    except ValueError:
                        pass
            table.append(
                InstanceRecord(
                    instance_id=int(row["instance_id"]),
                    class_label=int(row["class_label"]),
                    class_name=row["class_name"],
                    voxel_count=int(row["voxel_count"]),
                    volume_mm3=float(row["volume_mm3"]),
                    centroid_lps_mm=[float(row[f"centroid_{a}_mm"]) for a in "xyz"],
                    bbox_start_xyz=[int(row[f"bbox_start_{a}"]) for a in "xyz"],
                    bbox_size_xyz=[int(row[f"bbox_size_{a}"]) for a in "xyz"],
                    mean_uncertainty=float(unc) if unc not in ("", None) else None,
                    segment_name=row["segment_name"],
                    measurements=measurements,
                )
            )
    return SegmentationResult(
        labels=sitk.ReadImage(str(folder / "labels.nii.gz")),
        instances=sitk.ReadImage(str(folder / "instances.nii.gz")),
        uncertainty=sitk.ReadImage(str(folder / "uncertainty.nii.gz")),
        classes=classes,
        instance_table=table,
        provenance=provenance,
    )


@dataclass
class LoadedNodes:
    segmentation: Any
    uncertainty: Any
    table: Any
    extra: Dict[str, Any] = field(default_factory=dict)


def load_case_into_scene(
    folder,
    scene,
    *,
    reference_volume_node=None,
    segmentation_node=None,
    name: str = "MedSegAI",
) -> LoadedNodes:
    """Add a finished case's outputs to ``scene``: segmentation, uncertainty volume, table.

    ``segmentation_node`` is the output the user chose (its segments are replaced); otherwise
    a new node is added, so nothing the user had is overwritten. Provenance is kept as a node
    attribute ("MedSegAI.Provenance", JSON) on the segmentation.
    """
    from .segmentation_node import instance_table_to_table_node, result_to_segmentation_node, uncertainty_to_volume_node

    result = read_case_folder(folder)
    seg = result_to_segmentation_node(
        result, scene, name=f"{name} segmentation", reference_volume_node=reference_volume_node, node=segmentation_node
    )
    seg.SetAttribute("MedSegAI.Provenance", json.dumps(result.provenance.to_dict(), default=str))
    unc = uncertainty_to_volume_node(result, scene, name=f"{name} uncertainty")
    table = instance_table_to_table_node(result, scene, name=f"{name} instances")
    return LoadedNodes(seg, unc, table)


def write_volume_for_run(volume_node, path) -> Path:
    """Write a volume node for the background process with its exact geometry (LPS, NRRD/NIfTI).

    A volume under a transform is refused (InputError): the process would not see the
    transform, so the result would not line up.
    """
    import SimpleITK as sitk

    from ..core.errors import InputError
    from .segmentation_node import volume_node_to_sitk

    if volume_node.GetParentTransformNode() is not None:
        raise InputError(
            f"the volume '{volume_node.GetName()}' is transformed; harden the transform (Data module) before segmenting it"
        )
    sitk.WriteImage(volume_node_to_sitk(volume_node), str(path), useCompression=True)
    return Path(path)


def seeds_file_for_segmentation(seg_node, reference_volume_node, path) -> Path:
    """Write the painted segments of ``seg_node`` as a seed labelmap (labels 1..K) for ``--seeds``."""
    import SimpleITK as sitk

    from .segmentation_node import seeds_from_segmentation_node

    seeds = seeds_from_segmentation_node(seg_node, reference_volume_node)
    sitk.WriteImage(seeds, str(path), useCompression=True)
    return Path(path)


# --- sample data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampleCase:
    name: str  # sample name shown in the Sample Data module
    image: Path
    label: Path
    image_sha256: str
    label_sha256: str


def sample_cases(sample_dir=None) -> List[SampleCase]:
    """The bundled sample cases (``hippocampus_<n>.nii.gz`` + ``_label``), with SHA-256 checksums."""
    from ..io.images import file_sha256
    from ..resources import sample_data_dir

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
                image_sha256=file_sha256(image),
                label_sha256=file_sha256(label),
            )
        )
    return cases


def file_uri(path) -> str:
    """A file:// URI for a local file (Sample Data downloads from URIs)."""
    return Path(path).resolve().as_uri()


# --- self-test ----------------------------------------------------------------------------------


def self_test_runs() -> List[Tuple[str, List[str]]]:
    """(method, extra CLI arguments) to run on the sample data, one per family that can run here.

    Classical always (Otsu); atlas and deep when the shipped hippocampus atlas library / model
    and the method's packages are present. MedSegAITest runs these inside Slicer.
    """
    from ..resources import atlases_dir, models_dir

    families = methods_by_family()
    runs: List[Tuple[str, List[str]]] = [("otsu", ["--param", "n_classes=2"])]
    for family, option, folder in (("atlas", "--atlases", atlases_dir()), ("deep", "--model", models_dir())):
        specs = families.get(family, [])
        if not specs or not (folder / "hippocampus").is_dir():
            continue
        spec = specs[0]
        if missing_requirements(spec.name, family):
            continue
        runs.append((spec.name, [option, "hippocampus"]))
    return runs


def check_case_outputs(folder, reference_label=None, *, min_dice: float = 0.0) -> List[str]:
    """Problems with a case folder (empty list = fine); used by MedSegAITest and pytest.

    Checks every output exists, geometry equals the labels', the .seg.nrrd has one segment per
    instance, and (with ``reference_label``) the foreground Dice is at least ``min_dice``.
    """
    import numpy as np
    import SimpleITK as sitk

    from ..outputs.files import OUTPUT_FILES

    folder = Path(folder)
    problems = [f"missing {n}" for n in OUTPUT_FILES if not (folder / n).exists()]
    if problems:
        return problems
    labels = sitk.ReadImage(str(folder / "labels.nii.gz"))
    for n in ("instances.nii.gz", "uncertainty.nii.gz"):
        img = sitk.ReadImage(str(folder / n))
        if img.GetSize() != labels.GetSize() or not np.allclose(img.GetOrigin(), labels.GetOrigin()) or not np.allclose(
            img.GetDirection(), labels.GetDirection()
        ):
            problems.append(f"{n} is not on the labels' grid")
    with open(folder / "instances.csv", newline="") as fh:
        n_rows = sum(1 for _ in csv.DictReader(fh))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(folder / "segmentation.seg.nrrd"))
    reader.ReadImageInformation()
    n_segments = len([k for k in reader.GetMetaDataKeys() if re.fullmatch(r"Segment\d+_ID", k)])
    if n_segments != n_rows:
        problems.append(f"segmentation.seg.nrrd has {n_segments} segments for {n_rows} instances")
    if reference_label is not None:
        ref = sitk.GetArrayViewFromImage(sitk.ReadImage(str(reference_label))) > 0
        pred = sitk.GetArrayViewFromImage(labels) > 0
        denom = ref.sum() + pred.sum()
        dice = 2.0 * np.logical_and(ref, pred).sum() / denom if denom else 1.0
        if dice < min_dice:
            problems.append(f"foreground Dice {dice:.3f} is below {min_dice}")
    return problems
