"""Log levels for the CLI and the GUI: one switch for the core's and the GUI's loggers."""

from __future__ import annotations

import logging

#: Level names the CLI's ``--log-level`` and the GUI's dropdown offer, most verbose first.
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
#: The level of a run that names none.
DEFAULT_LOG_LEVEL = "INFO"
#: Loggers whose level the CLI and the GUI control (DESIGN §6).
PRODUCT_LOGGERS: tuple[str, ...] = ("zemosaic_core", "zemosaic_gui")


def level_number(level: str | int) -> int:
    """``"DEBUG"`` -> 10, etc.; raises ValueError for an unknown name."""
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose one of {LOG_LEVELS}")
    return int(logging.getLevelName(name))


def set_log_level(level: str | int, *handlers: logging.Handler) -> int:
    """Set the level of the product's loggers and of ``handlers`` at once."""
    number = level_number(level)
    for name in PRODUCT_LOGGERS:
        logging.getLogger(name).setLevel(number)
    for handler in handlers:
        handler.setLevel(number)
    return number


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
