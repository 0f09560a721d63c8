"""A run as the Slicer panel starts it: one settings object, its packages, its life cycle.

The life-cycle tests start real processes running the real CLI on a bundled sample case,
through the same :class:`SegmentationRun` the panel uses (the panel only swaps the launcher
for its QProcess adapter): progress, success, cancel of a whole launcher tree, a missing
executable, a crash, and runs that must be refused before anything is written.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from packaging.specifiers import SpecifierSet

from MedSegAILib.cli import build_parser
from MedSegAILib.core.errors import InputError
from MedSegAILib.resources import default_model_name, sample_cases
from MedSegAILib.runs import requirements as rq
from MedSegAILib.runs.process_tree import descendants, is_alive
from MedSegAILib.runs.runner import (
    SegmentationRun,
    error_from_output,
    parse_progress_line,
    python_command,
    segment_arguments,
    subprocess_environment,
)
from MedSegAILib.runs.settings import (
    PANEL_FIELDS,
    RUN_FIELDS,
    RunSettings,
    panel_values_to_settings,
    parameters_from_json,
    parameters_to_json,
    replace_settings,
    settings_from_arguments,
)
from MedSegAILib.runs.subprocess_launcher import EventLoop, SubprocessLauncher

LIBRARY_PARENT = str(Path(__file__).resolve().parents[1])

# --- one settings object ------------------------------------------------------------------------

#: A value other than the default for every run field (method parameters of otsu).
NON_DEFAULT = {
    "method": "mrf",
    "methodParameters": parameters_to_json({"n_classes": 3, "beta": 0.5}),
    "model": "hippocampus",
    "atlasFolder": "/atlases/x",
    "device": "cpu",
    "minIslandMm3": 20.0,
    "keepLargest": True,
    "keepFraction": 0.1,
    "fillHoles": True,
    "connectivity": 6,
    "radiomics": False,
    "radiomicsIntervals": True,
    "refine": "crf",
    "explain": True,
    "allowOutOfDomain": True,
}


def _round_trip(settings: RunSettings) -> RunSettings:
    args = segment_arguments(["a.nrrd"], "out", settings, seeds_file=None)
    return settings_from_arguments(build_parser().parse_args(args))


def test_every_run_field_has_a_non_default_probe():
    assert set(NON_DEFAULT) == {f.name for f in RUN_FIELDS}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_setting_survives_the_command_line(name):
    """Panel -> command line -> parsed by the CLI itself -> the same settings, field by field."""
    # The model and atlas folders are options of the methods that take them.
    base = RunSettings(method={"model": "deep", "atlasFolder": "atlas", "method": "otsu"}.get(name, "mrf"))
    changed = replace_settings(base, **{name: NON_DEFAULT[name]})
    back = _round_trip(changed)
    if name == "methodParameters":  # kept as JSON: compare the parameters it means
        assert parameters_from_json(back.methodParameters, "mrf") == parameters_from_json(changed.methodParameters, "mrf")
    else:
        assert back == changed


@hsettings(max_examples=60, deadline=None)
@given(
    island=st.floats(0, 1e6, allow_nan=False),
    fraction=st.floats(0, 1, allow_nan=False),
    largest=st.booleans(),
    holes=st.booleans(),
    conn=st.sampled_from([6, 26]),
    radiomics=st.booleans(),
    classes=st.integers(2, 6),
    smoothing=st.floats(0, 5, allow_nan=False),
)
def test_any_settings_survive_the_command_line(island, fraction, largest, holes, conn, radiomics, classes, smoothing):
    s = RunSettings(
        method="otsu",
        methodParameters=parameters_to_json({"n_classes": classes, "smoothing_mm": smoothing}),
        minIslandMm3=island,
        keepFraction=fraction,
        keepLargest=largest,
        fillHoles=holes,
        connectivity=conn,
        radiomics=radiomics,
    )
    back = _round_trip(s)
    assert replace_settings(back, methodParameters="{}") == replace_settings(s, methodParameters="{}")
    assert parameters_from_json(back.methodParameters, "otsu") == parameters_from_json(s.methodParameters, "otsu")


def test_segment_options_are_the_run_fields():
    """Every option of `medsegai segment` that shapes a run comes from RUN_FIELDS."""
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" segment"))
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
    own = {"--help", "--output", "--seeds", "--report", "--overwrite", "--quiet", "--progress-lines", "--workers", "--scheduler", "--resume"}
    assert options - own == {f.option for f in RUN_FIELDS}
    names = [f.name for f in PANEL_FIELDS]
    assert len(names) == len(set(names))


def test_panel_defaults_to_the_shipped_model_and_drops_stale_parameters():
    s = panel_values_to_settings({"method": "deep"})
    assert s.model == default_model_name() == "hippocampus"
    assert panel_values_to_settings({"method": "deep", "modelFolder": "/my/model"}).model == "/my/model"
    assert panel_values_to_settings({"method": "otsu"}).model == ""
    # A parameter the method does not have (left from another method) is not passed on.
    args = segment_arguments(["a.nrrd"], "o", RunSettings(method="otsu", methodParameters='{"beta": 2, "n_classes": 3}'))
    assert args.count("--param") == 1 and "n_classes=3" in args


def test_seeds_go_only_to_methods_that_take_them():
    otsu = segment_arguments(["a.nrrd"], "o", RunSettings(method="otsu"), seeds_file="s.nii.gz")
    assert "--seeds" not in otsu
    cut = segment_arguments(["a.nrrd"], "o", RunSettings(method="graphcut"), seeds_file="s.nii.gz")
    assert cut[cut.index("--seeds") + 1] == "s.nii.gz"
    with pytest.raises(InputError, match="needs seeds"):
        segment_arguments(["a.nrrd"], "o", RunSettings(method="graphcut"))
    with pytest.raises(InputError, match="needs a model"):
        segment_arguments(["a.nrrd"], "o", RunSettings(method="deep"))
    with pytest.raises(InputError, match="select an input"):
        segment_arguments([], "o", RunSettings())


def test_progress_and_error_lines():
    assert parse_progress_line("[ 42.5%] case: running otsu") == (0.425, "case: running otsu")
    assert parse_progress_line("something else") is None
    assert error_from_output(["x", "medsegai: error: the input 'a' does not exist"], 2) == "the input 'a' does not exist"
    assert "exit code 3" in error_from_output(["a", "b", "last words"], 3) and "last words" in error_from_output(["last words"], 3)
    env = subprocess_environment({"PYTHONPATH": "/a"}, "/lib")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/lib", "/a"] and env["PYTHONUNBUFFERED"] == "1"
    assert python_command("/x/PythonSlicer", ["segment"])[:3] == ["/x/PythonSlicer", "-m", "MedSegAILib.cli"]


# --- packages ------------------------------------------------------------------------------------

#: Newest releases that install on Python 3.9 (Slicer 5.8), read from PyPI's index with
#: `pip index versions NAME --python-version 3.9 --only-binary=:all:` (2026-12): torch 2.8.0
#: (2.9.0 needs 3.10), MONAI 1.5.2 (1.6.0 needs 3.10), onnxruntime 1.19.2, safetensors 0.7.0;
#: einops and PyMaxflow still support 3.9. On an Intel Mac torch stops at 2.2.2.
NEWEST_FOR_PY39 = {"torch": "2.8.0", "monai": "1.5.2", "onnxruntime": "1.19.2", "safetensors": "0.7.0", "einops": "0.8.2", "PyMaxflow": "1.3.2",
                   "onnxscript": "0.7.2", "matplotlib": "3.9.4"}
#: What the project's own environment (Python 3.11) installs.
PROJECT = {"torch": "2.13.0", "monai": "1.6.1", "onnxruntime": "1.32.0", "safetensors": "0.8.0", "einops": "0.8.2", "PyMaxflow": "1.3.2",
           "onnxscript": "0.7.2", "matplotlib": "3.11.2"}


@pytest.mark.parametrize("req", [rq.TORCH, rq.MONAI, rq.SAFETENSORS, rq.EINOPS, rq.ONNXRUNTIME, rq.PYMAXFLOW, rq.ONNXSCRIPT, rq.MATPLOTLIB], ids=lambda r: r.module)
def test_requirements_install_on_every_supported_slicer_python(req):
    """A range, not a pin: it admits a release for Slicer 5.8's Python 3.9 and the project's own."""
    name, spec = req.distribution.split(">", 1)[0].split("=", 1)[0].split("<", 1)[0], req.distribution
    specifier = SpecifierSet(spec[len(name):])
    assert specifier.contains(NEWEST_FOR_PY39[name]), f"{spec} excludes {NEWEST_FOR_PY39[name]}, the newest release for Python 3.9"
    if name == "torch":
        assert specifier.contains("2.2.2"), "the newest torch for an Intel Mac"
    assert specifier.contains(PROJECT[name]), f"{spec} excludes {PROJECT[name]}, which the project runs with"
    assert "==" not in spec
    assert rq.SUPPORTED_SLICER_PYTHONS["5.8"] == "3.9"


def test_requirements_of_runs():
    none = lambda m: False  # noqa: E731
    assert rq.missing_for_run(RunSettings(method="otsu"), is_installed=none) == []
    assert [r.module for r in rq.missing_for_run(RunSettings(method="graphcut"), is_installed=none)] == ["maxflow"]
    assert [r.module for r in rq.missing_for_run(RunSettings(method="mrf"), is_installed=none)] == ["maxflow"]
    icm = RunSettings(method="mrf", methodParameters='{"solver": "icm"}')
    assert rq.missing_for_run(icm, is_installed=none) == []  # ICM needs no PyMaxflow
    deep = panel_values_to_settings({"method": "deep"})
    assert [r.module for r in rq.missing_for_run(deep, is_installed=none)] == ["onnxruntime"]
    torch_run = replace_settings(deep, methodParameters='{"runtime": "torch"}')
    assert [r.module for r in rq.missing_for_run(torch_run, is_installed=none)] == ["torch", "monai", "safetensors"]
    assert rq.install_plan(rq.missing_for_run(torch_run, is_installed=none))["pytorch"] == [rq.TORCH.distribution]
    assert "GPL-3.0" in rq.install_question("graphcut", [rq.PYMAXFLOW])
    # Training asks for the torch stack, the exporter and what draws its learning curve.
    assert [r.module for r in rq.missing_for_training(is_installed=none)] == ["torch", "monai", "safetensors", "onnxscript", "onnxruntime", "matplotlib"]
    assert rq.install_question("training", [rq.MATPLOTLIB]).startswith("Training a model needs")
    with pytest.raises(InputError, match="no model folder or shipped model"):
        rq.missing_for_run(RunSettings(method="deep", model="no-such-model"))


def test_gpu_description_does_not_import_torch():
    import subprocess

    code = "import sys; from MedSegAILib.runs.requirements import gpu_description; print(gpu_description()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=LIBRARY_PARENT).stdout.split("\n")
    assert out[0] and out[1] == "False"


# --- the life cycle, with real processes ---------------------------------------------------------


def _launcher_script(tmp_path: Path, body: str, name: str = "PythonSlicer") -> str:
    """An executable standing in for Slicer's PythonSlicer (or something worse)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _launcher_like_pythonslicer(tmp_path: Path) -> str:
    """Like Slicer's PythonSlicer: a launcher that starts the real Python as its child and waits."""
    return _launcher_script(tmp_path, f"import subprocess, sys\nsys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n")


