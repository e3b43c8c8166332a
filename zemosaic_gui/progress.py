"""Turning ``progress(phase, done, total)`` calls into a bar value, a label and an ETA.

Pure Python (no Qt) so the arithmetic is unit-tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressState:
    """What the progress bar and its labels show.

    Attributes
    ----------
    phase : str
        The core's phase label ("load", "coadd pass 1", ...).
    done, total : int
        Units done and units in the phase.
    percent : int
        0-100 within the phase.
    eta_s : float or None
        Estimated seconds left in the phase; None until it can be estimated.
    elapsed_s : float
        Seconds since the build started.
    """

    phase: str
    done: int
    total: int
    percent: int
    eta_s: float | None
    elapsed_s: float

    @property
    def label(self) -> str:
        """``"Coadd pass 1 · 3/6"``."""
        name = self.phase[:1].upper() + self.phase[1:] if self.phase else "Working"
        if self.total > 0:
            return f"{name} · {self.done}/{self.total}"
        return name

    @property
    def eta_text(self) -> str:
        """``"ETA 0:12 · 0:31 elapsed"`` (or only the elapsed time before an estimate)."""
        elapsed = f"{format_duration(self.elapsed_s)} elapsed"
        if self.eta_s is None:
            return elapsed
        return f"ETA {format_duration(self.eta_s)} · {elapsed}"


def format_duration(seconds: float) -> str:
    """Format seconds as ``m:ss`` (or ``h:mm:ss`` from one hour).

    Parameters
    ----------
    seconds : float

    Returns
    -------
    str
    """
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class ProgressTracker:
    """Keeps the timing of a build's phases to estimate the time left.

    Parameters
    ----------
    clock : callable, optional
        Monotonic clock in seconds (injected by tests).

    Notes
    -----
    The core reports phases one after another, each with its own ``total``; the
    estimate is the phase's mean rate so far times the units left, available once a
    unit is done and a quarter of a second has passed in the phase.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._phase = ""
        self._phase_start = self._start

    def start(self) -> None:
        """Reset the clocks at the start of a build."""
        self._start = self._clock()
        self._phase = ""
        self._phase_start = self._start

    def elapsed(self) -> float:
        """Seconds since `start`."""
        return self._clock() - self._start

    def update(self, phase: str, done: int, total: int) -> ProgressState:
        """Record one progress report and return what to show.

        Parameters
        ----------
        phase : str
        done, total : int

        Returns
        -------
        ProgressState
        """
        now = self._clock()
        if phase != self._phase:
            self._phase = phase
            self._phase_start = now
        total = max(0, int(total))
        done = min(max(0, int(done)), total) if total else max(0, int(done))
        percent = int(round(100 * done / total)) if total else 0
        in_phase = now - self._phase_start
        eta: float | None = None
        if total and 0 < done < total and in_phase >= 0.25:
            eta = in_phase / done * (total - done)
        elif total and done >= total:
            eta = 0.0
        return ProgressState(phase, done, total, percent, eta, now - self._start)
