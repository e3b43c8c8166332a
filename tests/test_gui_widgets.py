"""Unit tests of the GUI's parts: logging bridge, log pane, progress, display, preview,
input list, settings and launch helpers (no build needed)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.wcs import WCS
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QThread, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from zemosaic_gui import display
from zemosaic_gui.app import build_parser, has_display
from zemosaic_gui.input_panel import InputPanel, format_size
from zemosaic_gui.log_handler import QtLogHandler, apply_log_level, attach_handler, detach_handler
from zemosaic_gui.log_panel import LogPane, LogPanel
from zemosaic_gui.main_window import output_kind
from zemosaic_gui.preview import PreviewPanel, describe_pixel, format_dec, format_ra
from zemosaic_gui.progress import ProgressTracker, format_duration
from zemosaic_gui.qtcompat import binding_problem
from zemosaic_gui.settings_panel import SettingsPanel


def image_colours(qimage) -> int:
    """Number of distinct RGB colours of a QImage."""
    from PySide6.QtGui import QImage

    img = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=img.sizeInBytes())
    arr = arr.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4].reshape(-1, 4)
    rgb = arr[:, 0].astype(np.uint32) << 16 | arr[:, 1].astype(np.uint32) << 8 | arr[:, 2]
    return int(np.unique(rgb).size)


def simple_wcs(h: int, w: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [83.82, -5.39]
    wcs.wcs.crpix = [w / 2 + 0.5, h / 2 + 0.5]
    wcs.wcs.cdelt = [-1e-3, 1e-3]
    return wcs


def synthetic_result(h: int = 120, w: int = 160, seed: int = 1) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 100 + 20 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * (w / 5) ** 2))
    image = np.stack([base * f for f in (1.0, 0.8, 0.6)]) + rng.normal(0, 2, (3, h, w))
    image = image.astype(np.float32)
    image[:, :10, :10] = np.nan  # an uncovered corner (bottom-left in FITS orientation)
    coverage = np.ones((3, h, w), np.float32)
    coverage[:, :, w // 2 :] = 2.0
    coverage[:, :10, :10] = 0.0
    return SimpleNamespace(image=image, coverage=coverage, wcs=simple_wcs(h, w))


# ---- Qt binding ----------------------------------------------------------------------


def test_qt_binding_is_sound():
    """PySide6 6.12.0 crashes Python 3.11 after a few hundred signals: refuse it loudly."""
    assert binding_problem() is None


# ---- logging bridge ------------------------------------------------------------------


def test_handler_delivers_worker_thread_records_on_gui_thread(qtbot, qapp):
    handler = QtLogHandler(logging.DEBUG)
    received: list[tuple[str, bool]] = []

    def on_record(levelno, name, message, created):
        received.append((message, QThread.currentThread() == qapp.thread()))

    handler.record_logged.connect(on_record)
    attach_handler(handler)
    apply_log_level("DEBUG", [handler])
    try:
        worker = threading.Thread(
            target=lambda: logging.getLogger("zemosaic_core.fake").debug("from the worker %d", 7)
        )
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: bool(received), timeout=2000)
    finally:
        detach_handler(handler)
    assert received == [("from the worker 7", True)]


def test_handler_formats_exceptions_and_short_names(qtbot):
    handler = QtLogHandler(logging.DEBUG)
    got = []
    handler.record_logged.connect(lambda lv, name, msg, t: got.append((lv, name, msg)))
    logger = logging.getLogger("zemosaic_core.engine.passes")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    qtbot.waitUntil(lambda: bool(got), timeout=2000)
    level, name, message = got[0]
    assert level == logging.ERROR
    assert name == "passes"
    assert message.startswith("failed") and "ValueError: bad value" in message


def test_dropdown_sets_logger_and_handler_levels(gui_window, qtbot):
    window = gui_window()
    combo = window.findChild(object, "logLevelCombo")
    pane = window.findChild(LogPane, "logPane")
    combo.setCurrentText("DEBUG")
    assert logging.getLogger("zemosaic_core").level == logging.DEBUG
    assert logging.getLogger("zemosaic_gui").level == logging.DEBUG
    assert window.log_handler.level == logging.DEBUG
    logging.getLogger("zemosaic_core.unit").debug("visible debug line")
    qtbot.waitUntil(lambda: "visible debug line" in pane.text(), timeout=2000)

    combo.setCurrentText("WARNING")
    assert logging.getLogger("zemosaic_core").level == logging.WARNING
    assert window.log_handler.level == logging.WARNING
    logging.getLogger("zemosaic_core.unit").info("hidden info line")
    logging.getLogger("zemosaic_core.unit").warning("shown warning line")
    qtbot.waitUntil(lambda: "shown warning line" in pane.text(), timeout=2000)
    assert "hidden info line" not in pane.text()
    assert window.settings.value("log/level") == "WARNING"


def test_log_pane_is_bounded_and_follows_only_at_bottom(qtbot):
    pane = LogPane(max_lines=50)
    qtbot.addWidget(pane)
    pane.resize(400, 200)
    pane.show()
    for i in range(200):
        pane.append_line(logging.INFO, f"line {i}")
    pane.flush()
    assert pane.document().blockCount() <= 50
    assert pane.text().splitlines()[-1] == "line 199"
    bar = pane.verticalScrollBar()
    assert bar.value() == bar.maximum()  # followed the new lines

    bar.setValue(bar.maximum() // 2)
    held = bar.value()
    for i in range(5):
        pane.append_line(logging.INFO, f"more {i}")
    pane.flush()
    assert bar.value() <= held  # not dragged to the bottom while reading
    assert bar.value() != bar.maximum()


def test_log_panel_colours_counts_copy_and_clear(qtbot):
    panel = LogPanel()
    qtbot.addWidget(panel)
    panel.add_record(logging.WARNING, "core", "watch out", 0.0)
    panel.add_record(logging.ERROR, "core", "it broke\nsecond line", 0.0)
    panel.pane.flush()
    text = panel.pane.text()
    assert "watch out" in text and "second line" in text
    assert panel.warning_label.text().endswith("1") and panel.error_label.text().endswith("1")
    colours = set()
    block = panel.pane.document().begin()
    while block.isValid():
        it = block.begin()
        if not it.atEnd():
            colours.add(it.fragment().charFormat().foreground().color().name())
        block = block.next()
    assert len(colours) == 2  # warning and error have their own colours
    panel.copy_to_clipboard()
    assert "it broke" in QApplication.clipboard().text()
    panel.clear()
    assert panel.pane.text() == ""
    assert panel.error_label.text().endswith("0")


# ---- progress ------------------------------------------------------------------------


def test_progress_tracker_shows_one_bar_and_counts_down():
    now = [100.0]
    tracker = ProgressTracker(clock=lambda: now[0])
    tracker.start()
    state = tracker.update("load", 0, 1000)
    assert state.percent == 0 and state.eta_s is None
    now[0] += 2.0
    state = tracker.update("coadd pass 1", 400, 1000)
    assert state.percent == 40
    assert state.eta_s == pytest.approx(3.0)
    assert state.label == "Coadd pass 1"
    assert state.eta_text == "ETA 0:03 · 0:02 elapsed"
    now[0] += 2.5  # no report: the time left counts down, never to 0:00 before the end
    assert tracker.current().eta_s == pytest.approx(1.0)
    state = tracker.update("coadd pass 2", 999, 1000)
    assert state.percent == 99 and state.eta_s >= 1.0
    assert tracker.update("done", 1000, 1000).eta_s == 0.0
    assert format_duration(3725) == "1:02:05"


# ---- display transfer ----------------------------------------------------------------


def test_linked_stretch_keeps_colour_and_puts_background_near_quarter():
    rng = np.random.default_rng(0)
    image = (1000 + rng.normal(0, 10, (3, 200, 300))).astype(np.float32)
    image[:, 50:60, 50:60] = 30000.0  # a bright star sets the white point
    image[1] -= 5.0  # slightly fainter green: a linked stretch keeps it fainter
    params = display.compute_params(image, "linked")
    stretched = display.apply_transfer(image, params)
    medians = [float(np.median(ch)) for ch in stretched]
    assert np.mean(medians) == pytest.approx(display.TARGET_BACKGROUND, abs=0.05)
    assert medians[1] < medians[0] - 0.02 and medians[1] < medians[2] - 0.02
    assert float(stretched.max()) == pytest.approx(1.0)
    for mode in ("linear", "asinh", "auto"):
        out = display.apply_transfer(image, display.compute_params(image, mode))
        assert np.nanmin(out) >= 0 and np.nanmax(out) <= 1


def test_render_rgba_flips_rows_and_marks_uncovered_transparent():
    image = np.zeros((3, 4, 5), np.float32)
    image[:, 0, :] = 10.0  # FITS row 0 = bottom of the display
    image[:, 1, 0] = np.nan
    params = display.StretchParams("linear", (0.0,) * 3, (10.0,) * 3, (0.5,) * 3)
    rgba = display.render_rgba(image, params)
    assert rgba.shape == (4, 5, 4)
    assert (rgba[-1, :, :3] == 255).all()  # bottom display row is FITS row 0
    assert rgba[-2, 0, 3] == 0 and rgba[-2, 1, 3] == 255
    assert display.render_rgba(image, params, step=2).shape == (2, 3, 4)


def test_stretch_params_come_from_a_bounded_sample():
    image = np.ones((3, 3000, 3000), np.float32)
    sample = display.stats_sample(image, max_pixels=10_000)
    assert sample.shape[1] <= 10_000


# ---- preview -------------------------------------------------------------------------


def test_preview_shows_rgb_and_coverage_and_zooms(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(800, 600)
    panel.show()
    result = synthetic_result()
    panel.set_result(result)
    view = panel.findChild(object, "previewView")
    assert view.has_image() and view.image_size() == (160, 120)
    rgb_colours = image_colours(view.current_image())
    assert rgb_colours > 100
    assert view.zoom() > 1.0  # fitted: a 160 px mosaic fills an 800 px view

    panel.set_view_mode("coverage")
    cov_colours = image_colours(view.current_image())
    assert cov_colours <= 3  # 0 (transparent), 1 and 2
    panel.set_view_mode("rgb")
    assert image_colours(view.current_image()) == rgb_colours

    panel.set_stretch_mode("asinh")
    assert panel.stretch_params().mode == "asinh"

    view.actual_size()
    assert view.zoom() == pytest.approx(1.0)
    view.set_zoom(4.0)
    assert view.zoom() == pytest.approx(4.0)
    view.fit()
    assert view.zoom() > 1.0


def test_preview_cursor_readout_uses_fits_orientation_and_wcs(qtbot):
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 500)
    panel.show()
    result = synthetic_result()
    panel.set_result(result)
    view = panel.view
    # Scene y grows downwards; FITS y upwards: scene (5.5, 119.5) is image pixel (5, 0).
    assert view.image_pixel_at(QPointF(5.5, 119.5)) == (5, 0)
    assert view.image_pixel_at(QPointF(5.5, 0.5)) == (5, 119)
    assert view.image_pixel_at(QPointF(-1, 5)) == (-1, -1)
    texts = []
    panel.hovered_text.connect(texts.append)
    view.hovered.emit(80, 60)
    assert "RA 05h35m" in texts[-1] and "Dec -05°" in texts[-1]
    assert "R " in texts[-1] and "cov 2" in texts[-1]
    assert describe_pixel(result, 0, 0).count("—") == 3  # uncovered: no values
    assert format_ra(83.82) == "05h35m16.8s"
    assert format_dec(-5.39) == "-05°23′24″"


def test_preview_of_a_large_mosaic_is_instant_then_refined(qtbot, monkeypatch):
    import zemosaic_gui.preview as preview

    monkeypatch.setattr(preview, "QUICK_MAX_SIDE", 200)
    monkeypatch.setattr(preview, "FULL_MAX_SIDE", 1000)
    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_result(synthetic_result(h=300, w=900))
    assert panel.view.display_step() == 5  # quick, strided copy shown at once
    qtbot.waitUntil(lambda: panel.view.display_step() == 1, timeout=5000)
    assert panel.view.current_image().width() == 900
    assert panel.view.image_size() == (900, 300)


def test_preview_wheel_zoom(qtbot):
    from PySide6.QtCore import QPointF as P
    from PySide6.QtGui import QWheelEvent

    panel = PreviewPanel()
    qtbot.addWidget(panel)
    panel.resize(600, 500)
    panel.show()
    panel.set_result(synthetic_result())
    view = panel.view
    before = view.zoom()
    centre = P(view.viewport().rect().center())
    event = QWheelEvent(
        centre,
        view.viewport().mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    view.wheelEvent(event)
    assert view.zoom() == pytest.approx(before * 1.25)


# ---- input list ----------------------------------------------------------------------


def test_input_list_marks_bad_files_with_reason(qtbot, tmp_path, gui_demo_tiles):
    import shutil

    folder = tmp_path / "tiles"
    folder.mkdir()
    for tile in gui_demo_tiles[:2]:
        shutil.copy(tile, folder)
    (folder / "bad.fits").write_text("this is not a FITS file\n")
    (folder / "notes.txt").write_text("ignored: not a FITS name\n")
    panel = InputPanel()
    qtbot.addWidget(panel)
    added = panel.add_inputs([folder])
    assert sorted(p.name for p in added) == [
        "bad.fits",
        *sorted(t.name for t in gui_demo_tiles[:2]),
    ]
    qtbot.waitUntil(lambda: not panel.is_checking(), timeout=5000)
    status, text = panel.status(folder / "bad.fits")
    assert status == "skipped"
    assert text.startswith("skipped: ") and len(text) > len("skipped: ") + 3
    assert panel.status(folder / gui_demo_tiles[0].name) == ("ok", "ok")
    counts = panel.counts()
    assert (counts["ok"], counts["skipped"]) == (2, 1)
    assert counts["bytes"] == sum(p.stat().st_size for p in folder.glob("*.fits"))
    summary = panel.summary_label.text()
    assert "3 files" in summary and "2 ok" in summary and "1 skipped" in summary
    assert format_size(counts["bytes"]) in summary
    assert [p.name for p in panel.usable_paths()] == sorted(t.name for t in gui_demo_tiles[:2])
    assert panel.add_inputs([folder]) == []  # listed once
    tree = panel.findChild(object, "inputList")
    assert tree.topLevelItemCount() == 3


def test_input_list_accepts_dropped_files(qtbot, gui_demo_tiles):
    panel = InputPanel()
    qtbot.addWidget(panel)
    panel.show()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in gui_demo_tiles[:3]])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    panel.list.dropEvent(event)
    assert [p.name for p in panel.paths()] == [p.name for p in gui_demo_tiles[:3]]
    panel.list.selectAll()
    panel.remove_selected()
    assert panel.paths() == []


def test_input_rows_follow_the_model(qtbot, gui_demo_tiles):
    """The panel is a view: changes made on the model show in the rows and summary."""
    panel = InputPanel()
    qtbot.addWidget(panel)
    panel.add_inputs(gui_demo_tiles[:2])
    qtbot.waitUntil(lambda: not panel.is_checking(), timeout=5000)
    first, second = gui_demo_tiles[:2]
    panel.model.set_status(first, "pending", "solving…", "Plate solving…")
    tree = panel.findChild(object, "inputList")
    row = tree.topLevelItem(0)
    assert row.text(1) == "solving…" and row.toolTip(1) == "Plate solving…"
    panel.model.mark_skipped(second, "isolated: overlaps no other tile")
    assert tree.topLevelItem(1).text(1) == "skipped: isolated: overlaps no other tile"
    assert "1 skipped" in panel.summary_label.text()
    assert panel.detail_label.text().endswith("isolated: overlaps no other tile")
    panel.model.remove([first])
    assert tree.topLevelItemCount() == 1 and panel.paths() == [second]
    panel.clear()
    assert tree.topLevelItemCount() == 0 and panel.summary_label.text() == "No input yet"


def test_settings_widgets_follow_the_model(qtbot):
    panel = SettingsPanel(detect_gpu=lambda: SimpleNamespace(available=False, description=""))
    qtbot.addWidget(panel)
    panel.show()
    # Every setting of the model has its widget (a setting added to the model shows).
    assert sorted(panel._bound) == sorted(panel.model.names())
    panel.model.set_value("combine", "kappa-sigma")
    panel.model.set_value("kappa", 2.5)
    panel.model.set_value("two_pass", False)
    assert panel.combine_combo.currentData() == "kappa-sigma"
    assert panel.kappa_spin.value() == 2.5 and panel.kappa_row.isVisibleTo(panel)
    assert not panel.two_pass_check.isChecked() and not panel.sigma_spin.isEnabled()
    panel.model.reset()
    assert panel.combine_combo.currentData() == "mean" and not panel.kappa_row.isVisibleTo(panel)
    # A value the widget cannot show exactly: the model takes what the widget shows.
    panel.model.set_value("gain_clip_low", 0.8549)
    assert panel.model.value("gain_clip_low") == panel.clip_low_spin.value() == 0.85


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(2048) == "2.0 KB"
    assert format_size(5 * 1024**3) == "5.0 GB"


# ---- settings ------------------------------------------------------------------------


def test_settings_make_a_config_and_persist(qtbot, gui_settings, tmp_path):
    info = SimpleNamespace(available=False, description="CuPy is not installed")
    panel = SettingsPanel(detect_gpu=lambda: info)
    qtbot.addWidget(panel)
    panel.start_detection()
    qtbot.waitUntil(lambda: panel.gpu_available is not None, timeout=3000)
    assert panel.device_label.text() == "No GPU — CuPy is not installed"
    backend = panel.findChild(object, "backendCombo")
    assert [backend.itemText(i) for i in range(backend.count())] == ["Auto", "CPU", "GPU"]

    panel.set_backend("cpu")
    panel.combine_combo.setCurrentIndex(panel.combine_combo.findData("kappa-sigma"))
    panel.kappa_spin.setValue(2.5)
    panel.match_combo.setCurrentIndex(panel.match_combo.findData("offset"))
    panel.batch_spin.setValue(4)
    panel.two_pass_check.setChecked(False)
    panel.sigma_spin.setValue(30)
    panel.clip_low_spin.setValue(0.9)
    panel.clip_high_spin.setValue(1.1)
    panel.keep_isolated_check.setChecked(True)
    panel.max_size_spin.setValue(20000)
    panel.scratch_edit.setText(str(tmp_path))
    config = panel.to_config()
    assert config.output is None
    assert config.backend == "cpu" and config.match == "offset" and config.batch_size == 4
    assert config.combine.method == "kappa-sigma" and config.combine.kappa == 2.5
    assert not config.two_pass.enabled
    assert config.two_pass.sigma == 30 and config.two_pass.gain_clip == (0.9, 1.1)
    assert config.max_size == 20000 and config.scratch == tmp_path and config.keep_isolated
    assert not panel.sigma_spin.isEnabled()  # follows the two-pass toggle

    panel.save_settings(gui_settings)
    gui_settings.sync()
    other = SettingsPanel(detect_gpu=lambda: info)
    qtbot.addWidget(other)
    other.load_settings(QSettings(gui_settings.fileName(), QSettings.Format.IniFormat))
    assert other.to_config() == config


def test_settings_show_the_detected_gpu(qtbot):
    info = SimpleNamespace(available=True, description="NVIDIA H100 80GB HBM3")
    panel = SettingsPanel(detect_gpu=lambda: info)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.device_detected, timeout=3000) as blocker:
        panel.start_detection()
    assert blocker.args == [True, "NVIDIA H100 80GB HBM3"]
    assert panel.device_label.text() == "GPU: NVIDIA H100 80GB HBM3"


def test_advanced_section_collapses(qtbot):
    panel = SettingsPanel(detect_gpu=lambda: SimpleNamespace(available=False, description=""))
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.advanced_box.isVisible()
    panel.advanced_toggle.click()
    assert panel.advanced_box.isVisible() and panel.two_pass_check.isVisible()
    panel.advanced_toggle.click()
    assert not panel.advanced_box.isVisible()


# ---- launch helpers ------------------------------------------------------------------


def test_output_kind_by_extension_then_filter():
    assert output_kind("m.fits") == "fits"
    assert output_kind("m.TIF") == "tiff"
    assert output_kind("m.png") == "png"
    assert output_kind("m", "16-bit linear TIFF (*.tif *.tiff)") == "tiff"
    with pytest.raises(ValueError):
        output_kind("m.jpg")


def test_has_display_rules():
    assert not has_display({}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert has_display({}, "win32") and has_display({}, "darwin")


def test_parser_accepts_the_cli_forms():
    args = build_parser().parse_args(["--demo", "tiles_dir"])
    assert args.demo == "tiles_dir" and args.inputs == []
    args = build_parser().parse_args(["a.fits", "folder", "--demo"])
    assert args.inputs == ["a.fits", "folder"] and Path(args.demo).name == "demo_tiles"