class Recorder:
    def __init__(self, launcher):
        self.launcher = launcher
        self.progress, self.log, self.outcomes, self.inside_signal = [], [], [], []
        self.folder_listing = None

    def on_finished(self, outcome):
        self.inside_signal.append(self.launcher.in_signal)
        self.outcomes.append(outcome)
        if outcome.output_folder is not None:
            from MedSegAILib.outputs.case_folder import read_case_folder

            self.result = read_case_folder(outcome.output_folder)
            self.folder_listing = sorted(p.name for p in outcome.output_folder.iterdir())


def _run(tmp_path, settings, python, write_inputs=None, work_root=None):
    loop = EventLoop()
    launcher = SubprocessLauncher(loop)
    rec = Recorder(launcher)
    run = SegmentationRun(
        settings,
        launcher,
        python_executable=python,
        library_parent=LIBRARY_PARENT,
        call_soon=loop.call_soon,
        on_progress=lambda f, m: rec.progress.append((f, m)),
        on_log=lambda line, t: rec.log.append((line, t)),
        on_finished=rec.on_finished,
        work_root=str(work_root or tmp_path / "work"),
    )
    (work_root or tmp_path / "work").mkdir(exist_ok=True)
    case = sample_cases()[0]

    def default_inputs(folder):
        return [str(case.image)], str(case.image.with_name(case.image.name.replace(".nii.gz", "_seeds.nii.gz")))

    run.start(write_inputs or default_inputs)
    return run, loop, rec


