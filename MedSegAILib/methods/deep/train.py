"""Training: dataset -> fingerprint -> plan -> network -> loss -> augmented patches -> model.

Written for CPUs as much as GPUs: the whole (preprocessed) dataset is held in memory, the
learning rate follows nnU-Net's polynomial decay over a wall-clock budget or an epoch count,
validation runs full-volume sliding-window inference on a fixed split, and the best model by
validation Dice is kept, or, with weight averaging (``average_from``), the mean of the weights
of the epochs in the last part of the schedule. Everything is seeded. Checkpoints (weights,
optimiser state and the running weight average as safetensors, counters as JSON) allow
resuming; no pickle is written or read.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError
from ...core.progress import CancelToken, Progress, ProgressCallback
from .dataset import DEFAULT_VAL_CASES, fingerprint, load_case_arrays, read_dataset, split_cases, split_cases_by_name
from .distributed import Ranks, barrier, broadcast_float
from .distributed import start as start_distributed
from .distributed import stop as stop_distributed
from .plan import Plan, make_plan
from .preprocess import needs_resampling, normalize, resample_to_spacing


@dataclass
class TrainOptions:
    """Training settings (defaults suit small datasets on a CPU).

    Attributes
    ----------
    network, norm, features, full_resolution_level, dropout, aspp : plan overrides (None = derived)
    loss : see ``losses.LOSSES``
    epochs : maximum epochs
    time_budget_min : stop after this many minutes of training (None = epochs only); the
        learning-rate schedule spans whichever ends first
    budget_clock : "wall" (elapsed time) or "cpu" (this process's CPU time, all threads):
        a CPU budget keeps comparisons fair on a shared machine
    batch_size, lr, weight_decay : AdamW settings
    val_cases : the last N cases (by name) form the validation split; None: the cases the
        dataset's ``dataset.json`` names (``medsegai.validation``, as an exported training set
        does), else the last 40
    val_names : exactly these cases (by name) validate, instead of ``val_cases``
    fold : instead of the last N, the fold-th block of N cases by name validates
        (cross-validation; see ``dataset.split_cases``)
    val_every : validate every N epochs
    seed : seeds Python, NumPy, torch and the augmentation
    augment : augmentation strength (0 = none)
    threads : torch CPU threads (0 = all cores)
    max_train_cases : use only the first N training cases (smoke tests)
    sdf_head, sdf_weight : add the signed-distance regression head, and its loss weight
    init_from : a trained model (name or folder) whose verified weights start the training
        (fine-tuning or continuing with a new budget); its plan must match this one
    mixed_precision : float16 autocast with gradient scaling on CUDA (ignored on CPU)
    onnx_export : after training, export the kept weights to ONNX (``model.onnx``, checked
        against torch) so the model also runs with ONNX Runtime; skipped with a message when
        the exporter is not installed or the network does not export
    average_from : stochastic weight averaging (Izmailov et al. 2018): from this fraction of
        the schedule (0 to 1) on, the learning rate stays at its value there and the weights
        at the end of every epoch enter a running mean, which becomes the kept model instead
        of the best epoch's weights (so no epoch is chosen by its validation Dice). Needs
        instance, group or layer norm: batch-norm statistics would not match averaged weights
    distributed : train on the processes torchrun started (:mod:`.distributed`); the model
        folder is written by rank 0 only and has the single-process format
    """

    network: Optional[str] = None
    norm: str = "instance"
    features: Optional[List[int]] = None
    full_resolution_level: bool = False
    dropout: float = 0.1
    aspp: bool = False
    loss: str = "dice_ce"
    epochs: int = 200
    time_budget_min: Optional[float] = None
    budget_clock: str = "wall"
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-5
    val_cases: Optional[int] = None
    val_names: Optional[List[str]] = None
    fold: Optional[int] = None
    val_every: int = 1
    seed: int = 0
    augment: float = 1.0
    threads: int = 0
    max_train_cases: Optional[int] = None
    sdf_head: bool = False
    sdf_weight: float = 0.5
    mixed_precision: bool = True
    device: str = "auto"
    class_names: Dict[int, str] = field(default_factory=dict)
    name: str = ""
    init_from: Optional[str] = None
    onnx_export: bool = True
    average_from: Optional[float] = None
    distributed: bool = False


def _dice_per_class(pred: np.ndarray, ref: np.ndarray, k: int) -> List[float]:
    out = []
    for c in range(1, k):
        a, b = pred == c, ref == c
        denom = a.sum() + b.sum()
        out.append(1.0 if denom == 0 else float(2 * np.logical_and(a, b).sum() / denom))
    return out


def _load(cases, plan: Plan):
    """Preprocess cases into memory: [(image (C,Z,Y,X) float32, label (1,Z,Y,X) uint8)]."""
    data = []
    for case in cases:
        arr, lab, ref = load_case_arrays(case)
        if needs_resampling(ref, plan):
            chans = [resample_to_spacing(sitk.GetImageFromArray(a), plan.target_spacing_xyz) for a in arr]  # noqa: E501
            arr = np.stack([sitk.GetArrayFromImage(c) for c in chans])
            li = sitk.GetImageFromArray(lab)
            li.CopyInformation(ref)
            lab = sitk.GetArrayFromImage(resample_to_spacing(li, plan.target_spacing_xyz, sitk.sitkNearestNeighbor))
        data.append((normalize(arr, plan), lab[None].astype(np.uint8)))
    return data


def _state_to_tensors(model, optimizer, average: Optional[Dict] = None) -> Dict:
    """Model weights, AdamW moments and the running weight average (if any) as a flat dict of
    tensors (safetensors-compatible)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"avg.{k}": v for k, v in (average or {}).items()})
    for i, (p, st) in enumerate(optimizer.state.items()):
        for k, v in st.items():
            if hasattr(v, "shape"):
                tensors[f"opt.{i}.{k}"] = v.reshape(-1) if v.ndim == 0 else v
    return tensors


