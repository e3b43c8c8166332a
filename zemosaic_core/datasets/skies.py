"""A validation corpus for photometric matching: skies of different character, with truth.

Each sky is a true image (RGB, float32) on its own TAN grid, rendered with NumPy and
SciPy only and deterministic by seed:

- ``dense_stars``: a crowded star field (about 12 stars per 100 x 100 px) on a flat sky;
- ``faint_galaxies``: a deep field, many faint extended galaxies and few stars;
- ``bright_nebula``: an emission nebula brighter than the sky, filling every overlap;
- ``sparse_gradient``: few stars on a sky with a strong linear gradient (light pollution).

A case cuts a 3 x 3 grid of overlapping tiles (20 % overlap, rotations up to 2 degrees,
the centre tile with a SIP distortion, one tile with a NaN border like a cropped stack)
out of the truth by bicubic spline interpolation through each tile's full WCS, and adds
Gaussian noise. The ``consistent`` variant is exactly that: every tile shows the same
sky at the same level. The ``planted`` variant adds per-tile gains drawn in
[0.85, 1.15], per-tile and per-channel pedestals of up to 5 % of the sky level, and a
common sky gradient of 10 % across the field (in the truth: a real sky feature that
matching must not mistake for gains).

Files: ``FOLDER/tiles/tile_K.fits`` (what a build reads), ``FOLDER/truth.fits`` (the
true image with its WCS) and ``FOLDER/case.json`` (the planted gains and pedestals).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import pixel_to_pixel
from scipy import ndimage

__all__ = [
    "SKIES",
    "VARIANTS",
    "SkyCase",
    "render_sky",
    "truth_on_grid",
    "write_sky_case",
]

#: The skies of the corpus.
SKIES: tuple[str, ...] = ("dense_stars", "faint_galaxies", "bright_nebula", "sparse_gradient")
#: A case's variants: tiles as the sky is, or with planted gains, pedestals and a gradient.
VARIANTS: tuple[str, ...] = ("consistent", "planted")
#: Pixel scale of truth and tiles, arcsec.
PIXEL_SCALE = 2.0
#: Field centre (RA, Dec), degrees.
CENTER = (150.0, 25.0)
#: Planted per-tile gains are drawn in this range.
PLANTED_GAINS = (0.85, 1.15)
#: Planted pedestals: up to this fraction of the sky level, per tile and channel.
PLANTED_PEDESTAL = 0.05
#: Planted sky gradient across the field, a fraction of the sky level.
PLANTED_GRADIENT = 0.10

# Sky level (R, G, B), noise sigma, star count per megapixel per sky.
_SKY: dict[str, dict[str, Any]] = {
    "dense_stars": dict(level=(800.0, 760.0, 700.0), noise=8.0, stars=12000),
    "faint_galaxies": dict(level=(300.0, 290.0, 280.0), noise=5.0, stars=600),
    "bright_nebula": dict(level=(500.0, 470.0, 450.0), noise=8.0, stars=3000),
    "sparse_gradient": dict(level=(1000.0, 950.0, 880.0), noise=10.0, stars=300),
}
_STAR_SIGMA = 1.3  # px


@dataclass
class SkyCase:
    """One written case of the corpus."""

    sky: str
    variant: str
    tile_paths: list[Path]
    truth_path: Path
    gains: list[float]  # planted gain per tile (1 in the consistent variant)
    pedestals: list[list[float]]  # planted pedestal per tile and channel
    level: list[float]  # sky level per channel


def _tan_wcs(center: tuple[float, float], shape: tuple[int, int], rotation_deg: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(center)
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    t = math.radians(rotation_deg)
    scale = PIXEL_SCALE / 3600.0
    wcs.wcs.cd = scale * np.array([[-math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]])
    return wcs


def _points(rng: np.random.Generator, shape: tuple[int, int], count: int) -> tuple[np.ndarray, ...]:
    ys = rng.integers(0, shape[0], count)
    xs = rng.integers(0, shape[1], count)
    return ys, xs


def _splat(shape: tuple[int, int], ys: np.ndarray, xs: np.ndarray, flux: np.ndarray) -> np.ndarray:
    image = np.zeros(shape, dtype=np.float64)
    np.add.at(image, (ys, xs), flux)
    return image


def render_sky(
    sky: str, shape: tuple[int, int], *, seed: int = 0, gradient: float = 0.0
) -> np.ndarray:
    """The true sky ``sky`` on a grid of ``shape``: float32 ``(3, H, W)``.

    ``gradient``: a linear sky gradient across the grid, as a fraction of the level.
    """
    if sky not in _SKY:
        raise ValueError(f"unknown sky {sky!r}; choose one of {SKIES}")
    spec = _SKY[sky]
    rng = np.random.default_rng([seed, SKIES.index(sky)])
    level = np.asarray(spec["level"])
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx - w / 2) / w, (yy - h / 2) / h  # -0.5 .. 0.5 across the grid
    out = np.empty((3, h, w), dtype=np.float64)
    out[:] = level[:, None, None]
    if sky == "sparse_gradient":
        out *= (1 + 0.3 * u + 0.15 * v)[None]  # light pollution across the field
    if gradient:
        out *= (1 + gradient * (0.8 * u - 0.6 * v))[None]
    # Stars: power-law fluxes, colours from blue-white to orange.
    n_stars = int(spec["stars"] * h * w / 1e6)
    ys, xs = _points(rng, shape, n_stars)
    flux = (rng.pareto(1.3, n_stars) + 1) * 80 * 2 * math.pi * _STAR_SIGMA**2
    flux = np.minimum(flux, 2e6)
    colour = np.stack(
        [np.ones(n_stars), rng.uniform(0.75, 1.0, n_stars), rng.uniform(0.5, 1.1, n_stars)]
    )
    for c in range(3):
        out[c] += ndimage.gaussian_filter(_splat(shape, ys, xs, flux * colour[c]), _STAR_SIGMA)
    if sky == "faint_galaxies":
        # Faint galaxies at three sizes, reddish, a few % of the sky at their core.
        for sigma, count in ((2.0, 4000), (3.5, 1500), (6.0, 400)):
            n = int(count * h * w / 1e6)
            gy, gx = _points(rng, shape, n)
            gflux = rng.uniform(0.02, 0.12, n) * level[0] * 2 * math.pi * sigma**2
            for c, tint in enumerate((1.0, 0.85, 0.7)):
                out[c] += ndimage.gaussian_filter(_splat(shape, gy, gx, gflux * tint), sigma)
    if sky == "bright_nebula":
        # A large-scale random field, exponentiated: bright lobes and dark lanes
        # everywhere, plus finer filaments; H-alpha red with an OIII-green core.
        big = ndimage.gaussian_filter(rng.standard_normal(shape), 80)
        big /= big.std()
        fine = ndimage.gaussian_filter(rng.standard_normal(shape), 12)
        fine /= fine.std()
        glow = np.exp(0.8 * big + 0.25 * fine)
        core = np.exp(-(u**2 + v**2) / (2 * 0.2**2))
        for c, (ha, oiii) in enumerate(((1.6, 0.1), (0.5, 0.9), (0.35, 0.6))):
            out[c] += level[c] * (ha * glow + oiii * core * glow)
    return out.astype(np.float32)


def truth_on_grid(
    truth: np.ndarray, truth_wcs: WCS, wcs: WCS, shape: tuple[int, int]
) -> np.ndarray:
    """The true image resampled onto a grid (cubic spline), NaN outside it: (3, H, W)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    tx, ty = pixel_to_pixel(wcs, truth_wcs, xx, yy)
    out = np.empty((truth.shape[0],) + tuple(shape), dtype=np.float32)
    inside = (tx >= 0) & (tx <= truth.shape[2] - 1) & (ty >= 0) & (ty <= truth.shape[1] - 1)
    for c in range(truth.shape[0]):
        out[c] = ndimage.map_coordinates(truth[c], [ty, tx], order=3, mode="nearest")
    out[:, ~inside] = np.nan
    return out


