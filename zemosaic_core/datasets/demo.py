"""Deterministic synthetic demo tiles: a small colour mosaic with a known true sky.

The demo field is a patch of sky around RA 83.8, Dec -5.4 (2 arcsec/px) holding a
gently tilted sky background, an emission nebula with filaments, an OIII core and a
dust lane, a blue reflection nebula around a bright star, a Sersic galaxy and a few
thousand stars (Moffat PSF, power-law fluxes, black-body colours). It is rendered into a
grid of overlapping, slightly rotated TAN tiles; one tile carries a SIP distortion (and
its pixels really are rendered through it), one has an irregular NaN border like a
cropped stack, and every tile has its own gain and sky pedestal, as panels shot on
different nights do.

Every value is a function of the sky position only, evaluated analytically in one
tangent plane (arcsec) around the field centre, so overlapping tiles agree up to noise
and :meth:`SyntheticSky.render` gives the noise-free "true sky" at any WCS for tests to
compare mosaics against::

    paths = write_demo_tiles(folder)
    sky = SyntheticSky.from_demo_tile(paths[0])
    truth = sky.render(output_wcs, output_shape)  # (C, H, W) float32

A tile holds ``gain * truth + pedestal + noise``; :func:`demo_tile_truth` reads the
planted gain and pedestal back (FITS cards ``ZMGAIN`` and ``ZMPEDST``).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import proj_plane_pixel_scales

logger = logging.getLogger(__name__)

#: Field centre (RA, Dec) in degrees.
DEMO_CENTER: tuple[float, float] = (83.8, -5.4)
#: Nominal pixel scale of the demo tiles, arcsec per pixel.
DEMO_PIXEL_SCALE: float = 2.0
#: Sky background level per channel (R, G, B) at the field centre, ADU.
SKY_LEVEL: tuple[float, float, float] = (1000.0, 960.0, 900.0)
#: Full width at half maximum of the stars, pixels (of the nominal scale).
PSF_FWHM_PX: float = 3.0
#: Moffat beta of the PSF (wings falling as r**-2beta).
PSF_BETA: float = 2.5
#: Camera gain, electrons per ADU (Poisson variance = level / EGAIN).
EGAIN: float = 2.0
#: Read noise, ADU.
READ_NOISE: float = 5.0
#: ``OBJECT`` card of every demo tile.
DEMO_OBJECT: str = "ZeMosaic demo"

_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
_STAR_DENSITY_PER_ARCMIN2 = 1.0
_STAR_FLUX_MIN = 300.0  # ADU x nominal pixels: peak ~ 1 sigma of the sky noise
_STAR_FLUX_MAX = 1.5e6
_STAR_COUNT_SLOPE = 0.8  # N(>F) ~ F**-slope
_STAR_CUTOFF_ADU = 0.5  # PSF truncated where it falls below this level
_STAR_RCUT_PX = (4.0, 40.0)
_STAMP_CLASSES = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
_STAMP_CHUNK = 2_000_000  # stamp pixels evaluated at once
_BAND_WAVELENGTH_UM = (0.61, 0.53, 0.46)
_WHITE_TEMPERATURE = 5800.0
_MARGIN_PX = 50.0  # sky objects are planted this far beyond the tiles
_GAUSS_TRUNCATE = 6.0  # gaussian blobs end at 6 sigma (exp(-18): < 1e-5 ADU)
_SERSIC_TRUNCATE = 20.0  # the galaxy ends at 20 effective radii (< 1e-5 ADU)


# --------------------------------------------------------------------------- geometry


def _gnomonic(
    ra_deg: np.ndarray, dec_deg: np.ndarray, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Project sky positions onto the tangent plane at ``center``, arcsec (xi east, eta north)."""
    ra0, dec0 = (math.radians(v) for v in center)
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    d_ra = ra - ra0
    cos_dec = np.cos(dec)
    sin_dec = np.sin(dec)
    cos_dra = np.cos(d_ra)
    cos_c = math.sin(dec0) * sin_dec + math.cos(dec0) * cos_dec * cos_dra
    xi = cos_dec * np.sin(d_ra) / cos_c
    eta = (math.cos(dec0) * sin_dec - math.sin(dec0) * cos_dec * cos_dra) / cos_c
    return xi * _ARCSEC_PER_RAD, eta * _ARCSEC_PER_RAD