def _restore(model, optimizer, tensors: Dict) -> Dict:
    """Load weights and optimiser state saved by ``_state_to_tensors``; returns the running
    weight average it held (empty if none)."""
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if st:
            if "step" in st:
                st["step"] = st["step"].reshape(())
            optimizer.state[p] = st
    return {k[4:]: v for k, v in tensors.items() if k.startswith("avg.")}


def _add_to_average(average: Dict, weights: Dict, count: int) -> None:
    """Fold ``weights`` into the running mean ``average`` of ``count - 1`` earlier weight sets,
    in place; integer buffers (counters) are copied, not averaged."""
    for k, v in weights.items():
        v = v.detach().cpu()
        if k not in average or not v.is_floating_point():
            average[k] = v.clone()
        else:
            average[k] += (v - average[k]) / count


#: While training, the learning curve PNG is redrawn after a validation at most this often (s).
LIVE_PLOT_EVERY_S = 10.0


def _validate(net, val_data, plan: Plan, device: str) -> np.ndarray:
    """Mean Dice per foreground class over the validation cases: sliding window, no TTA."""
    from .inference import predict_array

    dices = []
    for arr, lab in val_data:
        prob, _ = predict_array(net, arr, plan, device=device, flips=((),))
        dices.append(_dice_per_class(prob.argmax(0), lab[0], plan.num_classes))
    return np.mean(dices, axis=0)