def test_a_run_succeeds_with_progress_and_its_results_are_read(tmp_path):
    run, loop, rec = _run(tmp_path, RunSettings(method="otsu", radiomics=False), _launcher_like_pythonslicer(tmp_path))
    work = run.work_folder
    assert loop.run_until(lambda: rec.outcomes, 120)
    outcome = rec.outcomes[0]
    assert outcome.ok, (outcome.message, outcome.log_tail)
    fractions = [f for f, _ in rec.progress]
    assert fractions and fractions == sorted(fractions) and 0 < fractions[-1] <= 1
    assert any("otsu" in m for _, m in rec.progress)
    assert rec.log and all(t >= 0 for _, t in rec.log)
    assert "segmentation.seg.nrrd" in rec.folder_listing and len(rec.result.instance_table) > 0
    # Results were handled after the process's signal had returned, never inside it.
    assert rec.inside_signal == [False]
    # The work folder (inputs, outputs) is gone once the results were read; the process released.
    assert not work.exists() and run.launcher.released
    assert run.state == "succeeded" and len(rec.outcomes) == 1


def test_cancel_kills_the_whole_launcher_tree_and_leaves_nothing(tmp_path):
    """PythonSlicer is a launcher; a cancel must stop the real Python below it too."""
    settings = RunSettings(method="atlas", atlasFolder="hippocampus", radiomics=False)
    run, loop, rec = _run(tmp_path, settings, _launcher_like_pythonslicer(tmp_path))
    work = run.work_folder
    assert loop.run_until(lambda: any("atlas" in m for _, m in rec.progress), 60), rec.log
    launcher_pid = run.launcher.pid()
    children = descendants(launcher_pid)
    assert children, "the launcher should have started the real Python"
    t0 = time.monotonic()
    run.cancel()
    took = time.monotonic() - t0
    assert took < 2.0
    assert not any(is_alive(p) for p in children + [launcher_pid]), "a process of the run survived the cancel"
    assert not work.exists() and not list((tmp_path / "work").iterdir())
    assert loop.run_until(lambda: rec.outcomes, 5)
    loop.run_until(lambda: False, 0.5)  # the killed process's own exit event arrives and is ignored
    assert [o.status for o in rec.outcomes] == ["cancelled"] and rec.inside_signal == [False]
    # No process anywhere still names the run's work folder (a stray child would).
    stray = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(work).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                stray.append(pid)
        except OSError:
            pass
    assert stray == []


