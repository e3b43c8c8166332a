"""The parity reference of docs/architecture.md §3 shared by the GPU engine and peer tests: the edge
band (output pixels whose mapped position lies within 1e-3 px of an input edge), the only
place where the ``cpu`` and ``gpu`` coverages may differ."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from zemosaic_core.engine.backends.mapping import exact_positions

EDGE_BAND = 1e-3  # px (docs/architecture.md §3)


def _reference_f(nan_plane: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f of docs/architecture.md §3 at positions (x, y) for a tile whose NaN pixels are ``nan_plane``."""
    h, w = nan_plane.shape
    inside = (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)
    cx = np.where(inside, np.clip(x, 0, w - 1), 0.0)
    cy = np.where(inside, np.clip(y, 0, h - 1), 0.0)
    sample = ndimage.map_coordinates(nan_plane, [cy, cx], order=1, mode="constant", cval=np.nan)
    return inside & np.isfinite(sample)


def edge_band(tiles, plan, delta=EDGE_BAND) -> np.ndarray:
    """Output pixels whose mapped position is within ``delta`` px of an edge of an input.

    An edge is where f flips: the tile's pixel domain or the border of its NaN pixels.
    The exact astropy transform gives the positions; f is evaluated at the positions
    moved by up to ``delta`` on each axis, and a pixel is in the band when f changes.
    """
    band = np.zeros(plan.shape, dtype=bool)
    for tile, box in zip(tiles, plan.bboxes, strict=True):
        gy, gx = np.mgrid[0 : box.shape[0], 0 : box.shape[1]].astype(np.float64)
        x, y = exact_positions(plan.sub_wcs(box), tile.wcs, gx, gy)
        nan_plane = np.where(np.isnan(tile.data).any(axis=0), np.nan, 0.0)
        base = _reference_f(nan_plane, x, y)
        moved = np.zeros_like(base)
        for dx in (-delta, 0.0, delta):
            for dy in (-delta, 0.0, delta):
                moved |= _reference_f(nan_plane, x + dx, y + dy) != base
        band[box.slices] |= moved
    return band
