"""The one worker abstraction of the GUI (`zemosaic_gui.tasks`): real pool threads."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QObject

from zemosaic_gui.tasks import start_task


def _events(task_kwargs=None):
    events: list[tuple[str, object, bool]] = []
    main = threading.main_thread()

    def record(kind):
        def callback(*args):
            value = args[0] if args else None
            events.append((kind, value, threading.current_thread() is main))

        return callback

    kwargs = {
        "on_yield": record("yield"),
        "on_return": record("return"),
        "on_error": record("error"),
        "on_finish": record("finish"),
    }
    kwargs.update(task_kwargs or {})
    return events, kwargs


def test_a_function_returns_on_the_gui_thread_even_to_a_lambda(qtbot):
    events, callbacks = _events()
    worker_threads = []

    def work(a, b=0):
        worker_threads.append(threading.current_thread())
        return a + b

    task = start_task(work, 2, b=3, **callbacks)
    qtbot.waitUntil(task.is_finished, timeout=5000)
    assert worker_threads and worker_threads[0] is not threading.main_thread()
    assert events == [("return", 5, True), ("finish", None, True)]


def test_a_generator_delivers_each_value_in_order_then_finishes(qtbot):
    events, callbacks = _events()
    task = start_task(lambda n: (i * i for i in range(n)), 4, **callbacks)
    qtbot.waitUntil(task.is_finished, timeout=5000)
    assert [e for e in events if e[0] == "yield"] == [("yield", v, True) for v in (0, 1, 4, 9)]
    assert events[-2:] == [("return", None, True), ("finish", None, True)]


def test_an_exception_arrives_as_errored(qtbot):
    events, callbacks = _events()

    def fail():
        raise OSError("disk full")

    task = start_task(fail, **callbacks)
    qtbot.waitUntil(task.is_finished, timeout=5000)
    kinds = [e[0] for e in events]
    assert kinds == ["error", "finish"]
    assert isinstance(events[0][1], OSError) and str(events[0][1]) == "disk full"


def test_abort_stops_a_generator_and_delivers_only_finished(qtbot):
    events, callbacks = _events()
    first_sent, go_on = threading.Event(), threading.Event()
    produced = []

    def values():
        for i in range(100):
            produced.append(i)
            yield i
            first_sent.set()
            go_on.wait(5)

    task = start_task(values, **callbacks)
    assert first_sent.wait(5)
    task.abort()
    go_on.set()
    qtbot.waitUntil(task.is_finished, timeout=5000)
    assert len(produced) <= 2  # stopped at the next value, not after 100
    assert [e[0] for e in events if e[0] != "yield"] == ["finish"]


@pytest.mark.parametrize("outcome", ["return", "error"])
def test_nothing_reaches_an_owner_that_was_destroyed(qtbot, outcome):
    events, callbacks = _events()
    release = threading.Event()

    def work():
        release.wait(5)
        if outcome == "error":
            raise ValueError("late")
        return "late"

    owner = QObject()
    task = start_task(work, owner=owner, **callbacks)
    with qtbot.waitSignal(owner.destroyed, timeout=2000):
        owner.deleteLater()
    release.set()
    qtbot.waitUntil(task.is_finished, timeout=5000)
    assert events == []
