"""A :class:`~MedSegAILib.runs.runner.ProcessLauncher` over :mod:`subprocess`, with a small
event loop, for runs outside Slicer (tests, scripts) and as the reference for the Qt adapter.

Like Qt, it delivers what the process does (output, exit) on the thread that runs the loop,
one event at a time; while an event is being delivered :attr:`SubprocessLauncher.in_signal`
is True, as a Qt signal would be on the stack, so tests can check that a run never reacts
inside one.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from typing import Callable, Dict, Optional, Sequence


class EventLoop:
    """A thread-safe queue of callables run by :meth:`run_until` (a minimal Qt event loop)."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[Callable[[], None]]" = queue.Queue()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def run_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Run queued callables until ``done()`` or the timeout; returns ``done()``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                fn = self._queue.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            fn()
        return True

    def run_pending(self) -> None:
        while True:
            try:
                fn = self._queue.get_nowait()
            except queue.Empty:
                return
            fn()


class SubprocessLauncher:
    """Starts the process with :class:`subprocess.Popen`, stdout and stderr merged."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.in_signal = False
        self._process: Optional[subprocess.Popen] = None
        self.released = False

    def _emit(self, fn: Callable[[], None]) -> None:
        def deliver() -> None:
            self.in_signal = True
            try:
                fn()
            finally:
                self.in_signal = False

        self.loop.call_soon(deliver)

    def start(self, program: str, arguments: Sequence[str], environment: Dict[str, str], events) -> None:
        try:
            self._process = subprocess.Popen(
                [program, *arguments], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as exc:  # missing or not executable: Qt's FailedToStart
            detail = exc.strerror or str(exc)
            self._emit(lambda: events.failed_to_start(detail))
            return
        threading.Thread(target=self._read, args=(self._process, events), daemon=True).start()

    def _read(self, process: subprocess.Popen, events) -> None:
        fd = process.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            text = chunk.decode("utf-8", "replace")
            self._emit(lambda t=text: events.output(t))
        code = process.wait()
        process.stdout.close()
        self._emit(lambda: events.finished(code if code >= 0 else -code, code < 0))

    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def release(self) -> None:
        self.released = True
