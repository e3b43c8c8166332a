"""The dark, night-friendly look: one colour table, a Fusion palette and ``style.qss``.

``style.qss`` (beside this module) is a template: ``${name}`` tokens are replaced with
the colours of :data:`COLORS`, so widgets that paint themselves (log levels, coverage
legend, icons) and the stylesheet share one palette.
"""

from __future__ import annotations

import os
import tempfile
from math import cos, pi, sin
from pathlib import Path
from string import Template

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

#: The palette (dark greys, warm accent that is easy on night vision).
COLORS: dict[str, str] = {
    "window": "#15171c",
    "panel": "#1b1e24",
    "surface": "#22262e",
    "surface_hover": "#2a2f39",
    "border": "#2e333d",
    "border_strong": "#3b414d",
    "text": "#d6dae1",
    "text_muted": "#8c94a2",
    "text_disabled": "#5c6370",
    "accent": "#d98a3d",
    "accent_hover": "#e69d55",
    "accent_pressed": "#b8712c",
    "accent_text": "#1a1207",
    "selection": "#3a3326",
    "ok": "#6cc27f",
    "warning": "#e5a53b",
    "error": "#ef6461",
    "icon": "#c3c8d1",
    "icon_muted": "#7d8594",
    "canvas": "#0d0e11",
    "log_debug": "#7f8794",
    "log_info": "#d6dae1",
    "log_warning": "#e5a53b",
    "log_error": "#ef6461",
}

STYLE_PATH = Path(__file__).with_name("style.qss")


#: Indicator images the stylesheet needs (``${img_<name>}`` tokens): qtawesome icon names.
_INDICATORS: dict[str, tuple[str, str]] = {
    "arrow_down": ("mdi6.chevron-down", "icon"),
    "arrow_up": ("mdi6.chevron-up", "icon"),
    "arrow_down_disabled": ("mdi6.chevron-down", "text_disabled"),
    "arrow_up_disabled": ("mdi6.chevron-up", "text_disabled"),
    "check": ("mdi6.check-bold", "accent_text"),
}


def indicator_images(folder: Path | None = None) -> dict[str, str]:
    """Render the stylesheet's indicator images (arrows, check mark) as PNG files.

    Parameters
    ----------
    folder : Path, optional
        Where to write them (default: a per-user folder in the temporary directory).

    Returns
    -------
    dict of str to str
        ``img_<name>`` -> path with forward slashes, for the stylesheet template.

    Notes
    -----
    Needs a `QApplication` (qtawesome draws with its icon fonts).
    """
    import qtawesome as qta

    target = (
        folder
        or Path(tempfile.gettempdir())
        / f"zemosaic-theme-{os.getuid() if hasattr(os, 'getuid') else 0}"
    )
    target.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name, (icon, color) in _INDICATORS.items():
        path = target / f"{name}.png"
        qta.icon(icon, color=COLORS[color]).pixmap(32, 32).save(str(path))
        paths[f"img_{name}"] = path.as_posix()
    return paths


def stylesheet(images: dict[str, str] | None = None) -> str:
    """Return the application stylesheet with the palette's colours filled in.

    Parameters
    ----------
    images : dict, optional
        Indicator image paths from `indicator_images` (without them the widgets keep
        their default indicators).
    """
    template = Template(STYLE_PATH.read_text(encoding="utf-8"))
    text = template.safe_substitute({**COLORS, **(images or {})})
    if images is None:  # drop the rules that would point to missing images
        text = "\n".join(line for line in text.splitlines() if "${img_" not in line)
    return text


def palette() -> QPalette:
    """A dark `QPalette` matching :data:`COLORS` (for widgets the stylesheet misses)."""
    c = {key: QColor(value) for key, value in COLORS.items()}
    pal = QPalette()
    role = QPalette.ColorRole
    pal.setColor(role.Window, c["window"])
    pal.setColor(role.WindowText, c["text"])
    pal.setColor(role.Base, c["surface"])
    pal.setColor(role.AlternateBase, c["panel"])
    pal.setColor(role.ToolTipBase, c["surface"])
    pal.setColor(role.ToolTipText, c["text"])
    pal.setColor(role.PlaceholderText, c["text_muted"])
    pal.setColor(role.Text, c["text"])
    pal.setColor(role.Button, c["surface"])
    pal.setColor(role.ButtonText, c["text"])
    pal.setColor(role.BrightText, c["error"])
    pal.setColor(role.Link, c["accent"])
    pal.setColor(role.Highlight, c["selection"])
    pal.setColor(role.HighlightedText, c["text"])
    disabled = QPalette.ColorGroup.Disabled
    for r in (role.WindowText, role.Text, role.ButtonText):
        pal.setColor(disabled, r, c["text_disabled"])
    return pal


def apply_theme(app: QApplication) -> None:
    """Give ``app`` the Fusion style, the dark palette, the stylesheet and the icon."""
    app.setStyle("Fusion")
    app.setPalette(palette())
    try:
        images: dict[str, str] | None = indicator_images()
    except OSError:  # no writable temporary folder: default indicators
        images = None
    app.setStyleSheet(stylesheet(images))
    app.setWindowIcon(app_icon())


def app_icon(size: int = 256) -> QIcon:
    """Draw the application icon: a 3x2 mosaic of tiles with a star, on a dark disc.

    Parameters
    ----------
    size : int
        Edge of the square pixmap in pixels.

    Returns
    -------
    QIcon
    """
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 256.0
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor("#1f232b"))
    painter.drawRoundedRect(QRectF(8 * s, 8 * s, 240 * s, 240 * s), 48 * s, 48 * s)
    tiles = ["#3d5a80", "#4f7190", "#5d6f8e", "#7a5c7e", "#9b6a5a", "#c8843d"]
    w, h, gap = 64 * s, 56 * s, 8 * s
    x0, y0 = 128 * s - (3 * w + 2 * gap) / 2, 128 * s - (2 * h + gap) / 2
    for i, color in enumerate(tiles):
        row, col = divmod(i, 3)
        painter.setBrush(QColor(color))
        painter.setOpacity(0.92)
        rect = QRectF(x0 + col * (w + gap), y0 + row * (h + gap), w, h)
        painter.drawRoundedRect(rect, 8 * s, 8 * s)
    painter.setOpacity(1.0)
    star = QPainterPath()
    cx, cy, r_out, r_in = 176 * s, 96 * s, 34 * s, 9 * s
    for k in range(8):
        radius = r_out if k % 2 == 0 else r_in
        angle = k * pi / 4
        point = QPointF(cx + radius * sin(angle), cy - radius * cos(angle))
        if k == 0:
            star.moveTo(point)
        else:
            star.lineTo(point)
    star.closeSubpath()
    painter.setBrush(QBrush(QColor("#fff4dc")))
    painter.drawPath(star)
    painter.end()
    return QIcon(pixmap)
