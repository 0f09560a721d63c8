"""Progress reporting and cooperative cancellation for long-running work.

Methods receive a :class:`Progress` and call ``progress.update(fraction, message)`` between
steps; ``update`` raises :class:`~MedSegAILib.core.errors.Cancelled` once cancellation was
requested, so a method stops at its next step boundary without extra code. The CLI shows a
text bar, the Slicer module forwards the same callbacks to its progress bar.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """A flag shared between the caller (GUI, signal handler) and a running method."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


class Progress:
    """Reports fractions in [0, 1] with a message; supports nested sub-ranges.

    Parameters
    ----------
    callback : callable(fraction, message) or None
        Receives every update. ``None`` discards them.
    cancel : CancelToken or None
        Checked at every update.
    start, stop : float
        The part of the parent's range this reporter covers (for :meth:`sub`).
    """

    def __init__(
        self,
        callback: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        start: float = 0.0,
        stop: float = 1.0,
    ) -> None:
        self.callback = callback
        self.cancel = cancel or CancelToken()
        self.start = start
        self.stop = stop

    def update(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` (0..1) of this reporter's range done; raises Cancelled if asked."""
        self.cancel.raise_if_cancelled()
        if self.callback is not None:
            f = min(max(float(fraction), 0.0), 1.0)
            self.callback(self.start + f * (self.stop - self.start), message)

    def sub(self, start: float, stop: float) -> "Progress":
        """A reporter covering [start, stop] of this one's range."""
        span = self.stop - self.start
        return Progress(self.callback, self.cancel, self.start + start * span, self.start + stop * span)


class TextProgressBar:
    """A one-line progress bar on a terminal (stderr); silent when stderr is not a TTY
    unless ``always`` is set, and only drawn once work has taken more than ``delay`` seconds."""

    def __init__(self, stream=None, width: int = 30, delay: float = 1.0, always: bool = False, lines: bool = False, line_step: float = 0.0):
        """``lines``: every change of step as a plain "[ 42.0%] message" line at once (for a
        program that reads the progress, such as the Slicer panel); ``line_step``: with
        ``lines``, a new line only once the fraction has grown by this much (a training's
        thousands of steps would flood the log)."""
        self.stream = stream or sys.stderr
        self.width = width
        self.delay = 0.0 if lines else delay
        self.always = always
        self.lines = lines
        self.line_step = line_step
        self._t0 = time.monotonic()
        self._last = ""
        self._last_fraction = -1.0
        self._drawn = False

    def __call__(self, fraction: float, message: str) -> None:
        if time.monotonic() - self._t0 < self.delay:
            return
        if self.lines or not (self.always or getattr(self.stream, "isatty", lambda: False)()):
            # A log, not a terminal: one line per 10% step (and the last), so logs stay short;
            # for a reading program, one line per step.
            step = self.line_step if self.lines else 0.1
            if message != self._last and (fraction >= self._last_fraction + step or fraction >= 1.0):
                self.stream.write(f"[{fraction * 100:5.1f}%] {message}\n")
                self.stream.flush()
                self._last, self._last_fraction = message, fraction
            return
        filled = int(round(fraction * self.width))
        line = f"\r[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:5.1f}% {message[:60]:<60}"
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
