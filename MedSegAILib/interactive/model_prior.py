"""A deep model's answer as the prior of an interactive graph cut.

Where a model for the anatomy exists, the session can start from the model's label
probabilities instead of from the strokes alone: the first stroke then already gives the
model's result, and every stroke corrects it where it is painted and nearby. The model runs
once per image, with its domain check: an image unlike its training data is refused as in
any deep run, so a model cannot pull a cut towards garbage unnoticed.

Shapes: probability images are SimpleITK Float32 vector images on the image grid, component
0 background, then one component per object (the session's seed labels in ascending order).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.classes import ClassInfo
from ..core.errors import InputError


def classes_for_segments(model_classes: Sequence[ClassInfo], object_names: Sequence[str]) -> List[List[int]]:
    """Which model classes make up each object segment, matched by name.

    A segment takes the classes whose name equals its own (case and surrounding spaces
    ignored), or the classes whose name it starts with ("Anterior 1" takes "Anterior"). A
    single object segment that matches no class takes every class (the whole structure, e.g.
    "Hippocampus" for a model of its anterior and posterior parts). Several segments that
    match nothing are refused: the model cannot say which is which; so are two segments that
    match one class.

    Returns
    -------
    list (one per object segment, in order) of lists of model class labels.
    """
    def norm(name: str) -> str:
        return " ".join(str(name).lower().split())

    named = [c for c in model_classes if norm(c.name)]  # a class without a name matches nothing
    groups = []
    for name in object_names:
        n = norm(name)
        hit = [c.label for c in named if norm(c.name) == n] or [c.label for c in named if n.startswith(norm(c.name))]
        groups.append(hit)
    if len(object_names) == 1 and not groups[0]:
        return [[c.label for c in model_classes]]
    claimed = [c for g in groups for c in g]
    twice = sorted({c for c in claimed if claimed.count(c) > 1})
    if twice:
        names = [c.name for c in model_classes if c.label in twice]
        raise InputError(f"several segments match the model class(es) {', '.join(names)}; name each segment after one class")
    unmatched = [name for name, g in zip(object_names, groups) if not g]
    if unmatched:
        known = ", ".join(c.name for c in model_classes)
        raise InputError(f"the segment(s) {', '.join(unmatched)} match no class of the model ({known}); name each segment after a class")
    return groups


def group_probabilities(probabilities: sitk.Image, groups: Sequence[Sequence[int]]) -> sitk.Image:
    """A model's per-class probabilities (component c = class c, 0 background) summed into one
    component per object group, background first as 1 - their sum."""
    p = sitk.GetArrayViewFromImage(probabilities)
    n = probabilities.GetNumberOfComponentsPerPixel()
    for g in groups:
        for c in g:
            if not 1 <= int(c) < n:
                raise InputError(f"class {c} is not one of the model's classes 1..{n - 1}")
    objects = [p[..., list(g)].sum(axis=-1, dtype=np.float32) for g in groups]
    background = np.clip(1.0 - np.sum(objects, axis=0), 0.0, 1.0).astype(np.float32)
    out = sitk.GetImageFromArray(np.stack([background] + objects, axis=-1), isVector=True)
    out.CopyInformation(probabilities)
    return out


def resample_prior(prior: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """``prior`` on ``grid`` (linear); outside the prior's extent everything is background."""
    parts = []
    for c in range(prior.GetNumberOfComponentsPerPixel()):
        component = sitk.VectorIndexSelectionCast(prior, c, sitk.sitkFloat32)
        parts.append(sitk.Resample(component, grid, sitk.Transform(), sitk.sitkLinear, 1.0 if c == 0 else 0.0, sitk.sitkFloat32))
    return sitk.Compose(parts)


def _model_probabilities(image: sitk.Image, model: str, **kwargs):
    """(probabilities, classes) of one run of ``model`` on ``image``; its domain check applies."""
    from ..pipeline import segment

    result = segment([image], "deep", model=model, keep_probabilities=True, **kwargs)
    if result.probabilities is None:
        raise InputError(f"the model '{model}' gave no probabilities to start a graph cut from")
    return result.probabilities, result.classes


def model_prior(image: sitk.Image, model: str, groups: Sequence[Sequence[int]], **kwargs) -> sitk.Image:
    """Run ``model`` (a shipped model name or a model folder) on ``image`` once and return its
    probabilities grouped for the session's objects (see :func:`group_probabilities`).

    ``kwargs`` go to the deep run (``device``, ``allow_out_of_domain``, ``progress``). The
    model's domain check applies: an input unlike its training data raises InputError unless
    ``allow_out_of_domain``.
    """
    probabilities, _ = _model_probabilities(image, model, **kwargs)
    return group_probabilities(probabilities, groups)


def prior_for_segments(image: sitk.Image, model: str, object_names: Sequence[str], *, grid: Optional[sitk.Image] = None, **kwargs) -> sitk.Image:
    """The prior for object segments named ``object_names`` (in the session's label order)
    from one run of ``model`` on ``image`` (see :func:`classes_for_segments`), resampled onto
    ``grid`` when given (the Segment Editor's clipped region)."""
    probabilities, classes = _model_probabilities(image, model, **kwargs)
    prior = group_probabilities(probabilities, classes_for_segments(classes, object_names))
    return resample_prior(prior, grid) if grid is not None else prior
