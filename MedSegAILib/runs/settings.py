"""The settings of one run, defined once: the panel's parameter node, the command line and back.

:data:`RUN_FIELDS` lists every option of a ``medsegai segment`` run with its type, default,
range and command-line option; :data:`PANEL_FIELDS` adds what only the Slicer panel holds (the
input nodes, the seed and output segmentations, the surface-export choices). From these two
tuples come

- the Slicer parameter node (``MedSegAI.py`` builds its ``parameterNodeWrapper`` class from
  :func:`parameter_node_fields`),
- the ``medsegai segment`` options (:func:`add_run_arguments`, used by the CLI itself),
- :class:`RunSettings` and its two conversions, :meth:`RunSettings.to_arguments` and
  :func:`settings_from_arguments`, which are inverse to each other (tested over every field).

A new option is one more :class:`Field` here; nothing else lists the options.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: Compute devices of a deep run (the CLI's --device values).
DEVICES = ("auto", "cpu", "cuda")
#: Default wall-clock budget of a training run from the panel (minutes): a model worth using on
#: hippocampus-sized crops with 2 cores (docs/deep.md, "Training in Slicer").
DEFAULT_TRAINING_BUDGET_MIN = 10.0


@dataclass(frozen=True)
class Field:
    """One setting.

    ``kind`` is "str", "int", "float", "bool", "path" (a folder or file, "" when unset),
    "volume" or "segmentation" (an MRML node, panel only), "volumes" or "segmentations" (a
    list of them, panel only; stored as node references, so scene import remaps them). ``option`` is the ``medsegai segment``
    option (None: panel only); for a bool, the option is a flag that sets ``not default``
    (``--no-radiomics`` for ``radiomics=True``). ``dest`` is argparse's attribute name.
    """

    name: str
    kind: str
    default: Any = None
    option: Optional[str] = None
    dest: Optional[str] = None
    help: str = ""
    choices: Tuple[Any, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    metavar: Optional[str] = None
    short: Optional[str] = None


RUN_FIELDS: Tuple[Field, ...] = (
    Field("method", "str", "otsu", "--method", "method", "segmentation method (see 'medsegai methods')", short="-m"),
    Field(
        "methodParameters", "str", "{}", "--param", "param",
        "method parameter KEY=VALUE, repeatable (see 'medsegai methods'); the panel keeps them as JSON",
        metavar="KEY=VALUE", short="-p",
    ),
    Field("model", "str", "", "--model", "model", "shipped model name or model folder (deep method)", metavar="NAME|DIR"),
    Field(
        "atlasFolder", "path", "", "--atlases", "atlases",
        "atlas library folder (imagesTr/, labelsTr/) or a shipped atlas name (atlas method)", metavar="DIR|NAME",
    ),
    Field("device", "str", "auto", "--device", "device", "compute device for deep methods", choices=DEVICES),
    Field(
        "minIslandMm3", "float", 0.0, "--min-island-mm3", "min_island_mm3",
        "remove connected components smaller than this volume (mm³); 0 keeps all", minimum=0.0, maximum=1.0e7, metavar="V",
    ),
    Field("keepLargest", "bool", False, "--keep-largest", "keep_largest", "keep only the largest component of each class"),
    Field(
        "keepFraction", "float", 0.0, "--keep-fraction", "keep_fraction",
        "keep components at least this fraction (0-1) of the class's largest, e.g. 0.1 keeps both lungs; 0 disables",
        minimum=0.0, maximum=1.0, metavar="F",
    ),
    Field("fillHoles", "bool", False, "--fill-holes", "fill_holes", "fill cavities enclosed by a class"),
    Field("connectivity", "int", 26, "--connectivity", "connectivity", "neighbourhood for components and instances", choices=(26, 6)),
    Field(
        "refine", "str", "none", "--refine", "refine",
        "crf: refine the method's class probabilities with the contrast-sensitive CRF (deep, atlas; labels and uncertainty then come from it)",
        choices=("none", "crf"),
    ),
    Field(
        "explain", "bool", False, "--explain", "explain",
        "deep: also write explanation.nii.gz (+ .png): the occlusion sensitivity of each structure (10-30 s a crop)",
    ),
    Field("radiomics", "bool", True, "--no-radiomics", "no_radiomics", "per-instance radiomics columns of instances.csv"),
    Field(
        "radiomicsIntervals", "bool", False, "--radiomics-intervals", "radiomics_intervals",
        "also each feature's mean, SD and range over masks drawn at 5 levels of the method's probabilities (columns <feature>_mean/_sd/_min/_max; about 1-4x the radiomics time on a crop)",
    ),
    Field(
        "allowOutOfDomain", "bool", False, "--allow-out-of-domain", "allow_out_of_domain",
        "segment an input unlike what the method learned from (a deep model's training data, an atlas library's images); the result is marked out of domain",
    ),
)

PANEL_FIELDS: Tuple[Field, ...] = (
    Field("inputVolume", "volume", help="the image to segment; the result is on its voxel grid"),
    Field("extraChannel1", "volume", help="optional co-registered volume on the input's grid"),
    Field("extraChannel2", "volume", help="optional second co-registered volume"),
    Field("methodFamily", "str", "classical", choices=("classical", "atlas", "deep"), help="method family"),
    *RUN_FIELDS,
    Field("modelFolder", "path", "", help="a folder with your own trained model; overrides the shipped model"),
    Field("seedSegmentation", "segmentation", help="painted seed segments (seeded methods)"),
    Field("outputSegmentation", "segmentation", help="segmentation that receives the result (a new one when empty)"),
    Field("surfaceSegmentation", "segmentation", help="segmentation whose segments are exported as surfaces"),
    Field("surfaceFormat", "str", "stl", choices=("stl", "obj"), help="surface file format"),
    Field("surfaceSmoothing", "float", 0.5, minimum=0.0, maximum=1.0, help="surface smoothing factor (0-1)"),
    Field("surfaceCoordinates", "str", "LPS", choices=("LPS", "RAS"), help="coordinate system of the surface files"),
    Field("surfaceFolder", "path", "", help="folder for the surface files"),
    # Training (runs.training_run): the cases, what to learn, the new model's name and budget.
    Field("trainVolume", "volume", help="a volume to train on (or to add before a retrain)"),
    Field("trainSegmentation", "segmentation", help="the segmentation drawn on that volume"),
    Field("trainPairVolumes", "volumes", help="the training cases' volumes (in the order of trainPairSegmentations)"),
    Field("trainPairSegmentations", "segmentations", help="the training cases' segmentations, one per volume"),
    Field("trainSegments", "str", "", help="comma-separated names of the segments to learn (empty: the first case's segments)"),
    Field("trainModelName", "str", "my model", help="name of the model to train"),
    Field("trainBudgetMin", "float", DEFAULT_TRAINING_BUDGET_MIN, minimum=0.5, maximum=1440.0, help="training budget in wall-clock minutes"),
)

_PY_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "path": str}


def _run_field_spec(f: Field):
    return (f.name, _PY_TYPES[f.kind], field(default=f.default))


#: What a run needs to know, in the panel's names (camelCase, as the parameter node).
RunSettings = make_dataclass("RunSettings", [_run_field_spec(f) for f in RUN_FIELDS], frozen=True)
RunSettings.__doc__ = "The options of one ``medsegai segment`` run (fields and defaults from :data:`RUN_FIELDS`)."


def parameter_node_fields() -> Tuple[Field, ...]:
    """The Slicer parameter node's fields, in panel order."""
    return PANEL_FIELDS


