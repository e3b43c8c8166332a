"""Benchmark cases: a square grid of overlapping RGB tiles written as FITS, quickly.

The content (a gradient, noise and stars) only has to be realistic enough for the
coadd's cost; photometric realism is the demo generator's job.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

SCALE_DEG = 2.0 / 3600  # 2 arcsec/px


def _tile_wcs(center: tuple[float, float], size: int, rotation_deg: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(center)
    wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    t = math.radians(rotation_deg)
    wcs.wcs.cd = SCALE_DEG * np.array([[-math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]])
    return wcs


def write_case(
    folder: Path, *, n_tiles: int = 9, size: int = 1000, n_channels: int = 3, overlap: float = 0.2
) -> list[Path]:
    """Write ``n_tiles`` tiles (rounded up to a square grid) of ``size`` px into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    side = math.ceil(math.sqrt(n_tiles))
    rng = np.random.default_rng(42)
    step = size * (1 - overlap) * SCALE_DEG
    ra0, dec0 = 120.0, 30.0
    paths = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for k in range(n_tiles):
        i, j = k % side, k // side
        center = (ra0 + (i - (side - 1) / 2) * step / math.cos(math.radians(dec0)),
                  dec0 + (j - (side - 1) / 2) * step)  # fmt: skip
        wcs = _tile_wcs(center, size, rng.uniform(-1.5, 1.5))
        base = 1000 + 0.05 * xx + 0.03 * yy
        data = np.empty((n_channels, size, size), dtype=np.float32)
        for c in range(n_channels):
            data[c] = base * (1 + 0.1 * c) + rng.normal(0, 10, (size, size)).astype(np.float32)
        for x, y, flux in zip(
            rng.uniform(5, size - 5, 300),
            rng.uniform(5, size - 5, 300),
            rng.pareto(1.5, 300) * 500,
            strict=True,
        ):
            x0, y0 = int(x) - 4, int(y) - 4
            sy, sx = slice(y0, y0 + 9), slice(x0, x0 + 9)
            star = np.exp(-((xx[sy, sx] - x) ** 2 + (yy[sy, sx] - y) ** 2) / (2 * 1.2**2))
            data[:, sy, sx] += flux * star
        header = wcs.to_header()
        path = folder / f"tile_{k:03d}.fits"
        fits.PrimaryHDU(data=data if n_channels > 1 else data[0], header=header).writeto(path)
        paths.append(path)
    return paths
