"""Build settings: backend (with the detected device), combine, match, batch size, and an
"Advanced" section with the two-pass renormalization and its parameters.

The panel is a view of a `zemosaic_gui.model.SettingsModel`: each widget shows one
setting and writes it back when the user edits it; the model owns the defaults (the
core's), the choices, the ``BuildConfig`` and the ``QSettings`` keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSettings, QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from zemosaic_core.config import SETTING_LABELS

from .model.settings import SettingsModel
from .tasks import Task, start_task

log = logging.getLogger(__name__)

#: ``(label, value)`` of each choice, in the core's order.
BACKEND_ITEMS = SettingsModel.choices("backend")
COMBINE_ITEMS = SettingsModel.choices("combine")
MATCH_ITEMS = SettingsModel.choices("match")


BAYER_ITEMS = SettingsModel.choices("bayer_pattern")


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
    model : SettingsModel, optional
        The settings shown (default: a new one, at the core's defaults).
    parent : QWidget, optional

    Signals
    -------
    device_detected(bool, str)
        GPU availability and its description (device name or why there is none).
    """

    device_detected = Signal(bool, str)

    def __init__(
        self,
        detect_gpu: Callable[[], Any] | None = None,
        parent: QWidget | None = None,
        *,
        model: SettingsModel | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("settingsPanel")
        self.model = model if model is not None else SettingsModel()
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
        self.kappa_spin.setPrefix("κ ")
        self.kappa_spin.setToolTip("Rejection threshold in standard deviations")
        self.iterations_spin = QSpinBox()
        self.iterations_spin.setObjectName("iterationsSpin")
        self.iterations_spin.setRange(1, 20)
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
        form.addRow(self._label(SETTING_LABELS["backend"]), self.backend_combo)
        form.addRow("", self.device_label)
        form.addRow(self._label(SETTING_LABELS["combine"]), self.combine_combo)
        self.kappa_label = self._label("")
        form.addRow(self.kappa_label, self.kappa_row)
        self.winsor_label = self._label("Limits")
        form.addRow(self.winsor_label, self.winsor_row)
        form.addRow(self._label(SETTING_LABELS["match"]), self.match_combo)
        form.addRow(self._label(SETTING_LABELS["batch_size"]), self.batch_spin)
        self._form = form

        # ---- Advanced (collapsible) ----
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setObjectName("advancedToggle")
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.toggled.connect(self.set_advanced_visible)

        self.two_pass_check = QCheckBox(SETTING_LABELS["two_pass"])
        self.two_pass_check.setObjectName("twoPassCheck")
        self.two_pass_check.setToolTip(
            "Re-coadd every tile scaled by one gain that brings it onto the consensus\n"
            "where the mosaic is well covered (removes the patchwork between tiles)."
        )
        self.sigma_spin = QDoubleSpinBox()
        self.sigma_spin.setObjectName("twoPassSigmaSpin")
        self.sigma_spin.setRange(1.0, 2000.0)
        self.sigma_spin.setDecimals(0)
        self.sigma_spin.setSingleStep(5.0)
        self.sigma_spin.setSuffix(" px")
        self.sigma_spin.setToolTip("Gaussian sigma of the coverage blur")
        self.clip_low_spin = QDoubleSpinBox()
        self.clip_low_spin.setObjectName("gainClipLowSpin")
        self.clip_low_spin.setRange(0.10, 1.00)
        self.clip_low_spin.setDecimals(2)
        self.clip_low_spin.setSingleStep(0.01)
        self.clip_low_spin.setToolTip("Smallest gain a tile may get")
        self.clip_high_spin = QDoubleSpinBox()
        self.clip_high_spin.setObjectName("gainClipHighSpin")
        self.clip_high_spin.setRange(1.00, 10.0)
        self.clip_high_spin.setDecimals(2)
        self.clip_high_spin.setSingleStep(0.01)
        self.clip_high_spin.setToolTip("Largest gain a tile may get")
        self.two_pass_check.toggled.connect(self._update_two_pass)
        self.keep_isolated_check = QCheckBox(SETTING_LABELS["keep_isolated"])
        self.keep_isolated_check.setObjectName("keepIsolatedCheck")
        self.keep_isolated_check.setToolTip(
            "Off: a tile or a group of tiles that overlaps none of the main group and\n"
            "would more than double the canvas (a mis-solved frame, another field) is\n"
            "left out, named in the log. On: keep them all."
        )

        # Limits the core's messages point to by name (SETTING_LABELS).
        self.max_size_spin = QSpinBox()
        self.max_size_spin.setObjectName("maxSizeSpin")
        self.max_size_spin.setRange(100, 1_000_000)
        self.max_size_spin.setSingleStep(1000)
        self.max_size_spin.setSuffix(" px")
        self.max_size_spin.setToolTip(
            "Largest mosaic side accepted: a larger canvas is refused (mis-solved tiles?)"
        )
        self.scratch_edit, self.scratch_button, scratch_row = self._folder_field(
            "scratch",
            "System temporary folder",
            "Where work arrays spill when the memory budget is reached (needs free space)",
            "Choose the scratch folder",
        )

        advanced_form = QFormLayout()
        advanced_form.setContentsMargins(0, 0, 0, 0)
        advanced_form.setHorizontalSpacing(12)
        advanced_form.setVerticalSpacing(8)
        advanced_form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        advanced_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        advanced_form.addRow(self.two_pass_check)
        advanced_form.addRow(self._label("Sigma"), self.sigma_spin)
        advanced_form.addRow(
            self._label(SETTING_LABELS["two_pass.gain_clip"]),
            self._row(self.clip_low_spin, self.clip_high_spin),
        )
        advanced_form.addRow(self.keep_isolated_check)
        advanced_form.addRow(self._label(SETTING_LABELS["max_size"]), self.max_size_spin)
        advanced_form.addRow(self._label(SETTING_LABELS["scratch"]), scratch_row)
        self.colour_check = QCheckBox(SETTING_LABELS["colour_calibration"])
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
        self.solve_check = QCheckBox(SETTING_LABELS["solve"])
        self.solve_check.setObjectName("solveCheck")
        self.solve_check.setToolTip(
            "Solve frames that arrive without a WCS with astrometry.net, offline\n"
            "(a <name>.wcs file next to a frame is used either way)"
        )
        self.index_edit, self.index_button, index_row = self._folder_field(
            "index_dir",
            "Default index folder",
            "Folder of astrometry.net index files (index-*.fits);\n"
            "empty = $ZEMOSAIC_INDEX_DIR or the per-user default ('zemosaic solve --help')",
            "Choose the astrometry.net index folder",
        )
        advanced_form.addRow(self.colour_check)
        advanced_form.addRow(self.north_up_check)
        advanced_form.addRow(self._label("Undeclared Bayer"), self.bayer_combo)
        self.weighting_check = QCheckBox(SETTING_LABELS["quality.weight"])
        self.weighting_check.setObjectName("subWeightingCheck")
        self.weighting_check.setToolTip(
            "Weight each sub by its inverse sky-noise variance, relative to the median sub"
        )
        self.reject_spin = QDoubleSpinBox()
        self.reject_spin.setObjectName("rejectSubsSpin")
        self.reject_spin.setRange(0.0, 20.0)
        self.reject_spin.setDecimals(1)
        self.reject_spin.setSingleStep(1.0)
        self.reject_spin.setSuffix(" σ")
        self.reject_spin.setSpecialValueText("Off")
        self.reject_spin.setToolTip(
            "Drop the subs whose FWHM, star count or noise lie this many robust sigmas\n"
            "from the night's median (3 is a usual choice); each is named in the log"
        )
        advanced_form.addRow(self.weighting_check)
        advanced_form.addRow(self._label(SETTING_LABELS["quality.reject_sigma"]), self.reject_spin)
        advanced_form.addRow(self.solve_check)
        advanced_form.addRow(self._label(SETTING_LABELS["solve.index_dir"]), index_row)
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

        self._bind_model()

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
        spin.setToolTip(tip)
        return spin

    # ---- the model ----------------------------------------------------------------

    def _bindings(self) -> dict[str, tuple[QWidget, Callable[[], Any], Callable[[Any], None]]]:
        """Setting name -> (widget, read the widget, show a value)."""

        def combo(box: QComboBox) -> tuple[QWidget, Callable[[], Any], Callable[[Any], None]]:
            return box, box.currentData, lambda value: _select(box, value)

        def spin(box: QSpinBox | QDoubleSpinBox) -> tuple[QWidget, Callable[[], Any], Any]:
            return box, box.value, box.setValue

        return {
            "backend": combo(self.backend_combo),
            "combine": combo(self.combine_combo),
            "kappa": spin(self.kappa_spin),
            "iterations": spin(self.iterations_spin),
            "winsor_low": spin(self.winsor_low_spin),
            "winsor_high": spin(self.winsor_high_spin),
            "match": combo(self.match_combo),
            "batch_size": spin(self.batch_spin),
            "two_pass": (
                self.two_pass_check,
                self.two_pass_check.isChecked,
                self.two_pass_check.setChecked,
            ),
            "two_pass_sigma": spin(self.sigma_spin),
            "gain_clip_low": spin(self.clip_low_spin),
            "gain_clip_high": spin(self.clip_high_spin),
            "keep_isolated": (
                self.keep_isolated_check,
                self.keep_isolated_check.isChecked,
                self.keep_isolated_check.setChecked,
            ),
            "max_size": spin(self.max_size_spin),
            "scratch": (self.scratch_edit, self.scratch_edit.text, self.scratch_edit.setText),
            "colour_calibration": (
                self.colour_check,
                self.colour_check.isChecked,
                self.colour_check.setChecked,
            ),
            "north_up": (
                self.north_up_check,
                self.north_up_check.isChecked,
                self.north_up_check.setChecked,
            ),
            "bayer_pattern": combo(self.bayer_combo),
            "sub_weighting": (
                self.weighting_check,
                self.weighting_check.isChecked,
                self.weighting_check.setChecked,
            ),
            "reject_subs": spin(self.reject_spin),
            "solve": (self.solve_check, self.solve_check.isChecked, self.solve_check.setChecked),
            "index_dir": (self.index_edit, self.index_edit.text, self.index_edit.setText),
        }

    def _bind_model(self) -> None:
        self._bound = self._bindings()
        for name, (widget, read, _show) in self._bound.items():
            if isinstance(widget, QComboBox):
                signal = widget.currentIndexChanged
            elif isinstance(widget, QCheckBox):
                signal = widget.toggled
            elif isinstance(widget, QLineEdit):
                signal = widget.textChanged
            elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
                signal = widget.valueChanged
            else:
                raise TypeError(f"setting {name}: no change signal for {type(widget).__name__}")
            signal.connect(lambda *_args, n=name, r=read: self._widget_edited(n, r()))
        self.model.changed.connect(self._show_setting)
        for name in self._bound:
            self._show_setting(name, self.model.value(name))

    def _widget_edited(self, name: str, value: Any) -> None:
        try:
            self.model.set_value(name, value)
        except ValueError as exc:  # a widget never offers a bad value; say so if it does
            log.warning("Setting %s: %s", name, exc)

    def _show_setting(self, name: str, value: Any) -> None:
        """Show the model's ``value`` in its widget (the model changed)."""
        binding = self._bound.get(name)
        if binding is None:
            return  # a setting this panel does not show
        widget, read, show = binding
        with QSignalBlocker(widget):
            show(value)
        shown = read()
        if shown != value:
            # The widget rounds or bounds the value: the model takes what is shown.
            self._widget_edited(name, shown)
        self._update_combine()
        self._update_two_pass()

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
        self._enable_gpu_choice(available, description)
        self.device_label.style().unpolish(self.device_label)
        self.device_label.style().polish(self.device_label)
        self.device_detected.emit(available, description)

    def _enable_gpu_choice(self, available: bool, description: str) -> None:
        """Offer "GPU" only when a GPU is usable; otherwise grey it out with the reason
        (an explicit GPU request with no GPU is refused by the core)."""
        index = self.backend_combo.findData("gpu")
        model = self.backend_combo.model()
        # A QComboBox's own model is a QStandardItemModel (items can be disabled).
        item = model.item(index) if isinstance(model, QStandardItemModel) and index >= 0 else None
        if item is None:
            return
        item.setEnabled(available)
        item.setToolTip("" if available else f"No usable GPU: {description}")
        if not available and self.backend() == "gpu":
            _select(self.backend_combo, "auto")

    def _folder_field(
        self, setting: str, placeholder: str, tip: str, title: str
    ) -> tuple[QLineEdit, QToolButton, QWidget]:
        """A folder setting: a line edit, its "…" browse button, and the row holding both."""
        camel = "".join(part.title() for part in setting.split("_"))
        edit = QLineEdit()
        edit.setObjectName(camel[0].lower() + camel[1:] + "Edit")
        edit.setPlaceholderText(placeholder)
        edit.setClearButtonEnabled(True)
        edit.setToolTip(tip)
        button = QToolButton()
        button.setObjectName(camel[0].lower() + camel[1:] + "BrowseButton")
        button.setText("…")
        button.setToolTip(title)

        def choose() -> None:
            folder = QFileDialog.getExistingDirectory(self, title, edit.text())
            if folder:
                self.model.set_value(setting, folder)

        button.clicked.connect(choose)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(edit, 1)
        layout.addWidget(button)
        return edit, button, row

    def set_editable(self, editable: bool) -> None:
        """Enable or disable every setting (disabled during a build)."""
        for child in self.findChildren(QWidget):
            if (
                isinstance(
                    child, (QComboBox, QSpinBox, QDoubleSpinBox, QCheckBox, QLineEdit, QToolButton)
                )
                and child is not self.advanced_toggle
            ):
                child.setEnabled(editable)
        if editable:
            self._update_two_pass()

    # ---- config and persistence ---------------------------------------------------

    def backend(self) -> str:
        """The selected backend: ``"auto"``, ``"cpu"`` or ``"gpu"``."""
        return str(self.backend_combo.currentData())

    def set_backend(self, backend: str) -> None:
        """Select a backend by name."""
        self.model.set_value("backend", backend)

    def to_config(self, **overrides: Any) -> Any:
        """The ``BuildConfig`` the settings describe.

        Parameters
        ----------
        **overrides
            Fields to set besides the settings (``output``, ``preview``...).

        Returns
        -------
        zemosaic_core.BuildConfig

        Raises
        ------
        ValueError
            When the core rejects a combination of values.
        """
        return self.model.to_config(**overrides)

    def save_settings(self, settings: QSettings) -> None:
        """Write the settings under the ``build/`` group, and the Advanced section's state."""
        self.model.save(settings)
        settings.setValue("build/advanced_open", self.advanced_toggle.isChecked())

    def load_settings(self, settings: QSettings) -> None:
        """Restore the settings from the ``build/`` group (missing keys keep their value)."""
        self.model.load(settings)
        self.set_advanced_visible(_bool(settings.value("build/advanced_open"), False))


def _bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")
