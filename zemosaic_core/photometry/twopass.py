"""Two-pass coverage renormalization: per-tile gains against the pass-1 consensus (docs/architecture.md §5).

Pass 1 gives a consensus mosaic M1 and its coverage C. Each tile gets one gain g_i,
shared by all channels, that brings it onto M1 where M1 is well covered (at least
``tau`` tile-equivalents, also after a normalised blur of the coverage). Pass 2 then
re-coadds ``g_i * tile_i``. On consistent data every gain is 1 (identity).

The fit itself runs on the CPU from host arrays; the tiles are resampled by the
backend of pass 1, so gains from either backend agree to the backends' parity.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..config import TwoPassSpec
from ..engine.backends.base import Backend, PreparedTile
from ..geometry.planning import MosaicPlan
from ..runtime.cancel import CancelToken, check_cancel
from ..runtime.progress import ProgressCallback, report
from ..stats import MAD_TO_SIGMA, mad_std
from ..tile import TileLike

logger = logging.getLogger(__name__)

#: Fit iterations and clip (in robust sigmas) of the through-origin gain fit.
_FIT_ITERATIONS = 8
_FIT_CLIP = 3.0
#: Rounds of the global gain solve (it usually settles in well under ten).
_SOLVE_ITERATIONS = 30
#: Samples per tile in the gain fit: an even subset; the consensus uses every pixel.
_FIT_SAMPLES = 40000
#: Well-covered pixels the consensus is evaluated on, at most (a regular lattice).
_MAX_SLOTS = 4_000_000
#: Samples of all tiles together, at most: the lattice thins out as tiles pile up, so the
#: fit's memory (~30 bytes a sample) stays flat in the number of subs (60 subs of one
#: field held 1.4 GB of samples before this bound).
_MAX_SAMPLES = 4_000_000


def _block_means(plane: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor x factor`` blocks (edge blocks over what they hold), float64."""
    height, width = plane.shape
    rows = np.arange(0, height, factor)
    cols = np.arange(0, width, factor)
    sums = np.add.reduceat(np.add.reduceat(plane, rows, axis=0, dtype=np.float64), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, height)), np.diff(np.append(cols, width)))
    return sums / counts


