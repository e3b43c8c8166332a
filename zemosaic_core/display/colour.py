"""Optional colour calibration of a finished mosaic: background neutralisation and a
white balance on the stars' average colour.

Measured on the final mosaic, once, on the CPU (so it is the same whatever backend
made the mosaic), from a block-averaged copy (block sums keep the flux ratios that the
white balance needs, and the statistics stay cheap for a mosaic of any size). Applied
as ``out_c = level + k_c * (x_c - background_c)``: every channel's background lands on
``level`` (the mean of the measured backgrounds, so the data keep their pedestal) and
the stars' median colour becomes white.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..runtime.scratch import release_pages
from ..stats import mad_std
from .stretch import downsample

__all__ = [
    "ColourCalibration",
    "apply_colour_calibration",
    "calibration_header_cards",
    "measure_colour_calibration",
]

logger = logging.getLogger(__name__)

#: Longest side of the block-averaged copy the calibration is measured on.
MEASURE_MAX_SIDE = 2048
#: A star: a local maximum of the background-subtracted luminance this many sigmas up.
STAR_SIGMAS = 10.0
#: Fewer stars than this: no white balance (the background is still neutralised).
MIN_STARS = 10
#: White-balance gains are kept within this factor of 1 (a wild value means bad data).
MAX_GAIN_FACTOR = 4.0
_BOX = 5  # star aperture and local-maximum window, in block-averaged pixels
_BAND_PIXELS = 1 << 20


@dataclass(frozen=True)
class ColourCalibration:
    """What the calibration measured and applies.

    Attributes
    ----------
    background : tuple of float
        Per-channel sky background of the mosaic as built.
    level : float
        The common background level after calibration.
    white_balance : tuple of float
        Per-channel gains on the background-subtracted signal (1 without enough stars).
    n_stars : int
        Stars the white balance was measured on.
    """

    background: tuple[float, ...]
    level: float
    white_balance: tuple[float, ...]
    n_stars: int


def _clipped_median(values: np.ndarray, rounds: int = 5) -> tuple[float, float]:
    """Median and sigma (from the MAD) after iterative 3-sigma clipping."""
    kept = values
    median, sigma = float(np.median(kept)), 0.0
    for _ in range(rounds):
        median = float(np.median(kept))
        sigma = float(mad_std(kept))
        if sigma <= 0:
            break
        inside = np.abs(kept - median) < 3.0 * sigma
        if inside.all():
            break
        kept = kept[inside]
    return median, sigma


def measure_colour_calibration(image: np.ndarray) -> ColourCalibration | None:
    """Measure the calibration of an RGB mosaic ``(3, H, W)`` (None for mono or blank).

    ``image`` is not modified.
    """
    if image.ndim != 3 or image.shape[0] < 3:
        return None
    small = downsample(image, MEASURE_MAX_SIDE).astype(np.float64)
    covered = np.isfinite(small).all(axis=0)
    if covered.sum() < 100:
        return None
    channels = small.shape[0]
    stats = [_clipped_median(small[c][covered]) for c in range(channels)]
    background = np.array([m for m, _ in stats])
    level = float(background.mean())

    signal = np.where(covered, small - background[:, None, None], 0.0)
    luminance = signal.mean(axis=0)
    _, noise = _clipped_median(luminance[covered])
    gains = np.ones(channels)
    n_stars = 0
    if noise > 0:
        peaks = (
            (luminance == ndimage.maximum_filter(luminance, size=_BOX))
            & (luminance > STAR_SIGMAS * noise)
            & ndimage.binary_erosion(covered, iterations=_BOX)
        )
        # Leave out saturated stars: their colour is clipped.
        top = np.array([np.nanmax(small[c][covered]) for c in range(channels)])
        near_top = (small >= 0.95 * top[:, None, None]).any(axis=0)
        peaks &= ~ndimage.binary_dilation(near_top, iterations=_BOX)
        ys, xs = np.nonzero(peaks)
        if ys.size:
            box = np.ones((_BOX, _BOX))
            flux = np.stack(
                [ndimage.convolve(signal[c], box, mode="constant")[ys, xs] for c in range(channels)]
            )
            good = (flux > 0).all(axis=0)
            flux = flux[:, good]
            n_stars = int(flux.shape[1])
            if n_stars >= MIN_STARS:
                colour = flux / flux.mean(axis=0, keepdims=True)
                median_colour = np.median(colour, axis=1)
                gains = np.clip(1.0 / median_colour, 1 / MAX_GAIN_FACTOR, MAX_GAIN_FACTOR)
    if n_stars < MIN_STARS:
        logger.info(
            "Colour calibration: %d star(s) found, fewer than %d: background neutralised, "
            "no white balance",
            n_stars,
            MIN_STARS,
        )
        gains = np.ones(channels)
    return ColourCalibration(
        background=tuple(float(v) for v in background),
        level=level,
        white_balance=tuple(float(v) for v in gains),
        n_stars=n_stars if n_stars >= MIN_STARS else 0,
    )


def apply_colour_calibration(
    image: np.ndarray, calibration: ColourCalibration, out: np.ndarray | None = None
) -> np.ndarray:
    """``level + k_c (x_c - background_c)`` per channel, in row bands; NaN stays NaN.

    Parameters
    ----------
    image : ndarray, float32, (C, H, W)
    calibration : ColourCalibration
    out : ndarray, optional
        Where to write (may be ``image`` itself, for an array the caller owns); a new
        float32 array by default, ``image`` untouched.

    Returns
    -------
    ndarray
    """
    if out is None:
        out = np.empty(image.shape, dtype=np.float32)
    _, height, width = image.shape
    rows = max(1, _BAND_PIXELS // max(1, width))
    for c, (bg, gain) in enumerate(
        zip(calibration.background, calibration.white_balance, strict=True)
    ):
        offset = np.float32(calibration.level - gain * bg)
        for y0 in range(0, height, rows):
            band = np.asarray(image[c, y0 : y0 + rows], dtype=np.float32)
            out[c, y0 : y0 + rows] = band * np.float32(gain) + offset
            release_pages(out)
    return out


def calibration_header_cards(calibration: ColourCalibration) -> list[tuple[str, object, str]]:
    """FITS cards that record an applied calibration."""
    cards: list[tuple[str, object, str]] = [
        ("COLCAL", True, "colour calibration applied"),
        ("CALLEVEL", calibration.level, "background level after calibration"),
        ("CALNSTAR", calibration.n_stars, "stars of the white balance"),
    ]
    for c, (bg, gain) in enumerate(
        zip(calibration.background, calibration.white_balance, strict=True), start=1
    ):
        cards.append((f"CALBKG{c}", bg, f"channel {c} background before calibration"))
        cards.append((f"CALWB{c}", gain, f"channel {c} white-balance gain"))
    return cards
