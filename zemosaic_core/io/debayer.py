"""Demosaicing of raw one-shot-colour (Bayer) frames into RGB.

A raw frame from a colour camera holds one colour per pixel, laid out in a repeating
2x2 pattern (``RGGB``, ``BGGR``, ``GRBG`` or ``GBRG``, read left to right, then top to
bottom, from the first pixel of the sensor readout). This module turns such a frame
into a ``(3, H, W)`` float32 RGB cube on the *same* pixel grid, so the frame's WCS stays
valid unchanged.

Interpolation is bilinear, written as a normalised convolution: for each colour, the
sum of the known samples of that colour under a small kernel divided by the sum of the
kernel weights that fell on known samples. That form is exact at each colour's own
sites (no quantisation, no smoothing of measured values), treats the image border and
NaN pixels ("no data") the same way — they simply contribute no weight — and gives NaN
only where no sample of that colour lies within one pixel.
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import BAYER_PATTERNS

logger = logging.getLogger(__name__)

#: The 2x2 colour patterns understood, as written in the ``BAYERPAT`` FITS card.

_CHANNEL_INDEX = {"R": 0, "G": 1, "B": 2}

# Bilinear interpolation as a normalised convolution (the weights need no scaling).
# Red and blue sit on a 2-pixel lattice: kernel [1 2 1]^T [1 2 1]. At a green site the two
# nearest samples are edge neighbours (weight 2 each), at the opposite colour's site the
# four nearest are diagonal (weight 1 each), at their own site only the centre (weight 4)
# is known. Green sits on a quincunx: kernel "+" with centre 4 and edge neighbours 1, so
# at a red or blue site the four edge neighbours (all green) are averaged.
_KERNEL_1D_RB = (1.0, 2.0, 1.0)
_KERNEL_G = ((0.0, 1.0, 0.0), (1.0, 4.0, 1.0), (0.0, 1.0, 0.0))


def _accumulate(out: np.ndarray, term: np.ndarray, weight: float) -> None:
    """``out += weight * term`` in ``out``'s dtype, skipping the multiply for weight 1."""
    if weight == 1.0:
        out += term
    elif weight != 0.0:
        out += out.dtype.type(weight) * term


def _correlate_1d(image: np.ndarray, weights: tuple[float, float, float], axis: int) -> np.ndarray:
    """Correlate a 2-D array along one axis with 3 weights, zero outside the image."""
    moved = np.moveaxis(image, axis, 0)
    n = moved.shape[0]
    padded = np.zeros((n + 2, *moved.shape[1:]), dtype=image.dtype)
    padded[1:-1] = moved
    out = np.zeros_like(moved)
    for shift, weight in enumerate(weights):
        _accumulate(out, padded[shift : shift + n], weight)
    return np.moveaxis(out, 0, axis)


