"""The main window: inputs and settings on the left, preview and log on the right.

It wires the panels together: the log-level dropdown drives Python logging, Build
starts the core pipeline on a worker thread (`BuildRunner`), progress and log records
arrive as queued signals, the result goes to the preview, and Save writes it with the
core's writers. Settings, folders, splitters and geometry persist through `QSettings`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import qtawesome as qta
from PySide6.QtCore import QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from zemosaic_core.display.stretch import StretchParams
from zemosaic_core.runtime.logsetup import level_name

from .core_access import CORE_LOCK
from .dialogs import choose_save_file
from .input_panel import InputPanel
from .log_handler import QtLogHandler, apply_log_level, attach_handler, detach_handler
from .log_panel import LogPanel
from .model import BuildModel, InputListModel, SettingsModel
from .preview import PreviewPanel
from .progress import ProgressState, format_duration
from .settings_panel import SettingsPanel
from .tasks import Task, start_task, wait_for_tasks
from .theme import COLORS, app_icon
from .worker import BuildFunction, BuildRunner

log = logging.getLogger(__name__)

ORGANIZATION = "ZeMosaic"
APPLICATION = "ZeMosaic"

#: Save-dialog filters and the output kind each one writes.
SAVE_FILTERS: dict[str, str] = {
    "FITS science image (*.fits *.fit *.fts)": "fits",
    "16-bit linear TIFF (*.tif *.tiff)": "tiff",
    "Stretched PNG preview (*.png)": "png",
}
_EXTENSIONS: dict[str, str] = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
}
#: Input folders remembered in File > Open recent.
RECENT_FOLDERS = 8

_DEFAULT_SUFFIX = {"fits": ".fits", "tiff": ".tif", "png": ".png"}


def output_kind(path: str | os.PathLike[str], name_filter: str = "") -> str:
    """Which writer a save path needs: ``"fits"``, ``"tiff"`` or ``"png"``.

    Parameters
    ----------
    path : path-like
        The chosen file name; its extension wins.
    name_filter : str, optional
        The save dialog's selected filter, used when the name has no known extension.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        When neither the extension nor the filter names a known format.
    """
    suffix = Path(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if name_filter in SAVE_FILTERS:
        return SAVE_FILTERS[name_filter]
    raise ValueError(f"unknown output format for {Path(path).name!r}: use .fits, .tif or .png")


def write_output(path: Path, kind: str, result: Any, stretch: StretchParams) -> Path:
    """Write one output with the core's writers (runs in a pool thread).

    Parameters
    ----------
    path : Path
    kind : {"fits", "tiff", "png"}
    result : BuildResult
    stretch : StretchParams
        The preview's transfer, levels included: the PNG is what the screen shows.

    Returns
    -------
    Path
        The file written.
    """
    from zemosaic_core.io import outputs

    with CORE_LOCK:
        if kind == "fits":
            return outputs.write_fits(path, result)
        if kind == "tiff":
            return outputs.write_tiff(path, result)
        return outputs.write_preview_png(path, result, params=stretch)


class MainWindow(QMainWindow):
    """ZeMosaic's main window.

    Parameters
    ----------
    settings : QSettings, optional
        Where settings persist (default: organisation and application "ZeMosaic").
        Tests pass an INI file in a temporary folder.
    build_fn : callable, optional
        ``build_mosaic``-compatible callable (default ``zemosaic_core.build_mosaic``).
    detect_gpu : callable, optional
        GPU detection (default ``zemosaic_core.engine.backends.detect_gpu``).
    confirm_quit : bool
        Ask before closing while a built mosaic is not saved (tests turn it off).
    parent : QWidget, optional

    Signals
    -------
    build_started()
    build_finished(str)
        ``"ok"``, ``"failed"`` or ``"cancelled"``, once the worker thread has ended.
    saved(str)
        Path of a file written by Save as.
    save_failed(str)
        The error message of a failed save.
    """

    build_started = Signal()
    build_finished = Signal(str)
    saved = Signal(str)
    save_failed = Signal(str)

    def __init__(
        self,
        settings: QSettings | None = None,
        *,
        build_fn: BuildFunction | None = None,
        detect_gpu: Callable[[], Any] | None = None,
        confirm_quit: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.confirm_quit = confirm_quit
        self._unsaved = False  # a built mosaic that no output holds yet
        self._quit_box: QMessageBox | None = None
        self.setWindowIcon(app_icon())
        self.settings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)
        self.error_box: QMessageBox | None = None
        self.last_save_dir = ""
        self._closing = False
        self._save_jobs: set[Task] = set()
        # The application model (plain Python): the widgets below observe it.
        self.build_model = BuildModel()
        self.settings_model = SettingsModel()
        self.inputs_model = InputListModel()

        # ---- logging ----
        self.log_handler = QtLogHandler(logging.INFO)
        self.log_panel = LogPanel(parent=self)
        self.log_handler.record_logged.connect(self.log_panel.add_record)
        attach_handler(self.log_handler)

        # ---- panels ----
        self._probe_bayer: str | None = None
        self.input_panel = InputPanel(probe=self._probe_input, parent=self, model=self.inputs_model)
        self.settings_panel = SettingsPanel(
            detect_gpu=detect_gpu, parent=self, model=self.settings_model
        )
        self.preview_panel = PreviewPanel(self)
        self.runner = BuildRunner(build_fn, self)

        self._build_actions()
        self._build_layout()
        self._build_status_bar()
        self._connect()
        self.restore_settings()
        self._show_build_state()
        self._update_title()
        self.settings_panel.start_detection()

    # ---- construction ---------------------------------------------------------------

    def _icon(self, name: str) -> Any:
        return qta.icon(name, color=COLORS["icon"], color_disabled=COLORS["text_disabled"])

    def _action(
        self, text: str, icon: str | None, shortcut: Any, slot: Callable[[], Any], tip: str
    ) -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(self._icon(icon))
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        shortcut_text = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip} ({shortcut_text})" if shortcut_text else tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action(
            "&Open folder…",
            "mdi6.folder-open-outline",
            QKeySequence.StandardKey.Open,
            self.input_panel.choose_folder,
            "Add a folder of plate-solved FITS tiles",
        )
        self.open_action.setShortcut(QKeySequence("Ctrl+O"))
        self.add_files_action = self._action(
            "Add &files…",
            "mdi6.file-plus-outline",
            None,
            self.input_panel.choose_files,
            "Add FITS files",
        )
        self.build_action = self._action(
            "&Build mosaic",
            "mdi6.play",
            "Ctrl+B",
            self.start_build,
            "Build the mosaic",
        )
        self.cancel_action = self._action(
            "&Cancel build",
            "mdi6.stop",
            "Esc",
            self.cancel_build,
            "Stop the build at its next check point",
        )
        self.save_action = self._action(
            "&Save as…",
            "mdi6.content-save-outline",
            "Ctrl+S",
            self.save_as,
            "Save the mosaic as FITS, 16-bit linear TIFF or the stretched PNG shown",
        )
        self.quit_action = self._action("&Quit", None, "Ctrl+Q", self.close, "Quit ZeMosaic")
        view = self.preview_panel.view
        self.fit_action = self._action(
            "&Fit to window",
            "mdi6.fit-to-screen-outline",
            "F",
            view.fit,
            "Fit the mosaic in the view",
        )
        self.actual_action = self._action(
            "&100 %",
            "mdi6.numeric-1-box-outline",
            "Ctrl+0",
            view.actual_size,
            "One image pixel per screen pixel",
        )
        self.zoom_in_action = self._action(
            "Zoom &in",
            "mdi6.magnify-plus-outline",
            QKeySequence.StandardKey.ZoomIn,
            view.zoom_in,
            "Zoom in",
        )
        self.zoom_out_action = self._action(
            "Zoom &out",
            "mdi6.magnify-minus-outline",
            QKeySequence.StandardKey.ZoomOut,
            view.zoom_out,
            "Zoom out",
        )
        self.coverage_action = self._action(
            "&Coverage map",
            "mdi6.layers-triple-outline",
            "C",
            self._toggle_coverage,
            "Show the coverage map instead of the RGB mosaic",
        )
        self.coverage_action.setCheckable(True)
        self.about_action = self._action(
            "&About ZeMosaic", None, None, self.show_about, "About ZeMosaic"
        )

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addActions([self.open_action, self.add_files_action])
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        file_menu.addSeparator()
        file_menu.addAction(self.save_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        build_menu = menu.addMenu("&Build")
        build_menu.addActions([self.build_action, self.cancel_action])
        view_menu = menu.addMenu("&View")
        view_menu.addActions(
            [self.fit_action, self.actual_action, self.zoom_in_action, self.zoom_out_action]
        )
        view_menu.addSeparator()
        view_menu.addAction(self.coverage_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.about_action)

        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("mainToolBar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.add_files_action)
        toolbar.addSeparator()
        toolbar.addAction(self.save_action)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
        self.toolbar = toolbar

    def _build_layout(self) -> None:
        # Left: inputs over settings, then the build box.
        settings_scroll = QScrollArea()
        settings_scroll.setObjectName("settingsScroll")
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings_scroll.setWidget(self.settings_panel)

        self.side_splitter = QSplitter(Qt.Orientation.Vertical)
        self.side_splitter.setObjectName("sideSplitter")
        self.side_splitter.setChildrenCollapsible(False)
        self.side_splitter.addWidget(self.input_panel)
        self.side_splitter.addWidget(settings_scroll)
        self.side_splitter.setStretchFactor(0, 1)
        self.side_splitter.setStretchFactor(1, 1)
        self.side_splitter.setSizes([300, 380])

        self.build_button = QPushButton("Build mosaic")
        self.build_button.setObjectName("buildButton")
        self.build_button.setIcon(
            qta.icon(
                "mdi6.play", color=COLORS["accent_text"], color_disabled=COLORS["text_disabled"]
            )
        )
        self.build_button.setToolTip("Build the mosaic (Ctrl+B)")
        self.build_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.build_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setIcon(
            qta.icon("mdi6.stop", color=COLORS["error"], color_disabled=COLORS["text_disabled"])
        )
        self.cancel_button.setToolTip("Stop the build at its next check point (Esc)")

        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("Idle")
        self.phase_label = QLabel("Ready")
        self.phase_label.setObjectName("phaseLabel")
        self.eta_label = QLabel("")
        self.eta_label.setObjectName("etaLabel")
        self.eta_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        buttons = QHBoxLayout()
        buttons.setSpacing(8)
        buttons.addWidget(self.build_button, 1)
        buttons.addWidget(self.cancel_button)
        phase_row = QHBoxLayout()
        phase_row.addWidget(self.phase_label, 1)
        phase_row.addWidget(self.eta_label)
        build_box = QFrame()
        build_box.setObjectName("buildBox")
        box_layout = QVBoxLayout(build_box)
        box_layout.setContentsMargins(10, 10, 10, 10)
        box_layout.setSpacing(6)
        box_layout.addLayout(buttons)
        box_layout.addWidget(self.progress_bar)
        box_layout.addLayout(phase_row)

        side = QFrame()
        side.setObjectName("sidePanel")
        side.setMinimumWidth(360)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.setSpacing(0)
        side_layout.addWidget(self.side_splitter, 1)
        side_layout.addWidget(build_box)

        # Right: preview over log.
        self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        self.right_splitter.setObjectName("rightSplitter")
        self.right_splitter.setChildrenCollapsible(False)
        self.right_splitter.addWidget(self.preview_panel)
        self.right_splitter.addWidget(self.log_panel)
        self.right_splitter.setStretchFactor(0, 3)
        self.right_splitter.setStretchFactor(1, 1)
        self.right_splitter.setSizes([620, 230])

        self.main_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.main_splitter.setObjectName("mainSplitter")
        self.main_splitter.setChildrenCollapsible(False)
        self.main_splitter.addWidget(side)
        self.main_splitter.addWidget(self.right_splitter)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([420, 980])
        self.setCentralWidget(self.main_splitter)
        self.resize(1400, 900)
        self.setAcceptDrops(True)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        bar.setSizeGripEnabled(True)
        self.cursor_label = QLabel("")
        self.cursor_label.setObjectName("cursorLabel")
        self.cursor_hint = "Hover the mosaic: pixel, RA/Dec and values appear here"
        self.backend_badge = QLabel("no mosaic")
        self.backend_badge.setObjectName("backendBadge")
        self.backend_badge.setToolTip("Backend that produced every channel of the shown mosaic")
        self.result_label = QLabel("")
        self.result_label.setObjectName("resultLabel")
        bar.addWidget(self.cursor_label, 1)
        bar.addPermanentWidget(self.result_label)
        bar.addPermanentWidget(self.backend_badge)

    def _connect(self) -> None:
        self.log_panel.level_changed.connect(self.set_log_level)
        self.build_button.clicked.connect(self.start_build)
        self.cancel_button.clicked.connect(self.cancel_build)
        self.input_panel.inputs_changed.connect(self._update_build_enabled)
        self.settings_panel.bayer_combo.currentIndexChanged.connect(self._on_bayer_setting)
        self._on_bayer_setting()
        self.input_panel.folder_chosen.connect(self._remember_input_folder)
        self.preview_panel.hovered_text.connect(self._on_hovered_text)
        self.preview_panel.coverage_button.toggled.connect(self.coverage_action.setChecked)
        # The worker's signals drive the build model; the widgets follow the model.
        self.runner.progress.connect(self.build_model.report_progress)
        self.runner.solve_status.connect(self.input_panel.set_solve_status)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self.build_model.cancelled)
        self.runner.finished.connect(self.build_model.finish)
        self.build_model.state_changed.connect(self._show_build_state)
        self.build_model.progressed.connect(self._on_progress)
        self.build_model.finished.connect(self._on_finished)
        self._elapsed_timer = QTimer(self)
        self._elapsed_timer.setInterval(500)
        self._elapsed_timer.timeout.connect(self._tick_elapsed)

    def _probe_input(self, path: Path) -> Any:
        """Header check of one input with the Bayer pattern setting (a pool thread)."""
        from zemosaic_core.io.loading import probe_input

        return probe_input(path, self._probe_bayer)  # the caller holds the core lock

    @Slot()
    def _on_bayer_setting(self) -> None:
        # Read here, in the GUI thread; the pool threads only read the plain value.
        bayer = self.settings_model.value("bayer_pattern") or None
        if bayer != self._probe_bayer:
            self._probe_bayer = bayer
            self.input_panel.model.recheck()  # listed raw frames now read differently

    # ---- public API -----------------------------------------------------------------

    def add_inputs(self, paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Add files or folders to the input list.

        Parameters
        ----------
        paths : iterable of path-like

        Returns
        -------
        list of Path
            The files added.
        """
        return self.input_panel.add_inputs(paths)

    def is_building(self) -> bool:
        """Whether a build is running."""
        return self.build_model.is_building

    @property
    def result(self) -> Any:
        """The last mosaic built (what Save writes), or None: the build model's."""
        return self.build_model.result

    @result.setter
    def result(self, value: Any) -> None:
        self.build_model.result = value

    @Slot(str)
    def set_log_level(self, level: str) -> None:
        """Set the level of the ``zemosaic_core``/``zemosaic_gui`` loggers and of the pane.

        Parameters
        ----------
        level : {"DEBUG", "INFO", "WARNING", "ERROR"}
        """
        apply_log_level(level, [self.log_handler])
        if self.log_panel.level() != level:
            self.log_panel.set_level(level)
        self.settings.setValue("log/level", level)

    @Slot()
    def start_build(self) -> None:
        """Start a build from the listed inputs and the current settings."""
        if self.build_model.is_building:
            return
        inputs = self.input_panel.usable_paths()
        if not inputs:
            message = "Add plate-solved FITS tiles first (Open folder, or drop files on the list)."
            log.warning("Nothing to build: %s", message)
            self.statusBar().showMessage(message, 6000)
            return
        try:
            config = self.settings_panel.to_config(output=None)
        except ValueError as exc:
            self._report_error(f"Invalid settings: {exc}")
            return
        self.save_settings()
        combine = config.combine.method
        two_pass = "on" if config.two_pass.enabled else "off"
        log.info(
            "Building a mosaic from %d file(s): backend=%s, combine=%s, match=%s, two-pass=%s, batch size=%s",
            len(inputs),
            config.backend,
            combine,
            config.match,
            two_pass,
            config.batch_size or "auto",
        )
        self.build_model.start()
        self.log_panel.reset_counts()  # the counters speak of this build
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("Starting…")
        self.phase_label.setText("Starting…")
        self.eta_label.setText("")
        self.runner.start(inputs, config)
        self._elapsed_timer.start()
        self.build_started.emit()

    @Slot()
    def cancel_build(self) -> None:
        """Ask the running build to stop at its next check point."""
        if not self.build_model.request_cancel():
            return
        log.info("Cancelling the build…")
        self.runner.cancel()

    @Slot()
    def save_as(self) -> None:
        """Ask where to save the mosaic (FITS, 16-bit TIFF or PNG, by filter)."""
        if self.result is None:
            self.statusBar().showMessage("Build a mosaic before saving it.", 5000)
            return
        start = (
            Path(self.last_save_dir or self.input_panel.last_folder or Path.home()) / "mosaic.fits"
        )
        path, name_filter = choose_save_file(
            self, "Save mosaic", str(start), list(SAVE_FILTERS), next(iter(SAVE_FILTERS))
        )
        if path:
            self.save_result(path, name_filter)

    def save_result(self, path: str | os.PathLike[str], name_filter: str = "") -> Path | None:
        """Write the current mosaic in a worker thread; `saved` or `save_failed` follows.

        Parameters
        ----------
        path : path-like
            Target file; without a known extension, the filter's is added.
        name_filter : str, optional
            One of `SAVE_FILTERS` (as the save dialog returns it).

        Returns
        -------
        Path or None
            The path being written, None when nothing is saved.
        """
        if self.result is None:
            return None
        target = Path(path)
        try:
            kind = output_kind(target, name_filter)
        except ValueError as exc:
            self._report_error(str(exc), title="Cannot save")
            return None
        if target.suffix.lower() not in _EXTENSIONS:
            target = target.with_name(target.name + _DEFAULT_SUFFIX[kind])
        self.last_save_dir = str(target.parent)
        self.settings.setValue("paths/last_save_dir", self.last_save_dir)
        task = start_task(
            write_output,
            target,
            kind,
            self.result,
            self.preview_panel.stretch_params(),
            owner=self,
            on_return=lambda _written: self._on_saved(str(target), kind),
            on_error=lambda exc: self._on_save_failed(str(target), f"{type(exc).__name__}: {exc}"),
        )
        task.finished.connect(lambda: self._save_jobs.discard(task))
        self._save_jobs.add(task)
        self.statusBar().showMessage(f"Saving {target.name}…")
        return target

    def _update_title(self) -> None:
        """``1923 × 1084 px mosaic*`` (``*``: not saved yet).

        Qt adds the application's display name to window titles by itself on most
        platforms; it is written here only when no display name is set.
        """
        body = ""
        if self.result is not None:
            _, h, w = self.result.image.shape
            body = f"{w} × {h} px mosaic[*]"
        if QApplication.applicationDisplayName() != APPLICATION:
            body = f"{APPLICATION} — {body}" if body else APPLICATION
        self.setWindowTitle(body)
        self.setWindowModified(self._unsaved)

    @Slot()
    def show_about(self) -> None:
        """Show the About box (non-modal), with the version."""
        from zemosaic_core import __version__

        box = QMessageBox(self)
        box.setObjectName("aboutBox")
        box.setWindowTitle("About ZeMosaic")
        box.setIconPixmap(app_icon().pixmap(64, 64))
        box.setText(
            f"<b>ZeMosaic {__version__}</b><br>"
            "Colour mosaics from plate-solved FITS tiles.<br><br>"
            "Coverage-weighted coadd on CPU or GPU, photometric matching and two-pass "
            "coverage renormalization."
        )
        box.setModal(False)
        box.show()

    # ---- settings ------------------------------------------------------------------

    def restore_settings(self) -> None:
        """Restore geometry, splitters, folders, the log level and build settings."""
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        for key, splitter in (
            ("window/main_splitter", self.main_splitter),
            ("window/side_splitter", self.side_splitter),
            ("window/right_splitter", self.right_splitter),
        ):
            value = s.value(key)
            if value is not None:
                splitter.restoreState(value)
        self.input_panel.last_folder = str(s.value("paths/last_input_dir", "") or "")
        self.last_save_dir = str(s.value("paths/last_save_dir", "") or "")
        level = level_name(s.value("log/level"))
        self.log_panel.set_level(level)
        apply_log_level(level, [self.log_handler])
        self.preview_panel.set_stretch_mode(str(s.value("preview/stretch", "auto") or "auto"))
        self.settings_panel.load_settings(s)
        self._update_recent_menu()
        # After the launch arguments (added right after construction) had their turn.
        QTimer.singleShot(0, self._restore_inputs)

    def save_settings(self) -> None:
        """Write geometry, splitters, folders, the log level and build settings."""
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/main_splitter", self.main_splitter.saveState())
        s.setValue("window/side_splitter", self.side_splitter.saveState())
        s.setValue("window/right_splitter", self.right_splitter.saveState())
        s.setValue("paths/last_input_dir", self.input_panel.last_folder)
        s.setValue("paths/last_save_dir", self.last_save_dir)
        s.setValue("inputs/paths", [str(p) for p in self.input_panel.paths()])
        s.setValue("log/level", self.log_panel.level())
        s.setValue("preview/stretch", self.preview_panel.stretch_mode())
        self.settings_panel.save_settings(s)
        s.sync()

    @Slot(str)
    def _remember_input_folder(self, folder: str) -> None:
        self.settings.setValue("paths/last_input_dir", folder)
        recent = [folder, *(f for f in self.recent_folders() if f != folder)]
        self.settings.setValue("paths/recent_folders", recent[:RECENT_FOLDERS])
        self._update_recent_menu()

    def recent_folders(self) -> list[str]:
        """Input folders used lately, newest first."""
        value: Any = self.settings.value("paths/recent_folders", []) or []
        return [str(v) for v in ([value] if isinstance(value, str) else value)]

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        folders = [f for f in self.recent_folders() if Path(f).is_dir()]
        for folder in folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _checked=False, f=folder: self.add_inputs([f]))
        self.recent_menu.setEnabled(bool(folders) and not self.build_model.is_building)

    def _restore_inputs(self) -> None:
        """Put back the last session's inputs, unless inputs were given at launch."""
        if self.input_panel.paths():
            return
        value: Any = self.settings.value("inputs/paths", []) or []
        paths = [Path(str(v)) for v in ([value] if isinstance(value, str) else value)]
        existing = [p for p in paths if p.exists()]
        if existing:
            self.add_inputs(existing)
            log.info("Restored %d input(s) from the last session", len(existing))

    # ---- build state ---------------------------------------------------------------

    def _show_build_state(self, _state: str = "") -> None:
        """Enable what the build model allows now."""
        model = self.build_model
        building = model.is_building
        self.input_panel.set_editable(not building)
        self.settings_panel.set_editable(not building)
        self.cancel_button.setEnabled(model.can_cancel)
        self.cancel_action.setEnabled(model.can_cancel)
        self.open_action.setEnabled(not building)
        self.add_files_action.setEnabled(not building)
        self.recent_menu.setEnabled(not building and not self.recent_menu.isEmpty())
        self.save_action.setEnabled(model.can_save)
        if model.cancel_requested:
            self.phase_label.setText("Cancelling…")
        self._update_build_enabled()

    @Slot()
    def _update_build_enabled(self) -> None:
        enabled = self.build_model.can_start(bool(self.input_panel.usable_paths()))
        self.build_button.setEnabled(enabled)
        self.build_action.setEnabled(enabled)

    def _on_progress(self, state: ProgressState) -> None:
        if state.total > 0:
            self.progress_bar.setRange(0, 100)
            self.progress_bar.setValue(state.percent)
            self.progress_bar.setFormat(f"{state.label} · {state.percent} %")
        else:
            self.progress_bar.setRange(0, 0)
        if not self.build_model.cancel_requested:
            self.phase_label.setText(state.label)
        self.eta_label.setText(state.eta_text)

    @Slot()
    def _tick_elapsed(self) -> None:
        if not self.build_model.is_building:
            return
        state = self.build_model.current_progress()
        if state is None or state.eta_s is None:
            self.eta_label.setText(f"{format_duration(self.build_model.elapsed())} elapsed")
        else:  # the time left counts down between the core's reports
            self.eta_label.setText(state.eta_text)

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        self.build_model.succeed(result)
        elapsed = self.build_model.elapsed_s
        for skipped in getattr(result, "skipped", []) or []:
            path = getattr(skipped, "path", None)
            if path is not None:
                self.input_panel.mark_skipped(path, getattr(skipped, "reason", str(skipped)))
        self.preview_panel.set_result(result)
        self._show_cursor_text("")
        c, h, w = result.image.shape
        gain_text = ""
        for label, gains in (
            ("matching gains", getattr(result, "match_gains", None)),
            ("two-pass gains", getattr(result, "gains", None)),
        ):
            if gains is not None and len(gains):
                gain_text += f", {label} {float(min(gains)):.3f}–{float(max(gains)):.3f}"
        log.info(
            "Mosaic ready: %d × %d px, %s, backend=%s (gpu_all=%s), two-pass %s, %d tile(s), "
            "%d skipped%s, %s",
            w,
            h,
            "RGB" if c >= 3 else "mono",
            result.backend,
            result.gpu_all,
            "on" if result.two_pass else "off",
            len(result.tile_paths),
            len(result.skipped),
            gain_text,
            format_duration(elapsed),
        )
        self.backend_badge.setText(
            f"{result.backend.upper()}" + (" · all GPU" if result.gpu_all else "")
        )
        self.backend_badge.setProperty("backend", str(result.backend))
        self.backend_badge.style().unpolish(self.backend_badge)
        self.backend_badge.style().polish(self.backend_badge)
        self.result_label.setText(
            f"{w} × {h} px · {len(result.tile_paths)} tiles · {format_duration(elapsed)}"
        )
        self._unsaved = True
        self._update_title()

    @Slot(str, str)
    def _on_failed(self, message: str, details: str) -> None:
        self.build_model.fail(message, details)
        if details:
            log.debug("Details of the failure:\n%s", details)
        self._report_error(message, details=details, title="Build failed")

    def _on_finished(self, outcome: str) -> None:
        self._elapsed_timer.stop()
        if outcome == "cancelled":
            log.warning("Build cancelled; nothing was written.")
        bar_text, phase_text, percent = self.build_model.final_texts()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(percent)
        self.progress_bar.setFormat(bar_text)
        self.phase_label.setText(phase_text)
        self.eta_label.setText("")
        self.build_finished.emit(outcome)

    def _report_error(self, message: str, details: str = "", title: str = "ZeMosaic") -> None:
        """Log an error and show it in a non-modal message box (never blocks)."""
        log.error(message)
        if self._closing:
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle(title)
        box.setText(message)
        if details:
            box.setDetailedText(details)
        box.setStandardButtons(QMessageBox.StandardButton.Ok)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()
        self.error_box = box

    @Slot(str, str)
    def _on_saved(self, path: str, kind: str) -> None:
        names = {"fits": "FITS", "tiff": "16-bit linear TIFF", "png": "PNG preview"}
        log.info("Saved the %s to %s", names.get(kind, kind), path)
        self._unsaved = False
        self._update_title()
        self.statusBar().showMessage(f"Saved {path}", 8000)
        self.saved.emit(path)

    @Slot(str, str)
    def _on_save_failed(self, path: str, message: str) -> None:
        self.statusBar().clearMessage()
        self._report_error(f"Could not save {path}: {message}", title="Save failed")
        self.save_failed.emit(message)

    @Slot(str)
    def _on_hovered_text(self, text: str) -> None:
        self._show_cursor_text(text)

    def _show_cursor_text(self, text: str) -> None:
        hint = not text
        self.cursor_label.setText(text or (self.cursor_hint if self.result is not None else ""))
        if self.cursor_label.property("hint") != hint:
            self.cursor_label.setProperty("hint", hint)
            self.cursor_label.style().unpolish(self.cursor_label)
            self.cursor_label.style().polish(self.cursor_label)

    @Slot()
    def _toggle_coverage(self) -> None:
        self.preview_panel.set_view_mode("coverage" if self.coverage_action.isChecked() else "rgb")

    # ---- drag and drop -------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        """Accept local files and folders dropped anywhere on the window."""
        mime = event.mimeData()
        if not self.build_model.is_building and any(url.isLocalFile() for url in mime.urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        """Add the dropped files and folders to the input list."""
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths and not self.build_model.is_building:
            event.acceptProposedAction()
            self.add_inputs(paths)
        else:
            event.ignore()

    # ---- closing -------------------------------------------------------------------

    def _ask_before_closing(self) -> None:
        """Offer to save a built mosaic that was never saved (non-blocking)."""
        box = QMessageBox(self)
        box.setObjectName("quitBox")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Unsaved mosaic")
        box.setText("The mosaic you built has not been saved.")
        box.setInformativeText("Save it before closing? Closing now discards it.")
        box.setStandardButtons(
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel
        )
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(button: int) -> None:
            self._quit_box = None
            if button == QMessageBox.StandardButton.Discard:
                self._unsaved = False
                self.close()
            elif button == QMessageBox.StandardButton.Save:
                self.save_as()

        box.finished.connect(answered)
        self._quit_box = box
        box.open()  # window-modal, returns at once

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        """Ask about an unsaved mosaic, stop a running build, save the settings and
        detach the log handler."""
        if self.confirm_quit and self._unsaved and not self.runner.is_running():
            event.ignore()
            if self._quit_box is None:
                self._ask_before_closing()
            return
        self._closing = True
        if self.runner.is_running():
            self.build_model.request_cancel()
            self.runner.cancel()
            if not self.runner.wait(15000):
                log.error("The build did not stop in time; closing anyway.")
        self.save_settings()
        detach_handler(self.log_handler)
        wait_for_tasks(5000)
        super().closeEvent(event)
