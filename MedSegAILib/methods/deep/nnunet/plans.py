"""``plans.json`` and ``dataset.json`` of an nnU-Net v2 results folder, read and checked.

Nothing named in the files is imported or executed: operator names (``torch.nn.Conv3d``,
``LeakyReLU``, ...) are looked up in a fixed table of the ones nnU-Net's planners write, and
anything else is refused with a message. :func:`read_configuration` returns the one
configuration as a plain, JSON-serialisable dict (kept in the imported model's card).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from ....core.errors import InputError
from ..dataset import read_json_object

#: Network classes the importer rebuilds (the last dotted name of network_class_name).
NETWORKS = ("PlainConvUNet", "ResidualEncoderUNet")
#: Operators by the names plans.json uses for them.
CONV_OPS = {"torch.nn.modules.conv.Conv3d": 3, "torch.nn.Conv3d": 3, "torch.nn.modules.conv.Conv2d": 2, "torch.nn.Conv2d": 2}
NORM_OPS = {"torch.nn.modules.instancenorm.InstanceNorm3d": "instance", "torch.nn.InstanceNorm3d": "instance",
            "torch.nn.modules.instancenorm.InstanceNorm2d": "instance", "torch.nn.InstanceNorm2d": "instance"}
NONLINS = {"torch.nn.LeakyReLU": "leaky_relu", "torch.nn.modules.activation.LeakyReLU": "leaky_relu",
           "torch.nn.ReLU": "relu", "torch.nn.modules.activation.ReLU": "relu"}
NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization", "RGBTo01Normalization")
#: Limits that keep a hostile or broken plans.json from asking for absurd memory or compute.
MAX_PATCH_VOXELS = 256**3
MAX_STAGES = 10
MAX_FEATURES = 2048


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputError(f"'{path.parent}' has no {path.name}: {what}")
    return read_json_object(path)


def read_dataset_json(folder) -> dict:
    """The results folder's dataset.json: channels and labels; region-based training refused."""
    meta = _read_json(Path(folder) / "dataset.json", "not an nnU-Net v2 results folder")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or "background" not in labels:
        raise InputError(f"dataset.json in '{folder}' has no labels with a background (nnU-Net v2 form: {{\"background\": 0, \"name\": 1, ...}})")
    if any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values()) or "regions_class_order" in meta:
        raise InputError(f"the model in '{folder}' was trained region-based (labels that are lists of classes); importing region-based models is not supported")
    values = {k: v for k, v in labels.items() if k != "ignore"}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()) or values["background"] != 0:
        raise InputError(f"dataset.json in '{folder}' must give each label a whole number, background 0")
    if sorted(values.values()) != list(range(len(values))):
        raise InputError(f"dataset.json in '{folder}' labels {sorted(values.values())}: labels must be 0..K without gaps")
    channels = meta.get("channel_names") or meta.get("modality")
    if not isinstance(channels, dict) or not channels:
        raise InputError(f"dataset.json in '{folder}' names no input channels (channel_names)")
    return meta


def _resolve(configurations: dict, name: str, seen=()) -> dict:
    if name not in configurations:
        raise InputError(f"plans.json has no configuration '{name}' (it has {', '.join(sorted(configurations))})")
    if name in seen:
        raise InputError(f"plans.json: configuration '{name}' inherits from itself")
    conf = dict(configurations[name])
    parent = conf.get("inherits_from")
    if parent:
        base = _resolve(configurations, parent, (*seen, name))
        base.update(conf)  # nnU-Net's own rule: the child's keys replace the parent's
        conf = base
    return conf