#: The method a family starts with in the panel (the first by name would be crf, which asks
#: for the GPL PyMaxflow).
FAMILY_DEFAULT_METHODS = {"classical": "otsu", "atlas": "atlas", "deep": "deep"}


def field_named(name: str) -> Field:
    for f in PANEL_FIELDS:
        if f.name == name:
            return f
    raise KeyError(name)


# --- the command line ---------------------------------------------------------------------------


def add_run_arguments(parser: argparse.ArgumentParser, *, method_help: str = "") -> None:
    """Add every :data:`RUN_FIELDS` option to ``medsegai segment``'s parser."""
    post = parser.add_argument_group("post-processing (applied to every object class)")
    for f in RUN_FIELDS:
        target = post if f.name in ("minIslandMm3", "keepLargest", "keepFraction", "fillHoles", "connectivity") else parser
        names = [f.option] + ([f.short] if f.short else [])
        text = f.help
        if f.name == "method" and method_help:
            text = f"{text}; {method_help}"
        if f.kind == "bool":
            target.add_argument(*names, dest=f.dest, action="store_true", help=f"skip the {text}" if f.default else text)
        elif f.name == "methodParameters":
            target.add_argument(*names, dest=f.dest, action="append", default=[], metavar=f.metavar, help=text)
        else:
            default = None if f.default == "" else f.default
            kw: Dict[str, Any] = {"dest": f.dest, "default": default, "help": f"{text} (default {f.default})" if f.default not in ("", None) else text}
            if f.choices:
                kw["choices"] = f.choices
            if f.metavar:
                kw["metavar"] = f.metavar
            kw["type"] = {"int": int, "float": float}.get(f.kind, str)
            target.add_argument(*names, **kw)


