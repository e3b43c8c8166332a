"""The input list: files and folders to build from, each with its status.

A view of `zemosaic_gui.model.InputListModel`, which expands folders and keeps each
file's status. The panel runs the header checks the model asks for (``probe_input``) in
a pool thread so a folder of hundreds of frames never freezes the window, and shows
every row as ``ok`` (with channels and shape) or ``skipped`` and why, with a summary
that counts them and adds up their size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import qtawesome as qta
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QColor, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeyEvent, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .core_access import CORE_LOCK
from .dialogs import choose_directory, choose_open_files
from .model.inputs import OK, PENDING, SKIPPED, InputEntry, InputListModel, format_size
from .tasks import Task, start_task
from .theme import COLORS

log = logging.getLogger(__name__)

PATH_ROLE = Qt.ItemDataRole.UserRole
STATUS_ROLE = Qt.ItemDataRole.UserRole + 1

COL_FILE, COL_STATUS, COL_CHANNELS, COL_SIZE = range(4)

FITS_FILTER = "FITS images (*.fit *.fits *.fts *.fit.fz *.fits.fz *.fit.gz *.fits.gz *.fz *.gz);;All files (*)"


def _default_probe(path: Path) -> Any:
    from zemosaic_core.io.loading import probe_input

    return probe_input(path)


def _probe_each(paths: list[Path], probe: Callable[[Path], Any]) -> Iterator[tuple[str, Any]]:
    """``(path, outcome)`` per file, in a pool thread; a probe that raises gives the
    exception as the outcome (a skipped file, with the reason)."""
    for path in paths:
        try:
            with CORE_LOCK:
                outcome: Any = probe(path)
        except Exception as exc:
            outcome = exc
        yield str(path), outcome


class _ElideRightDelegate(QStyledItemDelegate):
    """Elides on the right (the status column: "skipped: unreadable FI…")."""

    def initStyleOption(self, option: QStyleOptionViewItem, index: Any) -> None:  # noqa: N802
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideRight


class InputList(QTreeWidget):
    """The tree of inputs; accepts dropped files and folders.

    Signals
    -------
    paths_dropped(list)
        Local paths (str) dropped on the list.
    delete_pressed()
    """

    paths_dropped = Signal(list)
    delete_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inputList")
        self.setColumnCount(4)
        self.setHeaderLabels(["File", "Status", "Ch", "Size"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._status_delegate = _ElideRightDelegate(self)
        self.setItemDelegateForColumn(COL_STATUS, self._status_delegate)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_FILE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_CHANNELS, QHeaderView.ResizeMode.Fixed)
        header.setSectionResizeMode(COL_SIZE, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(COL_STATUS, 104)
        header.resizeSection(COL_CHANNELS, 30)
        header.resizeSection(COL_SIZE, 72)
        header.setMinimumSectionSize(24)

    @staticmethod
    def _local_paths(event: QDropEvent | QDragEnterEvent | QDragMoveEvent) -> list[str]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        """Accept drags that carry local files or folders."""
        if self._local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802 - Qt override
        """Keep accepting local files while the drag moves."""
        if self._local_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        """Add the dropped files and folders."""
        paths = self._local_paths(event)
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)
        else:
            event.ignore()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        """Delete/Backspace removes the selected rows."""
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.delete_pressed.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def paintEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Draw a drop hint while the list is empty."""
        super().paintEvent(event)
        if self.topLevelItemCount():
            return
        painter = QPainter(self.viewport())
        painter.setPen(QColor(COLORS["text_disabled"]))
        rect = self.viewport().rect().adjusted(12, 12, -12, -12)
        painter.drawText(
            rect,
            Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
            "Drop FITS files or folders here\nor use Open folder (Ctrl+O)",
        )
        painter.end()


