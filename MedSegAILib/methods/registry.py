"""The registry of segmentation methods: one name per method, one calling convention.

Each method module exposes ``run(request: MethodRequest) -> MethodOutput``, an adapter over its
algorithm function (which takes SimpleITK images and keyword parameters). Methods are found by
dotted path and imported only when run, so listing methods never imports PyMaxflow or torch.

Parameters arrive as a ``dict`` of strings (from ``--param key=value``) or typed values (from
Python or the Slicer panel); :func:`coerce_params` turns them into the types a method's
defaults have and rejects unknown names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import SimpleITK as sitk

from ..core.errors import InputError
from ..core.progress import Progress


@dataclass
class MethodRequest:
    """What a method gets.

    Attributes
    ----------
    channels : list of sitk.Image
        Co-registered Float32 input volumes (channel 0 is the reference grid).
    params : dict
        Method parameters (already coerced to the types of the method's defaults).
    seeds : sitk.Image or None
        Seed labelmap on the input grid (seeded methods).
    atlases : Path or None
        Atlas library folder (atlas methods).
    model : str or None
        Shipped model name or model folder (deep methods).
    device : str
        "auto", "cpu" or "cuda".
    progress : Progress
    cache : dict or None
        Kept between calls on the same image by an interactive session (what does not depend
        on the seeds: contrast sigma, the geodesic graph); None for a one-off run.
    prior : sitk.Image or None
        Label probabilities on the input grid that a seeded method may start from (one
        component per label, background first), e.g. a deep model's posterior.
    previous : object or None
        The previous result of an interactive session (graphcut: a
        :class:`~MedSegAILib.methods.classical.guidance.PreviousCut`).
    allow_out_of_domain : bool
        Segment an input that a model's domain check finds unlike its training data (deep).
    keep_probabilities : bool
        The caller wants the per-class posteriors; a method that can give its uncertainty
        without holding them (Otsu) skips them otherwise.
    """

    channels: List[sitk.Image]
    params: Dict[str, Any] = field(default_factory=dict)
    seeds: Optional[sitk.Image] = None
    atlases: Optional[Path] = None
    model: Optional[str] = None
    device: str = "auto"
    progress: Progress = field(default_factory=Progress)
    cache: Optional[Dict[str, Any]] = None
    prior: Optional[sitk.Image] = None
    previous: Optional[Any] = None
    allow_out_of_domain: bool = False
    keep_probabilities: bool = True


@dataclass(frozen=True)
class ParameterInfo:
    """How a method parameter is shown and bounded (the Slicer panel's form, ``medsegai methods``).

    ``label`` is a short name in words ("Smoothing"), ``unit`` its unit ("mm", "" for none),
    ``help`` one sentence for the tooltip; ``minimum``/``maximum`` bound a number, ``choices``
    lists the values a text parameter takes ("" allowed only when listed).
    """

    label: str
    help: str
    unit: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    step: Optional[float] = None


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    ``needs`` lists the request fields that must be given ("seeds", "atlases", "model");
    ``defaults`` are the method's parameters and their default values (their types drive
    coercion of string parameters); ``parameters`` describes each of them (:class:`ParameterInfo`).
    ``stuff`` says that the method's classes are tissue classes ("stuff": one segment per
    class) rather than objects ("things": one segment per connected instance).
    """

    name: str
    family: str
    module: str
    summary: str
    needs: tuple = ()
    defaults: Dict[str, Any] = field(default_factory=dict)
    parameters: Dict[str, ParameterInfo] = field(default_factory=dict)
    stuff: bool = False

    def parameter(self, name: str) -> ParameterInfo:
        """The description of parameter ``name`` (a plain one made from the name when the
        method has none)."""
        if name in self.parameters:
            return self.parameters[name]
        words = name.replace("_", " ").strip().capitalize()
        return ParameterInfo(words or name, "")

    def load(self):
        """Import the method's module and return its ``run`` callable."""
        return importlib.import_module(self.module).run


_REGISTRY: Dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    _load_specs()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown method '{name}'; choose one of: {', '.join(sorted(_REGISTRY))}") from None


def available_methods() -> List[MethodSpec]:
    _load_specs()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _coerce(name: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            return type(default)(type(default[0])(v) if default else v for v in value.split(","))
    except ValueError:
        raise InputError(f"parameter '{name}' expects a {type(default).__name__}, got '{value}'") from None
    return value


def coerce_params(spec: MethodSpec, params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Merge ``params`` over the method's defaults, converting strings to the defaults' types."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        known = ", ".join(sorted(spec.defaults)) or "none"
        raise InputError(f"method '{spec.name}' has no parameter {', '.join(unknown)}; its parameters are: {known}")
    merged = dict(spec.defaults)
    for k, v in params.items():
        merged[k] = _check_bounds(spec, k, _coerce(k, v, spec.defaults[k]))
    return merged


def _check_bounds(spec: MethodSpec, name: str, value: Any) -> Any:
    """``value`` if it lies in the parameter's documented range or choices, else InputError."""
    info = spec.parameters.get(name)
    if info is None:
        return value
    if info.choices and not isinstance(value, bool) and str(value) not in [str(c) for c in info.choices]:
        shown = ", ".join(repr(c) if c == "" else str(c) for c in info.choices)
        raise InputError(f"parameter '{name}' of '{spec.name}' must be one of {shown}; got '{value}'")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = info.minimum, info.maximum
        if (low is not None and value < low) or (high is not None and value > high) or value != value:
            if low is not None and high is not None:
                allowed = f"between {low:g} and {high:g}"
            else:
                allowed = f"at least {low:g}" if low is not None else f"at most {high:g}"
            raise InputError(f"parameter '{name}' of '{spec.name}' must be {allowed}; got {value}")
    return value


# --- the methods -------------------------------------------------------------------------------
# Each family keeps its specs in ``methods/<family>/specs.py`` (light modules that import no
# heavy dependency); they are loaded on first look-up.
_FAMILIES = ("classical", "atlas", "deep")
_loaded = False


def _load_specs() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for family in _FAMILIES:
        try:
            importlib.import_module(f"MedSegAILib.methods.{family}.specs")
        except ModuleNotFoundError as exc:
            if exc.name != f"MedSegAILib.methods.{family}.specs":
                raise
