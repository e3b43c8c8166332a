"""One way to run short jobs off the GUI thread: `start_task`.

Header checks, GPU detection, preview rendering and saves run a plain Python function
in a ``QThreadPool`` thread. A `Task` (a ``QObject`` created in the thread that starts
it, the GUI thread) carries what the function yields, returns or raises back to that
thread: the worker emits private signals whose receiver is the task itself, so Qt
queues them, and the task re-emits its public signals (and calls the callbacks) on its
own thread. A callback may therefore be any callable, a lambda included, and never
runs in the pool thread.

The pipeline itself does not run here: a build is long, cancellable and owns the core
lock, so it keeps its worker object on a ``QThread`` (`zemosaic_gui.worker`).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

__all__ = ["Task", "start_task", "wait_for_tasks"]

log = logging.getLogger(__name__)

#: Tasks started and not yet finished: a task must outlive the caller's reference until
#: its last signal is delivered.
_RUNNING: set[Task] = set()


class Task(QObject):
    """A function running in a pool thread, seen from the thread that started it.

    Signals
    -------
    yielded(object)
        One value the function yielded (when it is a generator function).
    returned(object)
        The function's return value (``None`` for a generator).
    errored(object)
        The exception the function raised.
    finished()
        Emitted last, whatever the outcome (also after `abort`, but not once the
        owner given to `start_task` is destroyed).

    Notes
    -----
    Every signal is emitted on the thread that created the task.
    """

    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    finished = Signal()

    # Emitted in the pool thread; received by the task itself, hence queued.
    _worker_yielded = Signal(object)
    _worker_returned = Signal(object)
    _worker_errored = Signal(object)
    _worker_finished = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._abort = threading.Event()
        self._finished = False
        self._orphaned = False  # the owner is gone: nobody is left to tell
        self._worker_yielded.connect(self._relay_yielded)
        self._worker_returned.connect(self._relay_returned)
        self._worker_errored.connect(self._relay_errored)
        self._worker_finished.connect(self._relay_finished)

    def abort(self) -> None:
        """Deliver nothing more but `finished`; a generator stops at its next value.

        Thread-safe; a running plain function is not interrupted (its result is dropped).
        """
        self._abort.set()

    def is_aborted(self) -> bool:
        """Whether `abort` was called."""
        return self._abort.is_set()

    def is_finished(self) -> bool:
        """Whether `finished` has been delivered."""
        return self._finished

    @Slot(object)
    def _relay_yielded(self, value: Any) -> None:
        if not self.is_aborted():
            self.yielded.emit(value)

    @Slot(object)
    def _relay_returned(self, value: Any) -> None:
        if not self.is_aborted():
            self.returned.emit(value)

    @Slot(object)
    def _relay_errored(self, error: Any) -> None:
        if not self.is_aborted():
            self.errored.emit(error)

    @Slot()
    def _relay_finished(self) -> None:
        self._finished = True
        _RUNNING.discard(self)
        if not self._orphaned:
            self.finished.emit()

    @Slot()
    def _on_owner_destroyed(self) -> None:
        self._orphaned = True
        self.abort()


class _Runnable(QRunnable):
    """Runs the task's function in a pool thread and reports through its signals."""

    def __init__(self, task: Task, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.task, self.fn, self.args, self.kwargs = task, fn, args, kwargs

    def run(self) -> None:
        # Only this frame holds the task from here on: the registry's reference (dropped
        # on the starting thread when `finished` arrives) is normally the last one.
        task, self.task = self.task, None
        try:
            value = self.fn(*self.args, **self.kwargs)
            if inspect.isgenerator(value):
                for item in value:
                    if task.is_aborted():
                        value.close()
                        break
                    task._worker_yielded.emit(item)
                value = None
            task._worker_returned.emit(value)
        except Exception as exc:  # reaches the starting thread as `errored`
            log.debug("Background task %s failed", getattr(self.fn, "__name__", self.fn))
            task._worker_errored.emit(exc)
        finally:
            task._worker_finished.emit()


def start_task(
    fn: Callable[..., Any],
    *args: Any,
    on_yield: Callable[[Any], Any] | None = None,
    on_return: Callable[[Any], Any] | None = None,
    on_error: Callable[[BaseException], Any] | None = None,
    on_finish: Callable[[], Any] | None = None,
    owner: QObject | None = None,
    pool: QThreadPool | None = None,
    **kwargs: Any,
) -> Task:
    """Run ``fn(*args, **kwargs)`` in a pool thread; callbacks run on this thread.

    Parameters
    ----------
    fn : callable
        A function, or a generator function whose values arrive one by one.
    *args, **kwargs
        Its arguments.
    on_yield, on_return, on_error, on_finish : callable, optional
        Connected to the task's `yielded`, `returned`, `errored` and `finished`.
    owner : QObject, optional
        The object the callbacks belong to: once it is destroyed (a closed panel), the
        task is aborted and delivers nothing, not even `finished`.
    pool : QThreadPool, optional
        Default: the global pool.

    Returns
    -------
    Task
    """
    task = Task()
    for signal, callback in (
        (task.yielded, on_yield),
        (task.returned, on_return),
        (task.errored, on_error),
        (task.finished, on_finish),
    ):
        if callback is not None:
            signal.connect(callback)
    if owner is not None:
        owner.destroyed.connect(task._on_owner_destroyed)
    _RUNNING.add(task)
    runnable = _Runnable(task, fn, args, kwargs)
    runnable.setAutoDelete(True)
    (pool or QThreadPool.globalInstance()).start(runnable)
    return task


def wait_for_tasks(timeout_ms: int = 5000, pool: QThreadPool | None = None) -> bool:
    """Block until the pool's threads are idle (used when the window closes).

    Parameters
    ----------
    timeout_ms : int
    pool : QThreadPool, optional
        Default: the global pool.

    Returns
    -------
    bool
        True when every job has ended.
    """
    return bool((pool or QThreadPool.globalInstance()).waitForDone(timeout_ms))
