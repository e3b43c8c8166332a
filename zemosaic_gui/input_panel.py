"""The input list: files and folders to build from, each with its status.

Folders are expanded at once (``zemosaic_core.io.loading.discover_inputs``); each file's
header is then checked in a worker thread (``probe_input``) so a folder of hundreds of
frames never freezes the window. Every row says ``ok`` (with channels and shape) or
``skipped`` and why; a summary counts them and adds up their size.
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
from .tasks import Task, start_task
from .theme import COLORS

log = logging.getLogger(__name__)

PATH_ROLE = Qt.ItemDataRole.UserRole
STATUS_ROLE = Qt.ItemDataRole.UserRole + 1
DETAILS_ROLE = Qt.ItemDataRole.UserRole + 2

COL_FILE, COL_STATUS, COL_CHANNELS, COL_SIZE = range(4)

#: Row states.
PENDING, OK, SKIPPED = "pending", "ok", "skipped"

FITS_FILTER = "FITS images (*.fit *.fits *.fts *.fit.fz *.fits.fz *.fit.gz *.fits.gz *.fz *.gz);;All files (*)"


def format_details(details: dict[str, str]) -> str:
    """``"10 s · IRCUT · Bayer GRBG · 2024-07-30T22:44:36 · Seestar S50"``."""
    order = ("exposure", "filter", "bayer", "date", "camera")
    parts = []
    for key in order:
        if key in details:
            parts.append(f"Bayer {details[key]}" if key == "bayer" else details[key])
    return " · ".join(parts)


def format_size(size: float) -> str:
    """Human-readable size with binary prefixes (``"12.3 MB"``).

    Parameters
    ----------
    size : float
        Bytes.

    Returns
    -------
    str
    """
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - unreachable


def _default_discover(paths: Sequence[Path]) -> list[Path]:
    from zemosaic_core.io.loading import discover_inputs

    return list(discover_inputs(paths))


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
    ) -> None:
        super().__init__(parent)
        self.setObjectName("inputPanel")
        self._discover = discover or _default_discover
        self._probe = probe or _default_probe
        self._generation = 0
        self._pending = 0
        self._items: dict[str, QTreeWidgetItem] = {}
        self._jobs: list[Task] = []
        self.last_folder = ""

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
        added: list[Path] = []
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                self.last_folder = str(path)
                self.folder_chosen.emit(str(path))
            elif path.parent.is_dir():
                self.last_folder = str(path.parent)
            try:
                files = self._discover([path])
            except Exception as exc:
                log.warning("Cannot add %s: %s", path, exc)
                if not path.is_dir():
                    files = [path]
                else:
                    continue
            if path.is_dir() and not files:
                log.warning("No FITS files (*.fit, *.fits, *.fts, .fz, .gz) found in %s", path)
            for file in files:
                key = self._key(file)
                if key in self._items:
                    continue
                self._items[key] = self._new_item(Path(file))
                added.append(Path(file))
        if added:
            log.info("Added %d file(s); checking their headers", len(added))
            self._start_probe(added)
        self._update_summary()
        self._update_buttons()
        self.inputs_changed.emit()
        return added

    @staticmethod
    def _key(path: str | os.PathLike[str]) -> str:
        return os.path.normcase(os.path.abspath(os.fspath(path)))

    def _new_item(self, path: Path) -> QTreeWidgetItem:
        item = QTreeWidgetItem(self.list)
        item.setText(COL_FILE, path.name)
        item.setToolTip(COL_FILE, str(path))
        item.setData(COL_FILE, PATH_ROLE, str(path))
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        item.setData(COL_SIZE, PATH_ROLE, size)
        item.setText(COL_SIZE, format_size(size))
        item.setTextAlignment(COL_SIZE, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setTextAlignment(COL_CHANNELS, Qt.AlignmentFlag.AlignCenter)
        self._set_status(item, PENDING, "checking…")
        return item

    def _set_status(self, item: QTreeWidgetItem, status: str, text: str, tip: str = "") -> None:
        item.setData(COL_FILE, STATUS_ROLE, status)
        item.setIcon(COL_STATUS, self._icons[status])
        item.setText(COL_STATUS, text)
        item.setToolTip(COL_STATUS, tip or text)
        color = {OK: COLORS["text"], SKIPPED: COLORS["warning"], PENDING: COLORS["text_muted"]}[
            status
        ]
        item.setForeground(COL_STATUS, QColor(color))
        if status == SKIPPED:
            item.setForeground(COL_FILE, QColor(COLORS["text_muted"]))

    def _start_probe(self, paths: list[Path]) -> None:
        self._pending += len(paths)
        generation = self._generation
        task = start_task(
            _probe_each,
            paths,
            self._probe,
            owner=self,
            on_yield=lambda item: self._on_probed(generation, *item),
        )
        self._jobs.append(task)

    def _on_probed(self, generation: int, path: str, outcome: Any) -> None:
        if generation != self._generation:
            return
        self._pending = max(0, self._pending - 1)
        if self._pending == 0:
            self._jobs.clear()
        item = self._items.get(self._key(path))
        if item is None:
            return
        if isinstance(outcome, BaseException):
            reason = getattr(outcome, "reason", None) or str(outcome) or type(outcome).__name__
            self._set_status(item, SKIPPED, f"skipped: {reason}", f"Skipped: {reason}")
        elif getattr(outcome, "ok", False):
            channels = getattr(outcome, "n_channels", None)
            shape = getattr(outcome, "shape", None)
            size = getattr(outcome, "size_bytes", None)
            kind = {1: "mono", 3: "RGB"}.get(channels or 0, "")
            shape_text = " × ".join(str(s) for s in shape[-2:][::-1]) if shape else ""
            item.setText(COL_CHANNELS, str(channels) if channels else "")
            details = format_details(getattr(outcome, "details", None) or {})
            item.setData(COL_FILE, DETAILS_ROLE, details)
            item.setToolTip(COL_FILE, f"{path}\n{details}" if details else str(path))
            status_tip = f"ok — {kind} {shape_text} px".replace("  ", " ").strip()
            self._set_status(item, OK, "ok", f"{status_tip}\n{details}" if details else status_tip)
            if size:
                item.setData(COL_SIZE, PATH_ROLE, int(size))
                item.setText(COL_SIZE, format_size(size))
        else:
            reason = getattr(outcome, "reason", "") or "unusable"
            self._set_status(item, SKIPPED, f"skipped: {reason}", f"Skipped: {reason}")
        self._update_summary()
        self.inputs_changed.emit()

    def mark_skipped(self, path: str | os.PathLike[str], reason: str) -> None:
        """Show a file as skipped with ``reason`` (the core left it out of a build).

        Parameters
        ----------
        path : path-like
        reason : str
        """
        item = self._items.get(self._key(path))
        if item is None:
            return
        self._set_status(item, SKIPPED, f"skipped: {reason}", f"Skipped: {reason}")
        self._update_summary()
        self.inputs_changed.emit()

    @Slot()
    def remove_selected(self) -> None:
        """Remove the selected rows."""
        for item in self.list.selectedItems():
            self._items.pop(self._key(item.data(COL_FILE, PATH_ROLE)), None)
            self.list.takeTopLevelItem(self.list.indexOfTopLevelItem(item))
        self._update_summary()
        self._update_buttons()
        self.inputs_changed.emit()

    @Slot()
    def clear(self) -> None:
        """Remove every row (pending header checks are ignored)."""
        self._generation += 1
        self._pending = 0
        for task in self._jobs:
            task.abort()
        self._jobs.clear()
        self._items.clear()
        self.list.clear()
        self._update_summary()
        self._update_buttons()
        self.inputs_changed.emit()

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

    def _rows(self) -> list[QTreeWidgetItem]:
        return [self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount())]

    def paths(self) -> list[Path]:
        """Every listed file, in list order."""
        return [Path(item.data(COL_FILE, PATH_ROLE)) for item in self._rows()]

    def status(self, path: str | os.PathLike[str]) -> tuple[str, str]:
        """Status (``"ok"``, ``"skipped"`` or ``"pending"``) and status text of a file.

        Raises
        ------
        KeyError
            When the file is not listed.
        """
        item = self._items[self._key(path)]
        return str(item.data(COL_FILE, STATUS_ROLE)), item.text(COL_STATUS)

    def usable_paths(self) -> list[Path]:
        """Files not skipped (ok, or still being checked: the core checks them again)."""
        return [
            Path(item.data(COL_FILE, PATH_ROLE))
            for item in self._rows()
            if item.data(COL_FILE, STATUS_ROLE) != SKIPPED
        ]

    def is_checking(self) -> bool:
        """Whether header checks are still running."""
        return self._pending > 0

    def counts(self) -> dict[str, int]:
        """Number of rows per status, and their total size in bytes (``"bytes"``)."""
        counts = {OK: 0, SKIPPED: 0, PENDING: 0, "bytes": 0}
        for item in self._rows():
            counts[str(item.data(COL_FILE, STATUS_ROLE))] += 1
            counts["bytes"] += int(item.data(COL_SIZE, PATH_ROLE) or 0)
        return counts

    @Slot()
    def _update_detail(self) -> None:
        """Show why the selected file (or the first skipped one) is skipped."""
        rows = self._rows()
        skipped = [item for item in rows if item.data(COL_FILE, STATUS_ROLE) == SKIPPED]
        current = self.list.currentItem()
        item = current if current in skipped else (skipped[0] if skipped else None)
        details = current.data(COL_FILE, DETAILS_ROLE) if current is not None else None
        if item is None and details:
            text = f"ⓘ {current.text(COL_FILE)}: {details}"
            self.detail_label.setText(text)
            self.detail_label.setToolTip(text)
            self.detail_label.setVisible(True)
            return
        if item is None:
            self.detail_label.setVisible(False)
            self.detail_label.clear()
            return
        reason = item.toolTip(COL_STATUS).removeprefix("Skipped: ")
        text = f"⚠ {item.text(COL_FILE)} skipped: {reason}"
        if len(skipped) > 1:
            text += f"  (+{len(skipped) - 1} more skipped: select a row to see why)"
        self.detail_label.setText(text)
        self.detail_label.setToolTip(text)
        self.detail_label.setVisible(True)

    def _update_summary(self) -> None:
        self._update_detail()
        counts = self.counts()
        total = counts[OK] + counts[SKIPPED] + counts[PENDING]
        if not total:
            self.summary_label.setText("No input yet")
            return
        parts = [f"{total} file{'s' if total != 1 else ''}", f"{counts[OK]} ok"]
        if counts[SKIPPED]:
            parts.append(f"{counts[SKIPPED]} skipped")
        if counts[PENDING]:
            parts.append(f"{counts[PENDING]} checking")
        parts.append(format_size(counts["bytes"]))
        self.summary_label.setText(" · ".join(parts))

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
