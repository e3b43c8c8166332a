"""GUI side of reliability round 2: the keep-isolated setting and an honest GPU choice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtCore import QSettings

from zemosaic_core.config import SETTING_LABELS

pytest.importorskip("pytestqt")

from zemosaic_gui.settings_panel import SettingsPanel  # noqa: E402


def _panel(qtbot, available: bool, description: str) -> SettingsPanel:
    info = SimpleNamespace(available=available, description=description)
    panel = SettingsPanel(detect_gpu=lambda: info)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.device_detected, timeout=3000):
        panel.start_detection()
    return panel


def test_keep_isolated_is_a_gui_setting_too(qtbot, gui_settings):
    panel = _panel(qtbot, False, "CuPy is not installed")
    check = panel.findChild(object, "keepIsolatedCheck")
    assert check is not None and check.text() == SETTING_LABELS["keep_isolated"]
    assert panel.to_config().keep_isolated is False
    check.setChecked(True)
    assert panel.to_config().keep_isolated is True

    panel.save_settings(gui_settings)
    gui_settings.sync()
    other = _panel(qtbot, False, "CuPy is not installed")
    other.load_settings(QSettings(gui_settings.fileName(), QSettings.Format.IniFormat))
    assert other.to_config().keep_isolated is True


def test_gpu_choice_is_disabled_with_the_reason_when_no_gpu_is_usable(qtbot):
    info = SimpleNamespace(available=False, description="CuPy is not installed")
    panel = SettingsPanel(detect_gpu=lambda: info)
    qtbot.addWidget(panel)
    panel.set_backend("gpu")  # e.g. restored from the settings of another machine
    with qtbot.waitSignal(panel.device_detected, timeout=3000):
        panel.start_detection()
    combo = panel.backend_combo
    item = combo.model().item(combo.findData("gpu"))
    assert not item.isEnabled()
    assert "CuPy is not installed" in item.toolTip()
    assert panel.backend() == "auto"  # never left on a choice that would be refused
    assert combo.model().item(combo.findData("cpu")).isEnabled()


def test_gpu_choice_stays_enabled_when_a_gpu_is_usable(qtbot):
    panel = _panel(qtbot, True, "simulated GPU device")
    combo = panel.backend_combo
    item = combo.model().item(combo.findData("gpu"))
    assert item.isEnabled() and item.toolTip() == ""
    panel.set_backend("gpu")
    assert panel.to_config().backend == "gpu"
