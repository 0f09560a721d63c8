"""``medsegai segment``: segment one or more cases and write every output."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..cohort.cases import expand_inputs
from ..cohort.records import complete_record, failure_row, result_row, skipped_row
from ..cohort.run import run_cases
from ..core.errors import USER_ERRORS, InputError, MedSegAIError, first_line
from ..core.progress import CancelToken, TextProgressBar
from ..core.stages import timed
from ..io.images import case_name, read_channels
from ..methods.registry import available_methods, coerce_params, get_method
from ..outputs.files import CaseFolderLock, check_output_folder, write_case_outputs
from ..pipeline import read_seeds, segment
from ..postprocess.cleanup import PostprocessOptions
from ..runs.settings import add_run_arguments

NAME = "segment"
HELP = "segment images (files or DICOM folders) and write labels, instances, uncertainty, .seg.nrrd, table, provenance"
DESCRIPTION = """\
Segment one or more cases. Each INPUT is an image file (NIfTI, NRRD, MHA) or a DICOM series
folder; co-registered channels of one case are joined with commas (t1.nii.gz,t2.nii.gz).
A cohort is a folder of image files or DICOM series folders, a quoted glob ('data/*.nii.gz')
or a CSV with an 'image' (or 'channel0', 'channel1', ...) column and optional 'case' and
'seeds' columns. One case writes into --output; several write into --output/<case>/, where
<case> is the file name without extension, and --output/cohort.csv summarises them (status,
seconds, instances, mean uncertainty, domain verdict, error), rewritten as each case ends. A
failing case does not stop the others; the exit code is 0 only when every case succeeded.
--workers N runs the cases on N local processes (Dask), --scheduler ADDRESS on an existing
Dask cluster; --resume skips the cases whose complete result is already there.
Every case gets labels.nii.gz, instances.nii.gz, uncertainty.nii.gz, segmentation.seg.nrrd,
instances.csv (with radiomics columns), provenance.json and overview.png; --report adds
report.html.

