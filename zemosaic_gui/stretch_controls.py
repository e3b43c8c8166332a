"""Black point / midtones / white point controls over a live histogram.

The controls only edit the *levels* of the core's `StretchParams`; the preview applies
them without rebuilding the mosaic, and Save as PNG writes exactly what is shown.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from .display import DEFAULT_LEVELS
from .theme import COLORS

#: Slider resolution: positions per unit of display level.
SLIDER_STEPS = 1000
_CHANNEL_COLOURS = ("#ff5a5a", "#5adc5a", "#5a8cff")


class HistogramWidget(QWidget):
    """Per-channel histogram of the stretched image, with the levels drawn over it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("histogramWidget")
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._counts: np.ndarray | None = None
        self._levels = DEFAULT_LEVELS

    def set_counts(self, counts: np.ndarray | None) -> None:
        """Show ``counts`` (C, bins) (None clears)."""
        self._counts = None if counts is None else np.asarray(counts, dtype=np.float64)
        self.update()

    def counts(self) -> np.ndarray | None:
        """The histogram shown."""
        return self._counts

    def set_levels(self, levels: tuple[float, float, float]) -> None:
        """Draw the black, midtones and white markers at ``levels``."""
        self._levels = levels
        self.update()

    def paintEvent(self, _event: object) -> None:  # noqa: N802 - Qt override
        """Log-scaled curves per channel, markers for the levels."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        rect = QRectF(self.rect()).adjusted(1, 1, -1, -1)
        painter.fillRect(rect, QColor(COLORS.get("canvas", "#111")))
        counts = self._counts
        if counts is not None and counts.size:
            scaled = np.log1p(counts)
            top = float(scaled.max()) or 1.0
            bins = counts.shape[1]
            colours = _CHANNEL_COLOURS if counts.shape[0] >= 3 else ("#d0d0d0",)
            for channel, colour in zip(scaled, colours, strict=False):
                path = QPainterPath()
                path.moveTo(rect.left(), rect.bottom())
                for i, value in enumerate(channel):
                    x = rect.left() + rect.width() * (i + 0.5) / bins
                    path.lineTo(x, rect.bottom() - rect.height() * float(value) / top)
                path.lineTo(rect.right(), rect.bottom())
                fill = QColor(colour)
                fill.setAlpha(70)
                painter.setPen(QPen(QColor(colour), 1.0))
                painter.setBrush(fill)
                painter.drawPath(path)
        black, midtones, white = self._levels
        mid_x = black + (white - black) * midtones
        for value, colour in ((black, "#000000"), (mid_x, "#888888"), (white, "#ffffff")):
            x = rect.left() + rect.width() * value
            painter.setPen(QPen(QColor(colour), 2.0))
            painter.drawLine(int(x), int(rect.top()), int(x), int(rect.bottom()))
        painter.end()


class StretchControls(QWidget):
    """Sliders for the black point, midtones and white point, and a reset button.

    Signals
    -------
    levels_changed(float, float, float)
        Black point, midtones balance, white point (display units 0..1).
    """

    levels_changed = Signal(float, float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stretchControls")
        self.histogram = HistogramWidget(self)
        self.black_slider = self._slider("blackSlider", "Black point: display level made black")
        self.mid_slider = self._slider(
            "midtonesSlider", "Midtones: left brightens the faint parts, right darkens them"
        )
        self.white_slider = self._slider("whiteSlider", "White point: display level made white")
        self.black_value = QLabel()
        self.mid_value = QLabel()
        self.white_value = QLabel()
        self.reset_button = QPushButton("Reset")
        self.reset_button.setObjectName("levelsResetButton")
        self.reset_button.setToolTip("Back to the automatic stretch")
        self.reset_button.clicked.connect(self.reset)

        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(2)
        for row, (label, slider, value) in enumerate(
            (
                ("Black", self.black_slider, self.black_value),
                ("Midtones", self.mid_slider, self.mid_value),
                ("White", self.white_slider, self.white_value),
            )
        ):
            name = QLabel(label)
            name.setObjectName("mutedLabel")
            value.setMinimumWidth(40)
            grid.addWidget(name, row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(value, row, 2)
        side = QVBoxLayout()
        side.addLayout(grid)
        side.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignRight)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.histogram, 3)
        layout.addLayout(side, 2)
        self.set_levels(DEFAULT_LEVELS, emit=False)
        for slider in (self.black_slider, self.mid_slider, self.white_slider):
            slider.valueChanged.connect(self._on_slider)

    @staticmethod
    def _slider(name: str, tip: str) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setObjectName(name)
        slider.setRange(0, SLIDER_STEPS)
        slider.setToolTip(tip)
        slider.setMinimumWidth(120)
        return slider

    def levels(self) -> tuple[float, float, float]:
        """The current black point, midtones balance and white point."""
        black = self.black_slider.value() / SLIDER_STEPS
        white = self.white_slider.value() / SLIDER_STEPS
        midtones = self.mid_slider.value() / SLIDER_STEPS
        return black, min(max(midtones, 0.001), 0.999), max(white, black + 0.01)

    def set_levels(self, levels: tuple[float, float, float], *, emit: bool = True) -> None:
        """Move the sliders to ``levels`` (emits `levels_changed` once when ``emit``)."""
        black, midtones, white = levels
        for slider, value in (
            (self.black_slider, black),
            (self.mid_slider, midtones),
            (self.white_slider, white),
        ):
            slider.blockSignals(True)
            slider.setValue(round(value * SLIDER_STEPS))
            slider.blockSignals(False)
        self._show_values()
        if emit:
            self.levels_changed.emit(*self.levels())

    @Slot()
    def reset(self) -> None:
        """Identity levels: the automatic stretch as computed."""
        self.set_levels(DEFAULT_LEVELS)

    def set_histogram(self, counts: np.ndarray | None) -> None:
        """Show the histogram of the automatic stretch."""
        self.histogram.set_counts(counts)

    @Slot()
    def _on_slider(self) -> None:
        # Keep black below white whichever one moved.
        if self.black_slider.value() >= self.white_slider.value() - 10:
            sender = self.sender()
            if sender is self.white_slider:
                self.white_slider.blockSignals(True)
                self.white_slider.setValue(self.black_slider.value() + 10)
                self.white_slider.blockSignals(False)
            else:
                self.black_slider.blockSignals(True)
                self.black_slider.setValue(max(0, self.white_slider.value() - 10))
                self.black_slider.blockSignals(False)
        self._show_values()
        self.levels_changed.emit(*self.levels())

    def _show_values(self) -> None:
        black, midtones, white = self.levels()
        self.black_value.setText(f"{black:.3f}")
        self.mid_value.setText(f"{midtones:.3f}")
        self.white_value.setText(f"{white:.3f}")
        self.histogram.set_levels((black, midtones, white))