def _blurred_small(coverage: np.ndarray, sigma: float) -> tuple[np.ndarray, int]:
    """The normalised blur on blocks of ``sigma / 8`` px (well below the blur scale).

    Working on block means keeps both the time and the memory of step 1 small on large
    mosaics (no full-size float64 arrays).
    """
    factor = max(1, int(sigma // 8))
    cv_small = _block_means(coverage, factor)  # C * V = C, as C = 0 outside V
    v_small = _block_means((coverage > 0).astype(np.float32), factor)
    blur_cv = ndimage.gaussian_filter(cv_small, sigma / factor, mode="constant")
    blur_v = ndimage.gaussian_filter(v_small, sigma / factor, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(blur_v > 1e-12, blur_cv / blur_v, 0.0), factor


def _expand(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Blocks back to full size: never larger than ``shape`` (a blur wider than the
    mosaic makes one block far larger than the canvas)."""
    rows = np.arange(shape[0]) // factor
    cols = np.arange(shape[1]) // factor
    return small[rows[:, np.newaxis], cols[np.newaxis, :]]


def well_covered_mask(
    coverage: np.ndarray, tile_weights: Sequence[float], spec: TwoPassSpec
) -> np.ndarray:
    """Pixels where C >= tau and C~ >= tau tile-equivalents (step 2)."""
    unit = float(np.median(np.asarray(tile_weights, dtype=np.float64)))
    threshold = spec.tau * unit
    small, factor = _blurred_small(coverage, spec.sigma)
    # A hair of tolerance: a uniform 2-tile area blurs to 2 +- rounding.
    blurred_ok = _expand(small >= threshold * (1 - 1e-6), factor, coverage.shape)
    return (coverage >= threshold) & blurred_ok


def robust_gain(tile_values: np.ndarray, consensus: np.ndarray) -> float:
    """Least-squares scale through the origin of ``tile_values`` onto ``consensus``.

    Starts from the median ratio (robust to anything touching under half the pixels),
    then alternates a residual clip at ``_FIT_CLIP`` robust sigmas (MAD about zero) with
    a least-squares refit on the kept pixels, so stars that differ in seeing, a
    satellite trail or hot pixels in the tile cannot move the gain.
    """
    return _clipped_gain(tile_values, consensus)[0]


def _clipped_gain(tile_values: np.ndarray, consensus: np.ndarray) -> tuple[float, np.ndarray]:
    """`robust_gain` and the mask of the samples it kept."""
    a = tile_values.astype(np.float64)
    b = consensus.astype(np.float64)
    positive = a > 0
    keep = np.ones(a.shape, dtype=bool)
    if not positive.any():
        return 1.0, keep
    gain = float(np.median(b[positive] / a[positive]))
    previous = None
    for _ in range(_FIT_ITERATIONS):
        residual = b - gain * a
        scale = MAD_TO_SIGMA * float(np.median(np.abs(residual)))
        new_keep = np.abs(residual) <= _FIT_CLIP * scale if scale > 0 else np.ones_like(a, bool)
        if new_keep.sum() < 16 or (previous is not None and np.array_equal(new_keep, previous)):
            break
        previous = keep = new_keep
        denom = float(np.dot(a[keep], a[keep]))
        if denom <= 0:
            break
        gain = float(np.dot(a[keep], b[keep]) / denom)
    return gain, keep


def _resampled_luminances(
    backend: Backend, tiles: Sequence[TileLike], plan: MosaicPlan, indices: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mean over channels and weight ``W`` of several tiles, resampled onto their boxes.

    Uses the backend that ran pass 1 (the CPU reuses the tiles it already resampled,
    and resamples the others in parallel). Where any channel has no data the luminance
    is NaN and the weight 0.
    """
    requests = [(tiles[i], i, plan.bboxes[i]) for i in indices]
    with backend.device_errors("resampling for the two-pass gains"):
        prepared = backend.prepare_many(requests, plan)
        try:
            return [_luminance(backend, prep, tiles[prep.tile_index]) for prep in prepared]
        finally:
            for prep in prepared:
                backend.release(prep)


def _luminance(
    backend: Backend, prepared: PreparedTile, tile: TileLike
) -> tuple[np.ndarray, np.ndarray]:
    xp = backend.xp
    total = xp.zeros(prepared.region.shape, dtype=xp.float32)
    weight = None
    valid = None
    for channel in range(tile.n_channels):
        values, weights = backend.sample(prepared, channel)
        total += values
        valid = weights > 0 if valid is None else valid & (weights > 0)
        weight = weights if weight is None else weight
    luminance = xp.where(valid, total / xp.float32(tile.n_channels), xp.float32(np.nan))
    weight = xp.where(valid, weight, xp.float32(0))
    return backend.to_host(luminance), backend.to_host(weight)


@dataclass
class _TileSamples:
    """A tile's resampled luminance and weight at its valid well-covered pixels."""

    index: np.ndarray  # positions in the list of well-covered pixels
    luminance: np.ndarray
    weight: np.ndarray
    eligible: bool  # enough valid pixels to fit a gain
    fit: np.ndarray  # the samples the gain fit uses (a deterministic, even subset)


def _collect_samples(
    backend: Backend,
    tiles: Sequence[TileLike],
    plan: MosaicPlan,
    well: np.ndarray,
    spec: TwoPassSpec,
    cancel: CancelToken | None,
    progress: ProgressCallback | None,
) -> list[_TileSamples]:
    # The consensus is evaluated on a lattice of every ``stride``-th pixel (the same for
    # all tiles, so every tile contributes at each lattice pixel it covers), fine enough
    # to hold up to _MAX_SLOTS well-covered pixels. Each lattice pixel gets a slot in a
    # compact list; per-tile samples index small arrays, never a full-size array.
    footprint = sum(box.shape[0] * box.shape[1] for box in plan.bboxes if not box.is_empty)
    density = max(int(well.sum()) / _MAX_SLOTS, footprint / _MAX_SAMPLES)
    stride = max(1, int(np.ceil(np.sqrt(density))))
    lattice = well[::stride, ::stride]
    slot = np.full(lattice.shape, -1, dtype=np.int32 if lattice.size < 2**31 else np.int64)
    slot[lattice] = np.arange(int(lattice.sum()), dtype=slot.dtype)
    empty = np.empty(0, dtype=np.float64)
    nothing = np.empty(0, dtype=np.int64)
    samples = [_TileSamples(nothing, empty, empty, False, nothing) for _ in tiles]
    todo = [i for i, box in enumerate(plan.bboxes) if not box.is_empty]
    step = max(1, backend.prepare_threads)  # tiles resampled at once
    for k in range(0, len(todo), step):
        check_cancel(cancel)
        group = todo[k : k + step]
        for i, (lum, weight) in zip(
            group, _resampled_luminances(backend, tiles, plan, group), strict=True
        ):
            tile, box = tiles[i], plan.bboxes[i]
            valid = well[box.slices] & (weight > 0) & np.isfinite(lum)
            needed = max(
                spec.min_valid_pixels,
                int(spec.min_valid_fraction * tile.shape[0] * tile.shape[1]),
            )
            n_valid = int(valid.sum())
            if n_valid < needed:
                logger.debug("[TwoPass] %s: %d valid px < %d: gain 1", tile.name, n_valid, needed)
            # This tile's pixels that fall on the lattice.
            oy, ox = (-box.y0) % stride, (-box.x0) % stride
            on = valid[oy::stride, ox::stride]
            ly, lx = (box.y0 + oy) // stride, (box.x0 + ox) // stride
            n_on = int(on.sum())
            samples[i] = _TileSamples(
                index=slot[ly : ly + on.shape[0], lx : lx + on.shape[1]][on],
                luminance=lum[oy::stride, ox::stride][on].astype(np.float64),
                weight=weight[oy::stride, ox::stride][on].astype(np.float64),
                eligible=n_valid >= needed,
                fit=np.arange(0, n_on, max(1, n_on // _FIT_SAMPLES)),
            )
        report(progress, "two-pass gains", k + len(group), len(todo))
    return samples


def _fit_data(
    s: _TileSamples, gain: float, total: np.ndarray, total_weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tile's fit samples, the consensus of the *other* tiles there, and where it exists.

    ``total`` and ``total_weight`` are the gain-weighted sums over every tile per slot;
    the tile's own contribution (at ``gain``) is taken out of both.
    """
    at, weight_i, lum_i = s.index[s.fit], s.weight[s.fit], s.luminance[s.fit]
    others = total_weight[at] - weight_i
    with np.errstate(invalid="ignore", divide="ignore"):
        target = (total[at] - gain * weight_i * lum_i) / others
    return lum_i, target, (others > 0) & np.isfinite(target)


#: A fitted gain is kept only if it lies this many standard errors from 1.
GAIN_EVIDENCE_SIGMAS = 3.0


def _unsupported_gains(
    samples: Sequence[_TileSamples],
    kept: Sequence[np.ndarray | None],
    gains: np.ndarray,
    total_weight: np.ndarray,
    flat: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_slots: int,
) -> np.ndarray:
    """The tiles whose fitted gain their own samples cannot tell from 1.

    Two limits, both measured on the samples the fit kept:

    - the standard error of the through-origin fit, ``sigma_r / sqrt(sum a^2)``
      (``sigma_r`` the ``mad_std`` of the residuals, times ``sqrt(2)`` for the
      correlation of neighbouring resampled pixels): a gain within
      `GAIN_EVIDENCE_SIGMAS` of them from 1 is noise;
    - the regression dilution ``1 - R^2`` (``R^2 = (sum ab)^2 / (sum a^2 sum b^2)``,
      about the origin): the tile's own noise biases the slope towards 0 by about that
      much, so a correction no larger than it is not a measurement. On overlaps of
      noise around a level near zero (X-ray or significance maps) ``R^2`` is small and
      two-pass stays an identity instead of scaling tiles by the noise; on sky images
      the pedestal makes ``R^2`` close to 1.
    """
    index, owner, weight, luminance = flat
    total = np.bincount(index, weights=gains[owner] * weight * luminance, minlength=n_slots)
    unsupported = np.zeros(len(samples), dtype=bool)
    for i, s in enumerate(samples):
        chosen = kept[i]
        if not s.eligible or chosen is None or chosen.size < 16:
            continue
        lum_i, target, _ = _fit_data(s, float(gains[i]), total, total_weight)
        a, b = lum_i[chosen], target[chosen]
        good = np.isfinite(a) & np.isfinite(b)
        a, b = a[good], b[good]
        saa, sbb = float(np.dot(a, a)), float(np.dot(b, b))
        if a.size < 16 or saa <= 0 or sbb <= 0:
            continue
        error = math.sqrt(2.0) * float(mad_std(b - gains[i] * a)) / math.sqrt(saa)
        dilution = 1.0 - float(np.dot(a, b)) ** 2 / (saa * sbb)
        unsupported[i] = abs(gains[i] - 1.0) <= max(GAIN_EVIDENCE_SIGMAS * error, dilution)
    return unsupported


def compute_gains(
    backend: Backend,
    tiles: Sequence[TileLike],
    plan: MosaicPlan,
    coverage: np.ndarray,
    spec: TwoPassSpec,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """One gain per tile against the pass-1 consensus (docs/architecture.md §5 steps 1-3).

    Each tile is fitted (through the origin, with clipping) onto the consensus of the
    *other* tiles over its valid set: its footprint, well covered, finite. Because
    those others may carry gains of their own, the fit is repeated with the current
    gains until it settles (a Jacobi iteration of the global problem), then the gains
    are normalised to a median of 1 so the mosaic keeps the consensus' scale. On
    consistent tiles this is the identity; a single off tile is recovered in full
    instead of dragging its neighbours.

    The consensus is rebuilt from the tiles' own resampled samples (for the mean
    combine it *is* M1, channel-averaged), which is what allows leaving each tile out
    of it; only pass 1's coverage is needed for the gate.

    Parameters
    ----------
    backend : Backend
        Resamples the tiles (the backend of pass 1); may raise ``BackendError``.
    tiles : sequence of TileLike
        The matched tiles, in plan order.
    plan : MosaicPlan
    coverage : ndarray, float32, (H, W)
        Pass-1 coverage of the first channel (channels share geometry).
    spec : TwoPassSpec

    Returns
    -------
    ndarray, float64, (N,)
        Gains clipped to ``spec.gain_clip``; 1 where a tile has too few valid pixels.
    """
    well = well_covered_mask(coverage, [t.tile_weight for t in tiles], spec)
    samples = _collect_samples(backend, tiles, plan, well, spec, cancel, progress)
    n_slots = max((int(s.index.max()) + 1 for s in samples if s.index.size), default=0)
    eligible = np.array([s.eligible for s in samples])
    lo, hi = spec.gain_clip
    gains = np.ones(len(tiles), dtype=np.float64)
    if n_slots and eligible.any():
        index = np.concatenate([s.index for s in samples])
        weight = np.concatenate([s.weight for s in samples])
        luminance = np.concatenate([s.luminance for s in samples])
        owner = np.concatenate(
            [np.full(s.index.size, i, dtype=np.int32) for i, s in enumerate(samples)]
        )
        total_weight = np.bincount(index, weights=weight, minlength=n_slots)
        # Which samples a tile's fit keeps is decided once, by the clipped fit of the
        # first round (stars, trails); later rounds only refit the kept samples by least
        # squares, two dot products a tile: the whole solve costs about one clipped
        # fit per tile, whatever the number of rounds.
        kept: list[np.ndarray | None] = [None] * len(samples)
        fixed = np.zeros(len(samples), dtype=bool)
        for attempt in range(2):
            # Round 2 only when round 1 found gains that its samples cannot support:
            # those are held at 1 and the others refitted against them.
            gains = np.ones(len(tiles), dtype=np.float64)
            for _ in range(_SOLVE_ITERATIONS):
                check_cancel(cancel)
                scaled = gains[owner] * weight * luminance
                total = np.bincount(index, weights=scaled, minlength=n_slots)
                updated = gains.copy()
                for i, s in enumerate(samples):
                    if not s.eligible or fixed[i]:
                        continue
                    lum_i, target, keep = _fit_data(s, float(gains[i]), total, total_weight)
                    if keep.sum() < spec.min_valid_pixels:
                        continue
                    chosen = kept[i]
                    if chosen is None:
                        gain, inliers = _clipped_gain(lum_i[keep], target[keep])
                        kept[i] = chosen = np.flatnonzero(keep)[inliers]
                        updated[i] = gain
                        continue
                    chosen = chosen[keep[chosen]]
                    a, b = lum_i[chosen], target[chosen]
                    denom = float(np.dot(a, a))
                    if chosen.size >= spec.min_valid_pixels and denom > 0:
                        updated[i] = float(np.dot(a, b)) / denom
                if not fixed.any():  # else the tiles held at 1 keep the consensus' scale
                    updated[eligible] /= np.median(updated[eligible])
                updated = np.clip(updated, lo, hi)
                converged = np.max(np.abs(updated - gains)) < 1e-6
                gains = updated
                if converged:
                    break
            if attempt:
                break
            fixed = _unsupported_gains(
                samples, kept, gains, total_weight, (index, owner, weight, luminance), n_slots
            )
            if not fixed.any():
                break
            logger.debug(
                "[TwoPass] %d gain(s) not supported by their samples: held at 1", fixed.sum()
            )
    for tile, gain in zip(tiles, gains, strict=True):
        logger.debug("[TwoPass] %s: gain=%.5f", tile.name, gain)
    logger.info(
        "[TwoPass] tile gains: min=%.4f max=%.4f over %d tiles",
        float(gains.min()),
        float(gains.max()),
        len(tiles),
    )
    return gains