def _architecture(conf: dict) -> dict:
    """The ``architecture`` entry; the format before it existed is converted as nnU-Net does."""
    if "architecture" in conf:
        arch = conf["architecture"]
        if not isinstance(arch, dict) or not isinstance(arch.get("arch_kwargs"), dict):
            raise InputError("plans.json: the configuration's architecture has no arch_kwargs")
        return {"network": str(arch.get("network_class_name", "")).split(".")[-1], **arch["arch_kwargs"]}
    old = ("UNet_class_name", "UNet_base_num_features", "n_conv_per_stage_encoder", "n_conv_per_stage_decoder", "pool_op_kernel_sizes", "conv_kernel_sizes", "unet_max_num_features")
    missing = [k for k in old if k not in conf]
    if missing:
        raise InputError(f"plans.json: the configuration has neither an architecture nor the older keys ({', '.join(missing)} missing)")
    n = len(conf["n_conv_per_stage_encoder"])
    dim = len(conf["patch_size"])
    blocks = "n_blocks_per_stage" if conf["UNet_class_name"] == "ResidualEncoderUNet" else "n_conv_per_stage"
    return {
        "network": conf["UNet_class_name"], "n_stages": n,
        "features_per_stage": [min(conf["UNet_base_num_features"] * 2**i, conf["unet_max_num_features"]) for i in range(n)],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d", "kernel_sizes": conf["conv_kernel_sizes"], "strides": conf["pool_op_kernel_sizes"],
        blocks: conf["n_conv_per_stage_encoder"], "n_conv_per_stage_decoder": conf["n_conv_per_stage_decoder"], "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }


def _ints(value, n: Optional[int] = None) -> bool:
    return isinstance(value, list) and (n is None or len(value) == n) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)


def check_architecture(arch: dict, dim: int) -> List[str]:
    """What is wrong with an architecture description (empty when it can be rebuilt)."""
    problems = []
    if arch.get("network") not in NETWORKS:
        problems.append(f"network {arch.get('network')!r} is not one of {', '.join(NETWORKS)}")
    n = arch.get("n_stages")
    if not isinstance(n, int) or not 2 <= n <= MAX_STAGES:
        return problems + [f"n_stages must be 2 to {MAX_STAGES}, got {n!r}"]
    if not _ints(arch.get("features_per_stage"), n) or max(arch["features_per_stage"]) > MAX_FEATURES:
        problems.append(f"features_per_stage must be {n} whole numbers of 1 to {MAX_FEATURES}")
    for key in ("kernel_sizes", "strides"):
        v = arch.get(key)
        if not isinstance(v, list) or len(v) != n or not all(_ints(k, dim) and max(k) <= 7 for k in v):
            problems.append(f"{key} must be {n} lists of {dim} whole numbers of 1 to 7")
    blocks = arch.get("n_blocks_per_stage" if arch.get("network") == "ResidualEncoderUNet" else "n_conv_per_stage")
    if not _ints(blocks, n) or max(blocks) > 16:
        problems.append(f"the blocks per stage must be {n} whole numbers of 1 to 16")
    if not _ints(arch.get("n_conv_per_stage_decoder"), n - 1) or max(arch["n_conv_per_stage_decoder"] or [1]) > 16:
        problems.append(f"n_conv_per_stage_decoder must be {n - 1} whole numbers of 1 to 16")
    if CONV_OPS.get(arch.get("conv_op")) != dim:
        problems.append(f"conv_op {arch.get('conv_op')!r} is not a {dim}D convolution")
    if arch.get("norm_op") not in NORM_OPS:
        problems.append(f"norm_op {arch.get('norm_op')!r} is not supported (instance norm only)")
    if arch.get("nonlin") not in NONLINS:
        problems.append(f"nonlin {arch.get('nonlin')!r} is not supported (LeakyReLU or ReLU)")
    if arch.get("dropout_op") is not None:
        problems.append("dropout layers are not supported")
    return problems