def _inverse_gnomonic(
    xi_as: np.ndarray, eta_as: np.ndarray, center: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions (degrees) of tangent-plane points (arcsec) around ``center``."""
    ra0, dec0 = (math.radians(v) for v in center)
    xi = np.asarray(xi_as, dtype=np.float64) / _ARCSEC_PER_RAD
    eta = np.asarray(eta_as, dtype=np.float64) / _ARCSEC_PER_RAD
    denom = math.cos(dec0) - eta * math.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(math.sin(dec0) + eta * math.cos(dec0), np.sqrt(xi * xi + denom * denom))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def _pixel_scale_arcsec(wcs: WCS) -> float:
    """Smallest pixel side of ``wcs`` at its reference point, arcsec."""
    scales = proj_plane_pixel_scales(wcs.celestial)  # degrees (CUNIT deg)
    return float(np.min(np.abs(scales)) * 3600.0)


def _blackbody_colour(temperature: np.ndarray) -> np.ndarray:
    """RGB ratios of black bodies, white-balanced on a 5800 K star, shape ``(N, 3)``."""
    lam = np.asarray(_BAND_WAVELENGTH_UM, dtype=np.float64)  # micron
    c2 = 14387.77  # h c / k, micron K

    def planck(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[..., None]
        return lam**-5 / np.expm1(c2 / (lam * t))

    rgb = planck(temperature) / planck(np.array(_WHITE_TEMPERATURE))
    return rgb / rgb[..., 1:2]


# --------------------------------------------------------------------------- the sky


@dataclass(frozen=True)
class _Blob:
    """An anisotropic gaussian of the extended emission (tangent-plane arcsec)."""

    xi: float
    eta: float
    sigma_major: float
    sigma_minor: float
    angle_rad: float
    amplitude: float
    colour: tuple[float, float, float]


class SyntheticSky:
    """The noise-free demo sky, a pure function of the position on the sky.

    Parameters
    ----------
    seed : int
        Seed of the sky (stars, knots of nebulosity). The same seed and extent give
        the same sky.
    half_extent_arcsec : tuple of float
        Half width and half height ``(xi, eta)`` of the populated field, arcsec, in the
        tangent plane at :data:`DEMO_CENTER`. Objects are placed relative to it.
    rgb : bool
        Three channels (R, G, B) when true; one (the mean of R, G and B) otherwise.
    center : tuple of float
        Field centre ``(ra, dec)`` in degrees.

    Notes
    -----
    Values are surface brightness in ADU per nominal (2 arcsec) pixel, sampled at pixel
    centres: they do not depend on the pixel size of the WCS they are rendered at, which
    is what an interpolating (not flux-conserving) reprojection compares against.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        half_extent_arcsec: tuple[float, float] = (1800.0, 1300.0),
        rgb: bool = True,
        center: tuple[float, float] = DEMO_CENTER,
    ) -> None:
        self.seed = int(seed)
        self.half_extent_arcsec = (float(half_extent_arcsec[0]), float(half_extent_arcsec[1]))
        self.rgb = bool(rgb)
        self.center = (float(center[0]), float(center[1]))
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
        self._make_extended(rng)
        self._make_stars(rng)

    # -- construction

    def _make_extended(self, rng: np.random.Generator) -> None:
        xh, yh = self.half_extent_arcsec
        s = min(xh, yh)
        h_alpha = (1.0, 0.32, 0.42)
        oiii = (0.30, 0.90, 1.00)
        blobs = [
            # Main emission nebula: a broad glow, two filaments, an OIII core.
            _Blob(-0.15 * xh, 0.10 * yh, 0.42 * s, 0.26 * s, math.radians(30), 260.0, h_alpha),
            _Blob(0.10 * xh, -0.08 * yh, 0.55 * s, 0.035 * s, math.radians(-20), 220.0, h_alpha),
            _Blob(-0.35 * xh, 0.30 * yh, 0.35 * s, 0.025 * s, math.radians(55), 160.0, h_alpha),
            _Blob(-0.10 * xh, 0.14 * yh, 0.11 * s, 0.08 * s, math.radians(-10), 280.0, oiii),
        ]
        # Knots scattered over the glow.
        for _ in range(10):
            kx, ky = rng.normal(0.0, 0.25, size=2)
            size = float(rng.uniform(0.015, 0.05) * s)
            blobs.append(
                _Blob(
                    float((kx - 0.12) * xh),
                    float((ky + 0.08) * yh),
                    size * float(rng.uniform(1.0, 2.5)),
                    size,
                    float(rng.uniform(0.0, math.pi)),
                    float(rng.uniform(40.0, 180.0)),
                    h_alpha,
                )
            )
        # Blue reflection nebula around a bright star (planted in _make_stars).
        self._reflection_star = (-0.55 * xh, -0.45 * yh)
        blobs.append(
            _Blob(
                self._reflection_star[0] + 0.02 * s,
                self._reflection_star[1] + 0.01 * s,
                0.10 * s,
                0.07 * s,
                math.radians(70),
                150.0,
                (0.45, 0.70, 1.00),
            )
        )
        self._blobs = blobs
        # A dust lane dimming the nebula (multiplicative, on the emission only).
        self._dust = _Blob(0.0, 0.02 * yh, 0.60 * s, 0.05 * s, math.radians(-35), 0.6, (1, 1, 1))
        # (its amplitude is the fraction of the emission absorbed on its axis)
        # A Sersic galaxy, warm coloured.
        self._galaxy = {
            "xi": 0.55 * xh,
            "eta": -0.40 * yh,
            "r_eff": 0.045 * s,
            "n": 1.5,
            "q": 0.45,
            "angle": math.radians(50),
            "i_eff": 120.0,
            "core": 2.0,
            "colour": (1.0, 0.85, 0.62),
        }
        # Sky background: a level per channel and a gentle linear tilt (fraction per half extent).
        self._tilt = (0.04, -0.025)

    def _make_stars(self, rng: np.random.Generator) -> None:
        xh, yh = self.half_extent_arcsec
        area_arcmin2 = (2 * xh / 60.0) * (2 * yh / 60.0)
        n = max(int(round(area_arcmin2 * _STAR_DENSITY_PER_ARCMIN2)), 10)
        xi = rng.uniform(-xh, xh, size=n)
        eta = rng.uniform(-yh, yh, size=n)
        u = rng.uniform(0.0, 1.0, size=n)
        flux = _STAR_FLUX_MIN * (1.0 - u) ** (-1.0 / _STAR_COUNT_SLOPE)
        flux = np.minimum(flux, _STAR_FLUX_MAX)
        temperature = 10.0 ** rng.uniform(math.log10(3200.0), math.log10(12000.0), size=n)
        # A few planted bright stars: one lights the reflection nebula, one is red, one blue.
        planted_xi = np.array([self._reflection_star[0], -0.05 * xh, 0.35 * xh])
        planted_eta = np.array([self._reflection_star[1], -0.30 * yh, 0.30 * yh])
        planted_flux = np.array([8.0e5, 4.0e5, 5.0e5])
        planted_t = np.array([11000.0, 3300.0, 9500.0])
        self.star_xi = np.concatenate([xi, planted_xi])
        self.star_eta = np.concatenate([eta, planted_eta])
        self.star_flux = np.concatenate([flux, planted_flux])
        self.star_temperature = np.concatenate([temperature, planted_t])
        self.star_colour = _blackbody_colour(self.star_temperature)  # (N, 3), G = 1

        alpha_px = PSF_FWHM_PX / (2.0 * math.sqrt(2.0 ** (1.0 / PSF_BETA) - 1.0))
        self._alpha_arcsec = alpha_px * DEMO_PIXEL_SCALE
        # Peak surface brightness per nominal pixel of a Moffat of total flux F.
        self.star_peak = self.star_flux * (PSF_BETA - 1.0) / (math.pi * alpha_px**2)
        ratio = np.maximum(self.star_peak / _STAR_CUTOFF_ADU, 1.0 + 1e-9)
        r_px = alpha_px * np.sqrt(ratio ** (1.0 / PSF_BETA) - 1.0)
        r_px = np.clip(r_px, *_STAR_RCUT_PX)
        self.star_rcut_arcsec = r_px * DEMO_PIXEL_SCALE

    # -- public

    @classmethod
    def from_demo_tile(cls, path: str | Path) -> SyntheticSky:
        """The sky a demo tile was rendered from, rebuilt from its header cards.

        Parameters
        ----------
        path : str or Path
            A FITS file written by :func:`write_demo_tiles`.

        Returns
        -------
        SyntheticSky
        """
        header = fits.getheader(path)
        return demo_sky(
            seed=int(header["ZMSEED"]),
            grid=(int(header["ZMGRIDX"]), int(header["ZMGRIDY"])),
            tile_size=int(header["ZMTSIZE"]),
            overlap=float(header["ZMOVERLP"]),
            rgb=int(header["NAXIS"]) == 3,
        )

    @property
    def n_channels(self) -> int:
        """Number of channels :meth:`render` returns (3 or 1)."""
        return 3 if self.rgb else 1

    @property
    def n_stars(self) -> int:
        """Number of stars in the field."""
        return int(self.star_xi.size)

    def star_world(self) -> tuple[np.ndarray, np.ndarray]:
        """Sky positions of the stars.

        Returns
        -------
        ra, dec : ndarray
            Degrees, one entry per star (same order as ``star_flux``).
        """
        return _inverse_gnomonic(self.star_xi, self.star_eta, self.center)

    def sky_background(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """The tilted sky background at tangent-plane points, shape ``(3,) + xi.shape``."""
        xh, yh = self.half_extent_arcsec
        tilt = 1.0 + self._tilt[0] * (xi / xh) + self._tilt[1] * (eta / yh)
        level = np.asarray(SKY_LEVEL, dtype=np.float64).reshape((3,) + (1,) * np.ndim(xi))
        return level * tilt[None]

    def render(self, wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
        """Noise-free true sky sampled at the pixel centres of ``wcs``.

        Parameters
        ----------
        wcs : astropy.wcs.WCS
            Any celestial WCS; its full pixel-to-world transform (SIP included) is used.
        shape : tuple of int
            ``(H, W)`` of the image.

        Returns
        -------
        ndarray, float32, shape ``(C, H, W)``
            C = 3 (R, G, B) or 1 (mono). No gain, pedestal or noise applied.
        """
        height, width = int(shape[0]), int(shape[1])
        if wcs.naxis != 2:
            wcs = wcs.celestial
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
        ra, dec = wcs.all_pix2world(xx, yy, 0)
        del xx, yy
        xi, eta = _gnomonic(ra, dec, self.center)
        del ra, dec
        out = self._extended(xi, eta)
        self._add_stars(out, wcs, xi, eta)
        if not self.rgb:
            out = out.mean(axis=0, keepdims=True)
        return out.astype(np.float32)

    # -- evaluation

    def _extended(self, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Background + nebulae + galaxy, float64 ``(3, H, W)``.

        Each component is truncated at a fixed sky radius (6 sigma, 20 effective radii:
        below 1e-5 ADU) and only evaluated on the pixel box that can reach it.
        """
        out = self.sky_background(xi, eta)
        boxes = _BoxFinder(xi, eta)
        nebula = np.zeros_like(out)
        for blob in self._blobs:
            box = boxes.find(blob.xi, blob.eta, _GAUSS_TRUNCATE * blob.sigma_major)
            if box is not None:
                values = _gaussian(blob, xi[box], eta[box])
                nebula[(slice(None), *box)] += np.asarray(blob.colour)[:, None, None] * values
        dust = self._dust
        box = boxes.find(dust.xi, dust.eta, _GAUSS_TRUNCATE * dust.sigma_major)
        if box is not None:
            transmission = 1.0 - _gaussian(dust, xi[box], eta[box])
            nebula[(slice(None), *box)] *= transmission[None]
        out += nebula
        g = self._galaxy
        box = boxes.find(g["xi"], g["eta"], _SERSIC_TRUNCATE * g["r_eff"] / g["q"])
        if box is not None:
            dx = xi[box] - g["xi"]
            dy = eta[box] - g["eta"]
            ca, sa = math.cos(g["angle"]), math.sin(g["angle"])
            u = ca * dx + sa * dy
            v = (-sa * dx + ca * dy) / g["q"]
            r = np.sqrt(u * u + v * v + g["core"] ** 2)
            n = g["n"]
            b_n = 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)
            profile = g["i_eff"] * np.exp(-b_n * ((r / g["r_eff"]) ** (1.0 / n) - 1.0))
            profile[r >= _SERSIC_TRUNCATE * g["r_eff"]] = 0.0
            out[(slice(None), *box)] += np.asarray(g["colour"])[:, None, None] * profile[None]
        return out

    def _add_stars(self, out: np.ndarray, wcs: WCS, xi: np.ndarray, eta: np.ndarray) -> None:
        """Add the stars to ``out`` (float64 ``(3, H, W)``), by stamps around each star."""
        height, width = xi.shape
        scale = _pixel_scale_arcsec(wcs)
        half = np.ceil(self.star_rcut_arcsec / scale * 1.05).astype(np.int64) + 2
        classes = np.asarray(_STAMP_CLASSES, dtype=np.int64)
        idx = np.minimum(np.searchsorted(classes, half), classes.size - 1)
        half = np.maximum(classes[idx], half)
        ra, dec = self.star_world()
        with np.errstate(invalid="ignore"):
            px, py = wcs.all_world2pix(ra, dec, 0, quiet=True)
        inside = (
            np.isfinite(px)
            & np.isfinite(py)
            & (px > -half - 1)
            & (px < width + half)
            & (py > -half - 1)
            & (py < height + half)
        )
        alpha2 = self._alpha_arcsec**2
        flat_out = out.reshape(3, -1)
        for h in np.unique(half[inside]):
            sel = np.flatnonzero(inside & (half == h))
            offsets = np.arange(-h, h + 1)
            per_star = offsets.size**2
            step = max(1, _STAMP_CHUNK // per_star)
            for start in range(0, sel.size, step):
                s = sel[start : start + step]
                cx = np.rint(px[s]).astype(np.int64)[:, None, None] + offsets[None, None, :]
                cy = np.rint(py[s]).astype(np.int64)[:, None, None] + offsets[None, :, None]
                cx, cy = np.broadcast_arrays(cx, cy)
                valid = (cx >= 0) & (cx < width) & (cy >= 0) & (cy < height)
                cxc = np.clip(cx, 0, width - 1)
                cyc = np.clip(cy, 0, height - 1)
                dxi = xi[cyc, cxc] - self.star_xi[s][:, None, None]
                deta = eta[cyc, cxc] - self.star_eta[s][:, None, None]
                r2 = dxi * dxi + deta * deta
                rcut2 = (self.star_rcut_arcsec[s] ** 2)[:, None, None]
                floor = (1.0 + rcut2 / alpha2) ** -PSF_BETA
                prof = (1.0 + r2 / alpha2) ** -PSF_BETA - floor
                keep = valid & (r2 < rcut2)
                prof *= self.star_peak[s][:, None, None]
                flat = (cyc * width + cxc)[keep]
                for c in range(3):
                    weights = (prof * self.star_colour[s, c][:, None, None])[keep]
                    flat_out[c] += np.bincount(flat, weights=weights, minlength=height * width)


def _gaussian(blob: _Blob, xi: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """``amplitude * exp(-q / 2)``, zero beyond q = 6**2 (a pure function of the position)."""
    dx = xi - blob.xi
    dy = eta - blob.eta
    ca, sa = math.cos(blob.angle_rad), math.sin(blob.angle_rad)
    u = (ca * dx + sa * dy) / blob.sigma_major
    v = (-sa * dx + ca * dy) / blob.sigma_minor
    q = u * u + v * v
    g = blob.amplitude * np.exp(-0.5 * q)
    g[q >= _GAUSS_TRUNCATE**2] = 0.0
    return g


class _BoxFinder:
    """Pixel boxes of an image that can hold tangent-plane points near a given one."""

    def __init__(self, xi: np.ndarray, eta: np.ndarray) -> None:
        self._rows = (xi.min(axis=1), xi.max(axis=1), eta.min(axis=1), eta.max(axis=1))
        self._cols = (xi.min(axis=0), xi.max(axis=0), eta.min(axis=0), eta.max(axis=0))

    @staticmethod
    def _span(lims: tuple[np.ndarray, ...], xc: float, ec: float, radius: float) -> slice | None:
        xmin, xmax, emin, emax = lims
        hit = np.flatnonzero(
            (xmax >= xc - radius)
            & (xmin <= xc + radius)
            & (emax >= ec - radius)
            & (emin <= ec + radius)
        )
        return None if hit.size == 0 else slice(int(hit[0]), int(hit[-1]) + 1)

    def find(self, xc: float, ec: float, radius: float) -> tuple[slice, slice] | None:
        """``(rows, cols)`` slices covering every pixel within ``radius`` of ``(xc, ec)``."""
        rows = self._span(self._rows, xc, ec, radius)
        cols = self._span(self._cols, xc, ec, radius)
        return None if rows is None or cols is None else (rows, cols)


# --------------------------------------------------------------------------- layout


def _validate(grid: Sequence[int], tile_size: int, overlap: float) -> tuple[int, int]:
    if len(grid) != 2 or int(grid[0]) < 1 or int(grid[1]) < 1:
        raise ValueError(f"grid must be two integers >= 1, got {grid!r}")
    if int(tile_size) < 32:
        raise ValueError(f"tile_size must be >= 32 px, got {tile_size}")
    if not 0.0 < float(overlap) < 0.5:
        raise ValueError(f"overlap must be in (0, 0.5), got {overlap}")
    return int(grid[0]), int(grid[1])


def _half_extent_arcsec(
    grid: tuple[int, int], tile_size: int, overlap: float
) -> tuple[float, float]:
    step = tile_size * (1.0 - overlap)
    nx, ny = grid
    return (
        ((nx - 1) / 2.0 * step + 0.55 * tile_size + _MARGIN_PX) * DEMO_PIXEL_SCALE,
        ((ny - 1) / 2.0 * step + 0.55 * tile_size + _MARGIN_PX) * DEMO_PIXEL_SCALE,
    )


def demo_sky(
    seed: int = 0,
    *,
    grid: tuple[int, int] = (3, 2),
    tile_size: int = 640,
    overlap: float = 0.2,
    rgb: bool = True,
) -> SyntheticSky:
    """The sky :func:`write_demo_tiles` renders for the same arguments.

    Parameters
    ----------
    seed, grid, tile_size, overlap, rgb
        As for :func:`write_demo_tiles`.

    Returns
    -------
    SyntheticSky
    """
    grid = _validate(grid, tile_size, overlap)
    return SyntheticSky(
        seed, half_extent_arcsec=_half_extent_arcsec(grid, int(tile_size), overlap), rgb=rgb
    )


@dataclass(frozen=True)
class DemoTileSpec:
    """Geometry and photometry of one demo tile.

    Attributes
    ----------
    index : int
        Position in the stable (row-major) order.
    row, col : int
        Place in the grid (row 0 is the northern row, col 0 the eastern column).
    name : str
        File name, e.g. ``zemosaic_demo_r0c1.fits``.
    header : astropy.io.fits.Header
        The WCS and demo cards the file carries.
    wcs : astropy.wcs.WCS
        The WCS parsed back from ``header`` (what a reader of the file sees).
    shape : tuple of int
        ``(H, W)``.
    gain, pedestal : float
        Planted photometry: the tile holds ``gain * truth + pedestal + noise``.
    rotation_deg : float
        Rotation of the tile against north-up.
    sip, nan_border : bool
        Whether the tile carries the SIP distortion / the NaN border.
    """

    index: int
    row: int
    col: int
    name: str
    header: fits.Header
    wcs: WCS
    shape: tuple[int, int]
    gain: float
    pedestal: float
    rotation_deg: float
    sip: bool
    nan_border: bool


def _sip_coefficients(rng: np.random.Generator, tile_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Order-2 SIP A and B: ~1 px of distortion at the corners of a 640 px tile."""
    scale = (320.0 / (tile_size / 2.0)) ** 2  # same displacement in pixels at any size
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0], a[1, 1], a[0, 2] = np.array([2.5e-6, -1.5e-6, 1.0e-6]) * rng.uniform(0.8, 1.2, 3)
    b[2, 0], b[1, 1], b[0, 2] = np.array([-1.0e-6, 2.0e-6, 2.5e-6]) * rng.uniform(0.8, 1.2, 3)
    return a * scale, b * scale


def _sip_inverse(a: np.ndarray, b: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """Order-3 AP, BP fitted to invert the forward A, B over ``[-half, half]**2``."""
    g = np.linspace(-half, half, 41)
    u, v = (arr.ravel() for arr in np.meshgrid(g, g))

    def poly(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return sum(c[p, q] * x**p * y**q for p in range(c.shape[0]) for q in range(c.shape[1]))

    big_u = u + poly(a, u, v)
    big_v = v + poly(b, u, v)
    terms = [(p, q) for p in range(4) for q in range(4) if 1 <= p + q <= 3]
    design = np.stack([big_u**p * big_v**q for p, q in terms], axis=1)
    ap = np.zeros((4, 4))
    bp = np.zeros((4, 4))
    cu = np.linalg.lstsq(design, u - big_u, rcond=None)[0]
    cv = np.linalg.lstsq(design, v - big_v, rcond=None)[0]
    for (p, q), ku, kv in zip(terms, cu, cv, strict=True):
        ap[p, q] = ku
        bp[p, q] = kv
    return ap, bp


def demo_tile_specs(
    *,
    seed: int = 0,
    grid: tuple[int, int] = (3, 2),
    tile_size: int = 640,
    overlap: float = 0.2,
    photometric_variation: bool = True,
) -> list[DemoTileSpec]:
    """The tiles :func:`write_demo_tiles` writes, without rendering any pixel.

    Parameters
    ----------
    seed, grid, tile_size, overlap, photometric_variation
        As for :func:`write_demo_tiles`.

    Returns
    -------
    list of DemoTileSpec
        Row-major order (the order of the written paths).
    """
    nx, ny = _validate(grid, tile_size, overlap)
    tile_size = int(tile_size)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2,)))
    n = nx * ny
    sip_index = 1 if n > 1 else 0
    nan_index = n - 1
    step = tile_size * (1.0 - overlap)
    scale_deg = DEMO_PIXEL_SCALE / 3600.0
    mean_sky = float(np.mean(SKY_LEVEL))
    specs: list[DemoTileSpec] = []
    for index in range(n):
        row, col = divmod(index, nx)
        rotation = float(rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0]))
        jitter = rng.uniform(-3.0, 3.0, size=2)
        gain = float(rng.uniform(0.9, 1.1))
        pedestal = float(rng.uniform(0.01, 0.05) * rng.choice([-1.0, 1.0]) * mean_sky)
        sip_ab = _sip_coefficients(rng, tile_size)
        if not photometric_variation:
            gain, pedestal = 1.0, 0.0
        xi_c = ((col - (nx - 1) / 2.0) * step + jitter[0]) * DEMO_PIXEL_SCALE
        eta_c = (((ny - 1) / 2.0 - row) * step + jitter[1]) * DEMO_PIXEL_SCALE
        # Columns run east to west (RA decreasing), as an image with north up.
        ra_c, dec_c = _inverse_gnomonic(np.array(-xi_c), np.array(eta_c), DEMO_CENTER)
        theta = math.radians(rotation)
        w = WCS(naxis=2)
        w.wcs.crpix = [(tile_size + 1) / 2.0, (tile_size + 1) / 2.0]
        w.wcs.crval = [float(ra_c), float(dec_c)]
        w.wcs.cdelt = [-scale_deg, scale_deg]
        w.wcs.pc = [[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]
        is_sip = index == sip_index
        if is_sip:
            w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
            a, b = sip_ab
            ap, bp = _sip_inverse(a, b, tile_size / 2.0 + 10.0)
            w.sip = Sip(a, b, ap, bp, w.wcs.crpix)
        else:
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.radesys = "ICRS"
        w.wcs.equinox = 2000.0
        header = w.to_header(relax=True)
        # Parse it back: pixels are rendered through exactly what a reader will see.
        parsed = WCS(header)
        parsed.pixel_shape = (tile_size, tile_size)
        specs.append(
            DemoTileSpec(
                index=index,
                row=row,
                col=col,
                name=f"zemosaic_demo_r{row}c{col}.fits",
                header=header,
                wcs=parsed,
                shape=(tile_size, tile_size),
                gain=gain,
                pedestal=pedestal,
                rotation_deg=rotation,
                sip=is_sip,
                nan_border=index == nan_index,
            )
        )
    return specs


def _nan_border_mask(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Irregular NaN border along the left (x = 0) and top (y = H - 1) edges.

    Both edges of the last (south-west) tile lie in overlaps with its neighbours.
    """
    height, width = shape
    size = min(height, width)
    lo, hi = max(3.0, 0.025 * size), max(4.0, 0.0625 * size)

    def edge_width(n: int) -> np.ndarray:
        t = np.arange(n) / n
        phase, phase2 = rng.uniform(0, 2 * math.pi, size=2)
        walk = np.cumsum(rng.normal(0.0, 0.6, size=n))
        walk -= np.linspace(walk[0], walk[-1], n)
        base = 0.5 * (lo + hi)
        wid = (
            base
            + 0.3 * (hi - lo) * np.sin(2 * math.pi * 1.5 * t + phase)
            + 0.15 * (hi - lo) * np.sin(2 * math.pi * 5.0 * t + phase2)
            + walk
        )
        return np.clip(np.rint(wid), lo, hi).astype(np.int64)

    left = edge_width(height)  # per row
    top = edge_width(width)  # per column
    yy, xx = np.mgrid[0:height, 0:width]
    return (xx < left[:, None]) | (yy >= height - top[None, :])


# --------------------------------------------------------------------------- writing


def write_demo_tiles(
    directory: str | Path,
    *,
    seed: int = 0,
    grid: tuple[int, int] = (3, 2),
    tile_size: int = 640,
    overlap: float = 0.2,
    rgb: bool = True,
    photometric_variation: bool = True,
) -> list[Path]:
    """Write the synthetic demo tiles as FITS files.

    Parameters
    ----------
    directory : str or Path
        Target folder, created if needed. Existing demo tiles of the same names are
        replaced; nothing else is touched.
    seed : int
        Seed of everything random (sky, layout, photometry, noise). The same arguments
        give byte-identical files.
    grid : tuple of int
        Tiles along ``(x, y)`` (columns, rows).
    tile_size : int
        Side of the square tiles, pixels.
    overlap : float
        Nominal overlap between neighbouring tiles, as a fraction of the side.
    rgb : bool
        RGB cubes ``(3, H, W)`` when true; mono ``(H, W)`` images otherwise.
    photometric_variation : bool
        Plant a gain in [0.9, 1.1] and a pedestal of 1-5 % of the sky per tile when
        true; gain 1 and pedestal 0 everywhere otherwise.

    Returns
    -------
    list of Path
        The written files, row-major (the same order on every call).
    """
    directory = Path(directory)
    specs = demo_tile_specs(
        seed=seed,
        grid=grid,
        tile_size=tile_size,
        overlap=overlap,
        photometric_variation=photometric_variation,
    )
    sky = demo_sky(seed, grid=grid, tile_size=tile_size, overlap=overlap, rgb=rgb)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for spec in specs:
        data = _render_tile(sky, spec, seed)
        header = _tile_header(spec, seed=seed, grid=grid, tile_size=tile_size, overlap=overlap)
        hdu = fits.PrimaryHDU(data=data if rgb else data[0], header=header)
        path = directory / spec.name
        _write_atomic(hdu, path)
        paths.append(path)
        logger.debug(
            "demo tile %s gain=%.4f pedestal=%.2f rotation=%.2f sip=%s nan_border=%s",
            spec.name,
            spec.gain,
            spec.pedestal,
            spec.rotation_deg,
            spec.sip,
            spec.nan_border,
        )
    logger.info("Wrote %d demo tiles to %s", len(paths), directory)
    return paths


def _render_tile(sky: SyntheticSky, spec: DemoTileSpec, seed: int) -> np.ndarray:
    """``gain * truth + pedestal + noise`` (NaN border applied), float32 ``(C, H, W)``."""
    truth = sky.render(spec.wcs, spec.shape).astype(np.float64)
    level = spec.gain * truth + spec.pedestal
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(3, spec.index)))
    sigma = np.sqrt(np.maximum(level, 0.0) / EGAIN + READ_NOISE**2)
    data = (level + sigma * rng.standard_normal(level.shape)).astype(np.float32)
    if spec.nan_border:
        mask = _nan_border_mask(
            np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(4,))), spec.shape
        )
        data[:, mask] = np.nan
    return data


def _tile_header(
    spec: DemoTileSpec, *, seed: int, grid: tuple[int, int], tile_size: int, overlap: float
) -> fits.Header:
    header = spec.header.copy()
    header["OBJECT"] = (DEMO_OBJECT, "synthetic demo field")
    header["BUNIT"] = ("ADU", "pixel values")
    header["ZMGAIN"] = (spec.gain, "planted gain: data = gain*truth + pedestal")
    header["ZMPEDST"] = (spec.pedestal, "planted sky pedestal, ADU")
    header["ZMSIP"] = (spec.sip, "tile carries the SIP distortion")
    header["ZMNANBRD"] = (spec.nan_border, "tile has a NaN border")
    header["ZMROTATE"] = (spec.rotation_deg, "rotation against north-up, deg")
    header["ZMROW"] = (spec.row, "row in the demo grid")
    header["ZMCOL"] = (spec.col, "column in the demo grid")
    header["ZMSEED"] = (int(seed), "demo seed")
    header["ZMGRIDX"] = (int(grid[0]), "demo grid columns")
    header["ZMGRIDY"] = (int(grid[1]), "demo grid rows")
    header["ZMTSIZE"] = (int(tile_size), "demo tile side, px")
    header["ZMOVERLP"] = (float(overlap), "nominal overlap fraction")
    header["ZMEGAIN"] = (EGAIN, "noise model: electrons per ADU")
    header["ZMRDNOIS"] = (READ_NOISE, "noise model: read noise, ADU")
    header["HISTORY"] = "Synthetic demo tile written by zemosaic_core.datasets.demo"
    return header


def _write_atomic(hdu: fits.PrimaryHDU, path: Path) -> None:
    """Write ``hdu`` to a temporary file next to ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def demo_tile_truth(path: str | Path) -> dict[str, Any]:
    """What was planted in a demo tile, read from its header.

    Parameters
    ----------
    path : str or Path
        A FITS file written by :func:`write_demo_tiles`.

    Returns
    -------
    dict
        ``gain`` and ``pedestal`` (the tile holds ``gain * truth + pedestal + noise``),
        ``sip`` and ``nan_border`` (bool), ``row``, ``col``, ``rotation_deg``, ``seed``.
    """
    header = fits.getheader(path)
    return {
        "gain": float(header["ZMGAIN"]),
        "pedestal": float(header["ZMPEDST"]),
        "sip": bool(header.get("ZMSIP", False)),
        "nan_border": bool(header.get("ZMNANBRD", False)),
        "row": int(header["ZMROW"]),
        "col": int(header["ZMCOL"]),
        "rotation_deg": float(header["ZMROTATE"]),
        "seed": int(header["ZMSEED"]),
    }


#: Where ``make run`` (``zemosaic run-demo``) keeps the demo tiles and writes the mosaic.
DEFAULT_DEMO_DIR = Path("demo_tiles")
DEFAULT_DEMO_OUTPUT_DIR = Path("demo_output")


def ensure_demo_tiles(directory: str | Path, tile_size: int | None = None) -> list[Path]:
    """The demo tiles in ``directory``, written there on first use.

    Parameters
    ----------
    directory : str or Path
    tile_size : int, optional
        Side of the tiles when they are written (default: `write_demo_tiles`').

    Returns
    -------
    list of Path
        The FITS files found, or the ones just written.
    """
    folder = Path(directory)
    existing = sorted(folder.glob("*.fits")) if folder.is_dir() else []
    if existing:
        return existing
    logger.info("Writing the demo tiles to %s (first run)", folder)
    kwargs = {"tile_size": tile_size} if tile_size else {}
    return list(write_demo_tiles(folder, **kwargs))
