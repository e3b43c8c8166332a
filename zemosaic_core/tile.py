"""The tile: one plate-solved input image, as the rest of the pipeline sees it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS


@dataclass(frozen=True)
class Tile:
    """One input image.

    Attributes
    ----------
    data : ndarray, float32, shape (C, H, W)
        Pixel values, C = 1 (mono) or 3 (RGB). NaN means "no data".
    wcs : astropy.wcs.WCS
        2-D celestial WCS (SIP kept when present).
    path : Path
        The source file (for messages; never written to).
    weight_map : ndarray, float32, shape (H, W), optional
        Per-pixel weights >= 0; ``None`` means 1 everywhere.
    tile_weight : float
        Scalar weight ``t >= 0`` of the whole tile (default 1).
    """

    data: np.ndarray
    wcs: WCS
    path: Path
    weight_map: np.ndarray | None = None
    tile_weight: float = 1.0

    @property
    def n_channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image plane."""
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def name(self) -> str:
        return self.path.name

    def with_data(self, data: np.ndarray) -> Tile:
        """A copy of this tile holding ``data`` instead (same WCS, weights and path)."""
        return dataclasses.replace(self, data=data)
