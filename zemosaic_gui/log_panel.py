"""The log pane: a bounded, colour-coded view of the records the handler forwards.

Records arrive one signal at a time; the pane queues them and inserts them in batches
(at most every ``FLUSH_INTERVAL_MS``) so a burst of DEBUG lines never floods the event
loop. It keeps at most ``max_lines`` lines, follows new lines only when the view is
already at the bottom, and offers Clear and Copy.
"""

from __future__ import annotations

import logging
from collections import deque

import qtawesome as qta
from PySide6.QtCore import QSignalBlocker, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from zemosaic_core.runtime.logsetup import DEFAULT_LOG_LEVEL, LOG_LEVELS

from .log_handler import format_time
from .theme import COLORS

#: Lines kept by default in the pane.
DEFAULT_MAX_LINES = 5000
#: Batch insertion interval.
FLUSH_INTERVAL_MS = 40

_LEVEL_COLORS: dict[int, str] = {
    logging.DEBUG: COLORS["log_debug"],
    logging.INFO: COLORS["log_info"],
    logging.WARNING: COLORS["log_warning"],
    logging.ERROR: COLORS["log_error"],
    logging.CRITICAL: COLORS["log_error"],
}


def _level_color(levelno: int) -> str:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _LEVEL_COLORS[level]
    return _LEVEL_COLORS[logging.DEBUG]


class LogPane(QPlainTextEdit):
    """Read-only, bounded, colour-coded log text.

    Parameters
    ----------
    max_lines : int
        Lines kept; older lines are dropped (``setMaximumBlockCount``).
    parent : QWidget, optional
    """

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logPane")
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setMaximumBlockCount(max_lines)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.setFont(font)
        self._pending: deque[tuple[int, str]] = deque()
        self._empty = True
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self.flush)
        self._formats: dict[str, QTextCharFormat] = {}

    @Slot(int, str, str, float)
    def add_record(self, levelno: int, name: str, message: str, created: float) -> None:
        """Queue one record for display (GUI thread; connected to the handler's signal).

        Parameters
        ----------
        levelno : int
            The record's numeric level.
        name : str
            Short logger name.
        message : str
            The message (may span several lines).
        created : float
            Creation time, seconds since the epoch.
        """
        level = logging.getLevelName(levelno)
        prefix = f"{format_time(created)} {level:<7} {name:<12} "
        lines = message.splitlines() or [""]
        self._pending.append((levelno, prefix + lines[0]))
        pad = " " * len(prefix)
        for extra in lines[1:]:
            self._pending.append((levelno, pad + extra))
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def append_line(self, levelno: int, text: str) -> None:
        """Queue one already formatted line."""
        self._pending.append((levelno, text))
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def _format(self, levelno: int) -> QTextCharFormat:
        color = _level_color(levelno)
        fmt = self._formats.get(color)
        if fmt is None:
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(color))
            if levelno >= logging.ERROR:
                fmt.setFontWeight(QFont.Weight.Bold)
            self._formats[color] = fmt
        return fmt

    def is_at_bottom(self) -> bool:
        """Whether the view shows the last line (then new lines keep it there)."""
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 2

    @Slot()
    def flush(self) -> None:
        """Insert every queued line now."""
        if not self._pending:
            return
        bar = self.verticalScrollBar()
        follow = self.is_at_bottom()
        previous = bar.value()
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        while self._pending:
            levelno, text = self._pending.popleft()
            if not self._empty:
                cursor.insertBlock()
            cursor.insertText(text, self._format(levelno))
            self._empty = False
        cursor.endEditBlock()
        if follow:
            bar.setValue(bar.maximum())
        else:
            bar.setValue(min(previous, bar.maximum()))

    def clear_log(self) -> None:
        """Drop every line, shown or queued."""
        self._pending.clear()
        self.clear()
        self._empty = True

    def text(self) -> str:
        """The whole log as plain text (queued lines included)."""
        self.flush()
        return self.toPlainText()


