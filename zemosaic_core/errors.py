"""Exceptions shared by the whole core, and the exit status each one means.

The exit statuses are the CLI's (docs/architecture.md §7): every front end that ends a process with
one takes it from here.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

#: Exit statuses: success, failure, bad usage or no usable input, interrupted (Ctrl-C or
#: a cancelled build).
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class ZeMosaicError(Exception):
    """Base class of every error the core raises on purpose."""


def printable_path(path: str | Path) -> str:
    """A path as one line of text: control and line-break characters escaped.

    A file name may hold a newline or an escape sequence; written as is into a log line
    it would split the line in two (and could forge a line of its own). Ordinary names,
    accents and spaces included, come back unchanged.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    str
        ``str(path)`` with every character of Unicode category ``Cc`` (controls), ``Cf``
        (invisible format marks), ``Zl`` or ``Zp``
        written as ``\\xNN`` or ``\\uNNNN``.
    """
    text = str(path)
    if text.isprintable():
        return text
    return "".join(
        ch
        if unicodedata.category(ch) not in ("Cc", "Zl", "Zp", "Cf")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


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
        super().__init__(f"{printable_path(self.path)}: {reason}")


class MissingWCSError(InputError):
    """An input without a celestial WCS (a plate solve may still give it one)."""


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


def exit_status(error: BaseException) -> int:
    """The exit status that ends a process stopped by ``error``.

    Parameters
    ----------
    error : BaseException

    Returns
    -------
    int
        `EXIT_USAGE` for bad usage or no usable input, `EXIT_INTERRUPTED` for a
        cancelled or interrupted build, else `EXIT_FAILURE`.
    """
    if isinstance(error, (UsageError, NoUsableInputError)):
        return EXIT_USAGE
    if isinstance(error, (BuildCancelled, KeyboardInterrupt)):
        return EXIT_INTERRUPTED
    return EXIT_FAILURE
