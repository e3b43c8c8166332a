"""What the user sees (issue 14): real widgets through the main states, with screenshots
under tests/artifacts/ (git-ignored) for a human to look at."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QMessageBox

from zemosaic_core import build_mosaic

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BUILD_TIMEOUT_MS = 90_000


def shoot(window, qtbot, name: str) -> Path:
    qtbot.wait(80)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"ux_{name}.png"
    assert window.grab().save(str(path))
    return path


def rgba_array(qimage: QImage) -> np.ndarray:
    img = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.sizeInBytes())
    rows = arr.reshape(img.height(), img.bytesPerLine())[:, : img.width() * 4]
    return rows.reshape(img.height(), img.width(), 4).copy()  # img's buffer dies with img


class Gate:
    """``build_mosaic`` that waits at its first report in the coadd until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, inputs, config, *, progress=None, cancel=None):
        def gated(phase, done, total):
            if progress is not None:
                progress(phase, done, total)
            if phase.startswith("coadd") and not self.reached.is_set():
                self.reached.set()
                self.release.wait(60)

        return build_mosaic(inputs, config, progress=gated, cancel=cancel)


def test_main_states_with_screenshots(gui_window, qtbot, gui_demo_tiles, tmp_path):
    gate = Gate()
    window = gui_window(build_fn=gate)
    shoot(window, qtbot, "1_start")
    window.settings_panel.set_backend("cpu")
    window.add_inputs(gui_demo_tiles)
    qtbot.waitUntil(lambda: window.build_button.isEnabled(), timeout=20_000)
    window.log_panel.add_record(30, "test", "a warning before the build", 0.0)
    assert window.log_panel.warning_label.text().endswith("1")

    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS) as finished:
        window.start_build()
        qtbot.waitUntil(gate.reached.is_set, timeout=BUILD_TIMEOUT_MS)
        qtbot.waitUntil(lambda: window.progress_bar.value() > 0, timeout=10_000)
        # One bar for the build, the phase named beside it, the counters of this build.
        assert "Coadd pass 1" in window.progress_bar.format()
        assert 0 < window.progress_bar.value() < 100
        assert window.log_panel.warning_label.text().endswith("0")
        shoot(window, qtbot, "2_building")
        gate.release.set()
    assert finished.args == ["ok"]

    # Done: the preview's sky background is neutral grey (demo tiles have a cast).
    panel = window.preview_panel
    qtbot.waitUntil(panel.is_refined, timeout=20_000)
    shown = rgba_array(panel.view.current_image())
    covered = shown[..., 3] == 255
    background = np.median(shown[covered][:, :3], axis=0)
    assert np.ptp(background) <= 3, background
    assert "*" in window.windowTitle() or window.isWindowModified()
    assert window.windowTitle().count("ZeMosaic") <= 1
    summary = window.log_panel.pane.text()
    assert "matching gains" in summary and "two-pass gains" in summary
    shoot(window, qtbot, "3_done_preview")

    # The PNG saved is the screen's image at 1:1 (same stretch, same levels).
    panel.set_levels(0.05, 0.45, 0.95)
    qtbot.waitUntil(lambda: panel.stretch_params().levels == (0.05, 0.45, 0.95), timeout=5000)
    with qtbot.waitSignal(window.saved, timeout=20_000):
        window.save_result(tmp_path / "shown.png")
    qtbot.wait(200)  # the coalesced re-render
    qtbot.waitUntil(panel.is_refined, timeout=20_000)
    shown = rgba_array(panel.view.current_image())
    saved = np.asarray(Image.open(tmp_path / "shown.png"))
    assert panel.view.display_step() == 1 and saved.shape[:2] == shown.shape[:2]
    covered = shown[..., 3] == 255
    np.testing.assert_array_equal(saved[covered], shown[covered][:, :3])
    assert not window.isWindowModified()  # saved

    # Levels: the controls and their live histogram.
    panel.levels_button.setChecked(True)
    counts = panel.stretch_controls.histogram.counts()
    assert counts is not None and counts.shape == (3, 256) and counts.sum() > 0
    before = rgba_array(panel.view.current_image())[..., :3].astype(int)
    panel.stretch_controls.black_slider.setValue(200)
    qtbot.wait(300)
    after = rgba_array(panel.view.current_image())[..., :3].astype(int)
    assert after[covered].mean() < before[covered].mean() - 5
    shoot(window, qtbot, "5_stretch_controls")
    panel.stretch_controls.reset()
    panel.levels_button.setChecked(False)

    panel.set_view_mode("coverage")
    shoot(window, qtbot, "4_coverage_view")
    panel.set_view_mode("rgb")