def read_configuration(folder, configuration: str) -> Dict[str, object]:
    """One configuration of a results folder, checked, as the card keeps it.

    Returns a dict with: ``configuration``, ``plans_name``, ``patch_size`` (transposed axis
    order), ``spacing`` (target, transposed), ``transpose_forward`` / ``transpose_backward``,
    ``normalization`` (per channel: scheme, use_mask, intensity properties), ``resampling``
    (orders for the data and the probabilities), ``architecture``, ``labels`` and
    ``channel_names``. InputError names the first problem.
    """
    folder = Path(folder)
    meta = read_dataset_json(folder)
    plans = _read_json(folder / "plans.json", "not an nnU-Net v2 results folder")
    conf = _resolve(plans.get("configurations") or {}, configuration)
    if conf.get("previous_stage"):
        raise InputError(f"configuration '{configuration}' is a cascade stage (it needs the predictions of '{conf['previous_stage']}'); import a 3d_fullres or 2d model")
    patch = conf.get("patch_size")
    if not _ints(patch) or len(patch) not in (2, 3):
        raise InputError(f"plans.json: patch_size must be 2 or 3 whole numbers, got {patch!r}")
    voxels = 1
    for p in patch:
        voxels *= p
    if voxels > MAX_PATCH_VOXELS or max(patch) > 1024:
        raise InputError(f"plans.json: patch_size {patch} is absurd (more than {MAX_PATCH_VOXELS} voxels or 1024 along an axis)")
    spacing = conf.get("spacing")
    if not isinstance(spacing, list) or len(spacing) != len(patch) or not all(isinstance(s, (int, float)) and 0.01 <= s <= 100 for s in spacing):
        raise InputError(f"plans.json: spacing must be {len(patch)} numbers of 0.01 to 100 mm, got {spacing!r}")
    tf, tb = plans.get("transpose_forward", [0, 1, 2]), plans.get("transpose_backward", [0, 1, 2])
    if sorted(tf) != [0, 1, 2] or sorted(tb) != [0, 1, 2] or [tf[i] for i in tb] != [0, 1, 2]:
        raise InputError(f"plans.json: transpose_forward {tf} and transpose_backward {tb} are not inverse permutations")
    channels = meta.get("channel_names") or meta.get("modality")
    schemes, masks = conf.get("normalization_schemes"), conf.get("use_mask_for_norm")
    if not isinstance(schemes, list) or len(schemes) != len(channels) or not isinstance(masks, list) or len(masks) != len(channels):
        raise InputError(f"plans.json: normalization_schemes and use_mask_for_norm must name each of the {len(channels)} channels")
    unknown = [s for s in schemes if s not in NORMALIZATIONS]
    if unknown:
        raise InputError(f"plans.json: unknown normalisation '{unknown[0]}' (known: {', '.join(NORMALIZATIONS)}); it cannot be reproduced")
    props = plans.get("foreground_intensity_properties_per_channel") or plans.get("foreground_intensity_properties_by_modality") or {}
    normalization = []
    for c, (scheme, mask) in enumerate(zip(schemes, masks)):
        p = props.get(str(c), {})
        if scheme == "CTNormalization" and not all(isinstance(p.get(k), (int, float)) for k in ("mean", "std", "percentile_00_5", "percentile_99_5")):
            raise InputError(f"plans.json: channel {c} uses CT normalisation but foreground_intensity_properties_per_channel has no mean, std and percentiles for it")
        normalization.append({"scheme": scheme, "use_mask": bool(mask), "properties": {k: float(v) for k, v in p.items() if isinstance(v, (int, float))}})
    arch = _architecture(conf)
    problems = check_architecture(arch, len(patch))
    if problems:
        raise InputError(f"plans.json: the network cannot be rebuilt: {problems[0]}")
    kw_data = conf.get("resampling_fn_data_kwargs") or {}
    kw_prob = conf.get("resampling_fn_probabilities_kwargs") or {}
    for fn in ("resampling_fn_data", "resampling_fn_probabilities"):
        if conf.get(fn, "resample_data_or_seg_to_shape") != "resample_data_or_seg_to_shape":
            raise InputError(f"plans.json: {fn} '{conf.get(fn)}' is not nnU-Net's default resampling; it cannot be reproduced")
    labels = {int(v): k for k, v in meta["labels"].items() if k != "ignore"}
    return {
        "configuration": configuration, "plans_name": plans.get("plans_name", ""), "dataset_name": plans.get("dataset_name", ""),
        "patch_size": list(patch), "spacing": [float(s) for s in spacing],
        "transpose_forward": list(tf), "transpose_backward": list(tb),
        "normalization": normalization,
        "resampling": {
            "data": {"order": int(kw_data.get("order", 3)), "order_z": int(kw_data.get("order_z", 0)), "force_separate_z": kw_data.get("force_separate_z")},
            "probabilities": {"order": int(kw_prob.get("order", 1)), "order_z": int(kw_prob.get("order_z", 0)), "force_separate_z": kw_prob.get("force_separate_z")},
        },
        "architecture": arch,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "channel_names": {str(k): str(v) for k, v in channels.items()},
    }
