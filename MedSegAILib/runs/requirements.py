"""The optional Python packages a run needs, and how Slicer installs them.

Classical and atlas methods need only NumPy, SciPy and SimpleITK, which Slicer ships; graph cuts
need PyMaxflow; deep runs need ONNX Runtime (a model with a current ONNX export on the CPU) or
the torch stack (PyTorch, MONAI, safetensors; einops for SwinUNETR). The version specifiers are
ranges that resolve on the Python of every supported Slicer (3.9 in Slicer 5.8, 3.12 from
5.10): see :data:`SUPPORTED_SLICER_PYTHONS`. The project's own development environment pins
torch separately (``pyproject.toml``); that pin is not what Slicer is asked to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..methods.deep.onnx_runtime import TORCH_STACK

#: Method families in the order the panel shows them.
FAMILIES = ("classical", "atlas", "deep")

#: Slicer releases this extension supports and the Python each bundles
#: (SuperBuild/External_python.cmake at each tag).
SUPPORTED_SLICER_PYTHONS = {"5.8": "3.9", "5.10": "3.12", "5.12": "3.12"}


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


TORCH = Requirement("torch>=2.1", "torch", "pytorch")
MONAI = Requirement("monai>=1.3", "monai")
SAFETENSORS = Requirement("safetensors>=0.4", "safetensors")
EINOPS = Requirement("einops>=0.6", "einops")  # MONAI's SwinUNETR needs it to run
ONNXRUNTIME = Requirement("onnxruntime>=1.17", "onnxruntime")
ONNXSCRIPT = Requirement("onnxscript>=0.5", "onnxscript")  # torch's ONNX exporter needs it
MATPLOTLIB = Requirement("matplotlib>=3.5", "matplotlib")  # the learning curves
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
#: Methods that need more than their family (mrf and crf only with their default solver,
#: graphcut: solver=icm needs no PyMaxflow).
METHOD_REQUIREMENTS: Dict[str, Tuple[Requirement, ...]] = {
    "graphcut": (PYMAXFLOW,),
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
    own = METHOD_REQUIREMENTS.get(method, ())
    if method in ("mrf", "crf") and str((parameters or {}).get("solver", "graphcut")) != "graphcut":
        own = ()
    reqs = list(family_reqs) + list(own)
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
    the run's own rule (``onnx_runtime.choose_runtime``; for an imported model
    ``imported_files.network_forwards``, which takes ONNX Runtime whenever the torch runtime's
    packages are not all there) with onnxruntime counted as present.
    A run that cannot work at all (unknown model, runtime=onnx without an export) raises
    InputError here, before anything is installed."""
    if not model:
        return False
    from ..methods.deep.model_store import read_card, resolve_model_dir

    card = read_card(resolve_model_dir(model))
    from ..methods.deep.imported_files import has_onnx_exports, is_imported

    if is_imported(card):  # an imported nnU-Net or MONAI model: ONNX Runtime when every network has an export
        return str(parameters.get("runtime", "auto")) != "torch" and has_onnx_exports(card)
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
    """Which of :func:`requirements_for` are not installed in a version they accept (checked
    without importing them: an old torch or MONAI counts as missing, not as present).
    ``is_installed(module)`` replaces the check (tests)."""
    needed = requirements_for(method, family, model=model, parameters=parameters, device=device)
    if is_installed is not None:
        return [r for r in needed if not is_installed(r.module)]
    importlib.invalidate_caches()  # a package pip installed a moment ago in this process
    return [r for r in needed if not is_satisfied(r)]


def is_satisfied(req: Requirement) -> bool:
    """Whether ``req``'s module is importable and its distribution's version meets the
    specifier. Only ``>=``, ``>``, ``<``, ``<=``, ``==`` on dotted numbers are used here, so they
    are compared without the ``packaging`` library (not every Slicer has it); a module present
    under another distribution name (onnxruntime-gpu) counts as satisfying its bare name."""
    if importlib.util.find_spec(req.module) is None:
        return False
    name, spec = _split_requirement(req.distribution)
    try:
        from importlib import metadata

        installed = metadata.version(name)
    except Exception:  # PackageNotFoundError, or metadata unreadable: judged by the import
        return True
    return all(_compare(installed, op, version) for op, version in spec)


