"""Progress reporting: a plain callback, so the core stays free of any GUI toolkit.

Inside the core, each step reports ``progress(phase, done, total)`` where ``phase`` is
a short label ("load", "match", "coadd pass 1", ...) and ``done``/``total`` count that
step's own units of work.

A *build* (``build_mosaic``) folds those reports into one bar with `BuildProgress`:
its caller's callback gets ``progress(phase, done, PROGRESS_UNITS)`` where ``done`` is
the build's progress in thousandths, weighted by the work of each phase (tiles x pixels
x channels x passes), never decreasing, and equal to ``PROGRESS_UNITS`` only when the
build is over. `EtaEstimator` turns that into a time left that counts down between
reports and never shows 0:00 before the end; the CLI and the GUI both use it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "PROGRESS_UNITS",
    "BuildProgress",
    "EtaEstimator",
    "PhaseWork",
    "ProgressCallback",
    "format_duration",
    "report",
]

ProgressCallback = Callable[[str, int, int], None]

#: ``total`` of a build's progress reports: thousandths of the whole build.
PROGRESS_UNITS = 1000


def report(progress: ProgressCallback | None, phase: str, done: int, total: int) -> None:
    """Call ``progress`` when one was given."""
    if progress is None:
        return
    progress(phase, done, total)


@dataclass(frozen=True)
class PhaseWork:
    """A phase of a build and its estimated cost (arbitrary but common units)."""

    phase: str
    work: float


class BuildProgress:
    """Folds per-step reports into one fraction of the whole build.

    Parameters
    ----------
    callback : callable or None
        The caller's ``progress(phase, done, PROGRESS_UNITS)``.
    phases : sequence of PhaseWork
        The phases still to come, in order, with their estimated work.

    Notes
    -----
    `plan` may be called again once the work is better known (after loading, the tiles'
    real pixel counts): the fraction reached so far is kept and the phases still to
    come share the rest. A phase that was not planned moves the label, not the bar.
    """

    def __init__(self, callback: ProgressCallback | None, phases: Sequence[PhaseWork]) -> None:
        self._callback = callback
        self._lock = threading.Lock()
        self._fraction = 0.0
        self._base = 0.0
        self._spans: dict[str, tuple[float, float]] = {}
        self._last_units = -1
        self._last_phase = ""
        self.plan(phases)

    @property
    def fraction(self) -> float:
        """Share of the build done, 0..1."""
        return self._fraction

    def plan(self, phases: Sequence[PhaseWork]) -> None:
        """(Re)distribute what is left of the bar over ``phases``, in order."""
        with self._lock:
            self._base = self._fraction
            total = sum(max(0.0, p.work) for p in phases) or 1.0
            start = self._base
            self._spans = {}
            for p in phases:
                width = (1.0 - self._base) * max(0.0, p.work) / total
                self._spans[p.phase] = (start, width)
                start += width

    def __call__(self, phase: str, done: int, total: int) -> None:
        """A step's report: ``done`` of ``total`` units of ``phase``."""
        with self._lock:
            span = self._spans.get(phase)
            if span is not None:
                start, width = span
                part = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
                self._fraction = max(self._fraction, start + width * part)
            # Below 1 until finish(): "100 %" means the build is over.
            units = min(int(self._fraction * PROGRESS_UNITS), PROGRESS_UNITS - 1)
            if units == self._last_units and phase == self._last_phase:
                return
            self._last_units, self._last_phase = units, phase
        report(self._callback, phase, units, PROGRESS_UNITS)

    def finish(self, phase: str = "done") -> None:
        """The build is over: the bar reaches 100 %."""
        with self._lock:
            self._fraction = 1.0
            self._last_units, self._last_phase = PROGRESS_UNITS, phase
        report(self._callback, phase, PROGRESS_UNITS, PROGRESS_UNITS)


class EtaEstimator:
    """Time left from the fraction done and the time spent.

    Parameters
    ----------
    clock : callable, optional
        Monotonic clock in seconds (tests inject one).

    Notes
    -----
    The estimate is ``elapsed / fraction - elapsed`` at each report (the build's mean
    rate, weighted by the phases' work), then counts down between reports. It appears
    once 2 % of the work and 1 s have passed, and it never drops below `MIN_ETA_S`
    while the build runs: "0:00" is shown only at the end.
    """

    MIN_ETA_S = 1.0
    MIN_FRACTION = 0.02
    MIN_ELAPSED_S = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.start()

    def start(self) -> None:
        """Reset at the start of a build."""
        self._start = self._clock()
        self._finish_at: float | None = None
        self._fraction = 0.0

    def elapsed(self) -> float:
        """Seconds since `start`."""
        return self._clock() - self._start

    def update(self, fraction: float) -> None:
        """Record the fraction done (0..1) now."""
        now = self._clock()
        self._fraction = min(max(float(fraction), 0.0), 1.0)
        spent = now - self._start
        if self._fraction >= 1.0:
            self._finish_at = now
        elif self._fraction >= self.MIN_FRACTION and spent >= self.MIN_ELAPSED_S:
            self._finish_at = self._start + spent / self._fraction
        else:
            self._finish_at = None

    def eta(self) -> float | None:
        """Seconds left (None before an estimate; 0 only once the build is done)."""
        if self._fraction >= 1.0:
            return 0.0
        if self._finish_at is None:
            return None
        return max(self.MIN_ETA_S, self._finish_at - self._clock())


def format_duration(seconds: float) -> str:
    """Format seconds as ``m:ss`` (or ``h:mm:ss`` from one hour)."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"
