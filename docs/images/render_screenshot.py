"""Render docs/images/screenshot.png and the 128x128 icons from a real MedSegAI result.

Runs the tutorial's method (Otsu, 3 classes) on a whole-head brain MRI from ../shared/data
(pyradiomics' brain1, BSD-3-Clause; the 35-voxel hippocampus crops are too small to read) and
shows what the Slicer module shows: the three slice views with the segmentation and the
uncertainty overlays, and the 3D view with the closed surfaces Slicer makes from the segments
(VTK offscreen rendering, through the same bridge functions the module uses).

    .venv/bin/python docs/images/render_screenshot.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from MedSegAILib.core.progress import Progress  # noqa: E402
from MedSegAILib.pipeline import segment_files  # noqa: E402
from MedSegAILib.postprocess.cleanup import PostprocessOptions  # noqa: E402
from MedSegAILib.resources import sample_data_dir  # noqa: E402
from MedSegAILib.slicer_bridge.surfaces import _surfaces_with_slicer  # noqa: E402

CASE = "brain1"
IMAGE = Path("mr_tumor") / "brain1_image.nrrd"  # in ../shared/data (pyradiomics test data, BSD-3-Clause)


def render_surfaces(result, size, *, background=(0.11, 0.12, 0.16), azimuth=35.0, elevation=20.0, zoom=1.25):
    """RGB array of the closed surfaces (Slicer's converter, smoothing 0.5) rendered offscreen."""
    import vtk
    from vtk.util import numpy_support

    colors = [result.class_info(r.class_label).color for r in result.instance_table]
    # The first class (the largest, outer tissue) is drawn see-through so the others show inside.
    first = min(c.label for c in result.classes)
    opacity = [0.22 if r.class_label == first else 1.0 for r in result.instance_table]
    surfaces = _surfaces_with_slicer(result, 0.5, 0.0, Progress())
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    renderer.SetBackground2(0.30, 0.32, 0.40)
    renderer.GradientBackgroundOn()
    for index, poly in surfaces:
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(poly)
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(*colors[index])
        actor.GetProperty().SetOpacity(opacity[index])
        actor.GetProperty().SetSpecular(0.3)
        actor.GetProperty().SetSpecularPower(20)
        renderer.AddActor(actor)
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.SetMultiSamples(8)
    window.AddRenderer(renderer)
    camera = renderer.GetActiveCamera()
    camera.SetPosition(0, 1, 0)  # anterior view in RAS, superior up
    camera.SetFocalPoint(0, 0, 0)
    camera.SetViewUp(0, 0, 1)
    renderer.ResetCamera()
    camera.Azimuth(azimuth)
    camera.Elevation(elevation)
    camera.Zoom(zoom)
    renderer.ResetCameraClippingRange()
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.Update()
    img = grab.GetOutput()
    w, h, _ = img.GetDimensions()
    arr = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]
    return arr


def _overlay_rgb(labels2d, result):
    rgba = np.zeros(labels2d.shape + (4,))
    for c in result.classes:
        rgba[labels2d == c.label] = (*c.color, 0.55)
    return rgba


def _slices(volume, index):
    """Axial, coronal, sagittal 2D arrays (z, y, x array) shown radiologically (x flipped not needed for LPS crops)."""
    z, y, x = index
    return volume[z, :, :], volume[:, y, :][::-1], volume[:, :, x][::-1]


def main() -> None:
    image_path = REPO.parent / "shared" / "data" / IMAGE
    result = segment_files([image_path], "otsu", {"n_classes": 3}, postprocess=PostprocessOptions(min_island_mm3=1000.0))
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(image_path))).astype(float)
    labels = sitk.GetArrayFromImage(result.labels)
    unc = sitk.GetArrayFromImage(result.uncertainty)
    sp = result.labels.GetSpacing()
    centre = tuple(s // 2 for s in image.shape)

    render = render_surfaces(result, (900, 900))
    fig = plt.figure(figsize=(16, 9), dpi=100, facecolor="#1c1e26")
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 2.2], wspace=0.04, hspace=0.12, left=0.01, right=0.99, top=0.9, bottom=0.07)
    vmin, vmax = np.percentile(image, [1, 99.5])
    names = ("Axial", "Coronal", "Sagittal")
    aspects = (sp[1] / sp[0], sp[2] / sp[0], sp[2] / sp[1])
    for col, (img2d, lab2d, unc2d) in enumerate(zip(_slices(image, centre), _slices(labels, centre), _slices(unc, centre))):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(img2d, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspects[col], interpolation="nearest")
        ax.imshow(_overlay_rgb(lab2d, result), aspect=aspects[col], interpolation="nearest")
        ax.set_title(f"{names[col]}: segmentation", color="white", fontsize=11)
        ax.axis("off")
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(img2d, cmap="gray", vmin=vmin, vmax=vmax, aspect=aspects[col], interpolation="nearest")
        shown = np.ma.masked_less(unc2d, 0.05)
        im = ax.imshow(shown, cmap="inferno", vmin=0, vmax=1, alpha=0.75, aspect=aspects[col], interpolation="nearest")
        ax.set_title(f"{names[col]}: uncertainty", color="white", fontsize=11)
        ax.axis("off")
    cax = fig.add_axes([0.02, 0.045, 0.12, 0.012])
    cb = fig.colorbar(im, cax=cax, orientation="horizontal")
    cb.ax.tick_params(colors="white", labelsize=8)
    cb.set_label("uncertainty (normalised entropy)", color="white", fontsize=8)
    ax = fig.add_subplot(grid[:, 3])
    ax.imshow(render)
    ax.set_title(f"3D: {len(result.instance_table)} segments as closed surfaces (smoothing 0.5)", color="white", fontsize=11)
    ax.axis("off")
    handles = [plt.Line2D([], [], marker="s", ls="", color=c.color, markersize=10, label=c.name) for c in result.classes]
    ax.legend(handles=handles, loc="lower right", facecolor="#2a2d38", labelcolor="white", fontsize=9, framealpha=0.9)
    fig.suptitle(
        "MedSegAI: Otsu (3 classes) on a brain MRI (pyradiomics brain1, 0.78 x 0.78 x 6.5 mm)",
        color="white", fontsize=14,
    )
    out = REPO / "docs" / "images" / "screenshot.png"
    fig.savefig(out, facecolor=fig.get_facecolor())
    plt.close(fig)

    icon = render_surfaces(result, (256, 256), zoom=1.45)
    from PIL import Image

    small = Image.fromarray(icon).resize((128, 128), Image.LANCZOS)
    for path in (REPO / "MedSegAI.png", REPO / "MedSegAI" / "Resources" / "Icons" / "MedSegAI.png"):
        small.save(path, optimize=True)
    print(f"wrote {out} and the icons")


if __name__ == "__main__":
    main()
