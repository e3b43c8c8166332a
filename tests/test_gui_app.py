"""Launching the app: ``main()`` with a display (window) and without (headless build)."""

from __future__ import annotations

import shutil

from PySide6.QtWidgets import QApplication

from zemosaic_core.datasets.demo import ensure_demo_tiles
from zemosaic_gui import MainWindow, app


def test_main_opens_the_window_with_the_demo_tiles(
    qtbot, qapp, tmp_path, gui_demo_tiles, gui_settings
):
    demo = tmp_path / "demo_tiles"
    demo.mkdir()
    for tile in gui_demo_tiles:
        shutil.copy(tile, demo)
    out = tmp_path / "demo_output"
    before = set(QApplication.topLevelWidgets())
    status = app.main(["--demo", str(demo), "--output-dir", str(out), "--backend", "cpu"])
    assert status == 0
    windows = [
        w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w not in before
    ]
    assert len(windows) == 1
    window = windows[0]
    qtbot.addWidget(window)
    try:
        assert window.isVisible()
        assert [p.name for p in window.input_panel.paths()] == [p.name for p in gui_demo_tiles]
        assert window.settings_panel.backend() == "cpu"
        assert window.last_save_dir == str(out.resolve()) and out.is_dir()
        assert window.findChild(object, "buildButton").isEnabled()
    finally:
        window.close()
        app._OPEN_WINDOWS.clear()


def test_demo_tiles_are_written_on_first_run_only(tmp_path):
    folder = tmp_path / "demo"
    first = ensure_demo_tiles(folder, tile_size=64)
    assert len(first) == 6 and all(p.is_file() for p in first)
    stamp = [p.stat().st_mtime_ns for p in first]
    again = ensure_demo_tiles(folder, tile_size=64)
    assert again == first and [p.stat().st_mtime_ns for p in again] == stamp


def test_without_a_display_main_builds_headless(monkeypatch, tmp_path, gui_demo_tiles, capsys):
    demo = tmp_path / "demo_tiles"
    demo.mkdir()
    for tile in gui_demo_tiles:
        shutil.copy(tile, demo)
    out = tmp_path / "demo_output"
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(app.sys, "platform", "linux")
    status = app.main(["--demo", str(demo), "--output-dir", str(out), "--backend", "cpu"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "No display found" in printed and "headless" in printed
    for name in ("demo_mosaic.fits", "demo_mosaic.png", "demo_mosaic.tif"):
        assert (out / name).is_file()
        assert str((out / name).resolve()) in printed


def test_headless_with_nothing_to_build_is_a_usage_error(tmp_path, capsys):
    status = app.main(["--headless"])
    assert status == 2
    assert "nothing to build" in capsys.readouterr().err


def test_platform_problem_reports_a_plugin_qt_cannot_load(monkeypatch):
    from zemosaic_gui.qtcompat import platform_problem

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert platform_problem() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "no-such-platform")
    problem = platform_problem()
    assert problem is not None and problem.startswith("Qt cannot open a window")