class LogPanel(QWidget):
    """The log-level dropdown, Clear/Copy buttons and counters above the log pane.

    Parameters
    ----------
    max_lines : int
        Lines kept by the pane.
    parent : QWidget, optional

    Signals
    -------
    level_changed(str)
        The level name the user picked.
    """

    level_changed = Signal(str)

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("logPanel")
        self.pane = LogPane(max_lines, self)

        title = QLabel("LOG")
        title.setObjectName("sectionTitle")
        level_label = QLabel("Level")
        level_label.setObjectName("mutedLabel")
        self.level_combo = QComboBox()
        self.level_combo.setObjectName("logLevelCombo")
        self.level_combo.addItems(list(LOG_LEVELS))
        self.level_combo.setCurrentText(DEFAULT_LOG_LEVEL)
        self.level_combo.setToolTip(
            "Level of the zemosaic loggers and of this pane.\n"
            "DEBUG shows per-channel coverage statistics (cov_stats)."
        )
        self.level_combo.currentTextChanged.connect(self.level_changed)

        self.warning_label = QLabel()
        self.warning_label.setObjectName("warningCount")
        self.error_label = QLabel()
        self.error_label.setObjectName("errorCount")
        self._warnings = 0
        self._errors = 0
        self._update_counts()

        self.clear_button = QToolButton()
        self.clear_button.setObjectName("logClearButton")
        self.clear_button.setIcon(qta.icon("mdi6.delete-sweep-outline", color=COLORS["icon"]))
        self.clear_button.setToolTip("Clear the log")
        self.clear_button.clicked.connect(self.clear)
        self.copy_button = QToolButton()
        self.copy_button.setObjectName("logCopyButton")
        self.copy_button.setIcon(qta.icon("mdi6.content-copy", color=COLORS["icon"]))
        self.copy_button.setToolTip("Copy the log (or the selection) to the clipboard")
        self.copy_button.clicked.connect(self.copy_to_clipboard)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(6)
        header.addWidget(title)
        header.addSpacing(8)
        header.addWidget(self.warning_label)
        header.addWidget(self.error_label)
        header.addStretch(1)
        header.addWidget(level_label)
        header.addWidget(self.level_combo)
        header.addSpacing(4)
        header.addWidget(self.copy_button)
        header.addWidget(self.clear_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(6)
        layout.addLayout(header)
        layout.addWidget(self.pane, 1)

    @Slot(int, str, str, float)
    def add_record(self, levelno: int, name: str, message: str, created: float) -> None:
        """Show one record and update the warning/error counters."""
        if levelno >= logging.ERROR:
            self._errors += 1
            self._update_counts()
        elif levelno >= logging.WARNING:
            self._warnings += 1
            self._update_counts()
        self.pane.add_record(levelno, name, message, created)

    def set_level(self, name: str) -> None:
        """Select ``name`` in the dropdown without emitting `level_changed`."""
        with QSignalBlocker(self.level_combo):
            self.level_combo.setCurrentText(name)

    def level(self) -> str:
        """The level name selected in the dropdown."""
        return self.level_combo.currentText()

    def _update_counts(self) -> None:
        self.warning_label.setText(f"⚠ {self._warnings}")
        self.warning_label.setToolTip(f"{self._warnings} warning(s) since the last build started")
        self.warning_label.setProperty("active", self._warnings > 0)
        self.error_label.setText(f"✖ {self._errors}")
        self.error_label.setToolTip(f"{self._errors} error(s) since the last build started")
        self.error_label.setProperty("active", self._errors > 0)
        for label in (self.warning_label, self.error_label):
            label.style().unpolish(label)
            label.style().polish(label)

    @Slot()
    def reset_counts(self) -> None:
        """Start the warning and error counters again (a new build), keeping the text."""
        self._warnings = 0
        self._errors = 0
        self._update_counts()

    @Slot()
    def clear(self) -> None:
        """Clear the pane and the counters."""
        self.pane.clear_log()
        self._warnings = 0
        self._errors = 0
        self._update_counts()

    @Slot()
    def copy_to_clipboard(self) -> None:
        """Copy the selection, or the whole log when nothing is selected."""
        selected = self.pane.textCursor().selectedText().replace("\u2029", "\n")
        QApplication.clipboard().setText(selected or self.pane.text())


__all__ = ["DEFAULT_MAX_LINES", "LogPane", "LogPanel"]