def plot_learning_curves(history: List[dict], path: Path, averaged: Optional[dict] = None) -> None:
    """Training loss and validation mean Dice per epoch as a PNG.

    ``averaged`` ({"first_epoch", "last_epoch", "mean_dice"}) marks the epochs whose weights
    were averaged and the averaged model's validation Dice.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 3.6))
    ax = fig.subplots(1, 2)
    ax[0].plot(ep, [h["train_loss"] for h in history])
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("training loss")
    val = [(h["epoch"], h["val_mean_dice"]) for h in history if h.get("val_mean_dice") is not None]
    if val:
        ax[1].plot(*zip(*val), marker=".", label="each epoch")
    if averaged:
        for a in ax:
            a.axvspan(averaged["first_epoch"], averaged["last_epoch"], color="tab:green", alpha=0.12, lw=0)
        if averaged.get("mean_dice") is not None:
            ax[1].hlines(averaged["mean_dice"], averaged["first_epoch"], averaged["last_epoch"], color="tab:green", lw=2,
                         label=f"average of the shaded epochs' weights: {averaged['mean_dice']:.4f}")
        ax[1].legend(fontsize=8, loc="lower right")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation mean Dice")
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    # Written beside and renamed: a reader (the panel refreshing the curve) never sees half a file.
    partial = Path(path).with_name(Path(path).name + ".partial")
    fig.savefig(partial, dpi=100, format="png")
    partial.replace(path)


def _init_from(net, plan: Plan, model, val_names, log) -> dict:
    """Load a trained model's weights (checksum verified, no pickle) into ``net``.

    The starting model's plan must give the same network: architecture, channels, patch,
    spacing, normalisation and classes; and it must not have trained on any of ``val_names``
    (the validation figures would be inflated). Returns what the model card records about it.
    """
    from .model_store import read_verified_weights

    start = read_verified_weights(model)
    seen = sorted(set(start.card.get("training", {}).get("train_cases", [])) & set(val_names))
    if seen:
        raise InputError(
            f"--init-from model '{start.folder}' was trained on {len(seen)} of this run's validation cases ({', '.join(seen[:3])}{', ...' if len(seen) > 3 else ''}); "
            "its validation figures would be inflated: choose a split it did not train on, or train from scratch"
        )
    keys = ("network", "features", "full_resolution_level", "norm", "num_classes", "in_channels", "patch_size_zyx", "target_spacing_xyz", "normalization", "aspp", "sdf_head", "context_slices")
    mine, theirs = plan.to_dict(), start.plan.to_dict()
    differ = [k for k in keys if mine.get(k) != theirs.get(k)]
    if differ:
        raise InputError(
            f"--init-from model '{start.folder}' was trained with another plan ({', '.join(f'{k}: {theirs.get(k)} vs {mine.get(k)}' for k in differ)}); "
            "pass the same network options or train from scratch"
        )
    net.load_state_dict(start.state_dict)
    log(f"initialised from {start.folder} (sha256 {start.sha256[:12]}...)")
    prior = start.card.get("training", {})
    return {
        "model": str(start.folder), "sha256": start.sha256,
        "its_epochs": prior.get("epochs_run"), "its_wall_time_min": prior.get("wall_time_min"),
        "its_cpu_time_min": prior.get("cpu_time_min"), "its_validation_mean_dice": start.card.get("validation", {}).get("mean_dice"),
    }


def _record_domain(out: Path, train_cases, val_cases, log) -> None:
    """Write the card's ``domain`` (see :mod:`.domain`): the training inputs' features and the
    kept model's outputs on the validation cases, so that runs can say when an input is unlike
    them. Without validation cases only the inputs are recorded."""
    from .domain import record_domain

    record = record_domain(out, [c.images for c in train_cases], [c.images for c in val_cases])
    log(f"recorded the training domain ({record['n_training_inputs']} inputs, {record['n_validation_outputs']} validation outputs)")


def _export_onnx_after_training(out: Path, log) -> None:
    """Export the kept weights to ONNX; a model without an export still runs with torch, so a
    missing exporter or a network the exporter cannot take is reported, not fatal."""
    from ...core.errors import MedSegAIError
    from .onnx_export import export_onnx

    try:
        entry = export_onnx(out)
    except MedSegAIError as exc:
        log(f"no ONNX export ({exc}); the model runs with the torch runtime")
        return
    except Exception as exc:  # the exporter's own failures (unsupported operators, ...)
        log(f"no ONNX export: the exporter failed ({type(exc).__name__}: {str(exc)[:300]}); the model runs with the torch runtime")
        return
    log(f"ONNX export written ({entry['file']}, ONNX Runtime matches torch to {entry['max_relative_logit_difference']:.1e})")


def _dataset_reference(dataset: Path, out: Path) -> str:
    """The dataset folder as the card records it: relative when it lies inside the model folder
    (an exported training set kept with its model), else absolute."""
    try:
        return str(dataset.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(dataset.resolve())


def _choose_split(cases, opt: TrainOptions, listed) -> tuple:
    """(training cases, validation cases, the split in words): the named cases
    (``val_names``), else the cases dataset.json lists when no count or fold is asked for,
    else the last ``val_cases`` (default 40) or the fold's block."""
    if opt.val_names is not None:
        train, val = split_cases_by_name(cases, opt.val_names)
        return train, val, f"validation = the {len(val)} cases named by --val-names"
    if opt.val_cases is None and listed and opt.fold is None:
        train, val = split_cases_by_name(cases, listed)
        return train, val, f"validation = the {len(val)} cases dataset.json names"
    train, val = split_cases(cases, DEFAULT_VAL_CASES if opt.val_cases is None else opt.val_cases, opt.fold)
    if opt.fold is not None:
        return train, val, f"validation = fold {opt.fold}: block {opt.fold} of {len(val)} cases by sorted name"
    return train, val, f"validation = the last {len(val)} cases by sorted name"


