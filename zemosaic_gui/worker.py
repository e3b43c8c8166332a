"""Running the core pipeline off the GUI thread.

`BuildWorker` is a ``QObject`` moved to a ``QThread``; its `run` slot calls
``zemosaic_core.build_mosaic`` with a progress callback (turned into a signal) and a
``CancelToken``. `BuildRunner` owns the thread's life cycle so the window only says
`start`, `cancel` and listens to signals, all delivered on the GUI thread; whether a
build was asked to stop is the build model's to know (`zemosaic_gui.model.BuildModel`).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from .core_access import CORE_LOCK

log = logging.getLogger(__name__)

#: ``build_mosaic``-compatible callable: ``fn(inputs, config, *, progress, cancel)``.
BuildFunction = Callable[..., Any]

#: Minimum seconds between two progress signals of the same phase.
PROGRESS_MIN_INTERVAL_S = 0.05


def _accepts(function: Any, name: str) -> bool:
    """Whether ``function`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def default_build_function() -> BuildFunction:
    """Return ``zemosaic_core.build_mosaic`` (imported when a build starts)."""
    from zemosaic_core import build_mosaic

    return build_mosaic


class BuildWorker(QObject):
    """Runs one build; lives in a worker thread.

    Parameters
    ----------
    inputs : sequence of Path
        Files or folders to build from.
    config : zemosaic_core.BuildConfig
        The build settings.
    build_fn : callable, optional
        ``build_mosaic`` or a compatible callable (tests wrap it).

    Signals
    -------
    progress(str, int, int)
        Phase, units done, units in the phase (throttled).
    succeeded(object)
        The ``BuildResult``.
    failed(str, str)
        A one-line message and the details (traceback for unexpected errors).
    cancelled()
        The build stopped at a cancellation check; nothing was written.
    done()
        Emitted last, whatever the outcome.
    """

    progress = Signal(str, int, int)
    solve_status = Signal(str, str, str)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    done = Signal()

    def __init__(
        self,
        inputs: Sequence[Path],
        config: Any,
        build_fn: BuildFunction | None = None,
    ) -> None:
        super().__init__()
        from zemosaic_core import CancelToken

        self.inputs = [Path(p) for p in inputs]
        self.config = config
        self.build_fn = build_fn
        self.token = CancelToken()
        self._last_phase = ""
        self._last_emit = 0.0

    def _on_progress(self, phase: str, done: int, total: int) -> None:
        """Core progress callback (worker thread): forward as a throttled signal."""
        now = time.monotonic()
        if (
            phase != self._last_phase
            or done >= total
            or done == 0
            or now - self._last_emit >= PROGRESS_MIN_INTERVAL_S
        ):
            self._last_phase = phase
            self._last_emit = now
            self.progress.emit(str(phase), int(done), int(total))

    @Slot()
    def run(self) -> None:
        """Build the mosaic and report the outcome through the signals."""
        from zemosaic_core.errors import BuildCancelled, NoUsableInputError, ZeMosaicError

        try:
            build = self.build_fn or default_build_function()
            extra = {}
            if _accepts(build, "on_solve_status"):  # per-file plate-solving status
                extra["on_solve_status"] = self._on_solve_status
            with CORE_LOCK:
                result = build(
                    self.inputs, self.config, progress=self._on_progress, cancel=self.token, **extra
                )
        except BuildCancelled:
            self.cancelled.emit()
        except NoUsableInputError as exc:
            self.failed.emit(f"No usable input: {exc}", "")
        except ZeMosaicError as exc:
            self.failed.emit(str(exc), "")
        except MemoryError:
            self.failed.emit(
                "Out of memory: lower the batch size or build fewer tiles.",
                traceback.format_exc(),
            )
        except Exception as exc:  # an unexpected bug must reach the user, not kill the thread
            log.debug("Unexpected error during the build", exc_info=True)
            self.failed.emit(
                f"Unexpected error: {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            )
        else:
            self.succeeded.emit(result)
        finally:
            self.done.emit()

    def cancel(self) -> None:
        """Ask the build to stop at its next check (thread-safe)."""
        self.token.cancel()

    def _on_solve_status(self, path: Path, state: str, detail: str) -> None:
        """Core solve callback (worker thread): forward as a signal."""
        self.solve_status.emit(str(path), str(state), str(detail))


class BuildRunner(QObject):
    """Starts builds on a `QThread` and relays their signals to the GUI thread.

    Parameters
    ----------
    build_fn : callable, optional
        Passed to each `BuildWorker` (default ``zemosaic_core.build_mosaic``).
    parent : QObject, optional

    Signals
    -------
    started()
    progress(str, int, int)
    succeeded(object)
    failed(str, str)
    cancelled()
    finished()
        The thread has ended; a new build may start.
    """

    started = Signal()
    progress = Signal(str, int, int)
    solve_status = Signal(str, str, str)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(
        self, build_fn: BuildFunction | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.build_fn = build_fn
        self._thread: QThread | None = None
        self._worker: BuildWorker | None = None

    def is_running(self) -> bool:
        """Whether a build thread is alive."""
        return self._thread is not None

    def start(self, inputs: Sequence[Path], config: Any) -> None:
        """Start a build in a new thread.

        Parameters
        ----------
        inputs : sequence of Path
        config : zemosaic_core.BuildConfig

        Raises
        ------
        RuntimeError
            When a build is already running.
        """
        if self._thread is not None:
            raise RuntimeError("a build is already running")
        thread = QThread()
        thread.setObjectName("zemosaic-build")
        worker = BuildWorker(inputs, config, self.build_fn)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.progress.connect(self.progress)
        worker.solve_status.connect(self.solve_status)
        worker.succeeded.connect(self.succeeded)
        worker.failed.connect(self.failed)
        worker.cancelled.connect(self.cancelled)
        # Direct: quit() is thread-safe, and a GUI thread blocked in wait() still ends.
        worker.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread = thread
        self._worker = worker
        thread.start()
        self.started.emit()

    def cancel(self) -> None:
        """Ask the running build to stop (returns at once)."""
        if self._worker is not None:
            self._worker.cancel()

    def wait(self, timeout_ms: int = 10000) -> bool:
        """Block until the thread ends (used when the window closes).

        Parameters
        ----------
        timeout_ms : int

        Returns
        -------
        bool
            True when no thread is left running.
        """
        thread = self._thread
        if thread is None:
            return True
        ended = thread.wait(timeout_ms)
        if ended:
            self._on_thread_finished()
        return ended

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, worker = self._thread, self._worker
        if thread is None:
            return
        self._thread = None
        self._worker = None
        if worker is not None:
            worker.deleteLater()
        thread.deleteLater()
        self.finished.emit()
