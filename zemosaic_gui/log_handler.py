"""Bridge from Python ``logging`` to Qt: a handler that emits a signal per record.

The core logs from the worker thread; widgets live in the GUI thread. The handler owns a
small ``QObject`` (created in the GUI thread) whose signal is emitted from whatever thread
logs. Qt's automatic connection sees that the receiver lives in another thread and
queues the call, so the record reaches the log pane on the GUI thread, never on the
worker's.

The log-level dropdown sets one level on the ``zemosaic_core`` and ``zemosaic_gui``
loggers *and* on this handler (docs/architecture.md §6) through :func:`apply_log_level`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal

from zemosaic_core.runtime.logsetup import PRODUCT_LOGGERS, set_log_level

#: Loggers whose level the GUI controls (docs/architecture.md §6): the core's list, shared with the CLI.
CONTROLLED_LOGGERS: tuple[str, ...] = PRODUCT_LOGGERS


class LogRecordEmitter(QObject):
    """Carries formatted records from any thread to the GUI thread.

    Signals
    -------
    record_logged(int, str, str, float)
        Level number, short logger name, message text (with the exception, if any) and
        the record's creation time (seconds since the epoch).
    """

    record_logged = Signal(int, str, str, float)


class QtLogHandler(logging.Handler):
    """A `logging.Handler` that turns records into a queued Qt signal.

    Parameters
    ----------
    level : int, optional
        Initial level of the handler.

    Notes
    -----
    Create it in the GUI thread: its emitter then lives there, and emissions from the
    worker thread are delivered through Qt's event queue (thread-safe).
    """

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.emitter = LogRecordEmitter()
        self.record_logged = self.emitter.record_logged

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and emit it as a signal (never raises into the caller)."""
        try:
            message = record.getMessage()
            if record.exc_info:
                formatter = self.formatter or logging.Formatter()
                message = f"{message}\n{formatter.formatException(record.exc_info)}"
            name = short_logger_name(record.name)
            self.emitter.record_logged.emit(record.levelno, name, message, record.created)
        except RuntimeError:
            # The emitter's C++ object is gone (window closed): stop listening.
            detach_handler(self)
        except Exception:  # pragma: no cover - logging must never break a build
            self.handleError(record)


def short_logger_name(name: str) -> str:
    """Keep only the module part of a product logger name, for display.

    Parameters
    ----------
    name : str
        A logger name such as ``"zemosaic_core.engine.coadd"``.

    Returns
    -------
    str
        ``"coadd"`` for ``zemosaic_core.engine.coadd``, ``"main_window"`` for
        ``zemosaic_gui.main_window``, else ``name``.
    """
    if name.startswith(("zemosaic_core.", "zemosaic_gui.")):
        # The module is what a reader looks for; the subpackage path is noise in a log pane.
        return name.rsplit(".", 1)[1]
    if name == "zemosaic_gui":
        return "gui"
    if name == "zemosaic_core":
        return "core"
    return name


def apply_log_level(level: int | str, handlers: Iterable[logging.Handler] = ()) -> int:
    """Set one level on the product's loggers and on the handlers that show them.

    The rule lives in the core (:func:`zemosaic_core.runtime.logsetup.set_log_level`), shared
    with the CLI's ``--log-level``. Safe during a build: `logging.Logger.setLevel`
    takes the logging lock and clears the level caches, so the worker's next
    ``logger.debug`` call sees the new level.

    Returns
    -------
    int
        The numeric level applied.
    """
    return set_log_level(level, *handlers)


def attach_handler(handler: logging.Handler, loggers: Iterable[str] = CONTROLLED_LOGGERS) -> None:
    """Add ``handler`` to the controlled loggers (once each)."""
    for name in loggers:
        logger = logging.getLogger(name)
        if handler not in logger.handlers:
            logger.addHandler(handler)


def detach_handler(handler: logging.Handler, loggers: Iterable[str] = CONTROLLED_LOGGERS) -> None:
    """Remove ``handler`` from the controlled loggers (no error when absent)."""
    for name in loggers:
        logging.getLogger(name).removeHandler(handler)


def format_time(created: float) -> str:
    """Format a record's creation time as ``HH:MM:SS.mmm`` (local time)."""
    seconds = time.strftime("%H:%M:%S", time.localtime(created))
    return f"{seconds}.{int((created % 1) * 1000):03d}"
