"""Progress reporting: a plain callback, so the core stays free of any GUI toolkit.

A progress callback is called as ``progress(phase, done, total)`` where ``phase`` is a
short human label ("load", "plan", "match", "coadd pass 1", ...), and ``done``/``total``
count units of work inside that phase.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[str, int, int], None]


def report(progress: ProgressCallback | None, phase: str, done: int, total: int) -> None:
    """Call ``progress`` when one was given; a failing callback never breaks a build."""
    if progress is None:
        return
    progress(phase, done, total)
