"""Display transfer: mosaic arrays to 8-bit RGBA for the screen (never the science data).

The stretch parameters are computed once from a strided, downsampled copy (a million
samples at most), so they are ready at once for a mosaic of any size, and the same
parameters are then applied to any resolution of the image: the quick first preview
and the full-resolution one look the same.

Modes
-----
``auto``
    Linked screen transfer function (PixInsight's STF): shadows at the mean over
    channels of ``median - 2.8 * MAD``, a midtones transfer bringing the median
    background to 0.25, highlights at the maximum. One transfer for all channels, so
    colours keep their ratios.
``linear``
    Linked linear map of the 0.05 % and 99.95 % quantiles to black and white.
``asinh``
    Linked ``asinh`` stretch with the ``auto`` black point and a softness chosen to
    bring the median background to 0.25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6.QtGui import QImage

MODES: tuple[str, ...] = ("auto", "linear", "asinh")

#: Median background brought to this level by ``auto`` and ``asinh``.
TARGET_BACKGROUND = 0.25
#: Shadows clipping point of ``auto``, in normalised MADs below the median.
SHADOWS_CLIP = -2.8
#: At most this many pixels per channel enter the statistics.
STATS_MAX_PIXELS = 1_000_000

# Anchors of a perceptually ordered dark-to-bright map (close to "inferno").
_COVERAGE_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class StretchParams:
    """A linked display transfer.

    Attributes
    ----------
    mode : {"auto", "linear", "asinh"}
    low, high : float
        Data values mapped to black and to white (before the midtones curve).
    shape : float
        ``auto``: the midtones balance m; ``asinh``: the softness beta; ``linear``: 0.
    """

    mode: str
    low: float
    high: float
    shape: float = 0.0


def stride_for(shape: tuple[int, ...], max_side: int) -> int:
    """Integer step that brings the larger of the last two axes to ``max_side`` or less.

    Parameters
    ----------
    shape : tuple of int
        An array shape ending in (H, W).
    max_side : int

    Returns
    -------
    int
        1 when the image is already small enough.
    """
    side = max(int(shape[-2]), int(shape[-1]), 1)
    return max(1, math.ceil(side / max(1, max_side)))


def stats_sample(image: np.ndarray, max_pixels: int = STATS_MAX_PIXELS) -> np.ndarray:
    """A strided sample of ``image`` (C, H, W) with at most ``max_pixels`` per channel.

    Parameters
    ----------
    image : ndarray, (C, H, W)
    max_pixels : int

    Returns
    -------
    ndarray, float64, (C, N)
        The sampled values (NaN kept).
    """
    _, h, w = image.shape
    step = max(1, math.ceil(math.sqrt(h * w / max(1, max_pixels))))
    sample = image[:, ::step, ::step]
    return sample.reshape(sample.shape[0], -1).astype(np.float64)


def mtf(m: float, x: np.ndarray | float) -> np.ndarray | float:
    """Midtones transfer function: 0 -> 0, m -> 0.5, 1 -> 1.

    Parameters
    ----------
    m : float
        Midtones balance in (0, 1).
    x : ndarray or float
        Values in [0, 1].

    Returns
    -------
    ndarray or float
    """
    return (m - 1.0) * x / ((2.0 * m - 1.0) * x - m)


def compute_params(image: np.ndarray, mode: str = "auto") -> StretchParams:
    """Compute linked stretch parameters from a downsampled copy of ``image``.

    Parameters
    ----------
    image : ndarray, (C, H, W)
        The mosaic (NaN where uncovered).
    mode : {"auto", "linear", "asinh"}

    Returns
    -------
    StretchParams

    Raises
    ------
    ValueError
        For an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown stretch {mode!r}; choose one of {MODES}")
    sample = stats_sample(image)
    finite = np.isfinite(sample)
    if not finite.any():
        return StretchParams(mode, 0.0, 1.0, 0.5 if mode == "auto" else 1.0)
    values = sample[finite]
    if mode == "linear":
        low, high = (float(v) for v in np.quantile(values, [0.0005, 0.9995]))
        if not high > low:
            high = low + 1.0
        return StretchParams("linear", low, high, 0.0)

    medians, shadows = [], []
    for channel, ok in zip(sample, finite, strict=True):
        vals = channel[ok]
        if vals.size == 0:
            continue
        med = float(np.median(vals))
        mad = float(np.median(np.abs(vals - med))) * 1.4826
        medians.append(med)
        shadows.append(med + SHADOWS_CLIP * mad)
    vmin, vmax = float(values.min()), float(values.max())
    median = float(np.mean(medians))
    low = max(vmin, float(np.mean(shadows)))
    high = vmax
    if not high > low:
        high = low + (abs(low) or 1.0)
    x_med = min(max((median - low) / (high - low), 1e-9), 1.0)
    if mode == "auto":
        m = float(mtf(TARGET_BACKGROUND, x_med))
        return StretchParams("auto", low, high, min(max(m, 1e-7), 0.9999))
    return StretchParams("asinh", low, high, _asinh_beta(x_med))


