"""Cooperative cancellation: the core checks a token between tiles, chunks and channels."""

from __future__ import annotations

import threading

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
