"""The life cycle of a build, as the window shows it: a small state machine.

``idle`` → `start` → ``running`` → (`request_cancel` → ``cancelling``) → `finish` →
``idle``, with the outcome (``"ok"``, ``"failed"`` or ``"cancelled"``) reported by
`succeed`, `fail` or `cancelled` in between. The worker thread's signals drive it; the
widgets observe it. It also keeps the last successful result (what Save writes) and the
progress of the running build.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..progress import ProgressState, ProgressTracker, format_duration
from .events import Event

__all__ = [
    "CANCELLED",
    "CANCELLING",
    "FAILED",
    "IDLE",
    "OK",
    "RUNNING",
    "BuildModel",
]

#: States.
IDLE, RUNNING, CANCELLING = "idle", "running", "cancelling"
#: Outcomes.
OK, FAILED, CANCELLED = "ok", "failed", "cancelled"


class BuildModel:
    """One build at a time: its state, its progress, its outcome.

    Parameters
    ----------
    clock : callable, optional
        Monotonic clock in seconds (tests inject one).

    Attributes
    ----------
    state_changed : Event
        ``state_changed(state)`` on every transition.
    progressed : Event
        ``progressed(ProgressState)`` for each progress report of the running build.
    finished : Event
        ``finished(outcome)`` when the build is over (the worker thread has ended).
    result : object or None
        The last successful ``BuildResult`` (kept while a new build runs).
    error : tuple of str
        Message and details of the last failure.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tracker = ProgressTracker(clock)
        self.state = IDLE
        self.outcome = ""
        self.result: Any = None
        self.error: tuple[str, str] = ("", "")
        self.progress: ProgressState | None = None
        self.elapsed_s = 0.0
        self.state_changed = Event()
        self.progressed = Event()
        self.finished = Event()

    # ---- queries --------------------------------------------------------------------

    @property
    def is_building(self) -> bool:
        """Whether a build runs (including while it is being cancelled)."""
        return self.state != IDLE

    @property
    def cancel_requested(self) -> bool:
        """Whether the running build was asked to stop."""
        return self.state == CANCELLING

    def can_start(self, has_inputs: bool) -> bool:
        """Whether Build may be pressed: nothing runs and there is something to build."""
        return self.state == IDLE and has_inputs

    @property
    def can_cancel(self) -> bool:
        """Whether Cancel may be pressed (a build runs and was not asked to stop yet)."""
        return self.state == RUNNING

    @property
    def can_save(self) -> bool:
        """Whether Save may be pressed: a result exists and no build runs."""
        return self.state == IDLE and self.result is not None

    def current_progress(self) -> ProgressState | None:
        """The last progress with the time left counted down to now (a timer's tick)."""
        return self._tracker.current() if self.state != IDLE else None

    def elapsed(self) -> float:
        """Seconds since the running (or last) build started."""
        return self._tracker.elapsed()

    # ---- transitions ----------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    def start(self) -> None:
        """A build starts.

        Raises
        ------
        RuntimeError
            When a build is already running.
        """
        if self.state != IDLE:
            raise RuntimeError("a build is already running")
        self.outcome = ""
        self.error = ("", "")
        self.progress = None
        self.elapsed_s = 0.0
        self._tracker.start()
        self._set_state(RUNNING)

    def request_cancel(self) -> bool:
        """Ask the running build to stop.

        Returns
        -------
        bool
            True when the request is new (the caller tells the worker); False when no
            build runs or it was already asked.
        """
        if self.state != RUNNING:
            return False
        self._set_state(CANCELLING)
        return True

    def report_progress(self, phase: str, done: int, total: int) -> ProgressState | None:
        """Record a progress report of the running build.

        Returns
        -------
        ProgressState or None
            What to show; None when no build runs (a late report).
        """
        if self.state == IDLE:
            return None
        self.progress = self._tracker.update(phase, done, total)
        self.progressed.emit(self.progress)
        return self.progress

    def succeed(self, result: Any) -> None:
        """The build produced ``result`` (the worker thread may still be ending)."""
        if self.state == IDLE:
            return
        self.outcome = OK
        self.result = result
        self.elapsed_s = self._tracker.elapsed()

    def fail(self, message: str, details: str = "") -> None:
        """The build failed with ``message`` (``details``: a traceback, or "")."""
        if self.state == IDLE:
            return
        self.outcome = FAILED
        self.error = (message, details)

    def cancelled(self) -> None:
        """The build stopped at a cancellation check; nothing was written."""
        if self.state == IDLE:
            return
        self.outcome = CANCELLED

    def finish(self) -> str:
        """The worker thread has ended: back to idle.

        Returns
        -------
        str
            The outcome; a thread that ended without reporting one counts as cancelled
            when Cancel was pressed, else as failed.
        """
        if self.state == IDLE:
            return self.outcome
        if not self.outcome:
            self.outcome = CANCELLED if self.state == CANCELLING else FAILED
        if not self.elapsed_s:
            self.elapsed_s = self._tracker.elapsed()
        self._set_state(IDLE)
        self.finished.emit(self.outcome)
        return self.outcome

    # ---- what the build box shows ---------------------------------------------------------

    def final_texts(self) -> tuple[str, str, int]:
        """Progress bar text, phase line and bar percent once a build is over."""
        if self.outcome == OK:
            return "Done", f"Done in {format_duration(self.elapsed_s)}", 100
        if self.outcome == CANCELLED:
            return "Cancelled", "Cancelled", 0
        return "Failed", "Failed — see the log", 0
