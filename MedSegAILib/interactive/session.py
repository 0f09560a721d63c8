"""A seeded segmentation session on one image: ``update(seeds)`` after every stroke.

The Segment Editor effect, the interactive benchmark and scripts use it. What does not depend
on the seeds (the image as Float32, its contrast sigma, the geodesic graph of the graph cut's
spatial term) is computed on the first update and kept; each update then learns the
intensity models from the seeds it is given, solves the cut and measures the result.

Each update also hands the cut the previous result and the seeds it had
(:class:`~MedSegAILib.methods.classical.guidance.PreviousCut`): away from the strokes that
changed, the result keeps what the user has already seen (the ``stability`` parameters). A
``prior`` (a deep model's label probabilities, :mod:`.model_prior`) lets the cut start from a
model's answer that the strokes then correct. The full pipeline run with the same seeds,
prior and previous result is the reference an update must equal (tested).

``most_uncertain_point`` answers "where should the next stroke go?": the voxel whose smoothed
uncertainty is highest away from the seeds already painted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError
from ..core.result import SegmentationResult
from ..io.images import require_3d_scalar
from ..methods.classical.guidance import PreviousCut
from ..methods.registry import coerce_params, get_method
from ..postprocess.cleanup import PostprocessOptions


@dataclass
class Hint:
    """Where a stroke helps most: a voxel index (x, y, z), its LPS point (mm) and the
    smoothed uncertainty there (0-1)."""

    index_xyz: Tuple[int, int, int]
    point_lps_mm: Tuple[float, float, float]
    uncertainty: float


class SeededSession:
    """Repeated seeded segmentation of one image.

    Parameters
    ----------
    image : sitk.Image
        3D scalar volume; every update's seeds must be on its grid.
    method : str, default "graphcut"
        A registered method that takes seeds.
    params : dict, optional
        The method's parameters (checked against their ranges once, here).
    postprocess : PostprocessOptions, optional
    prior : sitk.Image, optional
        Label probabilities on the image grid, one component per seed label (background first,
        then the object seed values ascending); see :func:`.model_prior.model_prior`.

    Attributes
    ----------
    last : SegmentationResult or None
        The result of the latest update.
    seconds : list of float
        Wall time of each update.
    """

    def __init__(
        self, image: sitk.Image, method: str = "graphcut", params: Optional[Dict[str, Any]] = None, *,
        postprocess: Optional[PostprocessOptions] = None, prior: Optional[sitk.Image] = None,
    ) -> None:
        spec = get_method(method)
        if "seeds" not in spec.needs:
            raise InputError(f"the method '{method}' takes no seeds; an interactive session needs a seeded method (graphcut)")
        self.method = method
        self.params = coerce_params(spec, params)
        self.image = sitk.Cast(require_3d_scalar(image, "the image"), sitk.sitkFloat32)
        self.postprocess = postprocess or PostprocessOptions()
        self.prior = prior
        self.previous: Optional[PreviousCut] = None
        self._cache: Dict[Any, Any] = {}
        self.last: Optional[SegmentationResult] = None
        self.seconds = []

    def update(self, seeds: sitk.Image) -> SegmentationResult:
        """Segment with all seeds so far (labels 1..K on the image grid, the highest the
        background, 0 unpainted) and return the result (also kept as :attr:`last`)."""
        from ..pipeline import segment

        t0 = time.perf_counter()
        result = segment(
            [self.image], self.method, self.params, seeds=seeds, postprocess=self.postprocess, method_cache=self._cache,
            prior=self.prior, previous=self.previous,
        )
        self.seconds.append(time.perf_counter() - t0)
        self.last = result
        self._seeds = seeds
        label_map = result.provenance.extra.get("seed_label_map")  # {seed value: label}, labels 1..K-1 in order
        if label_map:
            objects = tuple(int(v) for v in sorted(label_map, key=label_map.get))
            self.previous = PreviousCut(
                sitk.GetArrayFromImage(result.labels), sitk.GetArrayFromImage(seeds), objects, sitk.GetArrayFromImage(result.uncertainty)
            )
        return result

    def most_uncertain_point(
        self, *, smoothing_voxels: float = 1.5, seed_margin_voxels: int = 2, level: float = 0.5, boundary_voxels: int = 4
    ) -> Optional[Hint]:
        """Where a stroke would help most, judged from the latest result alone.

        The uncertainty is smoothed over about ``smoothing_voxels``, masked within
        ``seed_margin_voxels`` of painted seeds and kept within ``boundary_voxels`` of the
        result's object boundary (where a cut's errors are); its voxels above ``level`` times the maximum form
        regions, the region holding the most uncertainty wins (a large doubtful region, not one
        noisy voxel), and the hint is its innermost voxel (the maximum of its distance
        transform), as a user would put a stroke in the middle of a wrong region. None before
        the first update or when nothing is uncertain.
        """
        from scipy import ndimage

        if self.last is None:
            return None
        unc = sitk.SmoothingRecursiveGaussian(sitk.Cast(self.last.uncertainty, sitk.sitkFloat32), float(smoothing_voxels) * min(self.image.GetSpacing()))
        arr = sitk.GetArrayFromImage(unc)
        painted = sitk.GetArrayViewFromImage(self._seeds) > 0
        if painted.any() and seed_margin_voxels > 0:
            arr[ndimage.binary_dilation(painted, iterations=int(seed_margin_voxels))] = 0.0
        # Errors of a cut lie along the boundary it drew: doubt far from every object (tissue of
        # similar intensity that no seed claims) is not where a stroke changes the result.
        objects = sitk.GetArrayViewFromImage(self.last.labels) > 0
        if objects.any() and boundary_voxels > 0:
            near = ndimage.binary_dilation(objects, iterations=int(boundary_voxels)) & ~ndimage.binary_erosion(objects, iterations=int(boundary_voxels))
            arr[~near] = 0.0
        top = float(arr.max())
        if top <= 0:
            return None
        regions, n = ndimage.label(arr >= level * top, structure=np.ones((3, 3, 3)))
        mass = ndimage.sum(arr, regions, range(1, n + 1))
        region = regions == int(np.argmax(mass)) + 1
        depth = ndimage.distance_transform_edt(region, sampling=self.image.GetSpacing()[::-1])
        z, y, x = np.unravel_index(int(np.argmax(depth)), arr.shape)
        index = (int(x), int(y), int(z))
        return Hint(index, tuple(float(v) for v in self.image.TransformIndexToPhysicalPoint(index)), float(arr[z, y, x]))