Examples:
  medsegai segment scan.nii.gz --output out/
  medsegai segment scan.nii.gz --method otsu --param n_classes=3 --min-island-mm3 20 --output out/
  medsegai segment a.nii.gz b.nii.gz --method deep --model hippocampus --output out/
  medsegai segment scan.nrrd --method graphcut --seeds seeds.nrrd --output out/
  medsegai segment scan.nii.gz --method atlas --atlases hippocampus --output out/
  medsegai segment 'cohort/*.nii.gz' --method deep --model hippocampus --workers 2 --output out/
  medsegai segment cases.csv --method otsu --resume --output out/
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
    p.add_argument("--workers", type=int, default=1, metavar="N", help="run the cases on N local worker processes (Dask; default 1: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run the cases on an existing Dask cluster (e.g. tcp://host:8786)")
    p.add_argument("--resume", action="store_true", help="skip the cases whose complete result (same method, parameters and input bytes) is already in the output folder")


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
    """The cases the INPUTs name (:func:`MedSegAILib.cohort.cases.expand_inputs`); one plain
    INPUT writes into ``output``, anything more (several INPUTs, a folder, glob or CSV of cases)
    into ``output/<case>/``."""
    specs = expand_inputs(inputs)
    cohort = len(specs) > 1 or any(s.listed for s in specs)
    cases = [Case(s.name, s.channels, output / s.name if cohort else output, Path(s.seeds) if s.seeds else None, dict(s.extra)) for s in specs]
    if seeds:
        sp = Path(seeds)
        if not sp.exists():
            raise InputError(f"the seeds '{sp}' do not exist")
        for c in cases:
            if c.seeds is not None:
                continue  # the case table names its own
            if sp.is_dir() and cohort:
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
    intervals = bool(getattr(args, "radiomics_intervals", False)) and not args.no_radiomics
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
        keep_probabilities=intervals,
        refine=args.refine,
    )
    if not args.no_radiomics:
        with timed(stages, "radiomics"):
            add_radiomics(result, channels[0])
    if intervals:
        from ..measure.radiomics_intervals import LEVELS, add_instance_intervals

        samples = result.label_samples
        with timed(stages, "radiomics intervals"):
            masks = add_instance_intervals(result, channels[0], result.probabilities, samples=samples)
        drawn = {"drawn_from": f"the labels of the {len(samples)} ensemble members"} if samples else {"drawn_from": "levels of the class probability", "probability_levels": list(LEVELS)}
        result.provenance.extra["radiomics_intervals"] = {**drawn, "masks_measured": masks}
        result.probabilities = result.label_samples = None  # not written; released before the outputs
    explanation = explain(result, channels, args, stages) if args.explain else None
    paths = write_case_outputs(
        result,
        case.folder,
        overwrite=args.overwrite,
        extras=lambda tmp: write_extras(result, channels[0], tmp, report=args.report, explanation=explanation),
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


def explain(result, channels, args, stages):
    """The deep model's occlusion-sensitivity map of this case (:mod:`..methods.deep.explain`),
    with how much of it lies near the structures, recorded in the provenance."""
    import numpy as np
    import SimpleITK as sitk

    from ..methods.deep.explain import concentration_near, occlusion_sensitivity

    with timed(stages, "explanation"):
        image = occlusion_sensitivity(channels, args.model, device="cpu" if args.device == "auto" else args.device)
    arr = sitk.GetArrayFromImage(image)
    labels = sitk.GetArrayViewFromImage(result.labels)
    spacing = channels[0].GetSpacing()[::-1]
    near = {c.name: concentration_near(arr[..., i], labels == c.label, spacing) for i, c in enumerate(result.classes) if (labels == c.label).any()}
    result.provenance.extra["explanation"] = {
        "file": "explanation.nii.gz", "method": "occlusion sensitivity (8 mm cubes every 6 mm, hidden at the normalised mean)",
        "share_within_5mm_of_structure": {k: round(v["mass_near"], 3) for k, v in near.items()},
        "volume_share_within_5mm": {k: round(v["volume_near"], 3) for k, v in near.items()},
        "max_probability_drop": float(np.max(arr)) if arr.size else 0.0,
    }
    return image


def write_extras(result, image, folder: Path, *, report: bool, explanation=None) -> dict:
    """overview.png (when Pillow is installed), explanation.nii.gz and .png when computed, and,
    on request, report.html."""
    paths = {}
    if explanation is not None:
        import SimpleITK as sitk

        sitk.WriteImage(explanation, str(folder / "explanation.nii.gz"), True)
        paths["explanation.nii.gz"] = folder / "explanation.nii.gz"
        try:
            from ..outputs.explanation_png import write_explanation_png
        except ImportError:  # no Pillow: the volume alone
            pass
        else:
            names = [c.name for c in result.classes]
            paths["explanation.png"] = write_explanation_png(image, explanation, result.labels, names, folder / "explanation.png")
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
            paths["report.html"] = write_report(result, image, folder, overview_png=paths.get("overview.png"), explanation_png=paths.get("explanation.png"))
    return paths


def segment_case(case: Case, args, params: dict, *, progress=None, cancel=None) -> Dict:
    """Run one case of a cohort to the end; its summary row, "failed" with the one-line error
    when the case cannot be segmented (the other cases go on). Picklable with
    ``functools.partial`` (Dask workers run it)."""
    t0 = time.perf_counter()
    try:
        with CaseFolderLock(case.folder):
            result, _ = run_case(case, args, params, progress=progress, cancel=cancel)
    except USER_ERRORS as exc:
        row = failure_row(case.name, case.folder, time.perf_counter() - t0, str(exc))
        row["kind"] = "input"
        return row
    except MedSegAIError as exc:
        return failure_row(case.name, case.folder, time.perf_counter() - t0, str(exc))
    except Exception as exc:  # one case's internal failure must not stop a cohort
        first = first_line(exc)
        return failure_row(case.name, case.folder, time.perf_counter() - t0, f"internal error: {type(exc).__name__}" + (f": {first}" if first else ""))
    row = result_row(case.name, case.folder, result, time.perf_counter() - t0)
    row["notes"] = list(result.provenance.extra.get("warnings", []))
    return row


def segment_all(args) -> Tuple[List[Dict], int]:
    """Every case of a ``medsegai segment`` command line: (summary rows, exit code). One case
    runs as before (its failure raises, for a one-line error); several run through
    :func:`MedSegAILib.cohort.run.run_cases` and never raise for a case's failure."""
    output = Path(args.output)
    params = parse_params(args.param)
    cases = plan_cases(args.inputs, output, args.seeds)
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.explain and get_method(args.method).family != "deep":
        raise InputError(f"--explain shows what a deep model looks at; the method '{args.method}' is not a deep model")
    if args.radiomics_intervals and args.no_radiomics:
        raise InputError("--radiomics-intervals gives intervals of the radiomics columns; drop --no-radiomics")
    coerce_params(get_method(args.method), params)  # a bad parameter stops the run, not each case
    todo, skipped = [], []
    for c in cases:  # refuse before any work, so nothing is half done
        prov = complete_record(c.folder, c.channels, args.method, params) if args.resume else None
        if prov is not None:
            skipped.append(skipped_row(c.name, c.folder, prov))
            continue
        check_output_folder(c.folder, args.overwrite, inputs=[*c.channels, *([c.seeds] if c.seeds else [])])
        todo.append(c)
    if len(cases) == 1 and todo and args.workers == 1 and not args.scheduler:
        return [_run_single(todo[0], args, params)], 0
    parallel = args.workers > 1 or bool(args.scheduler)
    run_one = functools.partial(segment_case, args=args, params=params)
    if not parallel and not args.quiet:
        run_one = functools.partial(_with_bar, args=args, params=params)
    rows = run_cases(todo, run_one, workers=args.workers, scheduler=args.scheduler, summary_path=output / "cohort.csv" if len(cases) > 1 else None,
                     skipped=skipped, quiet=args.quiet)
    for row in rows:
        for note in row.get("notes") or []:
            print(f"medsegai: note: {row['case']}: {note}", file=sys.stderr)
    failed = [r for r in rows if r["status"] == "failed"]
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} cases segmented, {len(skipped)} skipped (complete), {len(failed)} failed"
          + (f"; summary in {output / 'cohort.csv'}" if len(cases) > 1 else ""), file=sys.stdout)
    for r in failed:
        print(f"medsegai: error: {r['case']}: {r['error']}", file=sys.stderr)
    if not failed:
        return rows, 0
    return rows, 2 if all(r.get("kind") == "input" for r in failed) else 1


def _with_bar(case: Case, args, params: dict) -> Dict:
    """A sequential cohort's case with its own progress bar."""
    bar = TextProgressBar(lines=args.progress_lines)
    try:
        return segment_case(case, args, params, progress=lambda f, m: bar(f, f"{case.name}: {m}"))
    finally:
        bar.close()


def _run_single(case: Case, args, params: dict) -> Dict:
    """One case, as ``medsegai segment`` always ran it: a failure raises (one-line error)."""
    bar = None if args.quiet else TextProgressBar(lines=args.progress_lines)
    t0 = time.perf_counter()
    try:
        with CaseFolderLock(case.folder):  # a second run on this folder stops at once
            result, _ = run_case(case, args, params, progress=(lambda f, m: bar(f, f"{case.name}: {m}")) if bar else None, cancel=CancelToken())
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
    return result_row(case.name, case.folder, result, time.perf_counter() - t0)


def run(args) -> int:
    return segment_all(args)[1]
