"""The one entry point: input -> method -> post-processing -> instances -> provenance.

The CLI (``medsegai segment``), the Slicer module's background process and the tests all call
:func:`segment` (images in memory) or :func:`segment_files` (paths).
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from . import __version__
from .core.errors import InputError, ResourceError
from .core.progress import CancelToken, Progress, ProgressCallback
from .core.result import Provenance, SegmentationResult
from .core.stages import timed
from .io.images import file_sha256, read_channels, read_image, require_3d_scalar, same_grid
from .methods.registry import MethodRequest, coerce_params, get_method
from .postprocess.cleanup import PostprocessOptions, postprocess_labels
from .postprocess.instances import label_instances
from .uncertainty.entropy import entropy_image, quantize_uncertainty


@functools.lru_cache(maxsize=None)
def _installed_versions() -> Tuple[Tuple[str, str], ...]:
    """Versions of the libraries a result depends on, read once per process (reading package
    metadata costs about 40 ms, a quarter of an interactive update)."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "SimpleITK": sitk.Version.VersionString(), "numpy": np.__version__}
    for pkg in ("scipy", "PyMaxflow", "torch", "monai", "onnxruntime", "slicer-core"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return tuple(versions.items())


def _library_versions() -> Dict[str, str]:
    return dict(_installed_versions())


#: Seed labels are whole numbers 0 (unpainted) to this (they are stored as UInt16).
MAX_SEED_LABEL = 65535


def check_seed_labels(values: np.ndarray, source) -> None:
    """Refuse seed values that a UInt16 labelmap cannot hold as they are: negative (-1 would
    wrap to 65535 and become the background), fractional, NaN or above 65535 (70000 would wrap
    to 4464)."""
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise InputError(f"the seeds in '{source}' contain NaN or infinite values; seed labels are whole numbers 0-{MAX_SEED_LABEL}")
        if np.any(values != np.round(values)):
            bad = float(values[values != np.round(values)].flat[0])
            raise InputError(f"the seeds in '{source}' contain the value {bad:g}; seed labels are whole numbers 0-{MAX_SEED_LABEL}")
    if values.size:
        low, high = values.min(), values.max()
        if low < 0:
            raise InputError(f"the seeds in '{source}' contain the label {low:g}; seed labels are whole numbers 0-{MAX_SEED_LABEL} (0 = unpainted)")
        if high > MAX_SEED_LABEL:
            raise InputError(f"the seeds in '{source}' contain the label {high:g}; seed labels are whole numbers 0-{MAX_SEED_LABEL}")


def _dicom_record(input_files) -> Dict[str, Any]:
    """Which series of each DICOM folder input was segmented (and how many others it held)."""
    from .io.images import dicom_series

    record = []
    for f in input_files:
        if Path(f).is_dir():
            uid, files, others = dicom_series(Path(f))
            record.append({"folder": str(f), "series_instance_uid": uid, "slices": len(files), "other_series": others})
    return {"input_dicom_series": record} if record else {}


def read_seeds(path, reference: sitk.Image) -> sitk.Image:
    """Read a seed labelmap and bring it onto ``reference``'s grid (nearest neighbour).

    A seed file on another grid (e.g. painted on a resampled copy) is resampled in physical
    space; seeds that fall outside the image raise InputError.
    """
    seeds = read_image(path)
    if seeds.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"the seed file '{path}' has {seeds.GetNumberOfComponentsPerPixel()} values per voxel (a colour image?); "
            "a labelmap with one whole number per voxel is needed"
        )
    if seeds.GetDimension() != 3:
        raise InputError(f"the seed file '{path}' is {seeds.GetDimension()}D; a 3D labelmap is needed")
    check_seed_labels(sitk.GetArrayViewFromImage(seeds), path)
    seeds = sitk.Cast(seeds, sitk.sitkUInt16)
    if not same_grid(seeds, reference):
        seeds = sitk.Resample(seeds, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    if not np.any(sitk.GetArrayViewFromImage(seeds)):
        raise InputError(f"the seed file '{path}' has no seed voxels inside the image")
    return seeds


def _memory_notes(method: str, params: Dict[str, Any], channels: Sequence[sitk.Image], keep_probabilities: bool) -> list:
    """Refuse (ResourceError) a run whose estimated peak exceeds what the process may use;
    otherwise the note to show first when it needs more than a few times its input."""
    from .core.memory import ADVICE, require_memory
    from .methods.memory_estimate import NOTE_ABOVE_INPUT, NOTE_MIN_BYTES, estimate_run_bytes

    n = int(np.prod(channels[0].GetSize()))
    need = estimate_run_bytes(method, params, n, len(channels), keep_probabilities=keep_probabilities)
    if need is None:
        return []
    input_bytes = 4 * n * len(channels)
    # The input is in memory already: what is still to come is checked against what is left.
    to_come = need - input_bytes
    limit_gb = float(params.get("max_memory_gb") or 0.0)
    if limit_gb > 0:  # the user's own limit replaces the available memory, as in the solvers
        if to_come > limit_gb * 2**30:
            raise ResourceError(f"{method} on {n:,} voxels would need about {to_come / 2**30:.1f} GiB of memory, more than max_memory_gb={limit_gb:g}")
    else:
        advice = "use mode=banded (coarse-to-fine), " if params.get("mode") == "full" else ""
        require_memory(to_come, f"{method} on {n:,} voxels", advice + ADVICE)
    if need <= NOTE_ABOVE_INPUT * input_bytes or need < NOTE_MIN_BYTES:
        return []
    return [
        f"{method} on {n:,} voxels may need about {need / 2**30:.1f} GiB of memory, "
        f"{need / input_bytes:.0f}x the input's {input_bytes / 2**30:.2f} GiB"
    ]


def segment(
    channels: Sequence[sitk.Image],
    method: str = "otsu",
    params: Optional[Dict[str, Any]] = None,
    *,
    seeds: Optional[sitk.Image] = None,
    atlases: Optional[Path] = None,
    model: Optional[str] = None,
    device: str = "auto",
    postprocess: Optional[PostprocessOptions] = None,
    input_files: Sequence[str] = (),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    method_cache: Optional[Dict[str, Any]] = None,
    allow_out_of_domain: bool = False,
    stages: Optional[list] = None,
    refine: str = "none",
    keep_probabilities: bool = False,
    prior: Optional[sitk.Image] = None,
    previous: Optional[Any] = None,
) -> SegmentationResult:
    """Segment co-registered 3D volumes with a registered method.

    Parameters
    ----------
    channels : sequence of sitk.Image
        One or more 3D volumes on one grid; the result is on channel 0's grid.
    method : str
        A registered method name (see ``medsegai methods``).
    params : dict
        Method parameters; unknown names raise InputError.
    seeds, atlases, model, device
        Inputs that some methods need (see :class:`MethodRequest`).
    postprocess : PostprocessOptions
        Island removal, largest-component rules, hole filling, instance connectivity.
    input_files : sequence of str
        Paths of the inputs, recorded (with SHA-256) in the provenance.
    progress : callable(fraction, message)
    cancel : CancelToken
    method_cache : dict or None
        Kept by :class:`MedSegAILib.interactive.session.SeededSession` between updates on one
        image (see :class:`MethodRequest`); the result is the same with or without it.
    allow_out_of_domain : bool
        Segment an input a deep model finds unlike its training data (the result says so).
    stages : list or None
        Rows of stage timings (:mod:`MedSegAILib.core.stages`) to append to; the result's
        provenance keeps the same list (``stages``), a new one when None.
    keep_probabilities : bool
        Keep the method's per-class posteriors in ``result.probabilities`` (K float32 values a
        voxel: 1.3 GB for a full-size CT with three classes); None otherwise.
    prior, previous
        For the seeded graph cut: label probabilities to start from, and the previous result
        of an interactive session (see :class:`MethodRequest`).
    refine : "none" or "crf"
        "crf": the method's class probabilities become the data term of the classical
        contrast-sensitive CRF (:func:`.postprocess.refine.refine_with_crf`); labels,
        probabilities and uncertainty then come from it. For methods that give probabilities
        (deep, atlas, and the classical ones); off by default.

    Returns
    -------
    SegmentationResult on channel 0's exact grid.
    """
    t0 = time.perf_counter()
    spec = get_method(method)
    checked = [require_3d_scalar(c, name=f"input channel {i}") for i, c in enumerate(channels)]
    if not checked:
        raise InputError("no input image was given")
    for i, c in enumerate(checked[1:], start=1):
        if not same_grid(checked[0], c):
            raise InputError(f"input channel {i} is not on channel 0's voxel grid")
    missing = [n for n, v in (("seeds", seeds), ("atlases", atlases), ("model", model)) if n in spec.needs and v is None]
    if missing:
        raise InputError(f"method '{method}' needs --{missing[0]}")
    if seeds is not None:
        if seeds.GetNumberOfComponentsPerPixel() != 1:
            raise InputError("the seed image has several values per voxel; a labelmap with one whole number per voxel is needed")
        check_seed_labels(sitk.GetArrayViewFromImage(seeds), "the seed image")
    if (prior is not None or previous is not None) and "seeds" not in spec.needs:
        raise InputError(f"method '{method}' takes no prior or previous result; they guide the seeded graph cut")
    options = (postprocess or PostprocessOptions()).validate()
    from .postprocess.refine import REFINEMENTS

    if refine not in REFINEMENTS:
        raise InputError(f"refine must be one of {', '.join(REFINEMENTS)}, got '{refine}'")
    prog = Progress(progress, cancel)
    request = MethodRequest(
        channels=checked,
        params=coerce_params(spec, params),
        seeds=seeds,
        atlases=Path(atlases) if atlases else None,
        model=model,
        device=device,
        progress=prog.sub(0.0, 0.85),
        cache=method_cache,
        prior=prior,
        previous=previous,
        allow_out_of_domain=allow_out_of_domain,
        keep_probabilities=keep_probabilities or refine != "none",  # the CRF's data term
    )
    stages = [] if stages is None else stages
    notes = _memory_notes(spec.name, request.params, checked, keep_probabilities)
    for note in notes:
        prog.update(0.0, f"note: {note}")
    prog.update(0.0, f"running {method}")
    with timed(stages, f"method ({method})"):
        out = spec.load()(request)
    if refine == "crf":
        from .postprocess.refine import refine_with_crf

        prog.update(0.85, "CRF refinement of the probabilities")
        with timed(stages, "refinement (crf)"):
            out = refine_with_crf(out, checked[0], keep_probabilities=keep_probabilities)
    prog.update(0.86, "post-processing")
    with timed(stages, "post-processing"):
        labels = sitk.Cast(postprocess_labels(out.labels, options), sitk.sitkUInt16)
        labels.CopyInformation(checked[0])
        out.labels = None  # the method's labels are not needed beyond here
    with timed(stages, "uncertainty"):
        uncertainty = out.uncertainty
        if uncertainty is None:
            if out.probabilities is None:
                raise RuntimeError(f"method '{method}' returned neither probabilities nor uncertainty")
            uncertainty = entropy_image(out.probabilities)
        if not keep_probabilities:
            out.probabilities = None  # released before the instances are built
        out.uncertainty = None
        uncertainty = quantize_uncertainty(uncertainty)  # in steps of 2**-16 (see uncertainty.entropy)
        uncertainty.CopyInformation(checked[0])
    prog.update(0.92, "instances")
    # Tissue ("stuff") classes of Otsu, MRF and CRF are one segment each; objects are split.
    stuff = [c.label for c in out.classes] if spec.stuff else ()
    with timed(stages, "instances"):
        instances, table, classes = label_instances(
            labels, out.classes, connectivity=options.connectivity, uncertainty=uncertainty, stuff_labels=stuff
        )
    extra = {**(out.extra or {}), **_dicom_record(input_files)}
    if notes:  # the memory note first, then the method's own warnings
        extra["warnings"] = notes + list(extra.get("warnings", []))
    provenance = Provenance(
        method=spec.name,
        family=spec.family,
        parameters=out.parameters or request.params,
        software_version=__version__,
        input_files=[str(f) for f in input_files],
        input_sha256=[file_sha256(f) for f in input_files if Path(f).exists()],
        model_hash=out.model_hash,
        wall_time_s=round(time.perf_counter() - t0, 3),
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        library_versions=_library_versions(),
        postprocessing=options.to_dict(),
        extra=extra,
        stages=stages,
    )
    prog.update(1.0, "done")
    return SegmentationResult(
        labels=labels,
        instances=instances,
        uncertainty=uncertainty,
        classes=classes,
        instance_table=table,
        provenance=provenance,
        probabilities=out.probabilities,
        label_samples=out.label_samples if keep_probabilities else None,
    )


def segment_files(
    inputs: Sequence, method: str = "otsu", params: Optional[Dict[str, Any]] = None, *, seeds=None, **kwargs
) -> SegmentationResult:
    """Read ``inputs`` (files or DICOM folders, one per channel) and :func:`segment` them.

    ``seeds`` may be a path (read and brought onto the input grid) or an image.
    """
    channels = read_channels(inputs)
    if seeds is not None and not isinstance(seeds, sitk.Image):
        seeds = read_seeds(seeds, channels[0])
    return segment(channels, method, params, seeds=seeds, input_files=[str(p) for p in inputs], **kwargs)
