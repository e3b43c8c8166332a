"""Sub quality: background, noise, star count and FWHM of every input, and what to do.

A night of subs always holds a few bad ones: a passing cloud, wind, a dew-covered
lens, dawn. Astrophotographers expect to see the measurements of each sub (DEBUG),
a summary (INFO), and two optional actions, as Siril and Astro Pixel Processor offer:

- **weighting** by the inverse sky-noise variance, relative to the median sub (a
  noisier sub counts less; on equal subs every weight is 1);
- **rejection** of the subs that are outliers of the night, by name: a robust z-score
  (median and ``mad_std`` over the subs) beyond ``reject_sigma`` for a larger FWHM,
  fewer stars (in log) or a larger noise than the others. The threshold is relative
  to the night itself, not an absolute FWHM, so it applies to any optics and seeing.

Stars are detected with ``sep`` (the SExtractor library) on the luminance binned 2x2
(a quarter of the pixels; debayering leaves no checkerboard by then), above
`DETECT_SIGMA` times the background noise, with at least `MIN_AREA` pixels so that
hot pixels do not count as stars.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from ..config import QualitySpec
from ..errors import InputError, printable_path
from ..runtime.cancel import CancelToken, check_cancel
from ..runtime.cpus import available_cpus
from ..stats import mad_std
from ..tile import TileLike

__all__ = ["SubQuality", "apply_quality", "measure_sub"]

logger = logging.getLogger(__name__)

#: Detection threshold, in background noise sigmas (binned luminance).
DETECT_SIGMA = 5.0
#: Smallest source, in binned pixels: a hot pixel (1-4 binned pixels) is not a star.
MIN_AREA = 5
#: FWHM of a Gaussian per its second-moment sigma.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: Side of sep's background mesh, binned pixels.
BACKGROUND_MESH = 32
#: Half-flux radius of a Gaussian per its sigma: sqrt(2 ln 2).
_HALF_FLUX_PER_SIGMA = math.sqrt(2.0 * math.log(2.0))
#: Fewer subs than this are not judged against each other (no robust spread).
MIN_SUBS_TO_REJECT = 5


@dataclass(frozen=True)
class SubQuality:
    """Measurements of one input, in its own pixels and units.

    Attributes
    ----------
    background : float
        Median sky level of the luminance (mean of the channels).
    noise : float
        Sky noise sigma of one luminance pixel.
    stars : int
        Sources detected above `DETECT_SIGMA` (binned 2x2, at least `MIN_AREA` pixels).
    fwhm : float
        Median FWHM of the detected stars, in input pixels (NaN when none).
    """

    background: float
    noise: float
    stars: int
    fwhm: float


def _binned_luminance(data: np.ndarray) -> np.ndarray:
    luminance = np.asarray(np.mean(data, axis=0, dtype=np.float32))
    h, w = (luminance.shape[0] // 2) * 2, (luminance.shape[1] // 2) * 2
    binned = luminance[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return np.ascontiguousarray(binned, dtype=np.float32)


def measure_sub(tile: TileLike) -> SubQuality:
    """Measure one input (see the module notes).

    Parameters
    ----------
    tile : TileLike

    Returns
    -------
    SubQuality
    """
    import sep

    binned = _binned_luminance(tile.data)
    finite = np.isfinite(binned)
    if finite.sum() < 64:
        return SubQuality(float("nan"), float("nan"), 0, float("nan"))
    fill = float(np.median(binned[finite]))
    image = np.where(finite, binned, np.float32(fill))
    mask = ~finite
    # A fine mesh follows sky gradients; the noise is then measured on what is left
    # (sep's own mesh rms also counts the gradient inside each mesh cell).
    background = sep.Background(image, mask=mask, bw=BACKGROUND_MESH, bh=BACKGROUND_MESH)
    residual = image - background.back()
    binned_noise = float(mad_std(residual[finite]))
    # The binned noise is half the per-pixel noise of the luminance (4 pixels averaged).
    noise = 2.0 * binned_noise
    try:
        objects = sep.extract(residual, DETECT_SIGMA, err=binned_noise, mask=mask, minarea=MIN_AREA)
    except Exception:  # sep's pixel stack overflows on a frame full of sources
        logger.debug("%s: star detection failed", tile.name, exc_info=True)
        objects = np.empty(0, dtype=[("x", "f8"), ("y", "f8"), ("a", "f8"), ("flag", "i4")])
    good = objects[(objects["flag"] == 0) & (objects["a"] > 0)] if len(objects) else objects
    fwhm = float("nan")
    if len(good):
        # Half-flux radius (isophotal second moments shrink with the threshold), then
        # back to input pixels: the 2x2 box adds 4/12 px^2 to a Gaussian's variance.
        radius, flags = sep.flux_radius(
            residual, good["x"], good["y"], 6.0 * good["a"], 0.5, subpix=5
        )
        radius = radius[(flags == 0) & np.isfinite(radius) & (radius > 0)]
        if radius.size:
            sigma_binned = float(np.median(radius)) / _HALF_FLUX_PER_SIGMA
            sigma = math.sqrt(max((2.0 * sigma_binned) ** 2 - 4.0 / 12.0, 0.01))
            fwhm = _FWHM_PER_SIGMA * sigma
    return SubQuality(fill, noise, int(len(objects)), fwhm)


#: Smallest spread of a measurement across the night, relative (FWHM, noise) or in log
#: (star count): one sub's estimates are good to a few per cent, so a night of nearly
#: equal subs must not turn a 2 % difference into a many-sigma "outlier".
MIN_SPREAD = 0.05


def _robust_z(values: np.ndarray, *, relative: bool = True) -> np.ndarray:
    """(value - median) / spread over the finite values; 0 where undefined.

    The spread is ``mad_std``, floored at `MIN_SPREAD` (times the median when
    ``relative``).
    """
    finite = np.isfinite(values)
    z = np.zeros(values.shape, dtype=np.float64)
    if finite.sum() < MIN_SUBS_TO_REJECT:
        return z
    centre = float(np.median(values[finite]))
    floor = MIN_SPREAD * abs(centre) if relative else MIN_SPREAD
    spread = max(float(mad_std(values[finite])), floor)
    if not spread > 0:
        return z
    z[finite] = (values[finite] - centre) / spread
    return z


def _rejections(qualities: Sequence[SubQuality], sigma: float) -> dict[int, str]:
    """Index -> reason for the subs that are outliers of the night."""
    fwhm = np.array([q.fwhm for q in qualities])
    stars = np.log1p(np.array([q.stars for q in qualities], dtype=np.float64))
    noise = np.array([q.noise for q in qualities])
    checks = (
        (_robust_z(fwhm), 1, "FWHM {:.2f} px against a median of {:.2f} px", fwhm),
        (
            _robust_z(stars, relative=False),
            -1,
            "{:.0f} stars against a median of {:.0f}",
            np.expm1(stars),
        ),
        (_robust_z(noise), 1, "sky noise {:.4g} against a median of {:.4g}", noise),
    )
    found: dict[int, list[str]] = {}
    for z, sign, text, values in checks:
        median = float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")
        for index in np.flatnonzero(sign * z > sigma):
            found.setdefault(int(index), []).append(text.format(values[index], median))
    return {index: "; ".join(texts) for index, texts in found.items()}


def apply_quality(
    tiles: Sequence[TileLike],
    spec: QualitySpec,
    *,
    cancel: CancelToken | None = None,
) -> tuple[list[TileLike], list[InputError]]:
    """Measure every input, log the figures, weight and reject as ``spec`` says.

    Parameters
    ----------
    tiles : sequence of TileLike
        The loaded inputs (never modified; weighted ones are new objects).
    spec : QualitySpec
    cancel : CancelToken, optional

    Returns
    -------
    tiles : list of TileLike
        The inputs kept, with ``tile_weight`` multiplied by their noise weight when
        ``spec.weight``.
    rejected : list of InputError
        The subs dropped, each with its reason (already logged as a WARNING).
    """
    if not spec.measure or len(tiles) < 2:
        return list(tiles), []

    def measure(tile: TileLike) -> SubQuality:
        check_cancel(cancel)
        return measure_sub(tile)

    with ThreadPoolExecutor(max(1, available_cpus())) as pool:
        qualities = list(pool.map(measure, tiles))
    for tile, q in zip(tiles, qualities, strict=True):
        logger.debug(
            "quality %s: background %.5g, noise %.4g, %d stars, FWHM %.2f px",
            tile.name,
            q.background,
            q.noise,
            q.stars,
            q.fwhm,
        )
    fwhm = np.array([q.fwhm for q in qualities])
    stars = np.array([q.stars for q in qualities])
    noise = np.array([q.noise for q in qualities])
    logger.info(
        "Sub quality over %d inputs: FWHM %s px, stars %d..%d (median %d), noise %s",
        len(tiles),
        _range(fwhm, "{:.2f}"),
        int(stars.min()),
        int(stars.max()),
        int(np.median(stars)),
        _range(noise, "{:.3g}"),
    )
    reasons = _rejections(qualities, spec.reject_sigma) if spec.reject_sigma else {}
    rejected = []
    for index, reason in sorted(reasons.items()):
        error = InputError(tiles[index].path, f"poor sub: {reason}")
        logger.warning("%s: skipped: %s", printable_path(error.path), error.reason)
        rejected.append(error)
    kept = [
        (t, q) for i, (t, q) in enumerate(zip(tiles, qualities, strict=True)) if i not in reasons
    ]
    if not spec.weight:
        return [t for t, _ in kept], rejected
    reference = np.nanmedian([q.noise for _, q in kept]) if kept else float("nan")
    weighted: list[TileLike] = []
    for tile, q in kept:
        factor = (reference / q.noise) ** 2 if q.noise > 0 and np.isfinite(reference) else 1.0
        weighted.append(replace(tile, tile_weight=tile.tile_weight * float(factor)))  # type: ignore[type-var]
    return weighted, rejected


def _range(values: np.ndarray, fmt: str) -> str:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return "n/a"
    return f"{fmt.format(finite.min())}..{fmt.format(finite.max())} (median {fmt.format(float(np.median(finite)))})"
