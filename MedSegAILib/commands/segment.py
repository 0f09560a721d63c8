"""``medsegai segment``: segment one or more cases and write every output."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..core.errors import InputError
from ..core.progress import CancelToken, TextProgressBar
from ..core.stages import timed
from ..io.images import case_name, read_channels
from ..methods.registry import available_methods
from ..outputs.files import CaseFolderLock, check_output_folder, write_case_outputs
from ..pipeline import read_seeds, segment
from ..postprocess.cleanup import PostprocessOptions
from ..runs.settings import add_run_arguments

NAME = "segment"
HELP = "segment images (files or DICOM folders) and write labels, instances, uncertainty, .seg.nrrd, table, provenance"
DESCRIPTION = """\
Segment one or more cases. Each INPUT is an image file (NIfTI, NRRD, MHA) or a DICOM series
folder; co-registered channels of one case are joined with commas (t1.nii.gz,t2.nii.gz).
One INPUT writes into --output; several write into --output/<case>/, where <case> is the file
name without extension. Every case gets labels.nii.gz, instances.nii.gz, uncertainty.nii.gz,
segmentation.seg.nrrd, instances.csv (with radiomics columns), provenance.json and
overview.png; --report adds report.html.

Examples:
  medsegai segment scan.nii.gz --output out/
  medsegai segment scan.nii.gz --method otsu --param n_classes=3 --min-island-mm3 20 --output out/
  medsegai segment a.nii.gz b.nii.gz --method deep --model hippocampus --output out/
  medsegai segment scan.nrrd --method graphcut --seeds seeds.nrrd --output out/
  medsegai segment scan.nii.gz --method atlas --atlases hippocampus --output out/
"""


def postprocess_options(args) -> PostprocessOptions:
    return PostprocessOptions(
        min_island_mm3=args.min_island_mm3,
        keep_largest=args.keep_largest,
        keep_fraction_of_largest=args.keep_fraction,
        fill_holes=args.fill_holes,
        connectivity=args.connectivity,
    ).validate()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """INPUT, --output, --seeds and the output choices here; every run option (method,
    parameters, model, atlases, device, post-processing, radiomics) from the one definition
    the Slicer panel uses too (:mod:`MedSegAILib.runs.settings`)."""
    methods = ", ".join(m.name for m in available_methods())
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file or DICOM folder; channels of one case joined by commas")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    add_run_arguments(p, method_help=f"available: {methods}")
    p.add_argument("--seeds", metavar="FILE|DIR", help="seed labelmap (graphcut); with several inputs a folder holding <case>.nii.gz/.nrrd seeds")
    p.add_argument("--report", action="store_true", help="also write report.html per case")
    p.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--progress-lines", action="store_true", help="progress as one plain '[ 42.0%%] step' line per step on stderr (for programs that read it, such as the Slicer panel)")


def parse_params(items: Sequence[str]) -> Dict[str, str]:
    params = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--param expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        params[k.strip()] = v.strip()
    return params


@dataclass
class Case:
    name: str
    channels: List[str]
    folder: Path
    seeds: Optional[Path] = None
    extra: dict = field(default_factory=dict)


def plan_cases(inputs: Sequence[str], output: Path, seeds: Optional[str]) -> List[Case]:
    """One Case per INPUT; several inputs write into output/<case>/ (names must be unique)."""
    cases = []
    for item in inputs:
        # A path that exists as it is is one file, commas and all; otherwise commas join channels.
        channels = [item] if Path(item).exists() else [c for c in item.split(",") if c]
        for c in channels:
            if not Path(c).exists():
                raise InputError(f"the input '{c}' does not exist")
        cases.append(Case(case_name(channels[0]), channels, output))
    if len(cases) > 1:
        names = [c.name for c in cases]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"two inputs share the case name '{dup[0]}'; rename one so their outputs do not collide")
        for c in cases:
            c.folder = output / c.name
    if seeds:
        sp = Path(seeds)
        if not sp.exists():
            raise InputError(f"the seeds '{sp}' do not exist")
        for c in cases:
            if sp.is_dir() and len(cases) > 1:
                found = [f for f in sp.iterdir() if case_name(f) == c.name]
                if not found:
                    raise InputError(f"no seed file for case '{c.name}' in '{sp}'")
                c.seeds = found[0]
            else:
                c.seeds = sp
    return cases


def run_case(case: Case, args, params: dict, *, progress=None, cancel=None):
    """Segment one case and write its outputs; returns (result, written paths)."""
    stages: list = []
    with timed(stages, "read"):
        channels = read_channels(case.channels)
        seeds = read_seeds(case.seeds, channels[0]) if case.seeds else None
    result = segment(
        channels,
        args.method,
        params,
        seeds=seeds,
        atlases=args.atlases,
        model=args.model,
        device=args.device,
        postprocess=postprocess_options(args),
        input_files=case.channels,
        progress=progress,
        cancel=cancel,
        allow_out_of_domain=args.allow_out_of_domain,
        stages=stages,
    )
    if not args.no_radiomics:
        with timed(stages, "radiomics"):
            add_radiomics(result, channels[0])
    paths = write_case_outputs(
        result,
        case.folder,
        overwrite=args.overwrite,
        extras=lambda tmp: write_extras(result, channels[0], tmp, report=args.report),
        inputs=[*case.channels, *([case.seeds] if case.seeds else [])],
    )
    return result, paths


def add_radiomics(result, image) -> None:
    """Fill the instance table's measurement columns (shape, first order, GLCM) where available."""
    try:
        from ..measure.radiomics import add_instance_radiomics
    except ImportError:
        return
    add_instance_radiomics(result, image)


def write_extras(result, image, folder: Path, *, report: bool) -> dict:
    """overview.png (when Pillow is installed) and, on request, report.html."""
    paths = {}
    try:
        from ..outputs.overview import write_overview_png
    except ImportError:
        write_overview_png = None
    stages = result.provenance.stages
    if write_overview_png is not None:
        with timed(stages, "overview.png"):
            paths["overview.png"] = write_overview_png(image, result, folder / "overview.png")
    if report:
        from ..outputs.report import write_report

        with timed(stages, "report.html"):
            paths["report.html"] = write_report(result, image, folder, overview_png=paths.get("overview.png"))
    return paths


def run(args) -> int:
    output = Path(args.output)
    params = parse_params(args.param)
    cases = plan_cases(args.inputs, output, args.seeds)
    for c in cases:  # refuse before any work, so nothing is half done
        check_output_folder(c.folder, args.overwrite, inputs=[*c.channels, *([c.seeds] if c.seeds else [])])
    cancel = CancelToken()
    for i, case in enumerate(cases, start=1):
        bar = None if args.quiet else TextProgressBar(lines=args.progress_lines)
        label = f"[{i}/{len(cases)}] {case.name}" if len(cases) > 1 else case.name
        try:
            with CaseFolderLock(case.folder):  # a second run on this folder stops at once
                result, paths = run_case(case, args, params, progress=(lambda f, m, b=bar, l=label: b(f, f"{l}: {m}")) if bar else None, cancel=cancel)
        finally:
            if bar:
                bar.close()
        for warning in result.provenance.extra.get("warnings", []):
            print(f"medsegai: note: {case.name}: {warning}", file=sys.stderr)
        n = len(result.instance_table)
        print(
            f"{case.name}: {args.method} -> {n} instance{'s' if n != 1 else ''} in "
            f"{result.provenance.wall_time_s:.1f} s; outputs in {case.folder}",
            file=sys.stdout,
        )
    return 0
