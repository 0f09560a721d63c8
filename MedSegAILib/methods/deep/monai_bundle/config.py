"""A MONAI bundle's inference configuration, read and reduced to what MedSegAI runs.

:func:`read_bundle` returns a plain, JSON-ready description::

    {"network": {"_target_": "UNet", ...},        # literal arguments only, @references resolved
     "network_class": "monai.networks.nets.unet.UNet",
     "image_key": "image", "in_channels": 1, "labels": {"0": "background", "1": "spleen"},
     "preprocessing": [{"op": "orientation", "axcodes": "RAS"},
                       {"op": "spacing", "pixdim": [1.5, 1.5, 2.0], "mode": "bilinear"},
                       {"op": "scale_range", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1, "clip": True}, ...],
     "inferer": {"kind": "sliding_window", "roi_size": [96, 96, 96], "overlap": 0.5,
                 "mode": "constant", "sigma_scale": 0.125, "sw_batch_size": 4},
     "postprocessing": {"activation": "softmax", "invert": True, "nearest_interp": False},
     "metadata": {"name": ..., "version": ..., "task": ...}}               # from metadata.json

Spatial sizes and spacings are in MONAI's array order (x, y, z of the oriented image).
Supported transforms are listed in :data:`PRE_OPS`, :data:`PASS_THROUGH` and :data:`POST_OPS`;
anything else stops the import with its name, since running an unknown transform's code is
what this import avoids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from ....core.errors import InputError

PASS_THROUGH = {"LoadImage", "EnsureChannelFirst", "AddChannel", "EnsureType", "ToTensor", "CastToType", "ToDevice", "Identity",
                "SaveImage", "ToNumpy", "DeleteItems", "SelectItems"}
PRE_OPS = {"Orientation": "orientation", "Spacing": "spacing", "ScaleIntensityRange": "scale_range",
           "NormalizeIntensity": "normalize", "ScaleIntensity": "scale"}
POST_OPS = {"Activations", "AsDiscrete", "Invert"}
NETWORK_MODULE = "monai.networks.nets"
INFERENCE_FILES = ("inference.json", "inference.yaml", "inference.yml")


def _base_name(target: Any) -> str:
    """``"monai.transforms.Spacingd"`` or ``"Spacingd"`` -> ``"Spacing"`` (dictionary and array forms alike)."""
    if not isinstance(target, str):
        raise InputError(f"a transform's _target_ is {target!r}, not a name; the bundle was not imported")
    name = target.rsplit(".", 1)[-1]
    return name[:-1] if name.endswith("d") and name[:-1] in PASS_THROUGH | set(PRE_OPS) | POST_OPS else name


#: How many values one config may expand to, and how deep they may nest (references that fan
#: out or nest without end are refused instead of hanging the import).
MAX_VALUES = 200_000
MAX_DEPTH = 40
#: Keys MONAI gives a meaning of its own; in a transform they are ignored (``_disabled_`` is
#: honoured), in the network's arguments every key starting with "_" is refused.
META_KEYS = ("_disabled_", "_desc_", "_requires_", "_mode_", "_debug_")


def is_disabled(value) -> bool:
    """MONAI's rule for ``_disabled_``: the text "true" (any case) or a true value."""
    return value.lower().strip() == "true" if isinstance(value, str) else bool(value)


