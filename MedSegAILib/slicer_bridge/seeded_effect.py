"""What the Segment Editor's "Graph cut" effect computes, on Slicer's own image types.

The effect (``MedSegAI/MedSegAIEffects/SegmentEditorEffect.py``, built on Slicer's
``AbstractScriptedSegmentEditorAutoCompleteEffect`` as Grow from seeds is) hands over, for each
preview: the source volume clipped to the seeds' extent, the merged labelmap of the visible
segments (segment n has value n + 1) and the editor's mask (non-zero where editing is not
allowed). :class:`GraphCutPreview` turns them into the preview labelmap (every voxel the value
of the segment it belongs to, on the merged labelmap's exact geometry) through a
:class:`~MedSegAILib.interactive.session.SeededSession`, which it keeps while the geometry stays
the same, so later strokes reuse what does not depend on the seeds.

One segment is the background: the one named "background" (any case), else the last visible
segment (as a user who paints the background last has it), unless the effect names another.

With a model chosen ("Start from model"), the session's prior is that model's answer on the
whole source volume (run once, with its domain check), its classes matched to the object
segments by name (:func:`~MedSegAILib.interactive.model_prior.classes_for_segments`) and
resampled onto the clipped region the editor hands over.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..core.errors import InputError


def background_value(segment_names: Sequence[str], chosen: Optional[int] = None) -> int:
    """The merged-labelmap value (index + 1) of the background segment."""
    if chosen is not None:
        return int(chosen)
    for i, name in enumerate(segment_names):
        if str(name).strip().lower() == "background":
            return i + 1
    return len(segment_names)


def seeds_for_cut(merged: np.ndarray, background: int) -> Tuple[np.ndarray, list]:
    """Seed labels for the graph cut from merged values: the object segments' values, in
    ascending order, become 1..K-1 and the background's K (the highest is background, as for
    ``--seeds``). Returns (seed array uint16, merged value of each cut label 0..K-1)."""
    present = [int(v) for v in np.unique(merged) if v != 0]
    if background not in present:
        raise InputError("paint the background segment too: the graph cut needs seeds of the background and of each object")
    objects = [v for v in present if v != background]
    if not objects:
        raise InputError("paint at least one object segment besides the background")
    seeds = np.zeros(merged.shape, dtype=np.uint16)
    for i, v in enumerate(objects, start=1):
        seeds[merged == v] = i
    seeds[merged == background] = len(objects) + 1
    return seeds, [background] + objects  # cut label 0 = background, i = objects[i - 1]


class GraphCutPreview:
    """Turns the effect's inputs into its preview, keeping a session per image geometry."""

    def __init__(self, params: Optional[dict] = None, model: Optional[str] = None, prior_cache: Optional[dict] = None) -> None:
        self.params = dict(params or {})
        self.model = model or None
        # The model's answer on the whole volume, by (model, object names): kept by the effect
        # across its resets (Slicer resets the effect whenever the seeds' extent grows).
        self.prior_cache = {} if prior_cache is None else prior_cache
        self.session = None
        self._key = None
        self.last_uncertainty = None

    def compute(self, source, merged, mask=None, *, background: int, segment_names: Sequence[str] = (), full_source=None) -> "object":
        """The preview labelmap (a ``vtkOrientedImageData`` with the merged labelmap's extent
        and geometry) for source intensities ``source``, merged seeds ``merged`` and the
        editor's ``mask`` (all ``vtkOrientedImageData`` on one geometry).

        With a model: ``segment_names`` are the visible segments' names (merged value n + 1
        is segment n) and ``full_source`` the whole source volume the model runs on (the
        clipped ``source`` when None)."""
        import SimpleITK as sitk
        from vtk.util import numpy_support

        from ..interactive.session import SeededSession
        from .segmentation_node import _array_from_image_data, import_slicer, sitk_from_oriented_image

        slicer = import_slicer()
        merged_arr = _array_from_image_data(merged)
        seeds_arr, value_of = seeds_for_cut(merged_arr, background)
        image = sitk_from_oriented_image(source)
        if tuple(image.GetSize()) != merged_arr.shape[::-1]:
            raise InputError("the source volume and the segments are not on one grid")
        key = (image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection(), tuple(sorted(self.params.items())), tuple(value_of))
        if self.session is None or key != self._key:
            prior = None
            if self.model:
                from ..interactive.model_prior import prior_for_segments, resample_prior

                names = tuple(segment_names[v - 1] if 0 < v <= len(segment_names) else f"Segment {v}" for v in value_of[1:])
                if (self.model, names) not in self.prior_cache:
                    whole = sitk_from_oriented_image(full_source) if full_source is not None else image
                    self.prior_cache[(self.model, names)] = prior_for_segments(sitk.Cast(whole, sitk.sitkFloat32), self.model, names)
                prior = resample_prior(self.prior_cache[(self.model, names)], image)
            self.session, self._key = SeededSession(image, "graphcut", self.params, prior=prior), key
        seeds = sitk.GetImageFromArray(seeds_arr)
        seeds.CopyInformation(image)
        result = self.session.update(seeds)
        labels = sitk.GetArrayViewFromImage(result.labels)
        out_arr = np.asarray(value_of, dtype=merged_arr.dtype)[np.clip(labels, 0, len(value_of) - 1)]
        if mask is not None and mask.GetPointData().GetScalars() is not None:
            locked = _array_from_image_data(mask) != 0
            out_arr[locked] = 0  # not editable: the preview leaves it alone
        self.last_uncertainty = result.uncertainty
        out = slicer.vtkOrientedImageData()
        out.DeepCopy(merged)  # same extent and image-to-world matrix as the merged labelmap
        scalars = numpy_support.numpy_to_vtk(np.ascontiguousarray(out_arr).ravel(), deep=True, array_type=out.GetScalarType())
        out.GetPointData().SetScalars(scalars)
        return out

    def show_uncertainty(self, scene, node=None):
        """The last preview's uncertainty (0-1, on the clipped region's grid) in a scalar volume
        node drawn with the inferno table where it is above the display threshold; ``node`` is
        filled in place when given. None before the first preview."""
        if self.last_uncertainty is None:
            return None
        from .segmentation_node import uncertainty_image_to_volume_node

        return uncertainty_image_to_volume_node(self.last_uncertainty, scene, "MedSegAI graph cut uncertainty", node=node)

    def hint_ras(self) -> Optional[Tuple[float, float, float]]:
        """RAS point (mm) of the most uncertain place of the last preview, for "Where next?"."""
        if self.session is None:
            return None
        hint = self.session.most_uncertain_point()
        if hint is None:
            return None
        x, y, z = hint.point_lps_mm
        return (-x, -y, z)
