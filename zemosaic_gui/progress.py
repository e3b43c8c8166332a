"""Turning a build's ``progress(phase, done, total)`` calls into a bar value, a label and
an ETA.

A build reports one bar for its whole run (``zemosaic_core.runtime.progress``): ``done``
out of ``total`` is the share of the build, ``phase`` names the current step. The time
left comes from the core's `EtaEstimator` (the CLI uses the same), so it counts down
between reports and never shows 0:00 before the end. Pure Python (no Qt).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from zemosaic_core.runtime.progress import EtaEstimator, format_duration

__all__ = ["ProgressState", "ProgressTracker", "format_duration"]


@dataclass(frozen=True)
class ProgressState:
    """What the progress bar and its labels show.

    Attributes
    ----------
    phase : str
        The core's phase label ("load", "coadd pass 1", ...).
    done, total : int
        Share of the whole build done, in units of ``total``.
    percent : int
        0-100 of the whole build.
    eta_s : float or None
        Estimated seconds left in the build; None until it can be estimated.
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
        """``"Coadd pass 1"``: the step the build is in."""
        return self.phase[:1].upper() + self.phase[1:] if self.phase else "Working"

    @property
    def eta_text(self) -> str:
        """``"ETA 0:12 · 0:31 elapsed"`` (or only the elapsed time before an estimate)."""
        elapsed = f"{format_duration(self.elapsed_s)} elapsed"
        if self.eta_s is None:
            return elapsed
        return f"ETA {format_duration(self.eta_s)} · {elapsed}"


class ProgressTracker:
    """Keeps a build's timing to show its progress and the time left.

    Parameters
    ----------
    clock : callable, optional
        Monotonic clock in seconds (injected by tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._eta = EtaEstimator(clock)
        self._last: ProgressState | None = None

    def start(self) -> None:
        """Reset the clocks at the start of a build."""
        self._eta.start()
        self._last = None

    def elapsed(self) -> float:
        """Seconds since `start`."""
        return self._eta.elapsed()

    def update(self, phase: str, done: int, total: int) -> ProgressState:
        """Record one progress report and return what to show."""
        total = max(0, int(total))
        done = min(max(0, int(done)), total) if total else 0
        fraction = done / total if total else 0.0
        self._eta.update(fraction)
        percent = min(100, int(100 * fraction))  # floor: 100 % only when done
        self._last = ProgressState(
            phase, done, total, percent, self._eta.eta(), self._eta.elapsed()
        )
        return self._last

    def current(self) -> ProgressState | None:
        """The last state with the time left counted down to now (for a timer tick)."""
        last = self._last
        if last is None:
            return None
        return ProgressState(
            last.phase, last.done, last.total, last.percent, self._eta.eta(), self._eta.elapsed()
        )