class _Resolver:
    """``@id`` / ``@a#b`` references resolved against the config; expressions and macros refused."""

    def __init__(self, config: dict, where: Path):
        self.config, self.where = config, where
        self.values = 0

    def lookup(self, ref: str, what: str):
        node: Any = self.config
        for part in ref.split("#"):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InputError(f"'{self.where}': {what} refers to '@{ref}', which the config does not define")
        return node

    def literal(self, value, what: str, depth: int = 0):
        """``value`` with references replaced by the literals they name; InputError for code."""
        self.values += 1
        if depth > MAX_DEPTH or self.values > MAX_VALUES:
            raise InputError(f"'{self.where}': {what}: the values nest or refer to each other too deeply (or in a circle)")
        if isinstance(value, str):
            if value.startswith("$"):
                raise InputError(f"'{self.where}': {what} is a Python expression ({value[:60]}); MedSegAI does not run a bundle's code, "
                                 f"so only literal values can be imported there")
            if value.startswith("%"):
                raise InputError(f"'{self.where}': {what} is a macro into another file ({value[:60]}); only one config file is read")
            if value.startswith("@"):
                return self.literal(self.lookup(value[1:], what), what, depth + 1)
            return value
        if isinstance(value, dict):
            if "_target_" in value:
                raise InputError(f"'{self.where}': {what} builds an object ({value['_target_']}); only literal values can be imported there")
            return {k: self.literal(v, f"{what}.{k}", depth + 1) for k, v in value.items() if k not in META_KEYS}
        if isinstance(value, (list, tuple)):
            return [self.literal(v, what, depth + 1) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        raise InputError(f"'{self.where}': {what} has a value of type {type(value).__name__}")

    def component(self, value, what: str) -> dict:
        """A ``{"_target_": ...}`` component (possibly behind a reference)."""
        for _ in range(MAX_DEPTH):
            if not (isinstance(value, str) and value.startswith("@")):
                break
            value = self.lookup(value[1:], what)
        else:
            raise InputError(f"'{self.where}': {what} refers to itself")
        if isinstance(value, str) and value[:1] in ("$", "%"):
            self.literal(value, what)  # the refusal of an expression or macro, with its message
        if not isinstance(value, dict) or "_target_" not in value:
            raise InputError(f"'{self.where}': {what} is not a component with a _target_")
        return value


def _keys(item: dict, resolver: "_Resolver", what: str) -> List[str]:
    keys = resolver.literal(item.get("keys", []), f"{what}.keys")
    keys = [keys] if isinstance(keys, str) else keys
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InputError(f"'{resolver.where}': {what} has keys {keys!r}, not names")
    return keys


def _for_key(value, keys: List[str], key: str):
    """A per-key argument (``mode: ["bilinear", "nearest"]`` with ``keys: ["image", "label"]``) for ``key``."""
    if isinstance(value, (list, tuple)) and len(value) == len(keys) and keys and all(isinstance(v, str) for v in value):
        return value[keys.index(key)]
    return value


def _steps(transforms: list, resolver: _Resolver, key: str, *, post: bool) -> List[dict]:
    out = []
    for i, raw in enumerate(transforms):
        item = resolver.component(raw, f"{'postprocessing' if post else 'preprocessing'} transform {i + 1}")
        name = _base_name(item["_target_"])
        what = f"{'postprocessing' if post else 'preprocessing'} transform {i + 1} ({item['_target_']})"
        if is_disabled(resolver.literal(item.get("_disabled_", False), f"{what}._disabled_")):
            continue
        ignored = {"_target_", "keys", "allow_missing_keys", *META_KEYS}
        keys = _keys(item, resolver, what)
        if name in PASS_THROUGH or (keys and key not in keys and not (post and "pred" in keys)):
            continue
        if post:
            keep = {k: v for k, v in item.items() if k not in ignored | {"transform", "orig_keys", "meta_keys", "orig_meta_keys", "meta_key_postfix",
                                                                          "to_tensor", "device", "output_dir"}}
            args = resolver.literal(keep, what)
            if name not in POST_OPS:
                raise InputError(f"'{resolver.where}': {what} is not one MedSegAI can reproduce; supported after the network: "
                                 "Activations(d) softmax, AsDiscrete(d) argmax, Invert(d), SaveImage(d)")
            out.append({"op": name, **args})
            continue
        args = resolver.literal({k: v for k, v in item.items() if k not in ignored}, what)
        if name not in PRE_OPS:
            raise InputError(f"'{resolver.where}': {what} is not one MedSegAI can reproduce; supported before the network: "
                             f"{', '.join(sorted(PRE_OPS))} and the loading and type transforms ({', '.join(sorted(PASS_THROUGH))})")
        out.append({"op": PRE_OPS[name], **{k: _for_key(v, keys, key) for k, v in args.items()}})
    return out


def _preprocessing(steps: List[dict], where: Path) -> List[dict]:
    """Each step reduced to the arguments it is reproduced with; unsupported options refused."""
    out = []
    for s in steps:
        op = s["op"]

        def refuse(option):
            raise InputError(f"'{where}': {op} with {option} is not supported by the import")

        if op == "orientation":
            codes = s.get("axcodes")
            if not isinstance(codes, str) or len(codes) != 3 or sorted(codes.upper().replace("R", "L").replace("A", "P").replace("I", "S")) != ["L", "P", "S"]:
                refuse(f"axcodes {codes!r}")
            if s.get("as_closest_canonical") or s.get("labels") not in (None, [["L", "R"], ["P", "A"], ["I", "S"]]):
                refuse("as_closest_canonical or other axis labels")
            out.append({"op": op, "axcodes": codes.upper()})
        elif op == "spacing":
            pixdim = s.get("pixdim")
            pixdim = [pixdim] * 3 if isinstance(pixdim, (int, float)) else pixdim
            if not isinstance(pixdim, list) or len(pixdim) != 3 or not all(isinstance(p, (int, float)) and 0.01 <= p <= 100 for p in pixdim):
                refuse(f"pixdim {s.get('pixdim')!r} (three spacings in mm from 0.01 to 100 are needed)")
            mode = s.get("mode", "bilinear")
            if mode not in ("bilinear", "nearest", 1, 0):
                refuse(f"mode {mode!r}")
            if s.get("padding_mode", "border") not in ("border", None) or s.get("align_corners", False):
                refuse(f"padding_mode={s.get('padding_mode')!r} or align_corners={s.get('align_corners')!r} (border padding, align_corners False are reproduced)")
            for option, default in (("diagonal", False), ("scale_extent", False), ("recompute_affine", False), ("min_pixdim", None), ("max_pixdim", None)):
                if s.get(option, default) != default:
                    refuse(f"{option}={s.get(option)!r}")
            out.append({"op": op, "pixdim": [float(p) for p in pixdim], "mode": "nearest" if mode in ("nearest", 0) else "bilinear"})
        elif op == "scale_range":
            try:
                args = {k: (None if s.get(k) is None else float(s[k])) for k in ("a_min", "a_max", "b_min", "b_max")}
            except (TypeError, ValueError):
                refuse("non-numeric bounds")
            if args["a_min"] is None or args["a_max"] is None:
                refuse("a_min or a_max missing")
            out.append({"op": op, **args, "clip": bool(s.get("clip", False))})
        elif op == "normalize":
            for option in ("subtrahend", "divisor"):
                if s.get(option) is not None:
                    refuse(f"a fixed {option}")
            out.append({"op": op, "nonzero": bool(s.get("nonzero", False)), "channel_wise": bool(s.get("channel_wise", False))})
        elif op == "scale":
            if s.get("factor") is not None or s.get("channel_wise"):
                refuse("factor or channel_wise")
            bounds = [s.get("minv", 0.0), s.get("maxv", 1.0)]
            if not all(b is None or (isinstance(b, (int, float)) and not isinstance(b, bool)) for b in bounds):
                refuse(f"minv/maxv {bounds!r} (numbers or null are needed)")
            out.append({"op": op, "minv": bounds[0], "maxv": bounds[1]})
    return out


def _postprocessing(steps: List[dict], where: Path) -> dict:
    post = {"activation": None, "invert": False, "nearest_interp": True}
    for s in steps:
        if s["op"] == "Activations":
            if s.get("sigmoid") or s.get("other"):
                raise InputError(f"'{where}': a sigmoid (multi-label) output is not supported by the import; only softmax outputs are")
            if s.get("softmax"):
                post["activation"] = "softmax"
        elif s["op"] == "AsDiscrete":
            if s.get("threshold") is not None or s.get("to_onehot") or s.get("rounding"):
                raise InputError(f"'{where}': AsDiscrete with a threshold, one-hot or rounding is not supported; only argmax is")
        elif s["op"] == "Invert":
            if s.get("post_func") not in (None, False):
                raise InputError(f"'{where}': Invertd with a post_func is not supported")
            post["invert"], post["nearest_interp"] = True, bool(s.get("nearest_interp", True))
    return post


def _inferer(item: dict, resolver: _Resolver) -> dict:
    name = _base_name(item["_target_"])
    args = resolver.literal({k: v for k, v in item.items() if k != "_target_"}, f"the inferer ({item['_target_']})")
    if name == "SimpleInferer":
        return {"kind": "simple"}
    if name != "SlidingWindowInferer":
        raise InputError(f"'{resolver.where}': the inferer {item['_target_']} is not supported; SlidingWindowInferer and SimpleInferer are")
    roi = args.get("roi_size")
    roi = [roi] * 3 if isinstance(roi, int) else roi
    if not isinstance(roi, list) or len(roi) != 3 or not all(isinstance(r, int) and (r <= 0 or 4 <= r <= 512) for r in roi):
        raise InputError(f"'{resolver.where}': the inferer's roi_size {args.get('roi_size')!r} is not three sizes from 4 to 512 voxels")
    overlap = args.get("overlap", 0.25)
    if not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise InputError(f"'{resolver.where}': the inferer's overlap {overlap!r} is not a number in [0, 1)")
    mode = args.get("mode", "constant")
    if mode not in ("constant", "gaussian"):
        raise InputError(f"'{resolver.where}': the inferer's blending mode {mode!r} is not supported (constant, gaussian)")
    if args.get("padding_mode", "constant") != "constant" or args.get("cval", 0) not in (0, 0.0, None):
        raise InputError(f"'{resolver.where}': the inferer pads other than with zeros; not supported")
    sigma = args.get("sigma_scale", 0.125)
    if not isinstance(sigma, (int, float)) or not 0 < sigma <= 10:
        raise InputError(f"'{resolver.where}': the inferer's sigma_scale {sigma!r} must be one number in (0, 10]")
    batch = args.get("sw_batch_size", 1)
    if not isinstance(batch, int) or not 1 <= batch <= 64:
        raise InputError(f"'{resolver.where}': the inferer's sw_batch_size {batch!r} must be a whole number from 1 to 64")
    return {"kind": "sliding_window", "roi_size": roi, "overlap": float(overlap), "mode": mode, "sigma_scale": float(sigma),
            "sw_batch_size": batch}


def network_constructor(target: str):
    """The class a network ``_target_`` names; InputError unless it is a torch module defined
    in MONAI's networks (``monai.networks.nets``). The name is looked up as data: a module of
    that package is imported and one attribute of it read, nothing else is followed."""
    import importlib
    import inspect

    import torch
    from monai.bundle import ComponentLocator

    refuse = InputError(f"the network '{target}' is not one of MONAI's networks (monai.networks.nets); a bundle's own network code is not run")
    if not isinstance(target, str) or not target.replace(".", "").replace("_", "").isalnum():
        raise refuse
    if "." in target:
        module_name, name = target.rsplit(".", 1)
    else:
        found = ComponentLocator().get_component_module_name(target)
        found = [found] if isinstance(found, str) else list(found or [])
        module_name, name = next((m for m in found if m == NETWORK_MODULE or m.startswith(NETWORK_MODULE + ".")), ""), target
    if not (module_name == NETWORK_MODULE or module_name.startswith(NETWORK_MODULE + ".")):
        raise refuse
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise refuse from None
    cls = module.__dict__.get(name) if module.__name__ == module_name else None
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module) and cls.__module__.startswith(NETWORK_MODULE)):
        raise refuse
    return cls


