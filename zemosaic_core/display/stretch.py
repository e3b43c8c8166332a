"""Display stretches for previews (never applied to science data).

Statistics come from an even subsample of at most a few million pixels and the
stretch is applied in row bands, so a preview of a very large mosaic never makes
full-size float copies of it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from astropy.stats import mad_std

from ..runtime.scratch import release_pages

StretchMode = Literal["auto", "linear", "asinh"]
STRETCH_MODES: tuple[str, ...] = ("auto", "linear", "asinh")

#: Auto-stretch constants of the classic screen transfer function (median/MAD based).
SHADOWS_CLIP = -2.8
TARGET_BACKGROUND = 0.25
ASINH_BETA = 500.0

_SAMPLE_PIXELS = 4_000_000
_BAND_PIXELS = 1 << 20


def _mtf(midtones: float, x: np.ndarray) -> np.ndarray:
    """Midtones transfer function: maps ``midtones`` to 0.5, keeps 0 and 1."""
    m = float(np.clip(midtones, 1e-6, 1 - 1e-6))
    return ((m - 1) * x) / ((2 * m - 1) * x - m)


def _sample(cube: np.ndarray) -> np.ndarray:
    """Finite values of an even subsample of ``cube`` (all channels: a linked stretch)."""
    step = max(1, int(np.sqrt(cube.shape[1] * cube.shape[2] / _SAMPLE_PIXELS)))
    values = np.asarray(cube[:, ::step, ::step], dtype=np.float32)
    return values[np.isfinite(values)]


def stretch_parameters(image: np.ndarray, mode: StretchMode = "auto") -> dict[str, float]:
    """The linked parameters of a stretch: black/white points, shadows and midtones."""
    if mode not in STRETCH_MODES:
        raise ValueError(f"unknown stretch {mode!r}; choose one of {STRETCH_MODES}")
    cube = image[None] if image.ndim == 2 else image
    finite = _sample(cube)
    if finite.size == 0:
        return {"lo": 0.0, "hi": 1.0, "shadows": 0.0, "midtones": 0.5}
    lo = float(finite.min())
    hi = float(np.percentile(finite, 99.995))
    if hi <= lo:
        hi = lo + 1.0
    shadows, midtones = 0.0, 0.5
    if mode == "auto":
        x = np.clip((finite - lo) / (hi - lo), 0, 1)
        median = float(np.median(x))
        mad = float(mad_std(x))
        shadows = min(max(0.0, median + SHADOWS_CLIP * mad), median)
        span = max(1e-6, 1.0 - shadows)
        midtones = float(_mtf(TARGET_BACKGROUND, np.asarray((median - shadows) / span)))
    return {"lo": lo, "hi": hi, "shadows": shadows, "midtones": midtones}


def stretch_rgb(image: np.ndarray, mode: StretchMode = "auto") -> np.ndarray:
    """An 8-bit display image ``(H, W, 3)`` from a ``(C, H, W)`` or ``(H, W)`` mosaic.

    ``auto`` is a *linked* median/MAD screen transfer: one set of parameters for all
    channels, so colour balance is kept. NaN (uncovered) pixels are black.
    """
    params = stretch_parameters(image, mode)
    cube = image[None] if image.ndim == 2 else image
    height, width = cube.shape[1:]
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    planes = [0, 0, 0] if cube.shape[0] == 1 else [0, 1, 2]
    span = max(1e-6, 1.0 - params["shadows"])
    band = max(1, _BAND_PIXELS // width)
    for y0 in range(0, height, band):
        for k, c in enumerate(planes):
            x = np.asarray(cube[c, y0 : y0 + band], dtype=np.float32)
            x = np.clip((x - params["lo"]) / (params["hi"] - params["lo"]), 0, 1)
            if mode == "auto":
                x = _mtf(params["midtones"], np.clip((x - params["shadows"]) / span, 0, 1))
            elif mode == "asinh":
                x = np.arcsinh(ASINH_BETA * x) / np.arcsinh(ASINH_BETA)
            x = np.nan_to_num(x, nan=0.0)
            rgb[y0 : y0 + band, :, k] = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
        release_pages(cube)
    return rgb
