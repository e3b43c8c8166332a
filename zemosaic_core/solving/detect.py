"""Star detection for plate solving (``sep``, the SExtractor library).

astrometry.net needs a list of star positions, brightest first. Raw one-shot-colour
frames are binned 2x2 first (each 2x2 Bayer cell summed into one pixel): colour
cells then no longer look like a checkerboard of "stars", and the frame has a quarter
of the pixels. A 3x3 median removes hot pixels (a single bright pixel is not a star)
before ``sep`` subtracts the background and extracts sources above a threshold in
units of the background noise. The positions returned are in the pixel grid of the
stored image, 0-based (the centre of the first pixel is 0, 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

__all__ = [
    "DetectionError",
    "FrameForSolving",
    "StarList",
    "bin_bayer",
    "detect_stars",
    "read_frame_for_solving",
]

logger = logging.getLogger(__name__)

#: Stars handed to the solver at most (astrometry.net uses the brightest few dozen).
MAX_STARS = 100
#: Fewer stars than this cannot give a trustworthy solution.
MIN_STARS = 8
#: Detection threshold in units of the background noise; raised when sep overflows.
THRESHOLDS_SIGMA: tuple[float, ...] = (5.0, 10.0, 20.0)
#: A source more elongated than this is a trail, a galaxy's arm or a defect.
MAX_ELONGATION = 3.0


class DetectionError(Exception):
    """No usable star list could be made; ``str(exc)`` says why in words."""


@dataclass(frozen=True)
class FrameForSolving:
    """The 2-D image to detect stars on, and the header it came with.

    Attributes
    ----------
    image : ndarray, float32, shape (H, W)
        Luminance of the stored frame (mean of colour planes; the raw Bayer mosaic as
        stored, not yet binned).
    header : astropy.io.fits.Header
        The header of the image HDU (a copy).
    bayer : bool
        True for a raw one-shot-colour frame (``BAYERPAT`` present).
    """

    image: np.ndarray
    header: fits.Header
    bayer: bool

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class StarList:
    """Detected stars, brightest first, in 0-based pixel coordinates of the stored image."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    threshold_sigma: float

    def __len__(self) -> int:
        return int(self.x.size)


def _is_bayer(header: fits.Header) -> bool:
    try:
        value = header.get("BAYERPAT")
    except Exception:
        return False
    if value is None or isinstance(value, bool):
        return False
    return str(value).strip().upper() not in ("", "NONE", "MONO", "MONOCHROME")


def read_frame_for_solving(path: str | Path) -> FrameForSolving:
    """Read the first image HDU of a FITS file as a 2-D luminance image.

    Parameters
    ----------
    path : path-like
        Opened read-only and never modified.

    Returns
    -------
    FrameForSolving

    Raises
    ------
    DetectionError
        When the file holds no 2-D image or 3-plane colour cube.
    """
    with fits.open(path, mode="readonly", memmap=False) as hdul:
        for hdu in hdul:
            if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                continue
            if int(hdu.header.get("NAXIS", 0) or 0) < 2 or hdu.data is None:
                continue
            data = np.asarray(hdu.data, dtype=np.float32)
            header = hdu.header.copy()
            if data.ndim == 2:
                image = np.array(data, dtype=np.float32, order="C")
            elif data.ndim == 3 and data.shape[0] in (1, 3):
                image = np.nanmean(data, axis=0, dtype=np.float32)
            elif data.ndim == 3 and data.shape[-1] in (1, 3):
                image = np.nanmean(data, axis=-1, dtype=np.float32)
            else:
                continue
            bayer = data.ndim == 2 and _is_bayer(header)
            return FrameForSolving(np.ascontiguousarray(image), header, bayer)
    raise DetectionError("no 2-D image or colour cube in the file")


def bin_bayer(image: np.ndarray) -> np.ndarray:
    """Sum each 2x2 cell of a raw Bayer frame (odd last row/column dropped).

    Parameters
    ----------
    image : ndarray, shape (H, W)

    Returns
    -------
    ndarray, float32, shape (H // 2, W // 2)
        Binned pixel (i, j) covers stored pixels 2i..2i+1, 2j..2j+1; its centre is
        stored pixel (2i + 0.5, 2j + 0.5).
    """
    height, width = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    cells = np.asarray(image[:height, :width], dtype=np.float32)
    return cells.reshape(height // 2, 2, width // 2, 2).sum(axis=(1, 3), dtype=np.float32)


def _extract(data: np.ndarray, rms: float, sigma: float):
    import sep

    return sep.extract(data, sigma, err=rms, minarea=5, deblend_cont=0.005)


def detect_stars(frame: FrameForSolving, *, max_stars: int = MAX_STARS) -> StarList:
    """Find the brightest point sources of a frame.

    Parameters
    ----------
    frame : FrameForSolving
    max_stars : int
        The brightest this many are kept.

    Returns
    -------
    StarList
        At least `MIN_STARS` stars, brightest first.

    Raises
    ------
    DetectionError
        Blank frame, no background noise, or fewer than `MIN_STARS` stars.
    """
    import sep

    factor = 2 if frame.bayer else 1
    image = bin_bayer(frame.image) if frame.bayer else frame.image
    finite = np.isfinite(image)
    if not finite.any():
        raise DetectionError("blank frame (no finite pixel)")
    fill = float(np.median(image[finite]))
    work = np.where(finite, image, np.float32(fill)).astype(np.float32)
    if float(np.ptp(work)) == 0.0:
        raise DetectionError("blank frame (every pixel has the same value)")
    work = ndimage.median_filter(work, size=3, mode="nearest").astype(np.float32)
    work = np.ascontiguousarray(work)
    background = sep.Background(work, bw=64, bh=64, fw=3, fh=3)
    rms = float(background.globalrms)
    if not np.isfinite(rms) or rms <= 0.0:
        raise DetectionError(
            "no background noise to measure stars against (synthetic or flat frame?)"
        )
    data = work - background.back()
    objects = None
    used = THRESHOLDS_SIGMA[-1]
    for sigma in THRESHOLDS_SIGMA:
        try:
            objects = _extract(data, rms, sigma)
        except Exception as exc:  # sep overflows on frames full of bright structure
            logger.debug("sep at %.0f sigma: %s", sigma, exc)
            continue
        used = sigma
        break
    if objects is None:
        raise DetectionError("star detection failed: the frame is full of bright structure")
    height, width = data.shape
    a = np.asarray(objects["a"], dtype=np.float64)
    b = np.asarray(objects["b"], dtype=np.float64)
    x = np.asarray(objects["x"], dtype=np.float64)
    y = np.asarray(objects["y"], dtype=np.float64)
    flux = np.asarray(objects["flux"], dtype=np.float64)
    keep = (
        (b > 0)
        & (a / np.maximum(b, 1e-9) <= MAX_ELONGATION)
        & (x > 1)
        & (x < width - 2)
        & (y > 1)
        & (y < height - 2)
        & np.isfinite(flux)
        & (flux > 0)
    )
    order = np.argsort(-flux[keep], kind="stable")[:max_stars]
    x, y, flux = x[keep][order], y[keep][order], flux[keep][order]
    if x.size < MIN_STARS:
        raise DetectionError(
            f"too few stars: {x.size} detected, at least {MIN_STARS} needed "
            "(clouds, daylight, out of focus, or not a sky image?)"
        )
    # Back to the stored grid: binned pixel i is centred on stored pixel 2i + 0.5.
    offset = 0.5 if factor == 2 else 0.0
    logger.debug("%d stars detected at %.0f sigma", x.size, used)
    return StarList(x * factor + offset, y * factor + offset, flux, used)
