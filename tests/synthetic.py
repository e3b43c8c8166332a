"""Small in-memory tiles for unit tests: a smooth sky evaluated in world coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from zemosaic_core.tile import Tile

CENTER = (150.0, 20.0)
SCALE = 1.0 / 3600  # 1 arcsec/px


def make_wcs(center: tuple[float, float], shape: tuple[int, int], rotation_deg: float = 0.0) -> WCS:
    """A TAN WCS of ``shape`` centred on ``center`` with a small rotation."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(center)
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    theta = np.radians(rotation_deg)
    wcs.wcs.cd = SCALE * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return wcs


def sky(wcs: WCS, shape: tuple[int, int], n_channels: int = 3) -> np.ndarray:
    """A smooth, coloured sky with a few soft blobs; consistent across any WCS."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    ra, dec = wcs.all_pix2world(xx, yy, 0)
    u = (ra - CENTER[0]) * np.cos(np.radians(CENTER[1])) * 3600  # arcsec
    v = (dec - CENTER[1]) * 3600
    base = 100 + 0.02 * u + 0.01 * v
    blob = 80 * np.exp(-((u - 60) ** 2 + (v + 40) ** 2) / (2 * 70.0**2))
    blob2 = 40 * np.exp(-((u + 90) ** 2 + (v - 50) ** 2) / (2 * 40.0**2))
    colours = [(1.0, 0.6), (0.8, 1.0), (0.5, 1.3)][:n_channels]
    return np.stack([base + a * blob + b * blob2 for a, b in colours]).astype(np.float32)


def grid_tiles(
    n_x: int = 2,
    n_y: int = 2,
    size: int = 120,
    overlap: float = 0.25,
    n_channels: int = 3,
    rotations: tuple[float, ...] = (0.0, 1.0, -1.0, 2.0, 0.5, -0.5),
    noise: float = 0.0,
    seed: int = 0,
) -> list[Tile]:
    """``n_x * n_y`` overlapping tiles of the smooth sky."""
    rng = np.random.default_rng(seed)
    step = size * (1 - overlap) * SCALE
    tiles = []
    for j in range(n_y):
        for i in range(n_x):
            k = j * n_x + i
            center = (
                CENTER[0] + (i - (n_x - 1) / 2) * step / np.cos(np.radians(CENTER[1])),
                CENTER[1] + (j - (n_y - 1) / 2) * step,
            )
            wcs = make_wcs(center, (size, size), rotations[k % len(rotations)])
            data = sky(wcs, (size, size), n_channels)
            if noise:
                data = data + rng.normal(0, noise, data.shape).astype(np.float32)
            tiles.append(Tile(data=data, wcs=wcs, path=Path(f"tile_{k}.fits")))
    return tiles


def write_tile(path: Path, tile: Tile) -> Path:
    """Write a tile as a (C, H, W) float32 FITS with its WCS."""
    data = tile.data[0] if tile.n_channels == 1 else tile.data
    fits.PrimaryHDU(data=data, header=tile.wcs.to_header(relax=True)).writeto(path)
    return path
