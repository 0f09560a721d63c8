"""``medsegai export-surfaces``: closed surfaces (STL/OBJ), one file per segment."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.progress import TextProgressBar

NAME = "export-surfaces"
HELP = "export one closed surface (STL or OBJ) per segment, for surgical planning and 3D printing"
DESCRIPTION = """\
Export closed surfaces from a segmentation: a .seg.nrrd written by 'medsegai segment', a
MedSegAI output folder, or a labelmap (.nii.gz, .nrrd; each connected component of each label
becomes one surface). Coordinates are physical millimetres, LPS by default as Slicer writes
STL/OBJ; --coordinates RAS for tools that expect RAS.

Example:
  medsegai export-surfaces out/segmentation.seg.nrrd --output surfaces/ --format stl --smoothing 0.5
"""


def add_arguments(p) -> None:
    p.add_argument("source", help="segmentation .seg.nrrd, MedSegAI output folder, or labelmap file")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the surface files")
    p.add_argument("--format", choices=("stl", "obj"), default="stl", help="file format (default stl)")
    p.add_argument("--smoothing", type=float, default=0.5, help="smoothing factor 0-1 as in Slicer (default 0.5; 0 = none)")
    p.add_argument("--decimation", type=float, default=0.0, help="fraction 0-0.95 of triangles to remove (default 0)")
    p.add_argument("--coordinates", choices=("LPS", "RAS"), default="LPS", help="coordinate system of the files (default LPS, as Slicer)")
    p.add_argument("--overwrite", action="store_true", help="replace surface files that already exist")


def run(args) -> int:
    from ..core.errors import InputError
    from ..slicer_bridge.surfaces import export_surfaces

    source = Path(args.source)
    if source.is_dir() and (source / "segmentation.seg.nrrd").exists():
        source = source / "segmentation.seg.nrrd"
    if not source.exists():
        raise InputError(f"the source '{source}' does not exist")
    if not 0.0 <= args.smoothing <= 1.0:
        raise InputError(f"--smoothing must be between 0 and 1, got {args.smoothing}")
    if not 0.0 <= args.decimation < 1.0:
        raise InputError(f"--decimation must be in [0, 1), got {args.decimation}")
    bar = TextProgressBar()
    try:
        files = export_surfaces(
            source,
            Path(args.output),
            file_format=args.format,
            smoothing=args.smoothing,
            decimation=args.decimation,
            coordinate_system=args.coordinates,
            overwrite=args.overwrite,
            progress=bar,
        )
    finally:
        bar.close()
    print(f"wrote {len(files)} surface file{'s' if len(files) != 1 else ''} to {args.output}", file=sys.stdout)
    return 0
