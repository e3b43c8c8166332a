"""Display arrays to Qt images. The stretch itself lives in the core
(``zemosaic_core.display.stretch``): the screen and the saved PNG share one transfer.

The names below are re-exported so the GUI has one import for display work.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from zemosaic_core.display.colormap import coverage_lut, coverage_map, render_coverage_rgba
from zemosaic_core.display.stretch import (
    DEFAULT_LEVELS,
    STRETCH_LABELS,
    STRETCH_MODES,
    TARGET_BACKGROUND,
    StretchParams,
    apply_transfer,
    compute_params,
    display_histogram,
    render_rgba,
    stats_sample,
    stride_for,
)

MODES = STRETCH_MODES

__all__ = [
    "DEFAULT_LEVELS",
    "MODES",
    "STRETCH_LABELS",
    "TARGET_BACKGROUND",
    "StretchParams",
    "apply_transfer",
    "compute_params",
    "coverage_lut",
    "coverage_map",
    "display_histogram",
    "render_coverage_rgba",
    "render_rgba",
    "rgba_to_qimage",
    "stats_sample",
    "stride_for",
]


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """Wrap an RGBA uint8 array (H, W, 4) as a `QImage` that owns a copy of the data.

    Parameters
    ----------
    rgba : ndarray, uint8, (H, W, 4)

    Returns
    -------
    QImage
        Format ``RGBA8888``; safe to build in a worker thread.
    """
    data = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = data.shape[:2]
    image = QImage(data.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return image.copy()
