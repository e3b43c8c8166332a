"""Display stretches for previews (never applied to science data)."""

from __future__ import annotations

from typing import Literal

import numpy as np

StretchMode = Literal["auto", "linear", "asinh"]
STRETCH_MODES: tuple[str, ...] = ("auto", "linear", "asinh")

#: Auto-stretch constants of the classic screen transfer function (median/MAD based).
SHADOWS_CLIP = -2.8
TARGET_BACKGROUND = 0.25


def downsample(image: np.ndarray, max_side: int) -> np.ndarray:
    """Block-average ``(C, H, W)`` (or ``(H, W)``) so its longer side is <= ``max_side``.

    NaN-aware: a block is NaN only when all its pixels are. Returns a new array.
    """
    squeeze = image.ndim == 2
    cube = image[None] if squeeze else image
    height, width = cube.shape[-2:]
    factor = int(np.ceil(max(height, width) / max(1, max_side)))
    if factor <= 1:
        out = np.array(cube, dtype=np.float32)
    else:
        pad_h, pad_w = (-height) % factor, (-width) % factor
        padded = np.pad(
            cube.astype(np.float32), ((0, 0), (0, pad_h), (0, pad_w)), constant_values=np.nan
        )
        c, h, w = padded.shape
        blocks = padded.reshape(c, h // factor, factor, w // factor, factor)
        finite = np.isfinite(blocks)
        total = np.where(finite, blocks, 0).sum(axis=(2, 4), dtype=np.float64)
        count = finite.sum(axis=(2, 4))
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    return out[0] if squeeze else out


def _mtf(midtones: float, x: np.ndarray) -> np.ndarray:
    """Midtones transfer function: maps ``midtones`` to 0.5, keeps 0 and 1."""
    m = float(np.clip(midtones, 1e-6, 1 - 1e-6))
    return ((m - 1) * x) / ((2 * m - 1) * x - m)


def _normalise(cube: np.ndarray) -> np.ndarray:
    finite = cube[np.isfinite(cube)]
    if finite.size == 0:
        return np.zeros_like(cube, dtype=np.float32)
    lo = float(finite.min())
    hi = float(np.percentile(finite, 99.995))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((cube - lo) / (hi - lo), 0, 1)


def stretch_rgb(image: np.ndarray, mode: StretchMode = "auto") -> np.ndarray:
    """An 8-bit display image ``(H, W, 3)`` from a ``(C, H, W)`` or ``(H, W)`` mosaic.

    ``auto`` is a *linked* median/MAD screen transfer: one set of parameters for all
    channels, so colour balance is kept. NaN (uncovered) pixels are black.
    """
    if mode not in STRETCH_MODES:
        raise ValueError(f"unknown stretch {mode!r}; choose one of {STRETCH_MODES}")
    cube = image[None] if image.ndim == 2 else image
    x = _normalise(cube.astype(np.float32))
    if mode == "auto":
        finite = x[np.isfinite(x)]
        if finite.size:
            median = float(np.median(finite))
            mad = 1.4826 * float(np.median(np.abs(finite - median)))
            shadows = min(max(0.0, median + SHADOWS_CLIP * mad), median)
            span = max(1e-6, 1.0 - shadows)
            x = np.clip((x - shadows) / span, 0, 1)
            x = _mtf(_mtf(TARGET_BACKGROUND, np.asarray((median - shadows) / span)), x)
    elif mode == "asinh":
        beta = 500.0
        x = np.arcsinh(beta * x) / np.arcsinh(beta)
    x = np.nan_to_num(x, nan=0.0)
    rgb = np.repeat(x, 3, axis=0) if x.shape[0] == 1 else x[:3]
    return np.ascontiguousarray(
        (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)
    )
