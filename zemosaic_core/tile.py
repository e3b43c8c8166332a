"""The tile: one plate-solved input image, as the rest of the pipeline sees it.

:class:`TileLike` is the interface every step reads; :class:`Tile` holds its pixels in
memory and :class:`LazyTile` reads them from disk on each access. Both satisfy it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from astropy.wcs import WCS

__all__ = ["LazyTile", "Tile", "TileLike"]


class TileLike(Protocol):
    """What the pipeline reads from a tile, in memory or on disk.

    Attributes
    ----------
    data : ndarray, float32, shape (C, H, W)
        Pixel values (NaN = no data); a :class:`LazyTile` returns a fresh array on
        each access.
    wcs : astropy.wcs.WCS
    path : Path
    weight_map : ndarray, float32, shape (H, W), or None
    tile_weight : float
    n_channels : int
    shape : (int, int)
    name : str
    """

    @property
    def data(self) -> np.ndarray: ...

    @property
    def wcs(self) -> WCS: ...

    @property
    def path(self) -> Path: ...

    @property
    def weight_map(self) -> np.ndarray | None: ...

    @property
    def tile_weight(self) -> float: ...

    @property
    def n_channels(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def name(self) -> str: ...

    def with_data(self, data: np.ndarray) -> Tile:
        """An in-memory tile holding ``data`` (same WCS, weights and path)."""
        ...

    def corrected(self, gain: float, offsets: np.ndarray) -> TileLike:
        """The tile with ``gain * data + offsets[c]`` per channel."""
        ...


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

    def corrected(self, gain: float, offsets: np.ndarray) -> Tile:
        """``gain * data + offsets[c]`` per channel, as a new tile (photometric matching)."""
        offsets = np.asarray(offsets, dtype=np.float32).reshape(-1, 1, 1)
        return self.with_data((self.data * np.float32(gain) + offsets).astype(np.float32))


@dataclass(frozen=True)
class LazyTile:
    """A tile whose pixels stay on disk and are read each time ``data`` is asked for.

    Used when the inputs of a build would not fit its memory budget: only the WCS and
    the shape are held, so memory does not grow with the number of tiles. Behaves like
    a :class:`Tile` for every reader of ``data`` (each access returns a fresh array).

    Attributes
    ----------
    path, wcs, weight_map, tile_weight
        As for :class:`Tile`.
    shape : (int, int)
        ``(H, W)`` of the image plane.
    n_channels : int
    reader : callable
        Returns the tile's pixels, float32 ``(C, H, W)``, as a fresh array.
    gain, offsets
        Photometric correction applied on read: ``gain * pixels + offsets[c]``.
    """

    path: Path
    wcs: WCS
    shape: tuple[int, int]
    n_channels: int
    reader: Callable[[], np.ndarray]
    weight_map: np.ndarray | None = None
    tile_weight: float = 1.0
    gain: float = 1.0
    offsets: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data(self) -> np.ndarray:
        pixels = self.reader()
        if self.gain != 1.0:
            pixels *= np.float32(self.gain)
        if self.offsets is not None:
            pixels += np.asarray(self.offsets, dtype=np.float32).reshape(-1, 1, 1)
        return pixels

    def with_data(self, data: np.ndarray) -> Tile:
        """An in-memory :class:`Tile` holding ``data``."""
        return Tile(data, self.wcs, self.path, self.weight_map, self.tile_weight)

    def corrected(self, gain: float, offsets: np.ndarray) -> LazyTile:
        """The same lazy tile with a correction composed on top of this one's."""
        previous = np.zeros(self.n_channels) if self.offsets is None else np.asarray(self.offsets)
        combined = gain * previous + np.asarray(offsets, dtype=np.float64).reshape(-1)
        return dataclasses.replace(
            self, gain=float(gain * self.gain), offsets=tuple(float(o) for o in combined)
        )