def _split_requirement(text: str) -> Tuple[str, List[Tuple[str, str]]]:
    import re

    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", text)
    name, rest = m.group(1), m.group(2)
    spec = [(op, ver.strip()) for op, ver in re.findall(r"(>=|<=|==|>|<)\s*([0-9][0-9A-Za-z.]*)", rest)]
    return name, spec


def _numeric(version: str) -> Tuple[int, ...]:
    import re

    parts = []
    for piece in version.split("+")[0].split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group(0)))
    return tuple(parts)


def _compare(installed: str, op: str, wanted: str) -> bool:
    a, b = _numeric(installed), _numeric(wanted)
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b}[op]


def install_plan(missing: Sequence[Requirement]) -> Dict[str, List[str]]:
    """Group missing packages by installer: {"pytorch": [...], "pip": [...]} (empty lists dropped)."""
    plan: Dict[str, List[str]] = {}
    for r in missing:
        plan.setdefault(r.installer, []).append(r.distribution)
    return plan


#: What ``medsegai train`` needs: the torch stack, the ONNX exporter and ONNX Runtime to check
#: its export (so the model also runs without torch) and matplotlib (the learning curves the panel shows).
TRAINING_REQUIREMENTS: Tuple[Requirement, ...] = (TORCH, MONAI, SAFETENSORS, ONNXSCRIPT, ONNXRUNTIME, MATPLOTLIB)


#: What importing a model (nnU-Net v2 or MONAI bundle) needs: torch to read the checkpoint,
#: MONAI to read a bundle's config and build its network, safetensors for the weights, and the
#: ONNX exporter and ONNX Runtime for the checked export that lets the model run without torch.
IMPORT_REQUIREMENTS: Tuple[Requirement, ...] = (TORCH, MONAI, SAFETENSORS, ONNXSCRIPT, ONNXRUNTIME)


def missing_for_training(*, is_installed=None, requirements: Sequence[Requirement] = TRAINING_REQUIREMENTS) -> List[Requirement]:
    """Which of ``requirements`` (default :data:`TRAINING_REQUIREMENTS`; or
    :data:`IMPORT_REQUIREMENTS`) are not installed in a version they accept."""
    if is_installed is not None:
        return [r for r in requirements if not is_installed(r.module)]
    importlib.invalidate_caches()
    return [r for r in requirements if not is_satisfied(r)]


def install_question(method: str, missing: Sequence[Requirement]) -> str:
    """The sentence the module shows before installing (untranslated; the module wraps it).
    ``method`` is a method's name, "training" or "import"."""
    names = ", ".join(r.distribution for r in missing)
    notes = " ".join(r.licence_note + "." for r in missing if r.licence_note)
    subject = {"training": "Training a model", "import": "Importing a model"}.get(method, f"The method '{method}'")
    return (
        f"{subject} needs Python packages that are not installed yet: {names}. "
        f"Install them now? This downloads them from the internet and can take several minutes. {notes}"
    ).strip()


def torch_version_requirement() -> str:
    """The version specifier passed to PyTorchUtilsLogic.installTorch (e.g. ">=2.1")."""
    return TORCH.distribution[len("torch") :]


def missing_for_run(settings, *, is_installed=None) -> List[Requirement]:
    """What a run with these :class:`~MedSegAILib.runs.settings.RunSettings` still needs
    installed. An impossible run (unknown model, runtime=onnx without a current export) raises
    InputError here, before anything is installed."""
    from .settings import parameters_from_json

    parameters = parameters_from_json(settings.methodParameters, settings.method)
    return missing_requirements(
        settings.method, model=settings.model or None, parameters=parameters, device=settings.device, is_installed=is_installed
    )


def gpu_description() -> str:
    """One sentence about where deep runs will compute, found without importing torch."""
    from ..methods.deep.onnx_runtime import torch_gpu_usable

    if importlib.util.find_spec("torch") is None:
        return "Models with an ONNX export run on the CPU with ONNX Runtime; PyTorch is installed on first use of a run that needs it."
    if torch_gpu_usable():
        return "A GPU is usable by the installed PyTorch; deep runs use it (device auto)."
    return "No GPU usable by the installed PyTorch; deep methods run on the CPU."
