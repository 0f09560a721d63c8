"""The life cycle of one background run of the CLI, independent of Qt.

A :class:`ProcessRun` writes its inputs into a fresh work folder, starts
``<python> -m MedSegAILib.cli <command> ...`` through a :class:`ProcessLauncher`, turns the
process's output into progress and log lines, and ends in exactly one :class:`RunOutcome`:
succeeded (the result is complete), failed (the process could not start, stopped with an
error, crashed, or left an incomplete result; the message names which) or cancelled (the whole
process tree is killed; the work folder and everything half-written in it is removed).
Two kinds: :class:`SegmentationRun` (``medsegai segment``: a case folder) and
:class:`~MedSegAILib.runs.training_run.TrainingRun` (``medsegai train``: a model folder).

The launcher is injected: in Slicer it is a thin QProcess adapter (``MedSegAI.py``); in tests
and plain Python it is :class:`~MedSegAILib.runs.subprocess_launcher.SubprocessLauncher`. The
launcher reports what the process does by calling :meth:`SegmentationRun.output`,
:meth:`~SegmentationRun.finished` and :meth:`~SegmentationRun.failed_to_start`, possibly from
inside a Qt signal; the run never acts there: it hands its reaction to ``call_soon`` (Qt's
``QTimer.singleShot(0, ...)``), so results are loaded, dialogs shown and the process object
released only after the signal has returned.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from ..core.errors import InputError
from .process_tree import kill_process_tree
from .settings import DEVICES, RunSettings, run_arguments

#: Lines of the process's output kept for the failure message and the outcome.
LOG_TAIL_LINES = 20


class ProcessEvents(Protocol):
    def output(self, text: str) -> None: ...
    def finished(self, exit_code: int, crashed: bool) -> None: ...
    def failed_to_start(self, detail: str) -> None: ...


class ProcessLauncher(Protocol):
    """What a run needs of a process (QProcess in Slicer, subprocess elsewhere)."""

    def start(self, program: str, arguments: Sequence[str], environment: Dict[str, str], events: ProcessEvents) -> None:
        """Start the process; report through ``events`` (output, then finished or failed_to_start)."""

    def pid(self) -> Optional[int]:
        """The started process's id, None before it started or after it could not."""

    def kill(self) -> None:
        """Kill the process itself (the run kills its descendants)."""

    def release(self) -> None:
        """Free the process object; called after the run has finished with it."""


@dataclass
class RunOutcome:
    """How a run ended. ``output_folder`` holds the case outputs when ``status`` is "succeeded"
    (until the run's work folder is removed, right after ``on_finished`` returns)."""

    status: str  # "succeeded", "failed" or "cancelled"
    message: str
    output_folder: Optional[Path] = None
    exit_code: Optional[int] = None
    elapsed_s: float = 0.0
    log_tail: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def validate_settings(settings: RunSettings, *, has_seeds: bool) -> None:
    """Refuse a run that cannot work, before anything is written or started (InputError)."""
    from ..methods.registry import get_method

    spec = get_method(settings.method)
    if "seeds" in spec.needs and not has_seeds:
        raise InputError(f"the method '{spec.name}' needs seeds: select a seed segmentation with painted segments")
    if "atlases" in spec.needs and not settings.atlasFolder:
        raise InputError(f"the method '{spec.name}' needs an atlas library folder")
    if "model" in spec.needs and not settings.model:
        raise InputError(f"the method '{spec.name}' needs a model")
    if settings.device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got '{settings.device}'")


def segment_arguments(input_files: Sequence[str], output_dir, settings: RunSettings, *, seeds_file: Optional[str] = None) -> List[str]:
    """Arguments after ``-m MedSegAILib.cli`` for one case (channels joined by commas).

    ``--seeds`` is passed only to a method that takes seeds, whatever the panel has selected.
    """
    from ..methods.registry import get_method

    if not input_files:
        raise InputError("select an input volume")
    validate_settings(settings, has_seeds=bool(seeds_file))
    args = ["segment", ",".join(str(f) for f in input_files), "--output", str(output_dir), *run_arguments(settings)]
    if seeds_file and "seeds" in get_method(settings.method).needs:
        args += ["--seeds", str(seeds_file)]
    args.append("--overwrite")  # the folder is a fresh one inside the run's own work folder
    args.append("--progress-lines")
    return args


def python_command(python_executable: str, arguments: Sequence[str]) -> List[str]:
    """The full command line: ``<python> -m MedSegAILib.cli <arguments>``."""
    return [python_executable, "-m", "MedSegAILib.cli", *arguments]


def subprocess_environment(base: Dict[str, str], library_parent: str) -> Dict[str, str]:
    """``base`` with ``library_parent`` (the folder holding MedSegAILib) first on PYTHONPATH and
    Python's output unbuffered, so progress lines arrive as they are printed."""
    env = dict(base)
    parts = [library_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != library_parent]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"  # "mm³" and non-ASCII paths read back right on Windows too
    return env