class InputPanel(QWidget):
    """Inputs: the list, its buttons and a summary line.

    Parameters
    ----------
    discover : callable, optional
        ``paths -> list of Path`` (default ``zemosaic_core.io.loading.discover_inputs``).
    probe : callable, optional
        ``path -> InputProbe`` (default ``zemosaic_core.io.loading.probe_input``).
    parent : QWidget, optional
    model : InputListModel, optional
        The list shown (default: a new one using ``discover``).

    Signals
    -------
    inputs_changed()
        Rows were added, removed or re-checked.
    folder_chosen(str)
        The folder the user last picked or dropped from (to remember it).
    """

    inputs_changed = Signal()
    folder_chosen = Signal(str)

    def __init__(
        self,
        discover: Callable[[Sequence[Path]], list[Path]] | None = None,
        probe: Callable[[Path], Any] | None = None,
        parent: QWidget | None = None,
        *,
        model: InputListModel | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("inputPanel")
        self.model = model if model is not None else InputListModel(discover)
        self._probe = probe or _default_probe
        self._items: dict[str, QTreeWidgetItem] = {}
        self._jobs: list[Task] = []
        self.model.added.connect(self._on_added)
        self.model.updated.connect(self._on_updated)
        self.model.removed.connect(self._on_removed)
        self.model.probe_requested.connect(self._start_probe)
        self.model.folder_added.connect(self.folder_chosen.emit)

        title = QLabel("INPUTS")
        title.setObjectName("sectionTitle")
        self.add_folder_button = self._tool(
            "mdi6.folder-open-outline", "Add a folder of FITS tiles (Ctrl+O)"
        )
        self.add_folder_button.setObjectName("addFolderButton")
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.add_files_button = self._tool("mdi6.file-plus-outline", "Add FITS files")
        self.add_files_button.setObjectName("addFilesButton")
        self.add_files_button.clicked.connect(self.choose_files)
        self.remove_button = self._tool(
            "mdi6.minus-circle-outline", "Remove the selected files (Del)"
        )
        self.remove_button.setObjectName("removeInputsButton")
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_button = self._tool("mdi6.playlist-remove", "Remove every file")
        self.clear_button.setObjectName("clearInputsButton")
        self.clear_button.clicked.connect(self.clear)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(2)
        header.addWidget(title)
        header.addStretch(1)
        for button in (
            self.add_folder_button,
            self.add_files_button,
            self.remove_button,
            self.clear_button,
        ):
            header.addWidget(button)

        self.list = InputList(self)
        self.list.paths_dropped.connect(self._on_dropped)
        self.list.delete_pressed.connect(self.remove_selected)
        self.list.itemSelectionChanged.connect(self._update_buttons)

        self.summary_label = QLabel()
        self.summary_label.setObjectName("summaryLabel")
        self.detail_label = QLabel()
        self.detail_label.setObjectName("skipDetail")
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail_label.setVisible(False)
        self.list.currentItemChanged.connect(self._update_detail)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 6)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.detail_label)
        layout.addWidget(self.summary_label)
        self._icons = {
            OK: qta.icon("mdi6.check-circle", color=COLORS["ok"]),
            SKIPPED: qta.icon("mdi6.alert-circle", color=COLORS["warning"]),
            PENDING: qta.icon("mdi6.timer-sand", color=COLORS["text_muted"]),
        }
        self._update_summary()
        self._update_buttons()

    def _tool(self, icon: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(qta.icon(icon, color=COLORS["icon"], color_disabled=COLORS["text_disabled"]))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        return button

    # ---- the model -> the rows ----------------------------------------------------

    @property
    def last_folder(self) -> str:
        """Where the file dialogs start: the folder of the last input added."""
        return self.model.last_folder

    @last_folder.setter
    def last_folder(self, folder: str) -> None:
        self.model.last_folder = folder

    def _on_added(self, entries: list[InputEntry]) -> None:
        for entry in entries:
            item = QTreeWidgetItem(self.list)
            item.setText(COL_FILE, entry.path.name)
            item.setToolTip(COL_FILE, str(entry.path))
            item.setData(COL_FILE, PATH_ROLE, str(entry.path))
            item.setTextAlignment(
                COL_SIZE, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            )
            item.setTextAlignment(COL_CHANNELS, Qt.AlignmentFlag.AlignCenter)
            self._items[entry.key] = item
            self._show_entry(item, entry)
        self._changed()

    def _on_updated(self, entry: InputEntry) -> None:
        item = self._items.get(entry.key)
        if item is not None:
            self._show_entry(item, entry)
        self._changed()

    def _on_removed(self, keys: list[str]) -> None:
        for key in keys:
            item = self._items.pop(key, None)
            if item is not None:
                self.list.takeTopLevelItem(self.list.indexOfTopLevelItem(item))
        self._changed()

    def _show_entry(self, item: QTreeWidgetItem, entry: InputEntry) -> None:
        status = entry.status
        item.setData(COL_FILE, STATUS_ROLE, status)
        item.setIcon(COL_STATUS, self._icons[status])
        item.setText(COL_STATUS, entry.status_text)
        item.setToolTip(COL_STATUS, entry.details)
        item.setToolTip(
            COL_FILE, f"{entry.path}\n{entry.header}" if entry.header else str(entry.path)
        )
        colour = {OK: COLORS["text"], SKIPPED: COLORS["warning"], PENDING: COLORS["text_muted"]}
        item.setForeground(COL_STATUS, QColor(colour[status]))
        if status == SKIPPED:
            item.setForeground(COL_FILE, QColor(COLORS["text_muted"]))
        item.setText(COL_CHANNELS, str(entry.channels) if entry.channels else "")
        item.setData(COL_SIZE, PATH_ROLE, entry.size_bytes)
        item.setText(COL_SIZE, format_size(entry.size_bytes))

    def _changed(self) -> None:
        self._update_summary()
        self._update_buttons()
        self.inputs_changed.emit()

    # ---- header checks ---------------------------------------------------------------

    def _start_probe(self, generation: int, paths: list[Path]) -> None:
        self._jobs = [task for task in self._jobs if not task.is_finished()]
        task = start_task(
            _probe_each,
            paths,
            self._probe,
            owner=self,
            on_yield=lambda item: self.model.apply_probe(generation, *item),
        )
        self._jobs.append(task)

    # ---- adding and removing ------------------------------------------------------

    def add_inputs(self, paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Add files and folders (folders are searched recursively for FITS files).

        Parameters
        ----------
        paths : iterable of path-like

        Returns
        -------
        list of Path
            The files newly added (already listed files are not added twice).
        """
        added = self.model.add(paths)
        if not added:
            self._changed()
        return added

    @Slot(str, str, str)
    def set_solve_status(self, path: str, state: str, detail: str) -> None:
        """Show a plate solve's progress: ``solving`` → ``solved`` or ``failed``.

        Parameters
        ----------
        path : str
        state : {"solving", "solved", "failed"}
        detail : str
            "solving…", "solved in 7 s", or the reason it failed.
        """
        if state == "solved":
            self.model.set_status(path, OK, "solved", f"Plate-solved: {detail}")
        elif state == "failed":
            self.model.set_status(
                path, SKIPPED, f"failed: {detail}", f"Plate solving failed: {detail}"
            )
        else:
            self.model.set_status(path, PENDING, "solving…", "Plate solving…")

    def mark_skipped(self, path: str | os.PathLike[str], reason: str) -> None:
        """Show a file as skipped with ``reason`` (the core left it out of a build).

        Parameters
        ----------
        path : path-like
        reason : str
        """
        self.model.mark_skipped(path, reason)

    @Slot()
    def remove_selected(self) -> None:
        """Remove the selected rows."""
        self.model.remove(item.data(COL_FILE, PATH_ROLE) for item in self.list.selectedItems())

    @Slot()
    def clear(self) -> None:
        """Remove every row (pending header checks are ignored)."""
        for task in self._jobs:
            task.abort()
        self._jobs.clear()
        self.model.clear()

    @Slot(list)
    def _on_dropped(self, paths: list[str]) -> None:
        self.add_inputs(paths)

    @Slot()
    def choose_folder(self) -> None:
        """Ask for a folder and add its FITS files."""
        folder = choose_directory(self, "Add a folder of FITS tiles", self.last_folder)
        if folder:
            self.add_inputs([folder])

    @Slot()
    def choose_files(self) -> None:
        """Ask for FITS files and add them."""
        files = choose_open_files(self, "Add FITS files", self.last_folder, FITS_FILTER)
        if files:
            self.add_inputs(files)
            self.folder_chosen.emit(str(Path(files[0]).parent))

    # ---- queries --------------------------------------------------------------------

    def paths(self) -> list[Path]:
        """Every listed file, in list order."""
        return self.model.paths()

    def status(self, path: str | os.PathLike[str]) -> tuple[str, str]:
        """Status (``"ok"``, ``"skipped"`` or ``"pending"``) and status text of a file.

        Raises
        ------
        KeyError
            When the file is not listed.
        """
        entry = self.model.entry(path)
        return entry.status, entry.status_text

    def usable_paths(self) -> list[Path]:
        """Files not skipped (ok, or still being checked: the core checks them again)."""
        return self.model.usable_paths()

    def is_checking(self) -> bool:
        """Whether header checks are still running."""
        return self.model.is_checking()

    def counts(self) -> dict[str, int]:
        """Number of rows per status, and their total size in bytes (``"bytes"``)."""
        return self.model.counts()

    @Slot()
    def _update_detail(self) -> None:
        """Show why the selected file (or the first skipped one) is skipped."""
        current = self.list.currentItem()
        text = self.model.skip_detail(current.data(COL_FILE, PATH_ROLE) if current else None)
        self.detail_label.setText(text)
        self.detail_label.setToolTip(text)
        self.detail_label.setVisible(bool(text))

    def _update_summary(self) -> None:
        self._update_detail()
        self.summary_label.setText(self.model.summary())

    def _update_buttons(self) -> None:
        has_rows = self.list.topLevelItemCount() > 0
        self.remove_button.setEnabled(bool(self.list.selectedItems()))
        self.clear_button.setEnabled(has_rows)

    def set_editable(self, editable: bool) -> None:
        """Enable or disable changes to the list (disabled during a build)."""
        for button in (self.add_folder_button, self.add_files_button):
            button.setEnabled(editable)
        self.list.setAcceptDrops(editable)
        if editable:
            self._update_buttons()
        else:
            self.remove_button.setEnabled(False)
            self.clear_button.setEnabled(False)