def settings_from_arguments(args: argparse.Namespace) -> "RunSettings":
    """The :class:`RunSettings` that ``medsegai segment``'s parsed arguments describe."""
    values: Dict[str, Any] = {}
    for f in RUN_FIELDS:
        value = getattr(args, f.dest)
        if f.kind == "bool":
            value = (not f.default) if value else f.default
        elif f.name == "methodParameters":
            value = parameters_to_json(dict(_split_param(item) for item in value))
        elif value is None:
            value = f.default
        values[f.name] = value
    return RunSettings(**values)


def _split_param(item: str) -> Tuple[str, str]:
    from ..core.errors import InputError

    if "=" not in item:
        raise InputError(f"--param expects KEY=VALUE, got '{item}'")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def run_arguments(settings: "RunSettings") -> List[str]:
    """``settings`` as ``medsegai segment`` options; options at their default are left out.

    Method parameters are written only where they differ from the method's defaults, and
    parameters the method does not have are dropped (a stale panel entry must not fail a run);
    a model or atlas folder goes only to a method that takes one.
    """
    from ..methods.registry import get_method

    needs = get_method(settings.method).needs
    args: List[str] = []
    for f in RUN_FIELDS:
        value = getattr(settings, f.name)
        if f.name == "methodParameters":
            args += _parameter_arguments(settings.method, value)
        elif f.name == "method":
            args += [f.option, value]  # always named, so a command line reads on its own
        elif f.kind == "bool":
            if bool(value) != bool(f.default):
                args.append(f.option)
        elif f.name in _ONLY_WHEN_NEEDED and _ONLY_WHEN_NEEDED[f.name] not in needs:
            continue  # a model or atlas folder left in the panel from another method
        elif value not in ("", None) and value != f.default:
            args += [f.option, format_parameter(value)]
    return args


#: Options passed only to a method that needs them (MethodSpec.needs).
_ONLY_WHEN_NEEDED = {"model": "model", "atlasFolder": "atlases"}


def _parameter_arguments(method: str, text: str) -> List[str]:
    from ..methods.registry import get_method

    spec = get_method(method)
    out: List[str] = []
    params = parameters_from_json(text, method)
    for key in sorted(params):
        if params[key] != spec.defaults.get(key):
            out += ["--param", f"{key}={format_parameter(params[key])}"]
    return out


RunSettings.to_arguments = run_arguments  # type: ignore[attr-defined]


def replace_settings(settings: "RunSettings", **changes) -> "RunSettings":
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    values.update(changes)
    return RunSettings(**values)


# --- method parameters (kept as JSON text in the parameter node) -------------------------------


def format_parameter(value: Any) -> str:
    """A value as command-line text (``true``/``false``, lists joined by commas)."""
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
    """The method's defaults overlaid by the stored values it knows (others dropped), typed as
    the defaults (strings from the command line are converted)."""
    from ..methods.registry import _coerce, get_method

    defaults = dict(get_method(method).defaults)
    try:
        stored = json.loads(text) if text else {}
    except ValueError:
        stored = {}
    if isinstance(stored, dict):
        for k, v in stored.items():
            if k in defaults:
                defaults[k] = _coerce(k, v, defaults[k])
    return defaults


def panel_values_to_settings(values: Dict[str, Any]) -> "RunSettings":
    """The run the panel's values describe: its own model folder, when given, overrides the
    shipped model."""
    run = {f.name: values.get(f.name, f.default) for f in RUN_FIELDS}
    run = {k: ("" if v is None else v) for k, v in run.items()}
    folder = str(values.get("modelFolder") or "")
    if folder:
        run["model"] = folder
    if not run["model"]:
        from ..methods.registry import get_method
        from ..resources import default_model_name

        if "model" in get_method(run["method"]).needs:
            run["model"] = default_model_name()
    return RunSettings(**run)


def describe(settings: "RunSettings") -> Sequence[str]:
    """``name=value`` for the fields that differ from their default (for logs)."""
    return [f"{f.name}={getattr(settings, f.name)!r}" for f in RUN_FIELDS if getattr(settings, f.name) != f.default]