def _quiet(*_args, **_kwargs) -> None:
    """The log of ranks other than 0."""


def train(
    dataset_dir,
    output_dir,
    options: Optional[TrainOptions] = None,
    *,
    resume: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    log=print,
) -> dict:
    """Train a model on an MSD/nnU-Net dataset folder and write it to ``output_dir``.

    Returns the model card (also in ``output_dir/model.json``) with the validation figures.
    """
    import safetensors.torch
    import torch

    from .augment import training_transforms
    from .inference import resolve_device
    from .losses import SignedDistanceLoss, build_loss
    from .model_store import save_model
    from .networks import build_network

    opt = options or TrainOptions()
    out = Path(output_dir)
    if out.exists() and (out / "model.json").exists() and not resume:
        raise InputError(f"'{out}' already holds a model; choose another --output or pass --resume")
    if opt.average_from is not None:
        if not 0.0 <= opt.average_from < 1.0:
            raise InputError(f"--average-from is a fraction of the schedule from 0 to below 1, got {opt.average_from}")
        if opt.norm == "batch":
            raise InputError("weight averaging (--average-from) needs instance, group or layer norm: batch-norm statistics would not match the averaged weights")
    prog = Progress(progress, cancel)
    torch.manual_seed(opt.seed)
    np.random.seed(opt.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    device = resolve_device(opt.device)
    ranks = Ranks()
    if opt.distributed:
        ranks = start_distributed(device)
        if device.startswith("cuda"):
            device = f"cuda:{ranks.local_rank}"
        if not ranks.main:
            log = _quiet  # one log, rank 0's
            prog = Progress(None, cancel)
    log(f"device: {device}" + (f", process {ranks.rank} of {ranks.world}" if ranks.active else ""))

    ds = read_dataset(dataset_dir)
    meta = ds.meta
    listed = (meta.get("medsegai") or {}).get("validation")
    train_cases, val_cases, split_text = _choose_split(ds.cases, opt, listed)
    if opt.max_train_cases:
        train_cases = train_cases[: opt.max_train_cases]
    prog.update(0.0, "fingerprint")
    fp = fingerprint(ds)
    names = {**ds.class_names, **{int(k): v for k, v in opt.class_names.items()}}
    plan = make_plan(fp, network=opt.network, norm=opt.norm, features=opt.features, full_resolution_level=opt.full_resolution_level, dropout=opt.dropout, aspp=opt.aspp, sdf_head=opt.sdf_head, class_names=names)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps({"fingerprint": fp, "plan": plan.to_dict()}, indent=2))
    log(f"plan: {plan.network}, patch {plan.patch_size_zyx}, spacing {plan.target_spacing_xyz}, {plan.num_classes} classes, {len(train_cases)} train / {len(val_cases)} validation cases")

    net = build_network(plan).to(device)
    # Under DDP the wrapper trains, ``net`` (the same parameters) validates and is saved.
    trainer = net
    if ranks.active:
        from torch.nn.parallel import DistributedDataParallel

        trainer = DistributedDataParallel(net, device_ids=[ranks.local_rank] if device.startswith("cuda") else None)
    ckpt_w, ckpt_j = out / "checkpoint.safetensors", out / "checkpoint.json"
    resuming = resume and ckpt_w.exists()
    # Before the cases are loaded, so that a starting model with another plan is refused at once.
    val_names = [c.name for c in val_cases]
    init = _init_from(net, plan, opt.init_from, val_names, log) if opt.init_from and not resuming else None
    train_data = _load(train_cases, plan)
    val_data = _load(val_cases, plan)
    loss_fn = build_loss(opt.loss)
    sdf_loss = SignedDistanceLoss(spacing_zyx=plan.target_spacing_xyz[::-1]) if plan.sdf_head else None
    amp = bool(opt.mixed_precision and device == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    optimizer = torch.optim.AdamW(net.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    transforms = training_transforms(plan.patch_size_zyx, strength=opt.augment, seed=opt.seed + ranks.rank, is_2d=plan.network != "unet3d") if opt.augment > 0 else None
    if transforms is None:
        from .augment import crop_or_pad_transforms

        transforms = crop_or_pad_transforms(plan.patch_size_zyx)

    # Kept in checkpoint.json, so a resumed run still records the model it started from.
    state = {"epoch": 0, "elapsed_s": 0.0, "best_dice": -1.0, "history": [], "initialised_from": init, "validation_cases": val_names, "averaged_epochs": [], "average_from": opt.average_from}
    average: Dict = {}
    if resuming:
        saved = json.loads(ckpt_j.read_text())
        # Checkpoints written before the split was recorded carry no case list.
        if saved.get("validation_cases", val_names) != val_names:
            raise InputError(
                f"the checkpoint in '{out}' was validated on other cases than this split "
                f"({saved['validation_cases'][0]} ... vs {val_names[0] if val_names else 'none'} ...): resume with the run's own --val-cases and --fold"
            )
        # Checkpoints written before weight averaging existed hold neither key.
        saved_from = saved.get("average_from", opt.average_from if saved.get("averaged_epochs") else None)
        if saved_from != opt.average_from:
            raise InputError(
                f"the checkpoint in '{out}' was trained with --average-from {saved_from}, this run asks for {opt.average_from}: "
                "resume with the same value (or start a new run with --init-from to average from here on)"
            )
        average = _restore(net, optimizer, safetensors.torch.load_file(str(ckpt_w)))
        state = {"averaged_epochs": [], **saved, "validation_cases": val_names, "average_from": opt.average_from}
        log(f"resumed at epoch {state['epoch']}")

    budget_s = opt.time_budget_min * 60 if opt.time_budget_min else None
    if opt.budget_clock not in ("wall", "cpu"):
        raise InputError(f"budget clock must be 'wall' or 'cpu', got '{opt.budget_clock}'")
    clock = time.process_time if opt.budget_clock == "cpu" else time.perf_counter
    rng = np.random.default_rng(opt.seed + state["epoch"])
    t_start = time.perf_counter() - state["elapsed_s"]
    c_start = time.process_time() - state.get("cpu_s", 0.0)
    b_start = c_start if opt.budget_clock == "cpu" else t_start

    def spent() -> float:
        return clock() - b_start
    # Every process takes its share of each epoch's batches (the same number of steps each).
    steps_per_epoch = max(1, math.ceil(len(train_data) / (opt.batch_size * ranks.world)))

    def schedule_fraction(epoch: int) -> float:
        f = epoch / opt.epochs
        if budget_s:
            f = max(f, spent() / budget_s)
        return min(f, 1.0)

    def out_of_time() -> bool:
        return bool(broadcast_float(float(bool(budget_s and spent() >= budget_s)), ranks))

    last_plot = -math.inf
    while state["epoch"] < opt.epochs and not out_of_time():
        epoch = state["epoch"] + 1
        net.train()
        order = rng.permutation(len(train_data))
        if ranks.active:  # this process's share, wrapped round to a whole number of batches
            order = np.resize(order[ranks.rank :: ranks.world], steps_per_epoch * opt.batch_size)
        losses = []
        for s in range(steps_per_epoch):
            f = broadcast_float(schedule_fraction(state["epoch"]), ranks)
            if opt.average_from is not None:
                f = min(f, opt.average_from)  # constant learning rate while averaging
            lr = opt.lr * (1 - f) ** 0.9
            for g in optimizer.param_groups:
                g["lr"] = max(lr, opt.lr * 1e-3)
            idx = order[s * opt.batch_size : (s + 1) * opt.batch_size]
            samples = [transforms({"image": train_data[i][0], "label": train_data[i][1]}) for i in idx]
            x = torch.stack([torch.as_tensor(np.asarray(d["image"]), dtype=torch.float32) for d in samples]).to(device)
            y = torch.stack([torch.as_tensor(np.asarray(d["label"])).round().long() for d in samples]).to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                if sdf_loss is not None:
                    if ranks.active:
                        raise InputError("--sdf-head is not supported with --distributed")
                    logits, sdf = net.forward_with_sdf(x)
                    loss = loss_fn(logits.float(), y) + opt.sdf_weight * sdf_loss(sdf.float(), y)
                else:
                    loss = loss_fn(trainer(x).float(), y)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.item()))
            frac = schedule_fraction(state["epoch"] + (s + 1) / steps_per_epoch)
            prog.update(frac, f"epoch {epoch} loss {np.mean(losses):.4f} best val Dice {max(state['best_dice'], 0):.4f}")
        rec = {"epoch": epoch, "train_loss": float(np.mean(losses)), "lr": lr, "elapsed_s": round(time.perf_counter() - t_start, 1), "cpu_s": round(time.process_time() - c_start, 1)}
        last_epoch = epoch >= opt.epochs or out_of_time()
        if opt.average_from is not None and schedule_fraction(epoch) >= opt.average_from:
            state["averaged_epochs"].append(epoch)
            _add_to_average(average, net.state_dict(), len(state["averaged_epochs"]))
            rec["averaged"] = len(state["averaged_epochs"])
        if not ranks.main:
            pass  # rank 0 validates and writes; the others wait at the barrier below
        elif val_data and (epoch % opt.val_every == 0 or last_epoch):
            per_class = _validate(net, val_data, plan, device)
            rec["val_dice"] = [round(float(d), 4) for d in per_class]
            rec["val_mean_dice"] = round(float(per_class.mean()), 4)
            if rec["val_mean_dice"] > state["best_dice"]:
                state["best_dice"] = rec["val_mean_dice"]
                state["best_epoch"] = epoch
                save_model(out, net.state_dict(), plan, {"name": opt.name or out.name, "status": "training"})
        elif not val_data:
            save_model(out, net.state_dict(), plan, {"name": opt.name or out.name, "status": "training"})
        state["epoch"] = epoch
        state["elapsed_s"] = time.perf_counter() - t_start
        state["cpu_s"] = time.process_time() - c_start
        state["history"].append(rec)
        if ranks.main and "val_mean_dice" in rec and time.perf_counter() - last_plot >= LIVE_PLOT_EVERY_S:
            plot_learning_curves(state["history"], out / "learning_curves.png")  # the curve so far, for the panel
            last_plot = time.perf_counter()
        if ranks.main:
            safetensors.torch.save_file({k: v.detach().cpu().contiguous() for k, v in _state_to_tensors(net, optimizer, average).items()}, str(ckpt_w))
            ckpt_j.write_text(json.dumps(state, indent=1))
        log(json.dumps(rec))
        barrier(ranks)

    if not ranks.main:  # the model folder is rank 0's to write
        barrier(ranks)
        stop_distributed(ranks)
        return json.loads((out / "model.json").read_text())

    # Loss and validation Dice per epoch with wall and CPU seconds: kept beside the model.
    (out / "training_history.json").write_text(json.dumps(state["history"], indent=0))
    best = max((h for h in state["history"] if h.get("val_mean_dice") is not None), key=lambda h: h["val_mean_dice"], default=None)
    card = {
        "name": opt.name or out.name,
        "status": "trained",
        "task": f"segmentation of {', '.join(plan.class_names.values())}",
        "training": {
            "dataset": _dataset_reference(Path(dataset_dir), out),
            "source": (meta.get("medsegai") or {}).get("cases"),
            "segments": (meta.get("medsegai") or {}).get("segments"),
            "train_cases": [c.name for c in train_cases],
            "validation_cases": val_names,
            "split": split_text + f"; training = the other {len(train_cases)}",
            "options": {k: v for k, v in opt.__dict__.items() if k != "class_names"},
            "initialised_from": state.get("initialised_from"),
            "epochs_run": state["epoch"],
            "wall_time_min": round(state["elapsed_s"] / 60, 2),
            "cpu_time_min": round(state.get("cpu_s", 0.0) / 60, 2),
            "device": device,
            "threads": torch.get_num_threads(),
            "processes": ranks.world,
        },
        "validation": {
            "best_epoch": state.get("best_epoch"),
            "dice_per_class": best["val_dice"] if best else None,
            "mean_dice": best["val_mean_dice"] if best else None,
            "note": "sliding-window inference without test-time augmentation, on the plan grid",
        },
        "intended_use": "Research use only; not a medical device.",
    }
    averaged = state["averaged_epochs"] if opt.average_from is not None else []
    if averaged:
        # The running mean is the kept model: validated once, after training, like any epoch.
        weights = average
        net.load_state_dict(average)
        card["validation"].update(
            best_epoch=None,
            weights=f"average of the weights after each of the {len(averaged)} epochs {averaged[0]}-{averaged[-1]} (stochastic weight averaging from {opt.average_from} of the schedule, reached in epoch {averaged[0]})",
            best_single_epoch={"epoch": state.get("best_epoch"), "dice_per_class": best["val_dice"] if best else None, "mean_dice": best["val_mean_dice"] if best else None},
        )
        if val_data:
            per_class = _validate(net, val_data, plan, device)
            card["validation"].update(dice_per_class=[round(float(d), 4) for d in per_class], mean_dice=round(float(per_class.mean()), 4))
        summary = f"weights averaged over epochs {averaged[0]}-{averaged[-1]}: validation mean Dice {card['validation']['mean_dice']} (best single epoch {state.get('best_epoch')}: {best['val_mean_dice'] if best else None})"
        plot_learning_curves(state["history"], out / "learning_curves.png", {"first_epoch": averaged[0], "last_epoch": averaged[-1], "mean_dice": card["validation"]["mean_dice"]})
    else:
        if opt.average_from is not None:
            log(f"no epoch reached {opt.average_from} of the schedule, so no weights were averaged; the best epoch's weights are kept")
        # Rewrite the card around the best weights (kept on disk since that epoch).
        import safetensors.torch as st

        weights = st.load_file(str(out / "model.safetensors")) if (out / "model.safetensors").exists() else net.state_dict()
        summary = f"best validation mean Dice {card['validation']['mean_dice']} at epoch {card['validation']['best_epoch']}"
        plot_learning_curves(state["history"], out / "learning_curves.png")
    save_model(out, weights, plan, card)
    if opt.onnx_export:
        _export_onnx_after_training(out, log)
    _record_domain(out, train_cases, val_cases, log)
    log(f"done: {summary}")
    barrier(ranks)
    stop_distributed(ranks)
    return json.loads((out / "model.json").read_text())