def test_a_missing_executable_is_reported_with_its_path(tmp_path):
    missing = str(tmp_path / "no" / "PythonSlicer")
    run, loop, rec = _run(tmp_path, RunSettings(method="otsu"), missing)
    assert loop.run_until(lambda: rec.outcomes, 10)
    outcome = rec.outcomes[0]
    assert outcome.status == "failed" and missing in outcome.message and "could not start" in outcome.message
    assert not list((tmp_path / "work").iterdir())


def test_a_crash_is_reported_with_the_end_of_its_log(tmp_path):
    crasher = _launcher_script(
        tmp_path, "import os, signal, sys\nprint('[ 10.0%] case: running otsu'); print('loading the volume'); sys.stdout.flush()\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    run, loop, rec = _run(tmp_path, RunSettings(method="otsu"), crasher)
    assert loop.run_until(lambda: rec.outcomes, 20)
    outcome = rec.outcomes[0]
    assert outcome.status == "failed" and "crashed" in outcome.message and "loading the volume" in outcome.message
    assert rec.progress == [(0.1, "case: running otsu")]


def test_the_cli_error_line_is_the_message(tmp_path):
    def bad_input(folder):
        (folder / "broken.nii.gz").write_bytes(b"not an image")
        return [str(folder / "broken.nii.gz")], None

    run, loop, rec = _run(tmp_path, RunSettings(method="otsu"), sys.executable, write_inputs=bad_input)
    assert loop.run_until(lambda: rec.outcomes, 60)
    outcome = rec.outcomes[0]
    assert outcome.status == "failed" and outcome.exit_code == 2
    assert "broken.nii.gz" in outcome.message and not outcome.message.startswith("medsegai")


def test_a_run_that_exits_0_without_outputs_fails(tmp_path):
    liar = _launcher_script(tmp_path, "print('all good')\n")
    run, loop, rec = _run(tmp_path, RunSettings(method="otsu"), liar)
    assert loop.run_until(lambda: rec.outcomes, 20)
    assert rec.outcomes[0].status == "failed" and "without a complete result" in rec.outcomes[0].message


def test_runs_refused_before_anything_is_written_leave_no_folder(tmp_path):
    (tmp_path / "work").mkdir()
    loop = EventLoop()
    common = dict(python_executable=sys.executable, library_parent=LIBRARY_PARENT, call_soon=loop.call_soon, work_root=str(tmp_path / "work"))
    written = []
    with pytest.raises(InputError, match="needs seeds"):
        SegmentationRun(RunSettings(method="graphcut"), SubprocessLauncher(loop), **common).start(lambda f: written.append(f) or ([], None), has_seeds=False)
    assert written == []  # refused before the inputs were written
    with pytest.raises(InputError, match="select an input"):
        SegmentationRun(RunSettings(method="otsu"), SubprocessLauncher(loop), **common).start(lambda f: ([], None))

    def failing_writer(folder):
        (folder / "channel0.nrrd").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        SegmentationRun(RunSettings(method="otsu"), SubprocessLauncher(loop), **common).start(failing_writer)
    assert list((tmp_path / "work").iterdir()) == []


def test_parameters_outside_their_range_or_choices_are_refused():
    """The ranges the panel's form shows are the ones a run enforces (one line, exit code 2)."""
    from MedSegAILib.methods.registry import coerce_params, get_method

    otsu, deep = get_method("otsu"), get_method("deep")
    with pytest.raises(InputError, match="'n_classes' of 'otsu' must be between 2 and 8; got 12"):
        coerce_params(otsu, {"n_classes": "12"})
    with pytest.raises(InputError, match="'mc_samples' of 'deep' must be between 0 and 100"):
        coerce_params(deep, {"mc_samples": -3})
    with pytest.raises(InputError, match="'runtime' of 'deep' must be one of auto, torch, onnx"):
        coerce_params(deep, {"runtime": "tensorrt"})
    with pytest.raises(InputError, match="must be between"):
        coerce_params(otsu, {"smoothing_mm": "nan"})
    assert coerce_params(otsu, {"n_classes": "3"})["n_classes"] == 3
    for spec in (otsu, deep, get_method("mrf"), get_method("graphcut"), get_method("atlas"), get_method("crf")):
        assert set(spec.parameters) == set(spec.defaults), spec.name
        assert coerce_params(spec, dict(spec.defaults)) == spec.defaults  # every default is in range


def test_an_installed_package_too_old_for_its_range_counts_as_missing():
    assert rq.is_satisfied(rq.Requirement("numpy>=1.0", "numpy"))
    assert not rq.is_satisfied(rq.Requirement("numpy>=99", "numpy"))
    assert not rq.is_satisfied(rq.Requirement("nosuchpackage>=1", "nosuchpackage"))
    assert rq._compare("2.13.0+cpu", ">=", "2.1") and not rq._compare("1.12.1", ">=", "2.1") and rq._compare("1.3", "<", "1.10")


def test_model_and_atlas_folders_go_only_to_methods_that_take_them():
    stale = RunSettings(method="otsu", model="hippocampus", atlasFolder="/atlases")
    args = segment_arguments(["a.nrrd"], "o", stale)
    assert "--model" not in args and "--atlases" not in args
    deep = segment_arguments(["a.nrrd"], "o", replace_settings(stale, method="deep"))
    assert deep[deep.index("--model") + 1] == "hippocampus" and "--atlases" not in deep
    assert subprocess_environment({}, "/lib")["PYTHONIOENCODING"] == "utf-8"