def _sip_wcs(wcs: WCS, size: int) -> WCS:
    """``wcs`` with a small quadratic SIP distortion (about 0.6 px at the corners)."""
    out = wcs.deepcopy()
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], a[1, 1] = 8e-6, -4e-6
    b[0, 2], b[1, 1] = -6e-6, 5e-6
    out.sip = Sip(a, b, None, None, out.wcs.crpix)
    out.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    return out


def write_sky_case(
    folder: str | Path,
    sky: str,
    variant: str = "consistent",
    *,
    tile_size: int = 480,
    seed: int = 0,
) -> SkyCase:
    """Write a 3 x 3 case of ``sky`` into ``folder`` (see the module notes).

    Parameters
    ----------
    folder : path-like
        Created if missing; receives ``tiles/``, ``truth.fits`` and ``case.json``.
    sky : str
        One of `SKIES`.
    variant : {"consistent", "planted"}
    tile_size : int
        Side of the square tiles, pixels.
    seed : int
        Everything random derives from it (and the sky's name).

    Returns
    -------
    SkyCase
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    folder = Path(folder)
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    planted = variant == "planted"
    grid, overlap = 3, 0.2
    step = tile_size * (1 - overlap)
    side = int(math.ceil(step * (grid - 1) + tile_size * 1.1)) + 16
    truth_shape = (side, side)
    truth = render_sky(sky, truth_shape, seed=seed, gradient=PLANTED_GRADIENT if planted else 0.0)
    truth_wcs = _tan_wcs(CENTER, truth_shape, 0.0)
    rng = np.random.default_rng([seed, SKIES.index(sky), 7])
    level = np.asarray(_SKY[sky]["level"])
    noise = float(_SKY[sky]["noise"])
    n = grid * grid
    gains = rng.uniform(*PLANTED_GAINS, n) if planted else np.ones(n)
    pedestals = (
        rng.uniform(-PLANTED_PEDESTAL, PLANTED_PEDESTAL, (n, 3)) * level[None, :]
        if planted
        else np.zeros((n, 3))
    )
    rotations = rng.uniform(-2.0, 2.0, n)
    paths = []
    for k in range(n):
        row, col = divmod(k, grid)
        # Tile centre on the truth grid, then in the sky.
        cx = (truth_shape[1] - 1) / 2 + (col - 1) * step
        cy = (truth_shape[0] - 1) / 2 + (row - 1) * step
        ra, dec = truth_wcs.wcs_pix2world([[cx, cy]], 0)[0]
        wcs = _tan_wcs((float(ra), float(dec)), (tile_size, tile_size), float(rotations[k]))
        if k == 4:
            wcs = _sip_wcs(wcs, tile_size)
        data = truth_on_grid(truth, truth_wcs, wcs, (tile_size, tile_size)).astype(np.float64)
        data = gains[k] * data + pedestals[k][:, None, None]
        data += rng.normal(0.0, noise, data.shape)
        if k == 6:  # a cropped stack: a ragged NaN border on two sides
            edge = 12 + (6 * np.sin(np.arange(tile_size) / 17.0)).astype(int)
            for y in range(tile_size):
                data[:, y, : edge[y]] = np.nan
            data[:, : edge[0] + 4, :] = np.nan
        header = wcs.to_header(relax=True)
        header["OBJECT"] = f"{sky} {variant}"
        path = folder / "tiles" / f"tile_{k}.fits"
        fits.PrimaryHDU(data=data.astype(np.float32), header=header).writeto(path, overwrite=True)
        paths.append(path)
    truth_path = folder / "truth.fits"
    fits.PrimaryHDU(data=truth, header=truth_wcs.to_header()).writeto(truth_path, overwrite=True)
    case = SkyCase(
        sky=sky,
        variant=variant,
        tile_paths=paths,
        truth_path=truth_path,
        gains=[float(g) for g in gains],
        pedestals=[[float(p) for p in row] for row in pedestals],
        level=[float(x) for x in level],
    )
    record = asdict(case)
    record["tile_paths"] = [p.name for p in paths]
    record["truth_path"] = truth_path.name
    (folder / "case.json").write_text(json.dumps(record, indent=1))
    return case