def test_quit_asks_about_an_unsaved_mosaic(gui_window, qtbot, gui_demo_tiles):
    window = gui_window(confirm_quit=True)
    window.settings_panel.set_backend("cpu")
    window.add_inputs(gui_demo_tiles[:2])
    qtbot.waitUntil(lambda: window.build_button.isEnabled(), timeout=20_000)
    with qtbot.waitSignal(window.build_finished, timeout=BUILD_TIMEOUT_MS):
        window.start_build()
    window.close()  # Ctrl+Q
    box = window.findChild(QMessageBox, "quitBox")
    assert box is not None and window.isVisible()
    qtbot.wait(80)
    assert box.grab().save(str(ARTIFACTS / "ux_6_quit_question.png"))
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert window.isVisible()
    window.close()
    box = window.findChild(QMessageBox, "quitBox")
    box.button(QMessageBox.StandardButton.Discard).click()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


def test_inputs_and_recent_folders_come_back(gui_window, qtbot, gui_demo_tiles, gui_settings):
    folder = Path(gui_demo_tiles[0]).parent
    first = gui_window()
    first.add_inputs([folder])
    first.close()
    second = gui_window()
    qtbot.waitUntil(lambda: len(second.input_panel.paths()) == len(gui_demo_tiles), timeout=5000)
    assert str(folder) in second.recent_folders()
    assert [a.text() for a in second.recent_menu.actions()] == [str(folder)]


def test_about_shows_the_version(gui_window, qtbot):
    from zemosaic_core import __version__

    window = gui_window()
    window.show_about()
    box = window.findChild(QMessageBox, "aboutBox")
    assert __version__ in box.text()
    box.close()


def test_file_dialogs_fit_their_content(qtbot):
    from PySide6.QtWidgets import QFileDialog, QTreeView

    from zemosaic_gui.dialogs import MIN_DIALOG_SIZE, file_dialog

    dialog = file_dialog(
        None, "Add FITS files", str(Path.home()), QFileDialog.FileMode.ExistingFiles
    )
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    qtbot.addWidget(dialog)
    assert dialog.width() >= MIN_DIALOG_SIZE[0] and dialog.height() >= MIN_DIALOG_SIZE[1]
    from zemosaic_gui import dialogs

    dialogs._fit_columns(dialog)
    views = dialog.findChildren(QTreeView)
    assert views
    header = views[0].header()
    assert header.sectionResizeMode(1) == header.ResizeMode.ResizeToContents


@pytest.mark.parametrize("ra0", [0.2, 150.0])
def test_sky_grid_matches_the_wcs(ra0):
    from astropy.wcs import WCS

    from zemosaic_core.geometry.skygrid import SkyGrid

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, 60.0]
    wcs.wcs.crpix = [1500, 1000]
    wcs.wcs.cdelt = [-0.003, 0.003]  # 9 x 6 degrees, across RA 0h for ra0 = 0.2
    wcs.wcs.pc = [[0.9, -0.43], [0.43, 0.9]]
    grid = SkyGrid.from_wcs(wcs, (2000, 3000))
    rng = np.random.default_rng(0)
    for x, y in rng.uniform([0, 0], [2999, 1999], (50, 2)):
        lon, lat = grid.world(x, y)
        ra, dec = (float(v) for v in wcs.pixel_to_world_values(x, y))
        d_ra = ((lon - ra + 180) % 360 - 180) * np.cos(np.radians(dec))
        assert abs(d_ra) * 3600 < 0.2 and abs(lat - dec) * 3600 < 0.2


