"""Multi-atlas segmentation: select atlases, register them, transfer their labels, fuse.

Outline of :func:`multi_atlas_segmentation`:

1. Normalise intensities of target and atlases (robust percentiles to [0, 1]).
2. Selection: a quick affine registration (Mattes MI, half resolution) of every atlas,
   ranked by normalised cross-correlation with the target; the best ``k`` go on.
3. Registration of the selected atlases: affine refined at full resolution, then fast
   symmetric-forces Demons after histogram matching (:mod:`.registration`).
4. Quality control: a registration that raises, covers less than half the target, ends with a
   correlation below ``min_similarity`` or pushes most of the atlas labels out of the target
   is dropped and reported in ``extra["registrations"]``, never fused.
5. Label transfer as per-label probability maps (:mod:`.transfer`) and fusion by the chosen
   rule (:mod:`.fusion`); the fused posterior is the output's probabilities.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import List, Optional, Union

import numpy as np
import SimpleITK as sitk

from ...core.errors import InputError, MedSegAIError
from ...core.progress import Progress
from ...core.result import MethodOutput
from ...uncertainty.entropy import entropy_image
from ..registry import MethodRequest
from .fusion import FUSION_RULES, fuse
from .library import AtlasCase, AtlasLibrary, load_atlas_library
from .registration import (
    AtlasRegistration,
    affine_registration,
    demons_registration,
    field_of_view_coverage,
    normalize_intensity,
    normalized_cross_correlation,
    resample_onto,
)
from .transfer import warp_label_probabilities

DEFAULTS = {
    "fusion": "local",
    "k": 25,
    "affine_iterations": 100,
    "demons_iterations": 40,
    "demons_sigma": 1.0,
    "local_sigma_mm": 1.5,
    "local_gain": 3.0,
    "min_similarity": 0.3,
    "threads": 1,
}


class NoAtlasRegistered(MedSegAIError):
    """No atlas of the library could be aligned to the target, or every registration failed
    its quality checks: nothing to fuse."""


def _normalised(case: AtlasCase) -> sitk.Image:
    """The atlas image normalised as the target is; kept on the case for the next target."""
    if "normalised" not in case.cache:
        case.cache["normalised"] = normalize_intensity(case.image)
    return case.cache["normalised"]


def rank_atlases(
    target: sitk.Image, library: AtlasLibrary, *, threads: int = 1, progress: Optional[Progress] = None
) -> List[tuple]:
    """Rank atlases by NCC with the target after a quick affine alignment (best first).

    Parameters
    ----------
    target : sitk.Image
        Normalised target intensities.
    library : AtlasLibrary

    Returns
    -------
    list of (ncc, case, affine transform or None, error message)
    """
    ranked = []
    n = len(library.cases)
    for i, case in enumerate(library.cases):
        if progress is not None:
            progress.update(i / n, f"ranking atlases ({i + 1}/{n})")
        try:
            moving = _normalised(case)
            tx, _ = affine_registration(
                target, moving, shrink_factors=(2,), smoothing_sigmas=(1.0,), iterations=25, sampling_fraction=0.2, threads=threads
            )
            # A copy: a view of a temporary image would outlive the image's buffer.
            warped = sitk.GetArrayFromImage(resample_onto(moving, target, tx))
            cover = field_of_view_coverage(moving, target, tx)
            score = normalized_cross_correlation(sitk.GetArrayViewFromImage(target), warped, cover)
            ranked.append((score, case, tx, ""))
        except (RuntimeError, MedSegAIError) as exc:
            ranked.append((-np.inf, case, None, _first_line(exc)))
    ranked.sort(key=lambda r: -r[0])
    return ranked


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    lines = [l for l in text.splitlines() if l.strip()]
    # ITK messages put the useful sentence after the file/line header.
    for line in lines:
        if "description:" in line.lower():
            return line.split(":", 1)[1].strip()
    last = lines[-1] if lines else type(exc).__name__
    return re.sub(r"ITK ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", last)[:200]


def register_atlas(
    target: sitk.Image,
    case: AtlasCase,
    label_values: List[int],
    *,
    initial: Optional[sitk.Transform] = None,
    affine_iterations: int = 100,
    demons_iterations: int = 40,
    demons_sigma: float = 1.0,
    min_similarity: float = 0.3,
    threads: int = 1,
) -> tuple:
    """Register one atlas to the (normalised) target and transfer its labels.

    Returns
    -------
    (AtlasRegistration, probability vector image or None)
        The probabilities are None when the registration was rejected (``ok`` False, with
        the reason).
    """
    t0 = time.perf_counter()
    reg = AtlasRegistration(case.name)
    try:
        moving = _normalised(case)
        affine, _ = affine_registration(target, moving, initial=initial, iterations=affine_iterations, threads=threads)
        affine_img = resample_onto(moving, target, affine)
        cover = field_of_view_coverage(moving, target, affine)
        reg.coverage = float(cover.mean())
        reg.affine_similarity = normalized_cross_correlation(
            sitk.GetArrayViewFromImage(target), sitk.GetArrayViewFromImage(affine_img), cover
        )
        transform: sitk.Transform = affine
        if demons_iterations > 0:
            matched = sitk.HistogramMatching(affine_img, target, 64, 7, True)
            displacement = demons_registration(
                target,
                matched,
                iterations=(demons_iterations, max(demons_iterations // 2, 1)),
                shrink_factors=(2, 1),
                smoothing_sigma=demons_sigma,
                threads=threads,
            )
            transform = sitk.CompositeTransform([affine, displacement])
        warped = resample_onto(moving, target, transform)
        reg.warped_image = sitk.HistogramMatching(warped, target, 64, 7, True)
        reg.similarity = normalized_cross_correlation(
            sitk.GetArrayViewFromImage(target), sitk.GetArrayViewFromImage(warped), cover
        )
        reg.transform = transform
        prob = warp_label_probabilities(case.labels, transform, target, label_values)
        atlas_fg = float(np.count_nonzero(np.isin(sitk.GetArrayViewFromImage(case.labels), label_values)))
        atlas_fg *= float(np.prod(case.labels.GetSpacing()))
        warped_fg = float((1.0 - sitk.GetArrayViewFromImage(prob)[..., 0]).sum() * np.prod(target.GetSpacing()))
        if reg.coverage < 0.5:
            reg.reason = f"the aligned atlas covers only {reg.coverage:.0%} of the target"
        elif not np.isfinite(reg.similarity) or reg.similarity < min_similarity:
            reg.reason = f"intensity correlation after registration {reg.similarity:.2f} is below min_similarity {min_similarity:.2f}"
        elif atlas_fg > 0 and warped_fg < 0.5 * atlas_fg:
            reg.reason = f"only {warped_fg / atlas_fg:.0%} of the atlas labels land inside the target"
        reg.ok = reg.reason == ""
        reg.seconds = time.perf_counter() - t0
        return reg, (prob if reg.ok else None)
    except (RuntimeError, ValueError, MedSegAIError) as exc:
        reg.reason = f"registration failed: {_first_line(exc)}"
        reg.ok = False
        reg.seconds = time.perf_counter() - t0
        return reg, None


def multi_atlas_segmentation(
    image: sitk.Image,
    atlases: Union[str, Path, AtlasLibrary],
    *,
    fusion: str = "local",
    k: int = 25,
    affine_iterations: int = 100,
    demons_iterations: int = 40,
    demons_sigma: float = 1.0,
    local_sigma_mm: float = 1.5,
    local_gain: float = 3.0,
    min_similarity: float = 0.3,
    threads: int = 1,
    progress: Optional[Progress] = None,
    keep_atlas_maps: bool = False,
) -> MethodOutput:
    """Segment ``image`` by registering the best ``k`` atlases of a library and fusing their labels.

    Parameters
    ----------
    image : sitk.Image
        3D target volume (any intensity scale; same modality as the atlases).
    atlases : str, Path or AtlasLibrary
        Library folder (``imagesTr/``, ``labelsTr/``, optional ``dataset.json``), the name of a
        shipped library (e.g. ``"hippocampus"``) or a loaded library.
    fusion : {"local", "bayesian", "staple", "majority"}, default "local"
        Label fusion rule (see :mod:`MedSegAILib.methods.atlas.fusion`).
    k : int, default 25
        Atlases registered deformably and fused, the best by NCC after a quick affine
        alignment; 0 or at least the library size registers every atlas without ranking.
        More atlases help up to about 25 on the hippocampus (tuning cases) at ~1 s each.
    affine_iterations : int, default 100
        Gradient-descent iterations per level of the affine refinement.
    demons_iterations : int, default 40
        Demons iterations at half resolution (half as many follow at full resolution);
        0 = affine only.
    demons_sigma : float, default 1.0
        Displacement-field smoothing (voxels); larger is stiffer.
    local_sigma_mm : float, default 1.5
        Window (mm) of the local similarity for ``fusion="local"``.
    local_gain : float, default 3.0
        Exponent of the inverse local mean squared difference for ``fusion="local"``.
    min_similarity : float, default 0.3
        Registrations whose final NCC with the target is lower are dropped.
    threads : int, default 1
        Threads per SimpleITK filter (the images are small; one thread wastes least).
    progress : Progress or None
        Updated once per atlas; raises Cancelled between atlases when cancelled.
    keep_atlas_maps : bool
        Put the per-atlas probability maps and warped images in ``extra["_atlas_maps"]``
        (not JSON; for benchmarks that fuse one set of registrations with several rules).

    Returns
    -------
    MethodOutput
        UInt16 labels with the library's label values, the library's classes, fused
        probabilities (K + 1 components), their normalised entropy as uncertainty, and in
        ``extra``: the ranking, every registration's record (dropped ones with their reason)
        and the fusion rule's estimates.

    Raises
    ------
    InputError
        Bad parameters or library. MedSegAIError: every selected registration failed.

    Examples
    --------
    >>> out = multi_atlas_segmentation(sitk.ReadImage("hippocampus_001.nii.gz"), "hippocampus", k=5)
    """
    if fusion not in FUSION_RULES:
        raise InputError(f"fusion must be one of {', '.join(FUSION_RULES)}, got '{fusion}'")
    if k < 0:
        raise InputError(f"k must be 0 (all atlases) or a positive number of atlases, got {k}")
    if demons_iterations < 0 or affine_iterations < 1:
        raise InputError("affine_iterations must be at least 1 and demons_iterations at least 0")
    if local_sigma_mm < 0 or local_gain < 0:
        raise InputError("local_sigma_mm and local_gain must not be negative")
    if threads < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("the atlas method needs a 3D scalar image")
    progress = progress or Progress()
    library = atlases if isinstance(atlases, AtlasLibrary) else load_atlas_library(atlases)
    label_values = library.label_values
    target = normalize_intensity(image)
    t0 = time.perf_counter()

    n_all = len(library.cases)
    unrankable = []
    if k == 0 or k >= n_all:
        chosen = [(float("nan"), case, None, "") for case in library.cases]
        register_span = (0.0, 0.95)
    else:
        ranked = rank_atlases(target, library, threads=threads, progress=progress.sub(0.0, 0.4))
        unrankable = [{"atlas": r[1].name, "reason": f"ranking failed: {r[3]}"} for r in ranked if r[2] is None]
        chosen = [r for r in ranked if r[2] is not None][:k]
        if not chosen:
            raise NoAtlasRegistered(f"no atlas of '{library.folder}' could be aligned to the target: {ranked[0][3]}")
        register_span = (0.4, 0.95)
    t_rank = time.perf_counter() - t0

    regs, probs, warped = [], [], []
    reg_progress = progress.sub(*register_span)
    for i, (score, case, init, _) in enumerate(chosen):
        reg_progress.update(i / len(chosen), f"registering atlas {i + 1}/{len(chosen)} ({case.name})")
        reg, prob = register_atlas(
            target,
            case,
            label_values,
            initial=init,
            affine_iterations=affine_iterations,
            demons_iterations=demons_iterations,
            demons_sigma=demons_sigma,
            min_similarity=min_similarity,
            threads=threads,
        )
        reg.details["rank_ncc"] = None if not np.isfinite(score) else round(float(score), 4)
        regs.append(reg)
        if prob is not None:
            probs.append(prob)
            warped.append(reg.warped_image)
    reg_progress.update(1.0, "registrations done")
    if not probs:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in regs[:3])
        raise NoAtlasRegistered(f"every atlas registration failed, nothing to fuse ({reasons})")
    t_reg = time.perf_counter() - t0 - t_rank

    progress.update(0.96, f"fusing {len(probs)} atlases ({fusion})")
    fused = fuse(fusion, probs, label_values, warped_images=warped, target=target, sigma_mm=local_sigma_mm, gain=local_gain) if fusion == "local" else fuse(fusion, probs, label_values)
    labels = fused.labels
    labels.CopyInformation(image)
    fused.probabilities.CopyInformation(image)
    params = {
        "fusion": fusion,
        "k": k,
        "affine_iterations": affine_iterations,
        "demons_iterations": demons_iterations,
        "demons_sigma": demons_sigma,
        "local_sigma_mm": local_sigma_mm,
        "local_gain": local_gain,
        "min_similarity": min_similarity,
        "threads": threads,
    }
    extra = {
        "atlas_library": str(library.folder),
        "library_size": n_all,
        "atlases_fused": [r.name for r in regs if r.ok],
        "atlases_dropped": [{"atlas": r.name, "reason": r.reason} for r in regs if not r.ok] + unrankable,
        "registrations": [dict(r.summary(), rank_ncc=r.details.get("rank_ncc")) for r in regs],
        "fusion": fused.extra,
        "seconds": {"ranking": round(t_rank, 2), "registration": round(t_reg, 2), "fusion": round(time.perf_counter() - t0 - t_rank - t_reg, 2)},
    }
    dropped = extra["atlases_dropped"]
    if dropped:
        shown = "; ".join(f"{d['atlas']} ({d['reason']})" for d in dropped[:3]) + (f"; and {len(dropped) - 3} more" if len(dropped) > 3 else "")
        extra["warnings"] = [f"{len(dropped)} of {len(regs) + len(unrankable)} atlases were dropped and not fused: {shown}"]
    if keep_atlas_maps:
        extra["_atlas_maps"] = {"probabilities": probs, "warped_images": warped, "target": target, "label_values": label_values}
    progress.update(1.0, "atlas segmentation done")
    return MethodOutput(
        labels=labels,
        classes=list(library.classes),
        probabilities=fused.probabilities,
        uncertainty=entropy_image(fused.probabilities),
        parameters=params,
        extra=extra,
    )


def run(request: MethodRequest) -> MethodOutput:
    """Registry adapter: multi-atlas segmentation of channel 0 with ``request.atlases``, inside
    the domain gate: the target against the library's recorded domain before registration, the
    registration quality and result after fusion (:mod:`.domain`)."""
    from ...core.errors import OUT_OF_DOMAIN_START, OutOfDomainError
    from ..deep.domain import check_input, input_features
    from ..domain_gate import mark_result, refuse_unless_allowed
    from .domain import check_result, read_record

    if request.atlases is None:
        raise InputError("the atlas method needs --atlases: a library folder (imagesTr/, labelsTr/) or a shipped atlas name")
    library = load_atlas_library(request.atlases)
    record = read_record(library.folder)
    source = "the atlas library's images"
    before = check_input(record, input_features(request.channels[:1]), terms="atlas")
    if record is None:
        before.checked = "not checked: the atlas library records no domain"
    refuse_unless_allowed(before, request.allow_out_of_domain, source)
    try:
        out = multi_atlas_segmentation(request.channels[0], library, progress=request.progress, **request.params)
    except NoAtlasRegistered as exc:  # the target is unlike every atlas: the user's to mend (exit 2)
        raise OutOfDomainError(f"{OUT_OF_DOMAIN_START}{source}: {exc}; nothing was written") from None
    after = check_result(record, out)
    refuse_unless_allowed(after, request.allow_out_of_domain, source)
    return mark_result(out, before, after, "the atlas library records no domain (domain.json): the target was not checked against it")
