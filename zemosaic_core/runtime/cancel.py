"""Cooperative cancellation: the core checks a token between tiles, chunks and channels."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from ..errors import BuildCancelled


class CancelToken:
    """A thread-safe flag that a GUI or a signal handler sets and the pipeline polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the build to stop at its next check point."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise `BuildCancelled` when cancellation was requested."""
        if self._event.is_set():
            raise BuildCancelled("build cancelled by the user")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise `BuildCancelled` when ``cancel`` is set; a ``None`` token never cancels."""
    if cancel is not None:
        cancel.raise_if_cancelled()


class TerminationRequested(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind exactly as Ctrl-C does (clean-ups run).

    Attributes
    ----------
    signum : int
        The signal number (the CLI exits with 128 + ``signum``).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


#: Signals handled like Ctrl-C: SIGTERM everywhere, SIGHUP where it exists (not Windows).
TERMINATION_SIGNALS: tuple[str, ...] = ("SIGTERM", "SIGHUP")


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into `TerminationRequested` while the block runs.

    Python's default for these signals ends the process at once, skipping every
    ``finally``: scratch files and temporary outputs would stay behind. Raised as a
    `KeyboardInterrupt`, they unwind the build like Ctrl-C. Only the main thread can
    install handlers; elsewhere (a GUI worker) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise TerminationRequested(signum)

    previous = {}
    for name in TERMINATION_SIGNALS:
        number = getattr(signal, name, None)
        if number is None:
            continue
        try:
            previous[number] = signal.signal(number, handler)
        except (OSError, ValueError):  # not settable here
            continue
    try:
        yield
    finally:
        for number, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(number, old)
