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


# --------------------------------------------------------------------------- smart-telescope subs

SEESTAR_WIDTH = 1080  # px; a Seestar S50 sub is 1080 x 1920 (portrait) at 2.4"/px
SUB_SKY_ADU = 1500.0
SUB_NOISE_ADU = 25.0  # Gaussian sigma of one raw sub (ADU), per pixel


def _sub_wcs(center: tuple[float, float], width: int, height: int, scale_deg: float,
             rotation_deg: float, dx: float, dy: float) -> WCS:  # fmt: skip
    wcs = _tile_wcs(center, width, rotation_deg)
    wcs.wcs.crpix = [(width + 1) / 2 + dx, (height + 1) / 2 + dy]
    wcs.wcs.cd = wcs.wcs.cd * (scale_deg / SCALE_DEG)
    return wcs


def _truth_scene(shape: tuple[int, int], f: float, rng: np.random.Generator) -> np.ndarray:
    """RGB truth (ADU above sky) on the reference grid: nebulae, galaxies, stars."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scene = np.zeros((3, h, w), np.float32)
    for _ in range(4):  # nebula blobs: red-dominant, large
        x, y, s, a = (
            rng.uniform(0, w),
            rng.uniform(0, h),
            rng.uniform(80, 200) * f,
            rng.uniform(80, 300),
        )
        blob = a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
        scene += blob * np.array([1.0, 0.45, 0.6], np.float32)[:, None, None]
    for _ in range(8):  # galaxies: elliptical, yellowish
        x, y, s, a = (
            rng.uniform(0, w),
            rng.uniform(0, h),
            rng.uniform(8, 40) * f,
            rng.uniform(300, 3000),
        )
        e, t = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        u = (xx - x) * np.cos(t) + (yy - y) * np.sin(t)
        v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
        blob = a * np.exp(-(u * u + (v / e) ** 2) / (2 * s * s))
        scene += blob * np.array([1.0, 0.9, 0.7], np.float32)[:, None, None]
    sigma = max(1.0, 1.6 * f)
    n_stars = int(2e-3 * h * w)
    r = int(np.ceil(4 * sigma))
    for x, y, peak, temp in zip(rng.uniform(r, w - r - 1, n_stars), rng.uniform(r, h - r - 1, n_stars),
                                np.minimum(rng.pareto(1.3, n_stars) * 150, 40000), rng.uniform(-1, 1, n_stars),
                                strict=True):  # fmt: skip
        x0, y0 = int(x) - r, int(y) - r
        sy, sx = slice(y0, y0 + 2 * r + 1), slice(x0, x0 + 2 * r + 1)
        star = peak * np.exp(-((xx[sy, sx] - x) ** 2 + (yy[sy, sx] - y) ** 2) / (2 * sigma**2))
        colour = np.array([1 + 0.3 * temp, 1.0, 1 - 0.3 * temp], np.float32)
        scene[:, sy, sx] += colour[:, None, None] * star
    return scene


def write_subs(
    folder: Path, clean_folder: Path, *, n_subs: int = 60, width: int = 540, height: int = 960,
    panels: int = 2, overlap: float = 0.3, seed: int = 7,
) -> list[dict]:  # fmt: skip
    """Write a night of raw GRBG smart-telescope subs and their artefact-free twins.

    Sub ``k`` belongs to panel ``k % panels`` (the telescope cycles its panels) and is
    taken at night fraction ``k / n_subs``: the field rotation drifts linearly from -8 to
    +8 degrees, the dither is a few px, the sky level drifts. Artefacts (``folder`` only):
    hot pixels fixed on the sensor, satellite trails in ~10 % of subs. Clouds (gain 0.7
    on sky and scene) hit ~5 % of subs in both folders. The canvas depends on ``panels``
    and the size, not on ``n_subs``. Returns one dict per sub (path, panel, flags).
    """
    from scipy.ndimage import map_coordinates

    folder.mkdir(parents=True, exist_ok=True)
    clean_folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    f = width / SEESTAR_WIDTH
    scale = 2.4 / 3600 / f
    ra0, dec0 = 83.8, -5.4
    step = (1 - overlap) * width  # panels side by side along the sensor x axis
    margin = int(0.25 * max(width, height))
    ref_w, ref_h = int(width + step * (panels - 1)) + 2 * margin, height + 2 * margin
    ref = _sub_wcs((ra0, dec0), ref_w, ref_h, scale, 0.0, 0.0, 0.0)
    truth = _truth_scene((ref_h, ref_w), f, np.random.default_rng(seed + 1))
    hot = rng.random((height, width)) < 1e-4  # fixed on the sensor for the whole night
    hot_excess = np.exp(rng.uniform(np.log(2000), np.log(40000), int(hot.sum())))
    sites = {"G": [(0, 0), (1, 1)], "R": [(0, 1)], "B": [(1, 0)]}  # GRBG
    # A coarse (every 8 px) exact sub -> reference pixel map, upsampled bilinearly.
    cy, cx = np.arange(0, height + 8, 8), np.arange(0, width + 8, 8)
    gy, gx = np.meshgrid(cy, cx, indexing="ij")
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    subs = []
    for k in range(n_subs):
        panel, t = k % panels, k / max(1, n_subs - 1)
        rot = -8.0 + 16.0 * t + rng.normal(0, 0.1)
        dx, dy = rng.uniform(-6, 6, 2) * max(f, 0.5)
        off = (panel - (panels - 1) / 2) * step
        crval = ref.wcs_pix2world([[(ref_w - 1) / 2 + off, (ref_h - 1) / 2]], 0)[0]
        wcs = _sub_wcs(tuple(crval), width, height, scale, rot, dx, dy)
        rx, ry = ref.wcs_world2pix(*wcs.wcs_pix2world(gx.ravel(), gy.ravel(), 0), 0)
        coarse = np.stack([ry.reshape(gy.shape), rx.reshape(gy.shape)])
        sky = SUB_SKY_ADU * (1 + 0.3 * np.sin(np.pi * t)) + 0.1 * f * (xx - width / 2)
        gain = 0.7 if rng.random() < 0.05 else 1.0
        raw = np.empty((height, width), np.float32)
        for colour, channel in (("R", 0), ("G", 1), ("B", 2)):
            for oy, ox in sites[colour]:
                py, px = np.mgrid[oy:height:2, ox:width:2]
                pos = [map_coordinates(c, [py / 8.0, px / 8.0], order=1) for c in coarse]
                val = map_coordinates(truth[channel], pos, order=1, cval=0.0)
                raw[oy::2, ox::2] = gain * (sky[oy::2, ox::2] + val)
        raw += rng.normal(0, SUB_NOISE_ADU, raw.shape).astype(np.float32)
        clean = raw.copy()
        trail = rng.random() < 0.1
        if trail:  # a line across the frame, Gaussian profile of FWHM ~2.6 px
            x0, y0, a = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, np.pi)
            dist = np.abs((xx - x0) * np.sin(a) - (yy - y0) * np.cos(a))
            raw += rng.uniform(1500, 5000) * np.exp(-(dist**2) / (2 * 1.1**2))
        raw[hot] += hot_excess
        header = wcs.to_header()
        header["BAYERPAT"] = "GRBG"
        header["EXPTIME"] = 10.0
        header["INSTRUME"] = "Seestar S50 (synthetic)"
        for data, out in ((raw, folder), (clean, clean_folder)):
            path = out / f"sub_p{panel}_{k:04d}.fits"
            pixels = np.clip(np.rint(data), 0, 65535).astype(np.uint16)  # BZERO = 32768
            fits.PrimaryHDU(data=pixels, header=header).writeto(path, overwrite=True)
        subs.append({"name": path.name, "panel": panel, "trail": trail, "cloud": gain < 1})
    return subs