#: Arguments that would make a network read or download weights of its own at construction.
FETCHING_ARGUMENTS = ("pretrain", "weights", "url", "path", "download", "checkpoint")


def network_arguments(network: dict, where) -> dict:
    """The network's constructor arguments, checked: names without a leading "_", literal
    values, nothing that fetches or reads files."""
    args = {k: v for k, v in network.items() if k != "_target_"}
    for k, v in args.items():
        if not isinstance(k, str) or not k.isidentifier() or k.startswith("_"):
            raise InputError(f"'{where}': the network argument {k!r} is not a plain argument name; the bundle was not imported")
        if any(f in k.lower() for f in FETCHING_ARGUMENTS) and v not in (None, False, "", 0):
            raise InputError(f"'{where}': the network argument {k}={v!r} would read or download weights itself; the import takes them from models/model.pt only")
    return _Resolver({}, Path(str(where))).literal(args, "network_def")


def inference_file(bundle: Path) -> Path:
    for name in INFERENCE_FILES:
        if (bundle / "configs" / name).is_file():
            return bundle / "configs" / name
    raise InputError(f"'{bundle}' is not a MONAI bundle: it has no configs/inference.json")


def _load(path: Path) -> dict:
    from monai.bundle import ConfigParser

    try:
        config = ConfigParser.load_config_file(str(path))  # JSON or YAML, parsed only
    except Exception as exc:
        raise InputError(f"'{path}' cannot be read ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if not isinstance(config, dict):
        raise InputError(f"'{path}' is not a config object")
    return config


def _section(metadata: dict, name: str) -> dict:
    """``metadata["network_data_format"][name]`` when it is an object, else {}."""
    fmt = metadata.get("network_data_format")
    part = fmt.get(name) if isinstance(fmt, dict) else None
    return part if isinstance(part, dict) else {}


def _labels(metadata: dict, out_channels: Optional[int], where: Path) -> Dict[str, str]:
    outputs = _section(metadata, "outputs")
    first = next(iter(outputs.values()), {}) if isinstance(outputs, dict) else {}
    channel_def = first.get("channel_def") if isinstance(first, dict) else None
    n = out_channels or (first.get("num_channels") if isinstance(first, dict) else None)
    if not isinstance(n, int) or n < 2:
        raise InputError(f"'{where}': the number of output classes cannot be told (network out_channels or metadata num_channels, at least 2)")
    if isinstance(channel_def, dict) and len(channel_def) == n and all(str(i) in {str(k) for k in channel_def} for i in range(n)):
        named = {str(k): str(v) for k, v in channel_def.items()}
        return {str(i): named[str(i)] for i in range(n)}
    return {"0": "background", **{str(i): f"label {i}" for i in range(1, n)}}


def read_bundle(bundle) -> dict:
    """The checked description of the bundle folder ``bundle`` (see the module docstring)."""
    try:
        return _read_bundle(Path(bundle))
    except InputError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:  # a value of the wrong kind somewhere
        raise InputError(f"'{bundle}': the bundle's config is malformed ({type(exc).__name__}: {str(exc)[:160]})") from None


def _read_bundle(bundle: Path) -> dict:
    if not bundle.is_dir():
        raise InputError(f"the MONAI bundle folder '{bundle}' does not exist")
    where = inference_file(bundle)
    config = _load(where)
    metadata = _load(bundle / "configs" / "metadata.json") if (bundle / "configs" / "metadata.json").is_file() else {}
    resolver = _Resolver(config, where)
    inputs = _section(metadata, "inputs")
    key = next(iter(inputs), "image")
    net = resolver.component(config.get("network_def"), "network_def")
    odd = [k for k in net if isinstance(k, str) and k.startswith("_") and k not in ("_target_", "_desc_")]
    if odd:
        raise InputError(f"'{where}': network_def has {odd[0]}, which MONAI would act on; only plain arguments can be imported")
    network = {"_target_": net["_target_"], **resolver.literal({k: v for k, v in net.items() if k not in ("_target_", "_desc_")}, "network_def")}
    network = {"_target_": network["_target_"], **network_arguments(network, where)}
    cls = network_constructor(network["_target_"])
    dims = network.get("spatial_dims", network.get("dimensions", 3))
    if dims != 3:
        raise InputError(f"'{where}': the network is {dims}D; only 3D bundles are imported so far")
    pre = resolver.component(config.get("preprocessing"), "preprocessing")
    post = config.get("postprocessing")
    pre_list = pre.get("transforms", [])
    if _base_name(pre["_target_"]) != "Compose" or not isinstance(pre_list, list):
        raise InputError(f"'{where}': preprocessing is not a Compose of transforms")
    post_list = resolver.component(post, "postprocessing").get("transforms", []) if post is not None else []
    in_channels = network.get("in_channels")
    if not isinstance(in_channels, int):
        first = inputs.get(key, {})
        in_channels = first.get("num_channels", 1) if isinstance(first, dict) else 1
    if not isinstance(in_channels, int) or not 1 <= in_channels <= 16:
        raise InputError(f"'{where}': the number of input channels {in_channels!r} is not a whole number from 1 to 16")
    return {
        "network": network, "network_class": f"{cls.__module__}.{cls.__name__}", "image_key": key, "in_channels": int(in_channels),
        "labels": _labels(metadata, network.get("out_channels"), where),
        "preprocessing": _preprocessing(_steps(pre_list, resolver, key, post=False), where),
        "inferer": _inferer(resolver.component(config.get("inferer", {"_target_": "SimpleInferer"}), "inferer"), resolver),
        "postprocessing": _postprocessing(_steps(post_list, resolver, key, post=True), where),
        "metadata": {k: metadata.get(k) for k in ("name", "version", "task", "description", "authors", "copyright", "intended_use", "monai_version") if metadata.get(k) is not None},
    }
