"""Reading images with their geometry: NIfTI, NRRD, MHA/MHD and DICOM series folders.

Everything is read through SimpleITK, so every image carries origin, spacing and direction
(LPS patient coordinates, mm). Readers check what the methods rely on and raise
:class:`~MedSegAILib.core.errors.InputError` with a sentence naming the problem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np
import SimpleITK as sitk

from ..core.errors import InputError

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd")


def case_name(path: PathLike) -> str:
    """Name of a case: the file name without its image extension, or the DICOM folder's name."""
    name = Path(path).name.rstrip("/")
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def dicom_series(folder: Path):
    """(series UID, its files, the other series' UIDs) of the DICOM series a folder's image is:
    the series with the most files (scouts and dose reports beside it are left out)."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or []
    if not series_ids:
        raise InputError(f"the folder '{folder}' holds no DICOM image series")
    files = {s: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in series_ids}
    best = max(series_ids, key=lambda s: len(files[s]))
    return best, list(files[best]), [s for s in series_ids if s != best]


#: Relative spread of the gaps between slice positions above which a series is refused.
SLICE_GAP_TOLERANCE = 0.01


def check_slice_spacing(files, folder) -> None:
    """Refuse (InputError) a series whose slices are not evenly spaced along their normal (a
    missing slice, or a series of two acquisitions): read as one volume it would get one wrong
    spacing. Slices without positions are left to the reader."""
    positions = []
    normal = None
    for f in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(f)
        try:
            reader.ReadImageInformation()
            ipp = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            if normal is None:
                iop = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
                normal = np.cross(iop[:3], iop[3:6])
        except (RuntimeError, ValueError, IndexError):
            return
        positions.append(float(np.dot(ipp, normal)))
    if len(positions) < 3:
        return
    gaps = np.diff(np.sort(positions))
    typical = float(np.median(gaps))
    if typical <= 0 or np.any(gaps <= 1e-6 * max(typical, 1.0)):
        raise InputError(f"the DICOM series in '{folder}' has two slices at one position; it holds more than one acquisition")
    worst = int(np.argmax(np.abs(gaps - typical)))
    if abs(gaps[worst] - typical) > SLICE_GAP_TOLERANCE * typical:
        raise InputError(
            f"the DICOM series in '{folder}' is not evenly spaced: slices {worst + 1} and {worst + 2} are {gaps[worst]:.3f} mm apart, "
            f"the others {typical:.3f} mm (a missing slice?); export it again complete or resample it in Slicer's DICOM module"
        )


def _read_dicom_folder(folder: Path) -> sitk.Image:
    best, files, _ = dicom_series(folder)
    check_slice_spacing(files, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"the DICOM series in '{folder}' could not be read: {str(exc).splitlines()[0]}") from exc


def read_image(path: PathLike) -> sitk.Image:
    """Read an image file or a DICOM series folder.

    Parameters
    ----------
    path : str or Path
        A NIfTI/NRRD/MHA file, or a folder holding one DICOM series (the largest is taken).

    Returns
    -------
    sitk.Image with the file's geometry.

    Raises
    ------
    InputError
        The path does not exist, is not an image, or cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"the input '{p}' does not exist")
    if p.is_dir():
        return _read_dicom_folder(p)
    from .file_checks import check_image_file

    check_image_file(p)  # a file cut short or a header claiming more than memory holds
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(
            f"the file '{p}' is not an image SimpleITK can read "
            f"(NIfTI, NRRD, MHA, or a DICOM folder are expected)"
        ) from exc


def require_3d_scalar(image: sitk.Image, name: str = "the image") -> sitk.Image:
    """Check that ``image`` is a 3D scalar volume with usable content; return it as Float32.

    Raises InputError for 2D or 4D images, vector images, empty or constant volumes, and NaN or
    infinite values.
    """
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
        dim = 3
    if dim != 3:
        raise InputError(f"{name} is {dim}D with size {tuple(image.GetSize())}; a 3D volume is needed")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "give each channel as its own single-component volume"
        )
    if min(image.GetSize()) < 2:
        raise InputError(f"{name} has size {tuple(image.GetSize())}; every axis needs at least 2 voxels")
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size == 0:
        raise InputError(f"{name} is empty")
    # min and max propagate NaN and show infinities: two passes, no volume-sized temporary.
    low, high = float(arr.min()), float(arr.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} NaN or infinite voxel values")
    if low == high:
        raise InputError(f"{name} is constant (every voxel is {low:g}); there is nothing to segment")
    # Already Float32 (the second check of a run, a volume from Slicer): no copy.
    return image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """True when two images share size, origin, spacing and direction (within ``tol``)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def read_channels(paths: Sequence[PathLike]) -> List[sitk.Image]:
    """Read co-registered channels of one case (e.g. T1, T2, FLAIR) as Float32 volumes.

    All channels must share the first channel's grid; a mismatch raises InputError naming the
    channel (resample beforehand, e.g. in Slicer with "Resample Scalar/Vector/DWI Volume").
    """
    if not paths:
        raise InputError("no input image was given")
    channels = []
    for i, p in enumerate(paths):
        img = require_3d_scalar(read_image(p), name=f"'{p}'")
        if channels and not same_grid(channels[0], img):
            raise InputError(
                f"channel {i} '{p}' is not on the same voxel grid as channel 0 '{paths[0]}' "
                "(size, origin, spacing and direction must match)"
            )
        channels.append(img)
    return channels


def split_multicomponent(image: sitk.Image) -> List[sitk.Image]:
    """Split a vector image or a 4D image (last axis = channel) into 3D scalar channels."""
    if image.GetNumberOfComponentsPerPixel() > 1:
        return [sitk.VectorIndexSelectionCast(image, i, sitk.sitkFloat32) for i in range(image.GetNumberOfComponentsPerPixel())]
    if image.GetDimension() == 4:
        return [sitk.Cast(image[:, :, :, i], sitk.sitkFloat32) for i in range(image.GetSize()[3])]
    return [image]


def file_sha256(path: PathLike) -> str:
    """SHA-256 of a file, or of a folder's files in sorted order (DICOM series)."""
    from ..core.checksums import sha256_of_files

    p = Path(path)
    return sha256_of_files(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])


def image_from_array(array: np.ndarray, reference: sitk.Image, is_vector: bool = False) -> sitk.Image:
    """Wrap a (z, y, x) array (or (z, y, x, c) with ``is_vector``) on ``reference``'s grid."""
    img = sitk.GetImageFromArray(array, isVector=is_vector)
    img.CopyInformation(reference)
    return img


#: LPS (SimpleITK) to RAS (MRML): x and y negated (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ras_geometry(image: sitk.Image):
    """(origin_ras, spacing, directions_ras 3x3 with columns = axis directions) of a SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return origin, tuple(float(s) for s in image.GetSpacing()), LPS_TO_RAS @ direction
