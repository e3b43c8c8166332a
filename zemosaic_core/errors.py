"""Exceptions shared by the whole core."""

from __future__ import annotations

from pathlib import Path


class ZeMosaicError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(ZeMosaicError):
    """A file that cannot be used as a tile.

    Parameters
    ----------
    path : path-like
        The offending file.
    reason : str
        Why it cannot be used, in words a user understands.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NoUsableInputError(ZeMosaicError):
    """No input of a build could be used (CLI exit code 2)."""


class UsageError(ZeMosaicError):
    """A request that cannot be honoured as given (CLI exit code 2)."""


class PlanningError(ZeMosaicError):
    """The output grid cannot be planned (for example the canvas is too large)."""


class BackendError(ZeMosaicError):
    """A backend could not produce its result (CUDA error, out of memory, no device).

    Backends raise it and never fall back by themselves; the orchestrator decides.
    """


class BuildCancelled(ZeMosaicError):
    """The user cancelled the build; nothing was written."""