def _correlate_3x3(image: np.ndarray, kernel: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """Correlate a 2-D array with a 3x3 kernel, zero outside the image.

    The same as ``scipy.ndimage.correlate(image, kernel, mode="constant")``, written as a
    sum of shifted slices: several times faster for such a small kernel.
    """
    height, width = image.shape
    padded = np.zeros((height + 2, width + 2), dtype=image.dtype)
    padded[1:-1, 1:-1] = image
    out = np.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            _accumulate(out, padded[dy : dy + height, dx : dx + width], kernel[dy][dx])
    return out


def _interpolate(image: np.ndarray, green: bool) -> np.ndarray:
    if green:
        return _correlate_3x3(image, _KERNEL_G)
    return _correlate_1d(_correlate_1d(image, _KERNEL_1D_RB, 0), _KERNEL_1D_RB, 1)


def normalize_pattern(pattern: str) -> str:
    """Return ``pattern`` as one of `BAYER_PATTERNS`.

    Parameters
    ----------
    pattern : str
        A Bayer pattern as found in a FITS header (case and surrounding blanks ignored).

    Returns
    -------
    str
        The upper-case pattern.

    Raises
    ------
    ValueError
        When the pattern is not one of the four 2x2 RGB patterns.
    """
    text = str(pattern).strip().upper()
    if text not in BAYER_PATTERNS:
        raise ValueError(
            f"unsupported Bayer pattern {text!r}: expected one of {', '.join(BAYER_PATTERNS)}"
        )
    return text


def shift_pattern(pattern: str, dx: int, dy: int) -> str:
    """Return the pattern seen from a pixel grid shifted by ``(dx, dy)`` pixels.

    Parameters
    ----------
    pattern : str
        A 2x2 pattern, one of `BAYER_PATTERNS`.
    dx, dy : int
        Offsets: pixel ``(x, y)`` of the new grid is pixel ``(x + dx, y + dy)`` of the
        grid that ``pattern`` describes. Only their parity matters.

    Returns
    -------
    str
        The pattern whose first letter is the colour of the new grid's pixel ``(0, 0)``.
    """
    pat = normalize_pattern(pattern)
    cells = [[pat[0], pat[1]], [pat[2], pat[3]]]
    return "".join(cells[(row + dy) % 2][(col + dx) % 2] for row in (0, 1) for col in (0, 1))


def array_pattern(
    pattern: str,
    height: int,
    *,
    x_offset: int = 0,
    y_offset: int = 0,
    bottom_up: bool = False,
) -> str:
    """The pattern that applies to a FITS image array as stored (row 0 = first row in the file).

    ``BAYERPAT`` describes the sensor readout from its first pixel, top-down, the way
    cameras deliver frames and capture programs write them (N.I.N.A., ZWO, Seestar: the
    first row in the file is the first row read out, with or without
    ``ROWORDER = 'TOP-DOWN'``). ``XBAYROFF``/``YBAYROFF`` shift the pattern, e.g. for a
    sub-frame that starts on an odd column or row. A file declared
    ``ROWORDER = 'BOTTOM-UP'`` stores the readout with its rows reversed (Siril writes
    that way), so its first stored row is readout row ``height - 1``: the pattern is
    flipped vertically when the height is even.

    Parameters
    ----------
    pattern : str
        The ``BAYERPAT`` value.
    height : int
        Number of rows of the image.
    x_offset, y_offset : int, optional
        ``XBAYROFF`` and ``YBAYROFF``.
    bottom_up : bool, optional
        True when the file declares ``ROWORDER = 'BOTTOM-UP'``.

    Returns
    -------
    str
        The pattern whose letters give the colours of array pixels ``[0, 0]``,
        ``[0, 1]``, ``[1, 0]``, ``[1, 1]``.
    """
    dy = int(y_offset) + ((int(height) - 1) if bottom_up else 0)
    return shift_pattern(pattern, int(x_offset), dy)


def bayer_masks(pattern: str, shape: tuple[int, int]) -> np.ndarray:
    """Boolean site masks of a Bayer mosaic.

    Parameters
    ----------
    pattern : str
        The pattern that applies to the array as stored (see `array_pattern`).
    shape : tuple of int
        ``(H, W)`` of the raw frame.

    Returns
    -------
    ndarray of bool, shape (3, H, W)
        ``masks[c]`` is True where the raw frame sampled colour ``c`` (R, G, B).
    """
    pat = normalize_pattern(pattern)
    height, width = int(shape[0]), int(shape[1])
    masks = np.zeros((3, height, width), dtype=bool)
    for index, letter in enumerate(pat):
        row, col = divmod(index, 2)
        masks[_CHANNEL_INDEX[letter], row::2, col::2] = True
    return masks


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB cube through a Bayer pattern (the inverse of demosaicing; for tests and demos).

    Parameters
    ----------
    rgb : ndarray, shape (3, H, W)
        The scene.
    pattern : str
        The pattern that applies to the array as stored.

    Returns
    -------
    ndarray, shape (H, W)
        The raw frame, same dtype as ``rgb``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected an RGB cube of shape (3, H, W), got {rgb.shape}")
    masks = bayer_masks(pattern, rgb.shape[1:])
    raw = np.zeros(rgb.shape[1:], dtype=rgb.dtype)
    for channel in range(3):
        raw[masks[channel]] = rgb[channel][masks[channel]]
    return raw


def debayer_bilinear(raw: np.ndarray, pattern: str) -> np.ndarray:
    """Demosaic a raw Bayer frame by bilinear interpolation.

    Parameters
    ----------
    raw : ndarray, shape (H, W)
        The raw frame, any real dtype; NaN (or any non-finite value) means "no data".
    pattern : str
        The pattern that applies to the array as stored (see `array_pattern`).

    Returns
    -------
    ndarray, float32, shape (3, H, W), C-contiguous
        R, G, B. At each colour's own sites the value is the raw sample itself; elsewhere
        the mean of the nearest samples of that colour (2 or 4 of them, fewer at the
        border or next to NaN); NaN where no finite sample of that colour is adjacent.
    """
    frame = np.asarray(raw)
    if frame.ndim != 2:
        raise ValueError(f"a raw Bayer frame is 2-D, got shape {frame.shape}")
    # A copy in native byte order, never a view on the input. float32 sums are exact for
    # integer data up to 2**24 / 16, and a raw sample comes back unchanged at its own site
    # (4 v / 4).
    values = frame.astype(np.float32)
    finite = np.isfinite(values)
    values[~finite] = 0.0
    masks = bayer_masks(pattern, values.shape)
    out = np.empty((3, *values.shape), dtype=np.float32)
    for channel in range(3):
        known = (masks[channel] & finite).astype(np.float32)
        numerator = _interpolate(values * known, green=channel == 1)
        denominator = _interpolate(known, green=channel == 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            plane = numerator / denominator
        plane[denominator <= 0.0] = np.nan
        out[channel] = plane
    return out