def _asinh_beta(x_med: float) -> float:
    """Softness beta with asinh(beta x_med) / asinh(beta) = TARGET_BACKGROUND."""
    if x_med >= TARGET_BACKGROUND:
        return 1e-3

    def level(beta: float) -> float:
        return math.asinh(beta * x_med) / math.asinh(beta)

    lo, hi = math.log(1e-3), math.log(1e9)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if level(math.exp(mid)) < TARGET_BACKGROUND:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def apply_params(values: np.ndarray, params: StretchParams) -> np.ndarray:
    """Apply a transfer to data values; returns float32 in [0, 1] (NaN kept).

    Parameters
    ----------
    values : ndarray
        Data values of any shape.
    params : StretchParams

    Returns
    -------
    ndarray, float32
    """
    x = (values.astype(np.float32, copy=False) - np.float32(params.low)) / np.float32(
        params.high - params.low
    )
    np.clip(x, 0.0, 1.0, out=x)
    if params.mode == "auto":
        m = np.float32(params.shape)
        x = (m - 1) * x / ((2 * m - 1) * x - m)
    elif params.mode == "asinh":
        beta = np.float32(params.shape)
        x = np.arcsinh(beta * x) / np.float32(math.asinh(params.shape))
    return x


def render_rgba(image: np.ndarray, params: StretchParams, step: int = 1) -> np.ndarray:
    """Stretch ``image`` to display RGBA, flipped so that FITS row 0 is at the bottom.

    Parameters
    ----------
    image : ndarray, (C, H, W)
        C = 3 (RGB) or 1 (shown grey).
    params : StretchParams
    step : int
        Keep every ``step``-th pixel on both axes (quick, downsampled display).

    Returns
    -------
    ndarray, uint8, (ceil(H/step), ceil(W/step), 4)
        Alpha is 0 where no channel has data.
    """
    data = image[:, ::step, ::step] if step > 1 else image
    c, h, w = data.shape
    out = np.empty((h, w, 4), dtype=np.uint8)
    rows = max(1, 4_000_000 // max(1, w))
    for start in range(0, h, rows):
        block = data[:, start : start + rows]
        stretched = apply_params(block, params)
        valid = np.isfinite(stretched)
        covered = valid.any(axis=0)
        scaled = np.where(valid, stretched * 255.0 + 0.5, 0.0).astype(np.uint8)
        target = out[start : start + rows]
        if c >= 3:
            target[..., 0] = scaled[0]
            target[..., 1] = scaled[1]
            target[..., 2] = scaled[2]
        else:
            target[..., 0] = target[..., 1] = target[..., 2] = scaled[0]
        target[..., 3] = np.where(covered, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(out[::-1])


def coverage_map(coverage: np.ndarray) -> np.ndarray:
    """Collapse a coverage cube to one plane: the maximum over channels.

    Parameters
    ----------
    coverage : ndarray, (C, H, W) or (H, W)

    Returns
    -------
    ndarray, float32, (H, W)
    """
    cov = np.asarray(coverage, dtype=np.float32)
    if cov.ndim == 3:
        cov = cov[0] if cov.shape[0] == 1 else cov.max(axis=0)
    return np.nan_to_num(cov, nan=0.0, posinf=0.0, neginf=0.0)


def render_coverage_rgba(coverage: np.ndarray, step: int = 1) -> tuple[np.ndarray, float]:
    """False-colour a coverage map (dark = thin, bright = deep), flipped for display.

    Parameters
    ----------
    coverage : ndarray, (C, H, W) or (H, W)
    step : int
        Keep every ``step``-th pixel.

    Returns
    -------
    rgba : ndarray, uint8, (h, w, 4)
        Alpha 0 where the coverage is 0.
    vmax : float
        The coverage mapped to the brightest colour.
    """
    cov = coverage_map(coverage)
    if step > 1:
        cov = cov[::step, ::step]
    vmax = float(cov.max()) if cov.size else 0.0
    scale = vmax if vmax > 0 else 1.0
    lut = coverage_lut()
    index = np.clip(cov / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgba = np.empty((*cov.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lut[index]
    rgba[..., 3] = np.where(cov > 0, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(rgba[::-1]), vmax


def coverage_lut() -> np.ndarray:
    """The 256-entry colour table of the coverage view, uint8 (256, 3)."""
    positions = np.linspace(0.0, 1.0, len(_COVERAGE_ANCHORS))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, positions, _COVERAGE_ANCHORS[:, k]) for k in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """Wrap an RGBA uint8 array (H, W, 4) as a `QImage` that owns a copy of the data.

    Parameters
    ----------
    rgba : ndarray, uint8, (H, W, 4)

    Returns
    -------
    QImage
        Format ``RGBA8888``; safe to build in a worker thread.
    """
    data = np.ascontiguousarray(rgba, dtype=np.uint8)
    h, w = data.shape[:2]
    image = QImage(data.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return image.copy()
