"""Build settings: backend (with the detected device), combine, match, batch size, and an
"Advanced" section with the two-pass renormalization and its parameters.

The panel turns its widgets into a ``zemosaic_core.BuildConfig`` and saves/restores them
through ``QSettings``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .tasks import Task, start_task

log = logging.getLogger(__name__)

BACKEND_ITEMS: tuple[tuple[str, str], ...] = (("Auto", "auto"), ("CPU", "cpu"), ("GPU", "gpu"))
COMBINE_ITEMS: tuple[tuple[str, str], ...] = (
    ("Mean", "mean"),
    ("Median", "median"),
    ("Kappa-sigma", "kappa-sigma"),
    ("Winsorized", "winsorized"),
)
MATCH_ITEMS: tuple[tuple[str, str], ...] = (
    ("Affine (gain + offset)", "affine"),
    ("Offset only", "offset"),
    ("None", "none"),
)


BAYER_ITEMS: tuple[tuple[str, str], ...] = (
    ("None (read as mono)", ""),
    ("RGGB", "RGGB"),
    ("BGGR", "BGGR"),
    ("GRBG", "GRBG"),
    ("GBRG", "GBRG"),
)


def _default_detect_gpu() -> Any:
    from zemosaic_core.engine.backends import detect_gpu

    return detect_gpu()


def _combo(name: str, items: tuple[tuple[str, str], ...], tip: str) -> QComboBox:
    combo = QComboBox()
    combo.setObjectName(name)
    for label, value in items:
        combo.addItem(label, value)
    combo.setToolTip(tip)
    return combo


def _select(combo: QComboBox, value: Any) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)


class SettingsPanel(QWidget):
    """The build settings.

    Parameters
    ----------
    detect_gpu : callable, optional
        Returns a ``DeviceInfo(available, description)`` (default
        ``zemosaic_core.engine.backends.detect_gpu``); run once, in a worker thread.
    parent : QWidget, optional

    Signals
    -------
    device_detected(bool, str)
        GPU availability and its description (device name or why there is none).
    """

    device_detected = Signal(bool, str)

    def __init__(
        self, detect_gpu: Callable[[], Any] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self._detect = detect_gpu or _default_detect_gpu
        self._detect_task: Task | None = None
        self.gpu_available: bool | None = None
        self.gpu_description = ""

        title = QLabel("SETTINGS")
        title.setObjectName("sectionTitle")

        self.backend_combo = _combo(
            "backendCombo",
            BACKEND_ITEMS,
            "Auto: the GPU when CuPy and a CUDA device are usable, else the CPU.\n"
            "A GPU failure reruns all channels of the pass on the CPU.",
        )
        self.device_label = QLabel("Detecting GPU…")
        self.device_label.setObjectName("deviceLabel")
        self.device_label.setProperty("state", "pending")
        self.device_label.setWordWrap(True)

        self.combine_combo = _combo(
            "combineCombo",
            COMBINE_ITEMS,
            "How overlapping tiles are combined at each output pixel.",
        )
        self.kappa_spin = QDoubleSpinBox()
        self.kappa_spin.setObjectName("kappaSpin")
        self.kappa_spin.setRange(0.5, 10.0)
        self.kappa_spin.setSingleStep(0.1)
        self.kappa_spin.setDecimals(1)
        self.kappa_spin.setValue(3.0)
        self.kappa_spin.setPrefix("κ ")
        self.kappa_spin.setToolTip("Rejection threshold in standard deviations")
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setObjectName("iterationsSpin")
        self.iterations_spin.setRange(1, 20)
        self.iterations_spin.setValue(3)
        self.iterations_spin.setSuffix(" iter.")
        self.iterations_spin.setToolTip("Clipping iterations")
        self.kappa_row = self._row(self.kappa_spin, self.iterations_spin)

        self.winsor_low_spin = self._fraction_spin(
            "winsorLowSpin", "Fraction clipped at the low end"
        )
        self.winsor_high_spin = self._fraction_spin(
            "winsorHighSpin", "Fraction clipped at the high end"
        )
        self.winsor_row = self._row(self.winsor_low_spin, self.winsor_high_spin)

        self.match_combo = _combo(
            "matchCombo",
            MATCH_ITEMS,
            "Photometric matching of the tiles from their overlaps, before the coadd.",
        )
        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("batchSizeSpin")
        self.batch_spin.setRange(0, 100000)
        self.batch_spin.setSpecialValueText("Auto")
        self.batch_spin.setSuffix(" tiles")
        self.batch_spin.setToolTip(
            "Tiles held in memory at once (Auto: from the memory budget).\n"
            "A memory knob only: the mosaic is the same for any batch size."
        )

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(12)
        form.setVerticalSpacing(8)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow(self._label("Backend"), self.backend_combo)
        form.addRow("", self.device_label)
        form.addRow(self._label("Combine"), self.combine_combo)
        self.kappa_label = self._label("")
        form.addRow(self.kappa_label, self.kappa_row)
        self.winsor_label = self._label("Limits")
        form.addRow(self.winsor_label, self.winsor_row)
        form.addRow(self._label("Match"), self.match_combo)
        form.addRow(self._label("Batch size"), self.batch_spin)
        self._form = form

        # ---- Advanced (collapsible) ----
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName("advancedToggle")
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.toggled.connect(self.set_advanced_visible)

        self.two_pass_check = QCheckBox("Two-pass coverage renormalization")
        self.two_pass_check.setObjectName("twoPassCheck")
        self.two_pass_check.setChecked(True)
        self.two_pass_check.setToolTip(
            "Re-coadd every tile scaled by one gain that brings it onto the consensus\n"
            "where the mosaic is well covered (removes the patchwork between tiles)."
        )
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setObjectName("twoPassSigmaSpin")
        self.sigma_spin.setRange(1.0, 2000.0)
        self.sigma_spin.setDecimals(0)
        self.sigma_spin.setSingleStep(5.0)
        self.sigma_spin.setValue(50.0)
        self.sigma_spin.setSuffix(" px")
        self.sigma_spin.setToolTip("Gaussian sigma of the coverage blur")
        self.clip_low_spin = QDoubleSpinBox()
        self.clip_low_spin.setObjectName("gainClipLowSpin")
        self.clip_low_spin.setRange(0.10, 1.00)
        self.clip_low_spin.setDecimals(2)
        self.clip_low_spin.setSingleStep(0.01)
        self.clip_low_spin.setValue(0.85)
        self.clip_low_spin.setToolTip("Smallest gain a tile may get")
        self.clip_high_spin = QDoubleSpinBox()
        self.clip_high_spin.setObjectName("gainClipHighSpin")
        self.clip_high_spin.setRange(1.00, 10.0)
        self.clip_high_spin.setDecimals(2)
        self.clip_high_spin.setSingleStep(0.01)
        self.clip_high_spin.setValue(1.18)
        self.clip_high_spin.setToolTip("Largest gain a tile may get")
        self.two_pass_check.toggled.connect(self._update_two_pass)

        advanced_form = QFormLayout()
        advanced_form.setContentsMargins(0, 0, 0, 0)
        advanced_form.setHorizontalSpacing(12)
        advanced_form.setVerticalSpacing(8)
        advanced_form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        advanced_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        advanced_form.addRow(self.two_pass_check)
        advanced_form.addRow(self._label("Sigma"), self.sigma_spin)
        advanced_form.addRow(
            self._label("Gain clip"), self._row(self.clip_low_spin, self.clip_high_spin)
        )
        self.colour_check = QCheckBox("Colour calibration")
        self.colour_check.setObjectName("colourCalibrationCheck")
        self.colour_check.setToolTip(
            "Neutralise the sky background and white-balance on the stars' average colour.\n"
            "Applied to the finished mosaic (the FITS header records it)."
        )
        self.north_up_check = QCheckBox("North-up canvas")
        self.north_up_check.setObjectName("northUpCheck")
        self.north_up_check.setToolTip(
            "Align the canvas with north instead of the smallest rotated rectangle"
        )
        self.bayer_combo = _combo(
            "bayerCombo",
            BAYER_ITEMS,
            "Bayer pattern of raw colour frames whose header declares none (no BAYERPAT);\n"
            "frames that declare one keep theirs",
        )
        advanced_form.addRow(self.colour_check)
        advanced_form.addRow(self.north_up_check)
        advanced_form.addRow(self._label("Undeclared Bayer"), self.bayer_combo)
        self.advanced_box = QWidget()
        self.advanced_box.setObjectName("advancedBox")
        self.advanced_box.setLayout(advanced_form)
        self.advanced_box.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.advanced_toggle)
        layout.addWidget(self.advanced_box)
        layout.addStretch(1)

        self.combine_combo.currentIndexChanged.connect(self._update_combine)
        self._update_combine()
        self._update_two_pass()

    # ---- construction helpers -----------------------------------------------------

    @staticmethod
    def _label(text: str) -> QLabel:
        label = QLabel(text)
        label.setObjectName("mutedLabel")
        return label

    @staticmethod
    def _row(*widgets: QWidget) -> QWidget:
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        for widget in widgets:
            layout.addWidget(widget, 1)
        return row

    @staticmethod
    def _fraction_spin(name: str, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setObjectName(name)
        spin.setRange(0.0, 0.49)
        spin.setDecimals(2)
        spin.setSingleStep(0.01)
        spin.setValue(0.10)
        spin.setToolTip(tip)
        return spin

    # ---- behaviour ----------------------------------------------------------------

    @Slot(bool)
    def set_advanced_visible(self, visible: bool) -> None:
        """Expand or collapse the "Advanced" section."""
        self.advanced_box.setVisible(visible)
        self.advanced_toggle.setArrowType(
            Qt.ArrowType.DownArrow if visible else Qt.ArrowType.RightArrow
        )
        if self.advanced_toggle.isChecked() != visible:
            self.advanced_toggle.setChecked(visible)

    @Slot()
    def _update_combine(self) -> None:
        method = self.combine_combo.currentData()
        kappa = method == "kappa-sigma"
        winsor = method == "winsorized"
        self._form.setRowVisible(self.kappa_row, kappa)
        self._form.setRowVisible(self.winsor_row, winsor)

    @Slot()
    def _update_two_pass(self) -> None:
        enabled = self.two_pass_check.isChecked()
        for widget in (self.sigma_spin, self.clip_low_spin, self.clip_high_spin):
            widget.setEnabled(enabled)

    def start_detection(self) -> None:
        """Detect the GPU in a worker thread; the device label follows."""
        if self._detect_task is not None:
            return
        # Importing CuPy can take seconds; a failed detection is shown, never raised.
        self._detect_task = start_task(
            self._detect, on_return=self._on_detected, on_error=self._on_detected, owner=self
        )

    @Slot(object)
    def _on_detected(self, info: Any) -> None:
        if isinstance(info, BaseException):
            available, description = False, f"GPU detection failed: {info}"
        else:
            available = bool(getattr(info, "available", False))
            description = str(getattr(info, "description", "") or "")
        self.gpu_available = available
        self.gpu_description = description
        if available:
            self.device_label.setText(f"GPU: {description}")
            self.device_label.setProperty("state", "ok")
        else:
            self.device_label.setText(f"No GPU — {description}" if description else "No GPU")
            self.device_label.setProperty("state", "none")
        self.device_label.setToolTip(description)
        self.device_label.style().unpolish(self.device_label)
        self.device_label.style().polish(self.device_label)
        self.device_detected.emit(available, description)

    def set_editable(self, editable: bool) -> None:
        """Enable or disable every setting (disabled during a build)."""
        for child in self.findChildren(QWidget):
            if isinstance(child, (QComboBox, QSpinBox, QDoubleSpinBox, QCheckBox)):
                child.setEnabled(editable)
        if editable:
            self._update_two_pass()

    # ---- config and persistence ---------------------------------------------------

    def backend(self) -> str:
        """The selected backend: ``"auto"``, ``"cpu"`` or ``"gpu"``."""
        return str(self.backend_combo.currentData())

    def set_backend(self, backend: str) -> None:
        """Select a backend by name."""
        _select(self.backend_combo, backend)

    def to_config(self, **overrides: Any) -> Any:
        """The ``BuildConfig`` the widgets describe.

        Parameters
        ----------
        **overrides
            Fields to set besides the widgets' (``output``, ``preview``...).

        Returns
        -------
        zemosaic_core.BuildConfig

        Raises
        ------
        ValueError
            When the core rejects a combination of values.
        """
        from zemosaic_core import BuildConfig, CombineSpec, TwoPassSpec

        combine = CombineSpec(
            method=str(self.combine_combo.currentData()),
            kappa=float(self.kappa_spin.value()),
            iterations=int(self.iterations_spin.value()),
            limits=(float(self.winsor_low_spin.value()), float(self.winsor_high_spin.value())),
        )
        two_pass = TwoPassSpec(
            enabled=self.two_pass_check.isChecked(),
            sigma=float(self.sigma_spin.value()),
            gain_clip=(float(self.clip_low_spin.value()), float(self.clip_high_spin.value())),
        )
        fields: dict[str, Any] = {
            "backend": self.backend(),
            "combine": combine,
            "match": str(self.match_combo.currentData()),
            "two_pass": two_pass,
            "batch_size": int(self.batch_spin.value()),
            "colour_calibration": self.colour_check.isChecked(),
            "north_up": self.north_up_check.isChecked(),
            "bayer_pattern": self.bayer_combo.currentData() or None,
        }
        fields.update(overrides)
        return BuildConfig(**fields)

    def save_settings(self, settings: QSettings) -> None:
        """Write the widgets' values under the ``build/`` group."""
        settings.beginGroup("build")
        settings.setValue("backend", self.backend())
        settings.setValue("combine", self.combine_combo.currentData())
        settings.setValue("kappa", self.kappa_spin.value())
        settings.setValue("iterations", self.iterations_spin.value())
        settings.setValue("winsor_low", self.winsor_low_spin.value())
        settings.setValue("winsor_high", self.winsor_high_spin.value())
        settings.setValue("match", self.match_combo.currentData())
        settings.setValue("batch_size", self.batch_spin.value())
        settings.setValue("two_pass", self.two_pass_check.isChecked())
        settings.setValue("two_pass_sigma", self.sigma_spin.value())
        settings.setValue("gain_clip_low", self.clip_low_spin.value())
        settings.setValue("gain_clip_high", self.clip_high_spin.value())
        settings.setValue("advanced_open", self.advanced_toggle.isChecked())
        settings.setValue("colour_calibration", self.colour_check.isChecked())
        settings.setValue("north_up", self.north_up_check.isChecked())
        settings.setValue("bayer_pattern", self.bayer_combo.currentData())
        settings.endGroup()

    def load_settings(self, settings: QSettings) -> None:
        """Restore the widgets from the ``build/`` group (missing keys keep defaults)."""
        settings.beginGroup("build")
        try:
            _select(self.backend_combo, settings.value("backend", self.backend()))
            _select(self.combine_combo, settings.value("combine", self.combine_combo.currentData()))
            _select(self.match_combo, settings.value("match", self.match_combo.currentData()))
            self.kappa_spin.setValue(_float(settings.value("kappa"), self.kappa_spin.value()))
            self.iterations_spin.setValue(
                int(_float(settings.value("iterations"), self.iterations_spin.value()))
            )
            self.winsor_low_spin.setValue(
                _float(settings.value("winsor_low"), self.winsor_low_spin.value())
            )
            self.winsor_high_spin.setValue(
                _float(settings.value("winsor_high"), self.winsor_high_spin.value())
            )
            self.batch_spin.setValue(
                int(_float(settings.value("batch_size"), self.batch_spin.value()))
            )
            self.two_pass_check.setChecked(
                _bool(settings.value("two_pass"), self.two_pass_check.isChecked())
            )
            self.sigma_spin.setValue(
                _float(settings.value("two_pass_sigma"), self.sigma_spin.value())
            )
            self.clip_low_spin.setValue(
                _float(settings.value("gain_clip_low"), self.clip_low_spin.value())
            )
            self.clip_high_spin.setValue(
                _float(settings.value("gain_clip_high"), self.clip_high_spin.value())
            )
            self.set_advanced_visible(_bool(settings.value("advanced_open"), False))
            self.colour_check.setChecked(_bool(settings.value("colour_calibration"), False))
            self.north_up_check.setChecked(_bool(settings.value("north_up"), False))
            _select(self.bayer_combo, settings.value("bayer_pattern", ""))
        finally:
            settings.endGroup()


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float(default)


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")
