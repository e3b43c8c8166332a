"""Sky coordinates of a mosaic's pixels without touching its WCS again.

astropy's WCS is not safe to use from two threads at once; a window that shows a
finished mosaic while the next one builds cannot call it for every mouse move.
`SkyGrid` evaluates the WCS once on a coarse lattice of pixels and then interpolates
unit vectors on the sphere (so RA wraps cleanly through 0h), with NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

__all__ = ["SkyGrid"]

#: Lattice nodes along the longer side (error far below an arcsecond on usual fields).
GRID_NODES = 129


@dataclass(frozen=True)
class SkyGrid:
    """Unit vectors of the sky on a lattice of pixel positions.

    Attributes
    ----------
    xs, ys : ndarray, float64
        Pixel positions of the lattice columns and rows.
    vectors : ndarray, float64, (3, len(ys), len(xs))
        Unit vectors; NaN where the WCS has no sky position.
    ctypes : tuple of str
        The WCS's axis types (e.g. ``("RA---TAN", "DEC--TAN")``).
    """

    xs: np.ndarray
    ys: np.ndarray
    vectors: np.ndarray
    ctypes: tuple[str, str]

    @classmethod
    def from_wcs(cls, wcs: WCS, shape: tuple[int, int], nodes: int = GRID_NODES) -> SkyGrid:
        """Evaluate ``wcs`` on a lattice covering an ``(H, W)`` image (call it once)."""
        height, width = shape
        scale = max(height, width) / max(2, nodes - 1)
        xs = np.linspace(0.0, width - 1.0, max(2, int(np.ceil(width / scale)) + 1))
        ys = np.linspace(0.0, height - 1.0, max(2, int(np.ceil(height / scale)) + 1))
        gx, gy = np.meshgrid(xs, ys)
        with np.errstate(invalid="ignore"):
            lon, lat = (
                np.radians(np.asarray(v, dtype=np.float64))
                for v in wcs.pixel_to_world_values(gx, gy)
            )
        vectors = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
        ctypes = tuple(str(wcs.wcs.ctype[k]) for k in range(2))
        return cls(xs, ys, vectors, (ctypes[0], ctypes[1]))

    def world(self, x: float, y: float) -> tuple[float, float] | None:
        """(lon, lat) in degrees at pixel (x, y); None off the lattice or off the sky."""
        if not (self.xs[0] <= x <= self.xs[-1] and self.ys[0] <= y <= self.ys[-1]):
            return None
        i = int(min(np.searchsorted(self.xs, x, side="right") - 1, self.xs.size - 2))
        j = int(min(np.searchsorted(self.ys, y, side="right") - 1, self.ys.size - 2))
        tx = (x - self.xs[i]) / (self.xs[i + 1] - self.xs[i])
        ty = (y - self.ys[j]) / (self.ys[j + 1] - self.ys[j])
        v = self.vectors
        vec = (
            v[:, j, i] * (1 - tx) * (1 - ty)
            + v[:, j, i + 1] * tx * (1 - ty)
            + v[:, j + 1, i] * (1 - tx) * ty
            + v[:, j + 1, i + 1] * tx * ty
        )
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(norm) or norm == 0:
            return None
        vec = vec / norm
        lon = float(np.degrees(np.arctan2(vec[1], vec[0]))) % 360.0
        lat = float(np.degrees(np.arcsin(np.clip(vec[2], -1.0, 1.0))))
        return lon, lat
