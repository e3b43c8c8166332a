"""Log levels for the CLI and the GUI: one switch for the core's and the GUI's loggers."""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterator

#: Level names the CLI's ``--log-level`` and the GUI's dropdown offer, most verbose first.
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The level of a run that names none.
DEFAULT_LOG_LEVEL = "INFO"
#: Loggers whose level the CLI and the GUI control (docs/architecture.md §6).
PRODUCT_LOGGERS: tuple[str, ...] = ("zemosaic_core", "zemosaic_gui")
#: Libraries that print on their own (astropy's INFO notices, e.g. about SIP cards):
#: they follow the product's level, never below WARNING.
LIBRARY_LOGGERS: tuple[str, ...] = ("astropy",)


def level_number(level: str | int) -> int:
    """``"DEBUG"`` -> 10, etc.; raises ValueError for an unknown name."""
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose one of {LOG_LEVELS}")
    return int(logging.getLevelName(name))


def library_loggers() -> list[logging.Logger]:
    """The `LIBRARY_LOGGERS`, each library imported first: astropy installs its logger
    class at import and breaks on a plain logger created before it."""
    loggers = []
    for name in LIBRARY_LOGGERS:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loggers.append(logging.getLogger(name))
    return loggers


def set_log_level(level: str | int, *handlers: logging.Handler) -> int:
    """Set the level of the product's loggers and of ``handlers`` at once.

    The `LIBRARY_LOGGERS` follow, at WARNING or above: ``--log-level ERROR`` silences
    astropy's notices too.
    """
    number = level_number(level)
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(number)
    for library in library_loggers():
        library.setLevel(max(number, logging.WARNING))
    for handler in handlers:
        handler.setLevel(number)
    return number


@contextlib.contextmanager
def warnings_to_debug_log() -> Iterator[None]:
    """Send Python warnings (numpy overflow, astropy notices) to the DEBUG log, not stderr.

    For the command-line entry points: a warning printed raw to stderr ignores
    ``--log-level`` and can span several lines. Not thread-scoped (``warnings`` is
    process-wide): use it around a whole command.
    """
    log = logging.getLogger("zemosaic_core")

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        log.debug("%s: %s (%s:%s)", category.__name__, message, filename, lineno)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def level_name(level: object, default: str = DEFAULT_LOG_LEVEL) -> str:
    """A valid level name from untrusted text (a stored setting), else ``default``.

    Parameters
    ----------
    level : object
        ``"debug"``, ``"INFO"``, ``None``...
    default : str

    Returns
    -------
    str
        One of `LOG_LEVELS`.
    """
    name = str(level or "").strip().upper()
    return name if name in LOG_LEVELS else default
