"""End-to-end tests of the window: real builds of small demo tiles through the GUI."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QComboBox, QProgressBar, QPushButton

from zemosaic_core import build_mosaic
from zemosaic_core.errors import ZeMosaicError

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BUILD_TIMEOUT_MS = 60_000
TWO_PASS_LINE = "Two-pass reprojection backend: gpu_all="


class GatedBuild:
    """``build_mosaic`` that stops at its first progress report until released.

    It lets a test act at a known point *inside* a running build (switch the log level,
    press Cancel) while the worker thread waits.
    """

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.finished_at: float | None = None

    def __call__(self, inputs, config, *, progress=None, cancel=None):
        def gated_progress(phase, done, total):
            if not self.reached.is_set():
                self.reached.set()
                self.release.wait(30)
            if progress is not None:
                progress(phase, done, total)

        try:
            return build_mosaic(inputs, config, progress=gated_progress, cancel=cancel)
        finally:
            self.finished_at = time.monotonic()


def widgets(window):
    return (
        window.findChild(QPushButton, "buildButton"),
        window.findChild(QPushButton, "cancelButton"),
        window.findChild(QComboBox, "logLevelCombo"),
        window.findChild(QProgressBar, "progressBar"),
    )


def pane_text(window) -> str:
    return window.log_panel.pane.text()


def distinct_colours(qimage) -> int:
    from PySide6.QtGui import QImage

    img = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.sizeInBytes())
    arr = arr.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4].reshape(-1, 4)
    rgb = arr[:, 0].astype(np.uint32) << 16 | arr[:, 1].astype(np.uint32) << 8 | arr[:, 2]
    return int(np.unique(rgb).size)


def prepare(window, tiles, level="INFO"):
    window.settings_panel.set_backend("cpu")
    window.findChild(QComboBox, "logLevelCombo").setCurrentText(level)
    window.add_inputs(tiles)


def test_build_demo_by_clicking(gui_window, qtbot, gui_demo_tiles, tmp_path):
    window = gui_window()
    build, cancel, _, progress = widgets(window)
    prepare(window, gui_demo_tiles, "INFO")
    assert build.isEnabled() and not cancel.isEnabled()

    ticks: list[float] = []
    busy_ticks: list[float] = []  # ticks while the build runs

    def tick():
        ticks.append(time.monotonic())
        if window.is_building():
            busy_ticks.append(ticks[-1])

    timer = QTimer()
    timer.setInterval(100)
    timer.timeout.connect(tick)
    phases: list[str] = []
    window.runner.progress.connect(lambda phase, done, total: phases.append(phase))
    timer.start()
    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS) as finished:
        qtbot.mouseClick(build, Qt.MouseButton.LeftButton)
        assert window.is_building()
        assert not build.isEnabled() and cancel.isEnabled()
        assert window.settings_panel.backend_combo.isEnabled() is False
    timer.stop()
    assert finished.args == ["ok"]

    # The window kept running its event loop during the build: the 100 ms timer ticked
    # while the worker built, and never paused for a second.
    assert len(busy_ticks) >= 3
    gaps = np.diff(ticks)
    assert gaps.max() < 1.0, f"event loop blocked for {gaps.max():.2f} s"
    assert "load" in phases and any("coadd" in p for p in phases)

    # Controls back, progress complete, preview shows a colourful mosaic.
    assert build.isEnabled() and not cancel.isEnabled()
    assert progress.value() == 100
    view = window.findChild(object, "previewView")
    assert view.has_image()
    assert distinct_colours(view.current_image()) > 1000
    result = window.result
    assert result.image.shape[0] == 3 and result.backend == "cpu"
    assert view.image_size() == (result.image.shape[2], result.image.shape[1])

    text = pane_text(window)
    assert TWO_PASS_LINE in text
    assert "cov_stats" not in text  # INFO hides the per-channel DEBUG lines
    assert "Mosaic ready:" in text and "backend=cpu" in text
    assert window.backend_badge.text().startswith("CPU")

    # Nothing was written by the build itself.
    assert result.outputs == {}

    # Screenshot for humans (tests/artifacts is git-ignored).
    window.preview_panel.view.fit()
    qtbot.wait(50)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "gui_main_window.png"
    assert window.grab().save(str(shot))
    assert shot.stat().st_size > 10_000
    window.preview_panel.set_view_mode("coverage")
    assert distinct_colours(view.current_image()) < 40  # a few coverage levels
    assert not window.preview_panel.stretch_combo.isEnabled()
    qtbot.wait(50)
    window.grab().save(str(ARTIFACTS / "gui_coverage_view.png"))
    window.preview_panel.set_view_mode("rgb")

    # Save as: FITS (science), 16-bit TIFF and stretched PNG, chosen by extension.
    for name in ("mosaic.fits", "mosaic.tif", "mosaic.png"):
        with qtbot.waitSignal(window.saved, timeout=20_000) as saved:
            window.save_result(tmp_path / name)
        assert Path(saved.args[0]).is_file()
    with fits.open(tmp_path / "mosaic.fits") as hdul:
        assert hdul[0].data.shape == result.image.shape
        assert hdul[0].header["BACKEND"] == "cpu"
    assert (tmp_path / "mosaic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert window.settings.value("paths/last_save_dir") == str(tmp_path)


def test_debug_switched_mid_build_shows_cov_stats(gui_window, qtbot, gui_demo_tiles):
    gate = GatedBuild()
    window = gui_window(build_fn=gate)
    build, _, combo, _ = widgets(window)
    prepare(window, gui_demo_tiles, "INFO")
    qtbot.mouseClick(build, Qt.MouseButton.LeftButton)
    assert gate.reached.wait(20), "the build never reported progress"
    qtbot.wait(100)
    assert window.is_building()
    assert "cov_stats" not in pane_text(window)

    combo.setCurrentText("DEBUG")  # while the worker is inside build_mosaic
    assert window.is_building()
    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS) as finished:
        gate.release.set()
    assert finished.args == ["ok"]
    text = pane_text(window)
    cov_lines = [line for line in text.splitlines() if "cov_stats(" in line]
    # 3 channels in pass 1 and 3 in the two-pass, from the core's loggers.
    assert sum("[Coadd] pass=1 channel=" in line for line in cov_lines) == 3
    assert sum("[TwoPass] channel=" in line for line in cov_lines) == 3
    assert all("DEBUG" in line for line in cov_lines)
    assert TWO_PASS_LINE in text


def test_warning_level_hides_info_lines(gui_window, qtbot, gui_demo_tiles):
    window = gui_window()
    build, _, _, _ = widgets(window)
    prepare(window, gui_demo_tiles, "WARNING")
    window.log_panel.clear()
    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS) as finished:
        qtbot.mouseClick(build, Qt.MouseButton.LeftButton)
    assert finished.args == ["ok"]
    text = pane_text(window)
    assert TWO_PASS_LINE not in text
    assert " INFO " not in text and "cov_stats" not in text
    assert window.preview_panel.view.has_image()


def test_cancel_mid_build_stops_quickly_and_writes_nothing(
    gui_window, qtbot, gui_demo_tiles, tmp_path
):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for tile in gui_demo_tiles:
        shutil.copy(tile, folder)

    def written():  # every file but the test's QSettings
        return sorted(str(p) for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".ini")

    before = written()
    gate = GatedBuild()
    window = gui_window(build_fn=gate)
    window.last_save_dir = str(tmp_path)
    build, cancel, _, progress = widgets(window)
    prepare(window, [folder])
    qtbot.mouseClick(build, Qt.MouseButton.LeftButton)
    assert gate.reached.wait(20)
    qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    assert not cancel.isEnabled()  # pressed once: "Cancelling…"
    assert window.phase_label.text() == "Cancelling…"
    with qtbot.waitSignal(window.build_finished, timeout=10_000) as finished:
        released = time.monotonic()
        gate.release.set()
    stopped = time.monotonic() - released
    assert finished.args == ["cancelled"]
    assert stopped < 2.0, f"cancel took {stopped:.2f} s"
    assert gate.finished_at is not None and gate.finished_at - released < 2.0
    assert not window.is_building()
    assert build.isEnabled() and not cancel.isEnabled()
    assert window.settings_panel.backend_combo.isEnabled()
    assert progress.format() == "Cancelled"
    assert window.result is None and not window.preview_panel.view.has_image()
    assert "Build cancelled; nothing was written." in pane_text(window)
    assert written() == before


def test_cancel_a_free_running_build(gui_window, qtbot, gui_demo_tiles):
    window = gui_window()
    build, cancel, _, _ = widgets(window)
    prepare(window, gui_demo_tiles)
    with qtbot.waitSignal(window.runner.progress, timeout=20_000):
        qtbot.mouseClick(build, Qt.MouseButton.LeftButton)
    pressed = time.monotonic()
    with qtbot.waitSignal(window.build_finished, timeout=10_000) as finished:
        qtbot.keyClick(window, Qt.Key.Key_Escape)  # the Esc shortcut
    assert time.monotonic() - pressed < 2.0
    assert finished.args[0] in ("cancelled", "ok")  # a 1 s build may just finish first
    assert build.isEnabled() and not cancel.isEnabled()


def test_folder_with_a_bad_file_lists_it_and_still_builds(
    gui_window, qtbot, gui_demo_tiles, tmp_path
):
    folder = tmp_path / "night1"
    folder.mkdir()
    for tile in gui_demo_tiles:
        shutil.copy(tile, folder)
    (folder / "bad.fits").write_text("SIMPLE  = this is a text file, not FITS\n")
    window = gui_window()
    prepare(window, [folder])
    panel = window.input_panel
    qtbot.waitUntil(lambda: not panel.is_checking(), timeout=10_000)
    status, text = panel.status(folder / "bad.fits")
    assert status == "skipped" and text.startswith("skipped: ")
    tree = window.findChild(object, "inputList")
    rows = {
        tree.topLevelItem(i).text(0): tree.topLevelItem(i).text(1)
        for i in range(tree.topLevelItemCount())
    }
    assert rows["bad.fits"] == text
    assert "1 skipped" in panel.summary_label.text()
    assert panel.detail_label.isVisible()
    assert panel.detail_label.text().startswith("⚠ bad.fits skipped: ")
    window.settings_panel.set_advanced_visible(True)
    qtbot.wait(20)
    ARTIFACTS.mkdir(exist_ok=True)
    window.grab().save(str(ARTIFACTS / "gui_bad_file_listed.png"))
    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS) as finished:
        qtbot.mouseClick(window.findChild(QPushButton, "buildButton"), Qt.MouseButton.LeftButton)
    assert finished.args == ["ok"]
    assert len(window.result.tile_paths) == len(gui_demo_tiles)


def test_build_failure_is_logged_and_shown_without_blocking(gui_window, qtbot, gui_demo_tiles):
    def failing_build(inputs, config, *, progress=None, cancel=None):
        progress("load", 0, 1)
        raise ZeMosaicError("the sky fell")

    window = gui_window(build_fn=failing_build)
    prepare(window, gui_demo_tiles[:2])
    with qtbot.waitSignal(window.build_finished, timeout=10_000) as finished:
        qtbot.mouseClick(window.findChild(QPushButton, "buildButton"), Qt.MouseButton.LeftButton)
    assert finished.args == ["failed"]
    assert window.error_box is not None and window.error_box.isVisible()
    assert not window.error_box.isModal()
    assert "the sky fell" in window.error_box.text()
    assert "ERROR" in pane_text(window) and "the sky fell" in pane_text(window)
    assert window.findChild(QPushButton, "buildButton").isEnabled()
    window.error_box.close()


def test_unexpected_exception_reaches_the_user(gui_window, qtbot, gui_demo_tiles):
    def buggy_build(inputs, config, *, progress=None, cancel=None):
        raise RuntimeError("bug in a step")

    window = gui_window(build_fn=buggy_build)
    prepare(window, gui_demo_tiles[:1])
    with qtbot.waitSignal(window.build_finished, timeout=10_000) as finished:
        window.start_build()
    assert finished.args == ["failed"]
    assert "Unexpected error: RuntimeError: bug in a step" in window.error_box.text()
    assert "Traceback" in window.error_box.detailedText()
    window.error_box.close()


def test_settings_and_geometry_persist_between_windows(
    gui_window, qtbot, gui_settings, gui_demo_tiles
):
    first = gui_window()
    first.settings_panel.set_backend("gpu")
    first.findChild(QComboBox, "logLevelCombo").setCurrentText("DEBUG")
    first.preview_panel.set_stretch_mode("asinh")
    first.resize(1234, 777)
    first.add_inputs([gui_demo_tiles[0].parent])
    first.close()

    second = gui_window()
    assert second.findChild(QComboBox, "backendCombo").currentData() == "gpu"
    assert second.findChild(QComboBox, "logLevelCombo").currentText() == "DEBUG"
    assert second.log_handler.level == 10
    assert second.preview_panel.stretch_mode() == "asinh"
    assert second.input_panel.last_folder == str(gui_demo_tiles[0].parent)
    assert Path(gui_settings.fileName()).is_file()


def test_shortcuts_are_bound(gui_window):
    window = gui_window()
    keys = {a.shortcut().toString() for a in window.actions()}
    assert {"Ctrl+O", "Ctrl+B", "Esc", "Ctrl+S", "F", "Ctrl+0"} <= keys


@pytest.mark.parametrize("level", ["ERROR"])
def test_error_level_keeps_warnings_out(gui_window, qtbot, level):
    import logging

    window = gui_window()
    window.findChild(QComboBox, "logLevelCombo").setCurrentText(level)
    logging.getLogger("zemosaic_core.x").warning("a warning")
    logging.getLogger("zemosaic_core.x").error("an error")
    qtbot.waitUntil(lambda: "an error" in pane_text(window), timeout=2000)
    assert "a warning" not in pane_text(window)


def test_closing_during_a_build_cancels_and_waits(gui_window, qtbot, gui_demo_tiles):
    gate = GatedBuild()
    window = gui_window(build_fn=gate)
    prepare(window, gui_demo_tiles)
    window.start_build()
    assert gate.reached.wait(20)
    threading.Timer(0.3, gate.release.set).start()
    outcomes = []
    window.build_finished.connect(outcomes.append)
    started = time.monotonic()
    window.close()
    assert time.monotonic() - started < 5.0
    assert not window.is_building()
    assert outcomes == ["cancelled"]  # stopped by the close, not a failure
    assert gate.finished_at is not None
    # The handler is detached: later records do not reach the closed window.
    import logging

    assert window.log_handler not in logging.getLogger("zemosaic_core").handlers


def test_files_dropped_on_the_window_are_added(gui_window, gui_demo_tiles):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    window = gui_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(gui_demo_tiles[0].parent))])
    event = QDropEvent(
        QPointF(700, 300),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    assert [p.name for p in window.input_panel.paths()] == [p.name for p in gui_demo_tiles]
    assert window.findChild(QPushButton, "buildButton").isEnabled()