_PROGRESS = re.compile(r"\[\s*(\d+(?:\.\d+)?)%\]\s*(.*)")


def parse_progress_line(line: str) -> Optional[Tuple[float, str]]:
    """(fraction 0..1, message) from one CLI progress line ("[ 42.0%] message"), else None."""
    m = _PROGRESS.search(line.strip().split("\r")[-1])
    if not m:
        return None
    return min(max(float(m.group(1)) / 100.0, 0.0), 1.0), m.group(2).strip()


def error_from_output(lines: Sequence[str], exit_code: int, what: str = "segmentation") -> str:
    """The sentence to show for a failed process: the CLI's own 'medsegai: error: ...' line,
    else the exit code with the last lines of the log."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("medsegai:"):
            text = line[len("medsegai:") :].strip()
            return text[len("error:") :].strip() if text.startswith("error:") else text
    tail = [ln.strip() for ln in lines if ln.strip()][-3:]
    said = f"; its last output: {' | '.join(tail)}" if tail else " without output"
    return f"the {what} process stopped with exit code {exit_code}{said}"


class ProcessRun:
    """One run of the CLI in a background process; subclasses say which command and what a
    complete result is.

    Parameters
    ----------
    launcher : ProcessLauncher
    python_executable : str
        The Python that runs the CLI (``PythonSlicer`` in Slicer).
    library_parent : str
        The folder that holds the ``MedSegAILib`` package (put first on PYTHONPATH).
    call_soon : callable
        Runs a callable after the current event (signal) has returned.
    on_progress : callable(fraction, message), optional
    on_log : callable(line, elapsed_s), optional
        Every output line of the process, with seconds since the start.
    on_finished : callable(RunOutcome), optional
        Called once, after the process is gone; the work folder is removed when it returns.
    base_environment : dict, optional
        Environment for the process (default: this process's).
    work_root : str, optional
        Where the work folder is made (default: the system's temporary folder).
    """

    #: The process in messages ("the segmentation process crashed").
    what = "segmentation"
    #: The outcome's message after a cancel.
    cancelled_message = "cancelled; nothing was added to the scene"

    def __init__(
        self,
        launcher: ProcessLauncher,
        *,
        python_executable: str,
        library_parent: str,
        call_soon: Callable[[Callable[[], None]], None],
        on_progress: Optional[Callable[[float, str], None]] = None,
        on_log: Optional[Callable[[str, float], None]] = None,
        on_finished: Optional[Callable[[RunOutcome], None]] = None,
        base_environment: Optional[Dict[str, str]] = None,
        work_root: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.launcher = launcher
        self.python_executable = python_executable
        self.library_parent = library_parent
        self.call_soon = call_soon
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_finished = on_finished
        self.base_environment = dict(os.environ) if base_environment is None else dict(base_environment)
        self.work_root = work_root
        self.clock = clock
        self.state = "idle"  # idle -> running -> succeeded | failed | cancelled
        self.work_folder: Optional[Path] = None
        self.output_folder: Optional[Path] = None
        self.command: List[str] = []
        self.outcome: Optional[RunOutcome] = None
        self._lines: List[str] = []
        self._partial = ""
        self._started_at = 0.0

    # --- what a kind of run defines -----------------------------------------------------------

    def _arguments(self, work_folder: Path, written) -> List[str]:
        """The CLI arguments, once ``write_inputs`` has returned ``written``; sets ``output_folder``."""
        raise NotImplementedError

    def _complete(self, exit_code: int) -> RunOutcome:
        """The outcome of a process that exited 0: succeeded if its result is complete."""
        raise NotImplementedError

    # --- starting ---------------------------------------------------------------------------

    def _launch(self, write_inputs: Callable[[Path], object]) -> None:
        """Make the work folder, let ``write_inputs(folder)`` write the inputs into it, build
        the command and start it. Anything that fails before the process starts removes the
        work folder again and raises; nothing is left behind."""
        if self.state != "idle":
            raise RuntimeError("a run starts once")
        self.work_folder = Path(tempfile.mkdtemp(prefix="MedSegAI-", dir=self.work_root))
        try:
            written = write_inputs(self.work_folder)
            self.command = python_command(self.python_executable, self._arguments(self.work_folder, written))
            env = subprocess_environment(self.base_environment, self.library_parent)
        except BaseException:
            self._remove_work_folder()
            raise
        self.state = "running"
        self._started_at = self.clock()
        self.launcher.start(self.command[0], self.command[1:], env, self)

    # --- what the process reports (maybe inside a signal: never act here) ---------------------

    def output(self, text: str) -> None:
        if self.state != "running":
            return
        text = self._partial + text.replace("\r\n", "\n").replace("\r", "\n")
        *complete, self._partial = text.split("\n")
        elapsed = self.elapsed_s()
        for line in complete:
            if not line.strip():
                continue
            self._lines.append(line)
            del self._lines[:-200]
            if self.on_log:
                self.on_log(line, elapsed)
            progress = parse_progress_line(line)
            if progress and self.on_progress:
                self.on_progress(*progress)

    def finished(self, exit_code: int, crashed: bool) -> None:
        self.call_soon(lambda: self._conclude_process(int(exit_code), bool(crashed)))

    def failed_to_start(self, detail: str) -> None:
        self.call_soon(lambda: self._conclude_failed_start(detail))

    # --- ending ----------------------------------------------------------------------------

    def elapsed_s(self) -> float:
        return self.clock() - self._started_at if self._started_at else 0.0

    def cancel(self) -> None:
        """Kill the process and everything it started, remove the work folder; the outcome is
        "cancelled" (delivered through ``call_soon``). Nothing of the run reaches the scene."""
        if self.state != "running":
            return
        self.state = "cancelled"
        pid = self.launcher.pid()
        survivors = kill_process_tree(pid) if pid else []
        self.launcher.kill()
        self._remove_work_folder()
        message = self.cancelled_message
        if survivors:
            message += f" (processes {', '.join(map(str, survivors))} did not stop within 2 s)"
        outcome = RunOutcome("cancelled", message, None, None, self.elapsed_s(), self._lines[-LOG_TAIL_LINES:])
        self.call_soon(lambda: self._deliver(outcome))

    def _conclude_process(self, exit_code: int, crashed: bool) -> None:
        if self.state != "running":  # cancelled meanwhile, or already concluded
            return
        if self._partial.strip():
            self.output("\n")
        tail = self._lines[-LOG_TAIL_LINES:]
        if crashed:
            outcome = RunOutcome("failed", f"the {self.what} process crashed; {error_from_output(self._lines, exit_code, self.what)}", None, exit_code, self.elapsed_s(), tail)
        elif exit_code != 0:
            outcome = RunOutcome("failed", error_from_output(self._lines, exit_code, self.what), None, exit_code, self.elapsed_s(), tail)
        else:
            try:
                outcome = self._complete(exit_code)
            except Exception as exc:  # a result that cannot be checked or moved is a failed run, never a lost outcome
                outcome = RunOutcome("failed", f"the run's result could not be kept: {exc}", None, exit_code, self.elapsed_s(), tail)
        self.state = outcome.status
        self._deliver(outcome)

    def _succeeded_or_failed(self, problem: Optional[str], exit_code: int, folder: Optional[Path]) -> RunOutcome:
        tail = self._lines[-LOG_TAIL_LINES:]
        if problem:
            return RunOutcome("failed", f"the run ended without a complete result: {problem}", None, exit_code, self.elapsed_s(), tail)
        return RunOutcome("succeeded", "done", folder, exit_code, self.elapsed_s(), tail)

    def _conclude_failed_start(self, detail: str) -> None:
        if self.state != "running":
            return
        self.state = "failed"
        message = f"could not start '{self.command[0] if self.command else '?'}': {detail}"
        self._deliver(RunOutcome("failed", message, None, None, self.elapsed_s(), self._lines[-LOG_TAIL_LINES:]))

    def _deliver(self, outcome: RunOutcome) -> None:
        self.outcome = outcome
        try:
            if self.on_finished:
                self.on_finished(outcome)
        finally:
            self._remove_work_folder()
            self.launcher.release()

    def _remove_work_folder(self) -> None:
        if self.work_folder is not None:
            shutil.rmtree(self.work_folder, ignore_errors=True)
            self.work_folder = None


class SegmentationRun(ProcessRun):
    """One run of ``medsegai segment`` in a background process (see :class:`ProcessRun` for
    the other parameters; ``settings`` is the run's :class:`RunSettings`)."""

    what = "segmentation"

    def __init__(self, settings: RunSettings, launcher: ProcessLauncher, **kwargs) -> None:
        super().__init__(launcher, **kwargs)
        self.settings = settings

    @property
    def needs_seeds(self) -> bool:
        from ..methods.registry import get_method

        return "seeds" in get_method(self.settings.method).needs

    def start(self, write_inputs: Callable[[Path], Tuple[Sequence[str], Optional[str]]], *, has_seeds: bool = True) -> None:
        """Make the work folder, let ``write_inputs(folder)`` write the input files into it
        (returning ``(input_files, seeds_file or None)``), build the command and start it.

        Anything that fails before the process starts (bad settings, an input that cannot be
        written) removes the work folder again and raises; nothing is left behind. With
        ``has_seeds=False`` a seeded method is refused before any input is written.
        """
        if self.state != "idle":
            raise RuntimeError("a run starts once")
        validate_settings(self.settings, has_seeds=has_seeds)  # checked again once the seeds are written
        self._launch(write_inputs)

    def _arguments(self, work_folder: Path, written) -> List[str]:
        inputs, seeds = written
        self.output_folder = work_folder / "output"
        return segment_arguments(list(inputs), self.output_folder, self.settings, seeds_file=seeds)

    def _complete(self, exit_code: int) -> RunOutcome:
        from ..outputs.case_folder import check_case_outputs

        problems = check_case_outputs(self.output_folder)
        return self._succeeded_or_failed(problems[0] if problems else None, exit_code, self.output_folder)