def test_input_list_shows_header_details(qtbot, real_data):
    from zemosaic_gui.input_panel import InputPanel

    panel = InputPanel()
    qtbot.addWidget(panel)
    panel.show()
    frames = sorted((real_data / "seestar_ngc7023").glob("*.fit"))[:1]
    panel.add_inputs(frames)
    qtbot.waitUntil(lambda: panel.status(frames[0])[0] == "ok", timeout=20_000)
    item = panel.list.topLevelItem(0)
    panel.list.setCurrentItem(item)
    for expected in ("10 s", "IRCUT", "Bayer GRBG", "2024-07-31", "Seestar S50"):
        assert expected in item.toolTip(0)
        assert expected in panel.detail_label.text()


def test_bayer_override_for_frames_that_declare_none(real_data, gui_window, qtbot):
    from zemosaic_core import BuildConfig
    from zemosaic_core.io.loading import load_tiles, probe_input

    frame = real_data / "panoptes_sip" / "solved.fits.fz"  # FILTER='RGGB', no BAYERPAT
    assert probe_input(frame).n_channels == 1
    assert probe_input(frame, "RGGB").n_channels == 3
    tiles = load_tiles([frame], bayer_fallback="RGGB", memory_budget=0).tiles
    assert tiles[0].n_channels == 3 and tiles[0].data.shape[0] == 3  # lazy re-read too
    with pytest.raises(ValueError):
        BuildConfig(bayer_pattern="XYZW")
    # A declared pattern wins over the fallback.
    seestar = sorted((real_data / "seestar_ngc7023").glob("*.fit"))[0]
    declared = load_tiles([seestar]).tiles[0].data
    np.testing.assert_array_equal(
        load_tiles([seestar], bayer_fallback="RGGB").tiles[0].data, declared
    )

    window = gui_window()
    panel = window.settings_panel
    panel.bayer_combo.setCurrentIndex(panel.bayer_combo.findData("RGGB"))
    panel.colour_check.setChecked(True)
    config = panel.to_config()
    assert config.bayer_pattern == "RGGB" and config.colour_calibration and not config.north_up
    window.add_inputs([frame])  # the input list checks it with the setting
    qtbot.waitUntil(lambda: window.input_panel.status(frame)[0] == "ok", timeout=20_000)
    assert window.input_panel.list.topLevelItem(0).text(2) == "3"
    # Changing the setting checks the listed frames again: back to mono.
    panel.bayer_combo.setCurrentIndex(panel.bayer_combo.findData(""))
    qtbot.waitUntil(lambda: window.input_panel.list.topLevelItem(0).text(2) == "1", timeout=20_000)
    assert window.input_panel.status(frame)[0] == "ok"


def test_hover_shows_ra_dec_while_a_build_holds_the_core(qtbot):
    from test_gui_widgets import synthetic_result

    from zemosaic_gui.core_access import CORE_LOCK
    from zemosaic_gui.preview import PreviewPanel, describe_pixel

    panel = PreviewPanel()
    qtbot.addWidget(panel)
    result = synthetic_result()
    panel.set_result(result)
    held, release = threading.Event(), threading.Event()

    def build_like():
        with CORE_LOCK:
            held.set()
            release.wait(10)

    worker = threading.Thread(target=build_like)
    worker.start()
    try:
        assert held.wait(5)
        text = describe_pixel(result, 80, 60)
    finally:
        release.set()
        worker.join()
    assert "RA 05h35m" in text and "Dec -05°" in text
