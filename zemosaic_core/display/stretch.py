"""Display stretches: the one transfer behind the on-screen preview and the PNG export.

The science data are never touched: a stretch maps a linear ``(C, H, W)`` mosaic to
8-bit display values. Its parameters are computed once from an even subsample (a
million pixels per channel at most), so they are ready at once for a mosaic of any
size, and the same parameters then render any resolution of it: the quick first
preview, the full-resolution one and the saved PNG are one image.

Modes
-----
``auto``
    Unlinked screen transfer function (STF) with background neutralisation, the
    default: per channel, the shadows sit at ``median - 2.8 MAD`` and a midtones
    transfer brings that channel's median background to 0.25, so the sky background
    is a neutral grey whatever the sensor's colour balance (a one-shot-colour camera's
    green excess, a light-pollution cast).
``linked``
    One STF for all channels (the mean of the channels' shadows and medians): colour
    ratios are kept, casts included.
``asinh``
    ``asinh`` stretch with a softness bringing the background to 0.25; each channel is
    scaled so its background lands at the same level (neutral background).
``linear``
    Linked linear map of the 0.05 % and 99.95 % quantiles to black and white.

On top of the automatic transfer, *levels* (black point, midtones, white point, all
in display units 0..1) let the user adjust the picture; they are part of the
parameters, so the PNG carries them too.

Large mosaics are rendered in row bands: no full-size float copy is ever made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..config import STRETCH_MODES, StretchName
from ..runtime.scratch import release_pages
from ..stats import MAD_TO_SIGMA

__all__ = [
    "DEFAULT_LEVELS",
    "STRETCH_LABELS",
    "STRETCH_MODES",
    "StretchMode",
    "StretchParams",
    "apply_transfer",
    "compute_params",
    "display_histogram",
    "downsample",
    "mtf",
    "render_rgb",
    "render_rgba",
    "stats_sample",
    "stretch_rgb",
    "stride_for",
]

StretchMode = StretchName
#: What the user sees for each mode (GUI menus, CLI help).
STRETCH_LABELS: dict[str, str] = {
    "auto": "Auto STF (neutral background)",
    "linked": "Auto STF (linked)",
    "asinh": "Asinh",
    "linear": "Linear",
}

#: Median background brought to this display level by ``auto``, ``linked`` and ``asinh``.
TARGET_BACKGROUND = 0.25
#: Shadows clipping point of the STF, in normalised MADs below the median.
SHADOWS_CLIP = -2.8
#: Quantile of the data mapped to white by the STF modes (robust to a few hot pixels).
WHITE_QUANTILE = 99.995
#: Quantiles mapped to black and white by ``linear``.
LINEAR_QUANTILES = (0.05, 99.95)
#: At most this many pixels per channel enter the statistics.
STATS_MAX_PIXELS = 1_000_000
#: Identity levels: black point, midtones balance, white point (display units).
DEFAULT_LEVELS: tuple[float, float, float] = (0.0, 0.5, 1.0)

_BAND_PIXELS = 1 << 20


@dataclass(frozen=True)
class StretchParams:
    """A display transfer, per channel.

    Attributes
    ----------
    mode : {"auto", "linked", "asinh", "linear"}
    black, white : tuple of float
        Per channel, the data values mapped to 0 and 1 before the curve.
    midtones : tuple of float
        Per channel midtones balance m of the MTF (0.5 = no change).
    beta : float
        ``asinh`` softness (0 for the other modes).
    levels : (float, float, float)
        User black point, midtones balance and white point applied after the curve,
        in display units; `DEFAULT_LEVELS` is the identity.
    """

    mode: str
    black: tuple[float, ...]
    white: tuple[float, ...]
    midtones: tuple[float, ...]
    beta: float = 0.0
    levels: tuple[float, float, float] = DEFAULT_LEVELS

    def with_levels(self, black: float, midtones: float, white: float) -> StretchParams:
        """The same transfer with other user levels (clamped to a valid range).

        Parameters
        ----------
        black, midtones, white : float
            Display units; ``black < white``, ``0 < midtones < 1``.

        Returns
        -------
        StretchParams
        """
        black = float(np.clip(black, 0.0, 0.99))
        white = float(np.clip(white, black + 0.01, 1.0))
        midtones = float(np.clip(midtones, 0.001, 0.999))
        return replace(self, levels=(black, midtones, white))


def stride_for(shape: tuple[int, ...], max_side: int) -> int:
    """Integer step that brings the larger of the last two axes to ``max_side`` or less."""
    side = max(int(shape[-2]), int(shape[-1]), 1)
    return max(1, math.ceil(side / max(1, max_side)))


def stats_sample(image: np.ndarray, max_pixels: int = STATS_MAX_PIXELS) -> np.ndarray:
    """An even strided sample of ``image`` (C, H, W): at most ``max_pixels`` per channel.

    Returns
    -------
    ndarray, float64, (C, N)
        The sampled values, NaN kept.
    """
    cube = image[None] if image.ndim == 2 else image
    _, h, w = cube.shape
    step = max(1, math.ceil(math.sqrt(h * w / max(1, max_pixels))))
    sample = np.asarray(cube[:, ::step, ::step], dtype=np.float64)
    return sample.reshape(sample.shape[0], -1)


def downsample(image: np.ndarray, max_side: int) -> np.ndarray:
    """Block-average ``(C, H, W)`` (or ``(H, W)``) so its longer side is <= ``max_side``.

    NaN-aware: a block is NaN only when all its pixels are. Returns a new float32 array;
    works one channel and one band of block rows at a time. Block sums keep flux ratios,
    which the colour calibration relies on.
    """
    squeeze = image.ndim == 2
    cube = image[None] if squeeze else image
    channels, height, width = cube.shape
    factor = int(np.ceil(max(height, width) / max(1, max_side)))
    if factor <= 1:
        out = np.array(cube, dtype=np.float32)
        return out[0] if squeeze else out
    cols = np.arange(0, width, factor)
    out_h = -(-height // factor)
    out = np.empty((channels, out_h, cols.size), dtype=np.float32)
    band = max(1, _BAND_PIXELS // (width * factor)) * factor  # rows per band
    for c in range(channels):
        for y0 in range(0, height, band):
            block = np.asarray(cube[c, y0 : y0 + band], dtype=np.float32)
            rows = np.arange(0, block.shape[0], factor)
            finite = np.isfinite(block)
            total = np.add.reduceat(np.where(finite, block, 0), rows, axis=0, dtype=np.float64)
            total = np.add.reduceat(total, cols, axis=1)
            count = np.add.reduceat(np.add.reduceat(finite, rows, axis=0), cols, axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
            out[c, y0 // factor : y0 // factor + rows.size] = means
    return out[0] if squeeze else out


def mtf(m: float, x: np.ndarray | float) -> np.ndarray | float:
    """Midtones transfer function: 0 -> 0, m -> 0.5, 1 -> 1."""
    return (m - 1.0) * x / ((2.0 * m - 1.0) * x - m)


def _clamp_m(m: float) -> float:
    return float(min(max(m, 1e-7), 0.9999))


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


def compute_params(image: np.ndarray, mode: str = "auto") -> StretchParams:
    """Stretch parameters of ``image`` from an even subsample.

    Parameters
    ----------
    image : ndarray, (C, H, W) or (H, W)
        The linear mosaic, NaN where uncovered. Not modified.
    mode : {"auto", "linked", "asinh", "linear"}

    Returns
    -------
    StretchParams

    Raises
    ------
    ValueError
        For an unknown mode.
    """
    if mode not in STRETCH_MODES:
        raise ValueError(f"unknown stretch {mode!r}; choose one of {STRETCH_MODES}")
    sample = stats_sample(image)
    n = sample.shape[0]
    # Statistics over the pixels every channel covers: the same sky in each channel.
    covered = np.isfinite(sample).all(axis=0)
    if not covered.any():
        covered = np.isfinite(sample).any(axis=0)
    values = [channel[covered & np.isfinite(channel)] for channel in sample]
    if any(v.size == 0 for v in values):
        return StretchParams(mode, (0.0,) * n, (1.0,) * n, (0.5,) * n)
    everything = np.concatenate(values)
    if mode == "linear":
        low, high = (float(v) for v in np.percentile(everything, LINEAR_QUANTILES))
        if not high > low:
            high = low + (abs(low) or 1.0)
        return StretchParams(mode, (low,) * n, (high,) * n, (0.5,) * n)

    medians = np.array([float(np.median(v)) for v in values])
    mads = np.array(
        [
            MAD_TO_SIGMA * float(np.median(np.abs(v - m)))
            for v, m in zip(values, medians, strict=True)
        ]
    )
    minima = np.array([float(v.min()) for v in values])
    shadows = np.maximum(minima, medians + SHADOWS_CLIP * mads)
    white = float(np.percentile(everything, WHITE_QUANTILE))
    if mode == "linked":
        shadows = np.full(n, float(np.mean(shadows)))
        medians = np.full(n, float(np.mean(medians)))
    if not white > float(shadows.max()):
        white = float(shadows.max()) + (abs(float(shadows.max())) or 1.0)
    span = white - shadows
    x_med = np.clip((medians - shadows) / span, 1e-9, 1.0)
    if mode == "asinh":
        # One softness for all channels; each channel's white point is scaled so its
        # background lands where the others' do (a neutral background).
        x_ref = float(np.mean(x_med))
        whites = shadows + (medians - shadows) / x_ref
        whites = np.where(whites > shadows, whites, white)
        return StretchParams(
            mode,
            tuple(float(v) for v in shadows),
            tuple(float(v) for v in whites),
            (0.5,) * n,
            beta=_asinh_beta(x_ref),
        )
    midtones = tuple(_clamp_m(float(mtf(TARGET_BACKGROUND, float(x)))) for x in x_med)
    return StretchParams(mode, tuple(float(v) for v in shadows), (white,) * n, midtones)


def _transfer_channel(values: np.ndarray, params: StretchParams, c: int) -> np.ndarray:
    """The automatic curve of channel ``c``, float32 in [0, 1], NaN kept."""
    black, white = params.black[c], params.white[c]
    x = np.asarray(values, dtype=np.float32) - np.float32(black)
    x *= np.float32(1.0 / (white - black))
    np.clip(x, 0.0, 1.0, out=x)
    if params.beta > 0:
        x = np.arcsinh(np.float32(params.beta) * x) / np.float32(math.asinh(params.beta))
    m = np.float32(params.midtones[c])
    if m != np.float32(0.5):
        x = (m - 1) * x / ((2 * m - 1) * x - m)
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)  # float rounding: 1 + 1e-7


def _apply_levels(x: np.ndarray, levels: tuple[float, float, float]) -> np.ndarray:
    black, m, white = levels
    if (black, m, white) == DEFAULT_LEVELS:
        return x
    x = (x - np.float32(black)) * np.float32(1.0 / (white - black))
    np.clip(x, 0.0, 1.0, out=x)
    if m != 0.5:
        m32 = np.float32(m)
        x = np.clip((m32 - 1) * x / ((2 * m32 - 1) * x - m32), 0.0, 1.0)
    return x


def apply_transfer(values: np.ndarray, params: StretchParams) -> np.ndarray:
    """Apply ``params`` to a ``(C, ...)`` array; float32 in [0, 1], NaN kept.

    Returns a new array; ``values`` is not modified.
    """
    out = np.empty(values.shape, dtype=np.float32)
    for c in range(values.shape[0]):
        k = min(c, len(params.black) - 1)
        out[c] = _apply_levels(_transfer_channel(values[c], params, k), params.levels)
    return out


def display_histogram(image: np.ndarray, params: StretchParams, bins: int = 256) -> np.ndarray:
    """Histogram of the automatic transfer's output (before the user levels).

    The user's black, midtones and white markers are placed against it.

    Returns
    -------
    ndarray, int64, (C, bins)
        Counts over [0, 1] per channel, from the statistics subsample.
    """
    sample = stats_sample(image)
    out = np.zeros((sample.shape[0], bins), dtype=np.int64)
    for c, channel in enumerate(sample):
        k = min(c, len(params.black) - 1)
        x = _transfer_channel(channel[np.isfinite(channel)], params, k)
        out[c] = np.histogram(x, bins=bins, range=(0.0, 1.0))[0]
    return out


def render_rgba(image: np.ndarray, params: StretchParams, step: int = 1) -> np.ndarray:
    """The 8-bit display image, top row first (FITS row 0 is the bottom row).

    Parameters
    ----------
    image : ndarray, (C, H, W) or (H, W)
        C = 3 (RGB) or 1 (shown grey). Not modified.
    params : StretchParams
    step : int
        Keep every ``step``-th pixel on both axes (a quick, downsampled rendering).

    Returns
    -------
    ndarray, uint8, (ceil(H/step), ceil(W/step), 4)
        RGB, black where uncovered; alpha 0 where no channel has data, else 255.
    """
    cube = image[None] if image.ndim == 2 else image
    data = cube[:, ::step, ::step] if step > 1 else cube
    channels, h, w = data.shape
    planes = [0, 1, 2] if channels >= 3 else [0, 0, 0]
    out = np.empty((h, w, 4), dtype=np.uint8)
    rows = max(1, _BAND_PIXELS // max(1, w))
    for y0 in range(0, h, rows):
        block = np.asarray(data[:, y0 : y0 + rows], dtype=np.float32)
        covered = np.zeros(block.shape[1:], dtype=bool)
        # Display row of FITS row y is h - 1 - y: fill the band flipped.
        target = out[h - y0 - block.shape[1] : h - y0][::-1]
        for k, c in enumerate(planes):
            k_par = min(c, len(params.black) - 1)
            x = _apply_levels(_transfer_channel(block[c], params, k_par), params.levels)
            finite = np.isfinite(x)
            covered |= finite
            target[..., k] = np.where(finite, x * np.float32(255.0) + np.float32(0.5), 0).astype(
                np.uint8
            )
        target[..., 3] = np.where(covered, 255, 0).astype(np.uint8)
        release_pages(cube)
    return out


def render_rgb(image: np.ndarray, params: StretchParams, step: int = 1) -> np.ndarray:
    """`render_rgba` without alpha: ``(h, w, 3)`` uint8, top row first."""
    return np.ascontiguousarray(render_rgba(image, params, step)[..., :3])


def stretch_rgb(image: np.ndarray, mode: StretchMode = "auto") -> np.ndarray:
    """An 8-bit ``(H, W, 3)`` image in FITS row order (row 0 = bottom), automatic stretch.

    Shorthand for ``render_rgb(image, compute_params(image, mode))[::-1]``.
    """
    return render_rgb(image, compute_params(image, mode))[::-1]
