"""A minimal observer: the model announces changes, the widgets listen (no Qt here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Event"]


class Event:
    """Callbacks called in connection order with the arguments of each `emit`.

    The application model lives on one thread (the GUI thread in the app); an `Event`
    is not thread-safe and is not a queue: `emit` calls every callback at once.
    """

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback`` on every `emit`; returns it (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` (no error when it is not connected)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        """Call each connected callback with ``args``."""
        for callback in list(self._callbacks):
            callback(*args)
