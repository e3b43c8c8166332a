"""The preview: the stretched RGB mosaic (or its coverage) in a zoomable view.

Scene coordinates are full-resolution image pixels with north-up FITS orientation (row
0 at the bottom): a pixmap shown downsampled is scaled back up, so the cursor read-out,
fit and 100 % work the same at any display resolution. A large mosaic first appears
from a strided copy (instant), then a full-resolution rendering computed in a worker
thread replaces it with the same stretch parameters.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, cast

import numpy as np
import qtawesome as qta
from PySide6.QtCore import (
    QPointF,
    QRectF,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from zemosaic_core.display.stretch import StretchMode

from . import display
from .core_access import CORE_LOCK
from .stretch_controls import StretchControls
from .tasks import Task, start_task
from .theme import COLORS

log = logging.getLogger(__name__)

#: Longest side of the instant (strided) preview.
QUICK_MAX_SIDE = 2048
#: Longest side of the refined preview rendered in the background.
FULL_MAX_SIDE = 8192
#: Zoom limits (screen pixels per image pixel).
MIN_ZOOM, MAX_ZOOM = 0.01, 64.0

STRETCH_LABELS: dict[str, str] = display.STRETCH_LABELS


def _render_view(array: np.ndarray, params: Any, step: int, view: str) -> QImage:
    """One view of the mosaic as a QImage (runs in a pool thread)."""
    if view == "coverage":
        rgba, _ = display.render_coverage_rgba(array, step)
    else:
        rgba = display.render_rgba(array, params, step)
    return display.rgba_to_qimage(rgba)


def format_ra(ra_deg: float) -> str:
    """Right ascension as ``hh:mm:ss.s``."""
    total = (ra_deg % 360.0) / 15.0 * 3600.0
    total = round(total, 1)
    hours, rest = divmod(total, 3600.0)
    minutes, seconds = divmod(rest, 60.0)
    return f"{int(hours) % 24:02d}h{int(minutes):02d}m{seconds:04.1f}s"


def format_dec(dec_deg: float) -> str:
    """Declination as ``±dd°mm′ss″``."""
    sign = "-" if dec_deg < 0 else "+"
    total = round(abs(dec_deg) * 3600.0)
    degrees, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{int(degrees):02d}°{int(minutes):02d}′{int(seconds):02d}″"


def sky_grid_for(result: Any, *, wait: bool = True) -> Any:
    """The result's `SkyGrid`, made once under the core lock (None without a WCS, or
    when ``wait`` is False and a build holds the lock)."""
    grid = getattr(result, "_zemosaic_sky_grid", None)
    if grid is not None or getattr(result, "wcs", None) is None:
        return grid
    from zemosaic_core.geometry.skygrid import SkyGrid

    if not CORE_LOCK.acquire(blocking=wait):
        return None
    try:
        grid = SkyGrid.from_wcs(result.wcs, tuple(result.image.shape[1:]))
    except Exception:  # a WCS that cannot transform: no RA/Dec in the read-out
        log.debug("No sky grid for this mosaic", exc_info=True)
        return None
    finally:
        CORE_LOCK.release()
    with contextlib.suppress(AttributeError):  # a slotted result: made again next time
        result._zemosaic_sky_grid = grid
    return grid


def describe_pixel(result: Any, x: int, y: int) -> str:
    """The status-bar text for image pixel (x, y) of a build result.

    Parameters
    ----------
    result : BuildResult
        Needs ``image`` (C, H, W), ``coverage`` (C, H, W) and ``wcs``.
    x, y : int
        0-based pixel indices (x = column, y = row, FITS orientation).

    Returns
    -------
    str
        ``"x 12  y 34 │ RA 05h35m17.3s  Dec -05°23′28″ │ R 0.12 G 0.1 B 0.09 │ cov 4"``.
        RA/Dec come from the result's sky grid, never from the WCS itself, so they
        show while another build runs.
    """
    image = result.image
    _, h, w = image.shape
    if not (0 <= x < w and 0 <= y < h):
        return ""
    parts = [f"x {x:>5d}  y {y:>5d}"]
    grid = sky_grid_for(result, wait=False)  # the GUI thread never waits for a build
    world = grid.world(x, y) if grid is not None else None
    if world is not None:
        lon, lat = world
        if grid.ctypes[0].upper().startswith("RA"):
            parts.append(f"RA {format_ra(lon)}  Dec {format_dec(lat)}")
        else:
            names = [t.split("-")[0] or "lon" for t in grid.ctypes]
            parts.append(f"{names[0]} {lon:.5f}°  {names[1]} {lat:.5f}°")
    values = image[:, y, x]
    if values.shape[0] >= 3:
        labels = ("R", "G", "B")
        text = "  ".join(
            f"{lab} {_fmt_value(v)}" for lab, v in zip(labels, values[:3], strict=True)
        )
    else:
        text = f"value {_fmt_value(values[0])}"
    parts.append(text)
    coverage = getattr(result, "coverage", None)
    if coverage is not None:
        parts.append(
            f"cov {float(display.coverage_map(coverage[:, y : y + 1, x : x + 1])[0, 0]):g}"
        )
    return "  │  ".join(parts)


def _fmt_value(value: float) -> str:
    return "—" if not np.isfinite(value) else f"{float(value):.5g}"


class PreviewView(QGraphicsView):
    """Zoomable, pannable view of the mosaic.

    Signals
    -------
    hovered(int, int)
        Image pixel under the cursor (x, y; FITS orientation), or (-1, -1) outside.
    zoom_changed(float)
        Screen pixels per image pixel.
    """

    hovered = Signal(int, int)
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewView")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor(COLORS["canvas"]))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setMouseTracking(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.pixmap_item = QGraphicsPixmapItem()
        self.pixmap_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.pixmap_item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self._scene.addItem(self.pixmap_item)
        self._hint = QGraphicsSimpleTextItem("Build a mosaic to preview it here")
        hint_font = QFont(self.font())
        hint_font.setPointSizeF(max(9.0, hint_font.pointSizeF() * 1.2))
        self._hint.setFont(hint_font)
        self._hint.setBrush(QColor(COLORS["text_disabled"]))
        self._scene.addItem(self._hint)
        self._image_size: tuple[int, int] = (0, 0)
        self._step = 1
        self._fit_mode = True

    # ---- content ----------------------------------------------------------------

    def has_image(self) -> bool:
        """Whether a mosaic is shown."""
        return not self.pixmap_item.pixmap().isNull()

    def image_size(self) -> tuple[int, int]:
        """Full-resolution (width, height) of the shown mosaic."""
        return self._image_size

    def display_step(self) -> int:
        """Downsampling step of the shown pixmap (1 = full resolution)."""
        return self._step

    def current_image(self) -> QImage:
        """The shown pixmap as a `QImage` (null when empty)."""
        return self.pixmap_item.pixmap().toImage()

    def set_image(self, image: QImage, full_size: tuple[int, int], step: int) -> None:
        """Show ``image``, a rendering of a (width, height) mosaic at ``step``.

        Parameters
        ----------
        image : QImage
            Display rendering, already flipped to north-up.
        full_size : tuple of int
            Width and height of the full-resolution mosaic.
        step : int
            Downsampling step of ``image``.
        """
        first = self._image_size != full_size or not self.has_image()
        width, height = full_size
        self._image_size = (width, height)
        self._step = max(1, int(step))
        self.pixmap_item.setPixmap(QPixmap.fromImage(image))
        self.pixmap_item.setScale(self._step)
        self.pixmap_item.setPos(0.0, float(height - image.height() * self._step))
        self._hint.setVisible(False)
        self._scene.setSceneRect(QRectF(0, 0, width, height))
        self._update_smoothing()
        if first:
            self.fit()

    def clear_image(self) -> None:
        """Show the empty-state hint."""
        self.pixmap_item.setPixmap(QPixmap())
        self._image_size = (0, 0)
        self._hint.setVisible(True)
        self._center_hint()

    def _center_hint(self) -> None:
        rect = self._hint.boundingRect()
        self._hint.setPos(0.0, 0.0)
        self._scene.setSceneRect(QRectF(0.0, 0.0, rect.width(), rect.height()))
        self.resetTransform()
        self.centerOn(self._hint)

    # ---- zoom ---------------------------------------------------------------------

    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return float(self.transform().m11())

    def set_zoom(self, factor: float) -> None:
        """Zoom to ``factor`` screen pixels per image pixel (clamped)."""
        factor = min(max(factor, MIN_ZOOM), MAX_ZOOM)
        current = self.zoom() or 1.0
        self.scale(factor / current, factor / current)
        self._fit_mode = False
        self._update_smoothing()
        self.zoom_changed.emit(self.zoom())

    @Slot()
    def fit(self) -> None:
        """Fit the whole mosaic in the view (F)."""
        if not self.has_image():
            return
        self.resetTransform()
        self.fitInView(self._scene.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._fit_mode = True
        self._update_smoothing()
        self.zoom_changed.emit(self.zoom())

    @Slot()
    def actual_size(self) -> None:
        """One image pixel per screen pixel (Ctrl+0), centred on the view's centre."""
        center = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.centerOn(center)
        self._fit_mode = False
        self._update_smoothing()
        self.zoom_changed.emit(self.zoom())

    @Slot()
    def zoom_in(self) -> None:
        """Zoom in by one step."""
        self.set_zoom(self.zoom() * 1.25)

    @Slot()
    def zoom_out(self) -> None:
        """Zoom out by one step."""
        self.set_zoom(self.zoom() / 1.25)

    def _update_smoothing(self) -> None:
        # Zoomed in past 1:1 show crisp pixels, as astronomers expect; smooth below.
        mode = (
            Qt.TransformationMode.FastTransformation
            if self.zoom() * self._step >= 1.5
            else Qt.TransformationMode.SmoothTransformation
        )
        self.pixmap_item.setTransformationMode(mode)

    # ---- events -------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        """Zoom around the cursor."""
        delta = event.angleDelta().y()
        if not delta or not self.has_image():
            super().wheelEvent(event)
            return
        self.set_zoom(self.zoom() * math.pow(1.25, delta / 120.0))
        event.accept()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Keep a fitted view fitted."""
        super().resizeEvent(event)
        if self._fit_mode and self.has_image():
            self.fit()
        elif not self.has_image():
            self._center_hint()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        """Report the image pixel under the cursor."""
        super().mouseMoveEvent(event)
        self.hovered.emit(*self.image_pixel_at(self.mapToScene(event.position().toPoint())))

    def leaveEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        """Clear the read-out when the cursor leaves."""
        super().leaveEvent(event)
        self.hovered.emit(-1, -1)

    def image_pixel_at(self, scene_pos: QPointF) -> tuple[int, int]:
        """Image pixel (x, y) at a scene position, (-1, -1) outside the mosaic."""
        width, height = self._image_size
        if not self.has_image():
            return -1, -1
        x = math.floor(scene_pos.x())
        y = height - 1 - math.floor(scene_pos.y())
        if 0 <= x < width and 0 <= y < height:
            return x, y
        return -1, -1


class PreviewPanel(QWidget):
    """The preview view with its toolbar (stretch, RGB/coverage, zoom buttons).

    Signals
    -------
    hovered_text(str)
        Status-bar text for the pixel under the cursor ("" when outside).
    """

    hovered_text = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("previewPanel")
        self.view = PreviewView(self)
        self._result: Any = None
        self._params: display.StretchParams | None = None  # automatic, without levels
        self._levels: tuple[float, float, float] = display.DEFAULT_LEVELS
        self._generation = 0
        self._pool = QThreadPool.globalInstance()
        self._jobs: set[Task] = set()

        title = QLabel("PREVIEW")
        title.setObjectName("sectionTitle")
        self.info_label = QLabel("")
        self.info_label.setObjectName("mutedLabel")

        self.stretch_combo = QComboBox()
        self.stretch_combo.setObjectName("stretchCombo")
        for mode in display.MODES:
            self.stretch_combo.addItem(STRETCH_LABELS[mode], mode)
        self.stretch_combo.setToolTip(
            "Display stretch (screen and PNG only, never applied to the science FITS):\n"
            "Auto STF (neutral background) — per-channel midtones transfer: a grey sky\n"
            "Auto STF (linked) — one transfer for all channels: colour casts kept\n"
            "Asinh — arcsinh stretch, neutral background\n"
            "Linear — 0.05 % to 99.95 % quantiles"
        )
        self.stretch_combo.currentIndexChanged.connect(self._on_stretch_changed)

        self.levels_button = self._tool(
            "mdi6.chart-histogram", "Black point, midtones and white point", checkable=True
        )
        self.levels_button.setObjectName("levelsButton")
        self.levels_button.setText("Levels")
        self.levels_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.stretch_controls = StretchControls(self)
        self.stretch_controls.setVisible(False)
        self.levels_button.toggled.connect(self.stretch_controls.setVisible)
        self.stretch_controls.levels_changed.connect(self._on_levels_changed)
        self._levels_timer = QTimer(self)
        self._levels_timer.setSingleShot(True)
        self._levels_timer.setInterval(40)  # coalesce slider moves into one render
        self._levels_timer.timeout.connect(self.render_view)

        self.rgb_button = self._tool("mdi6.palette-outline", "RGB mosaic", checkable=True)
        self.rgb_button.setObjectName("rgbViewButton")
        self.rgb_button.setText("RGB")
        self.coverage_button = self._tool(
            "mdi6.layers-triple-outline", "Coverage map", checkable=True
        )
        self.coverage_button.setObjectName("coverageViewButton")
        self.coverage_button.setText("Coverage")
        for button in (self.rgb_button, self.coverage_button):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.view_group = QButtonGroup(self)
        self.view_group.setExclusive(True)
        self.view_group.addButton(self.rgb_button)
        self.view_group.addButton(self.coverage_button)
        self.rgb_button.setChecked(True)
        self.coverage_button.toggled.connect(self._on_view_changed)

        self.zoom_out_button = self._tool("mdi6.magnify-minus-outline", "Zoom out (wheel)")
        self.zoom_out_button.clicked.connect(self.view.zoom_out)
        self.zoom_in_button = self._tool("mdi6.magnify-plus-outline", "Zoom in (wheel)")
        self.zoom_in_button.clicked.connect(self.view.zoom_in)
        self.fit_button = self._tool("mdi6.fit-to-screen-outline", "Fit to window (F)")
        self.fit_button.clicked.connect(self.view.fit)
        self.actual_button = self._tool("", "100 % — one image pixel per screen pixel (Ctrl+0)")
        self.actual_button.setText("1:1")
        self.actual_button.setObjectName("actualSizeButton")
        self.actual_button.clicked.connect(self.view.actual_size)
        self.zoom_label = QLabel("—")
        self.zoom_label.setObjectName("mutedLabel")
        self.zoom_label.setMinimumWidth(48)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.view.zoom_changed.connect(self._on_zoom_changed)
        self.view.hovered.connect(self._on_hovered)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(4)
        bar.addWidget(title)
        bar.addSpacing(8)
        bar.addWidget(self.info_label)
        bar.addStretch(1)
        bar.addWidget(self.rgb_button)
        bar.addWidget(self.coverage_button)
        bar.addSpacing(8)
        stretch_label = QLabel("Stretch")
        stretch_label.setObjectName("mutedLabel")
        bar.addWidget(stretch_label)
        bar.addWidget(self.stretch_combo)
        bar.addWidget(self.levels_button)
        bar.addSpacing(8)
        bar.addWidget(self.zoom_out_button)
        bar.addWidget(self.zoom_label)
        bar.addWidget(self.zoom_in_button)
        bar.addWidget(self.fit_button)
        bar.addWidget(self.actual_button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(6)
        layout.addLayout(bar)
        layout.addWidget(self.stretch_controls)
        layout.addWidget(self.view, 1)
        self._set_controls_enabled(False)
        self.view.clear_image()

    def _tool(self, icon: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton(self)
        if icon:
            button.setIcon(
                qta.icon(icon, color=COLORS["icon"], color_disabled=COLORS["text_disabled"])
            )
        button.setToolTip(tip)
        button.setCheckable(checkable)
        button.setAutoRaise(True)
        return button

    def _set_controls_enabled(self, enabled: bool) -> None:
        for widget in (
            self.stretch_combo,
            self.levels_button,
            self.rgb_button,
            self.coverage_button,
            self.zoom_in_button,
            self.zoom_out_button,
            self.fit_button,
            self.actual_button,
        ):
            widget.setEnabled(enabled)

    # ---- state ----------------------------------------------------------------

    def result(self) -> Any:
        """The build result shown (None when empty)."""
        return self._result

    def stretch_mode(self) -> StretchMode:
        """``"auto"``, ``"linear"`` or ``"asinh"``."""
        # The combo's items are the core's STRETCH_MODES, nothing else.
        return cast("StretchMode", str(self.stretch_combo.currentData()))

    def set_stretch_mode(self, mode: str) -> None:
        """Select a stretch mode (re-renders when a mosaic is shown)."""
        index = self.stretch_combo.findData(mode)
        if index >= 0:
            self.stretch_combo.setCurrentIndex(index)

    def view_mode(self) -> str:
        """``"rgb"`` or ``"coverage"``."""
        return "coverage" if self.coverage_button.isChecked() else "rgb"

    def set_view_mode(self, mode: str) -> None:
        """Show the RGB mosaic (``"rgb"``) or the coverage map (``"coverage"``)."""
        (self.coverage_button if mode == "coverage" else self.rgb_button).setChecked(True)

    def is_refined(self) -> bool:
        """Whether the shown rendering is the final one (no background job pending)."""
        return not self._jobs

    def set_result(self, result: Any) -> None:
        """Show a build result (``image``, ``coverage``, ``wcs``).

        Parameters
        ----------
        result : BuildResult
        """
        self._result = result
        sky_grid_for(result)  # now, while no build holds the core
        self._params = None
        _, h, w = result.image.shape
        n_ch = result.image.shape[0]
        self.info_label.setText(f"{w} × {h} px · {'RGB' if n_ch >= 3 else 'mono'}")
        self._set_controls_enabled(True)
        self.stretch_combo.setEnabled(self.view_mode() == "rgb")
        self.levels_button.setEnabled(self.view_mode() == "rgb")
        self.render_view()

    def clear(self) -> None:
        """Forget the result and show the empty hint."""
        self._result = None
        self._params = None
        self._generation += 1
        self.info_label.setText("")
        self._set_controls_enabled(False)
        self.view.clear_image()
        self.zoom_label.setText("—")

    def stretch_params(self) -> display.StretchParams | None:
        """The transfer of the shown RGB rendering, levels included (what a PNG gets)."""
        if self._params is None and self._result is not None:
            self._update_params()
        if self._params is None:
            return None
        return self._params.with_levels(*self._levels)

    def levels(self) -> tuple[float, float, float]:
        """The user's black point, midtones balance and white point."""
        return self._levels

    def set_levels(self, black: float, midtones: float, white: float) -> None:
        """Set the levels (as the sliders do) and re-render."""
        self.stretch_controls.set_levels((black, midtones, white))

    def _update_params(self) -> None:
        """Automatic parameters and histogram for the current mode."""
        result = self._result
        self._params = display.compute_params(result.image, self.stretch_mode())
        self.stretch_controls.set_histogram(display.display_histogram(result.image, self._params))

    @Slot()
    def render_view(self) -> None:
        """Render the current view: instant strided copy, then full resolution."""
        result = self._result
        if result is None:
            return
        self._generation += 1
        generation = self._generation
        _, h, w = result.image.shape
        quick_step = display.stride_for((h, w), QUICK_MAX_SIDE)
        full_step = display.stride_for((h, w), FULL_MAX_SIDE)
        if self.view_mode() == "coverage":
            rgba, vmax = display.render_coverage_rgba(result.coverage, quick_step)
            self.info_label.setText(f"{w} × {h} px · coverage 0 – {vmax:g}")
            array, params = result.coverage, None
        else:
            if self._params is None or self._params.mode != self.stretch_mode():
                self._update_params()
            params = self.stretch_params()
            assert params is not None  # _update_params ran for this result
            rgba = display.render_rgba(result.image, params, quick_step)
            n_ch = result.image.shape[0]
            self.info_label.setText(f"{w} × {h} px · {'RGB' if n_ch >= 3 else 'mono'}")
            array = result.image
        self.view.set_image(display.rgba_to_qimage(rgba), (w, h), quick_step)
        if full_step < quick_step:
            task = start_task(
                _render_view,
                array,
                params,
                full_step,
                self.view_mode(),
                pool=self._pool,
                owner=self,
                on_return=lambda image: self._on_rendered(generation, image, full_step),
                on_error=self._on_render_failed,
            )
            task.finished.connect(lambda: self._jobs.discard(task))
            self._jobs.add(task)

    @Slot(object)
    def _on_render_failed(self, error: BaseException) -> None:
        # A failed refinement keeps the quick view.
        log.debug("Background preview rendering failed: %s", error)

    def _on_rendered(self, generation: int, image: QImage, step: int) -> None:
        if generation != self._generation or self._result is None or image.isNull():
            return
        _, h, w = self._result.image.shape
        self.view.set_image(image, (w, h), step)

    @Slot()
    def _on_stretch_changed(self) -> None:
        if self._result is not None and self.view_mode() == "rgb":
            self.render_view()

    @Slot(float, float, float)
    def _on_levels_changed(self, black: float, midtones: float, white: float) -> None:
        self._levels = (black, midtones, white)
        if self._result is not None and self.view_mode() == "rgb":
            self._levels_timer.start()

    @Slot(bool)
    def _on_view_changed(self, _checked: bool) -> None:
        rgb = self._result is not None and self.view_mode() == "rgb"
        self.stretch_combo.setEnabled(rgb)
        self.levels_button.setEnabled(rgb)
        self.stretch_controls.setEnabled(rgb)
        if self._result is not None:
            self.render_view()

    @Slot(float)
    def _on_zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f} %" if zoom >= 0.1 else f"{zoom * 100:.1f} %")

    @Slot(int, int)
    def _on_hovered(self, x: int, y: int) -> None:
        if self._result is None or x < 0:
            self.hovered_text.emit("")
            return
        self.hovered_text.emit(describe_pixel(self._result, x, y))
