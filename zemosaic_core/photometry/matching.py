"""Photometric matching of tiles from their overlaps (DESIGN §1 step 3).

Every tile gets one gain, shared by its channels (so its colour balance is kept), and
one offset per channel, so that ``corrected = gain * data + offset`` agrees with its
neighbours where they overlap. The solution is computed once, on the CPU, with NumPy
only and without any randomness, from downsampled overlap statistics:

1. **Coarse grid.** The output grid is seen through blocks of ``k x k`` pixels, ``k``
   chosen so that the coarse grid is at most `COARSE_TARGET` pixels on its long
   side (256 to 512 px for any canvas larger than that; ``k = 1`` for smaller ones).
2. **Block medians.** Each tile is reduced by the median of its own ``k_t x k_t``
   blocks (``k_t`` = ``k`` scaled by the ratio of the output and tile pixel scales).
   The median ignores NaN, a block less than 3/4 finite is NaN, and pixels of weight 0
   count as NaN. Hot pixels, faint stars and thin trails vanish at this stage; what
   is left of brighter stars and trails departs from a local background (block
   medians over ~12 tile pixels) by more than `SOURCE_SIGMA` robust sigma and is
   masked, with a margin for the wings. Each coarse tile's noise is measured (MAD of
   second differences).
3. **Resampling.** Each coarse tile is sampled bilinearly at the centres of the coarse
   output pixels its box covers, through the exact astropy transform of the full
   output WCS and the tile's full WCS (SIP included): the coarse pixel ``I`` covers
   output pixels ``k I .. k I + k - 1`` and its centre is output pixel
   ``k I + (k - 1) / 2``; tile block ``J`` has its centre at tile pixel
   ``k_t J + (k_t - 1) / 2``. This is the same as ``reproject_interp`` onto a coarse
   WCS (CDELT x k, CRPIX -> (CRPIX - 0.5) / k + 0.5), but exact for SIP tiles, whose
   distortion polynomials cannot be rescaled, and it also yields each sample's noise
   variance factor (the sum of the squared bilinear weights).
4. **Pairs.** For every pair of tiles whose boxes overlap, the coarse pixels finite in
   every channel of both tiles are compared: ``b = r a + d_c`` with one slope ``r``
   for all channels and one intercept per channel. The fit is a Deming
   (errors-in-variables) regression, whose noise-variance ratio comes from each tile's
   measured noise and the bilinear weights, so noise in both tiles does not bias the
   slope towards zero (plain least squares would, by several percent on flat skies).
   It is iterated with a clip of the per-channel residuals at ``3.5`` robust sigma,
   started from medians and a ratio of MADs: whatever the mask missed does not move
   it. A pair also yields the variance of its log slope (infinite when the overlap
   holds no structure beyond noise: then it fixes offsets only).
5. **Global solve.** Gains: ``log g_i - log g_j = log r_ij`` weighted by
   ``1 / var(log r_ij)`` (pairs with a slope uncertain by more than `MAX_GAIN_SD`
   left out), plus a weak prior ``log g_i = 0 +- GAIN_PRIOR_SIGMA``. Offsets, per
   channel, with the gains fixed: ``o_i - o_j = g_j mean_b - g_i mean_a`` (the pair's
   inlier means) weighted by the inverse variance of that difference (proportional
   to the number of inlier pixels). Each is one sparse weighted least-squares problem,
   solved by iteratively reweighted least squares (Huber weights), with the reference
   tile fixed at ``(1, 0)``; the reference is the tile with the largest total overlap
   area (ties: lowest index). An outer loop drops pairs whose residual exceeds
   `PAIR_REJECT_SIGMA` robust sigma, never one that would cut a tile off its
   reference, and solves again. Gains are clipped to `GAIN_LIMITS` (WARNING).

Tiles that overlap no other tile keep gain 1 and offset 0 (WARNING naming each); a
group of tiles that does not touch the reference's group is matched within itself,
against its own reference (WARNING).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel, proj_plane_pixel_scales
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

from ..config import MATCH_MODES
from ..geometry.graph import component_labels
from ..geometry.planning import BoundingBox, MosaicPlan
from ..runtime.cancel import CancelToken, check_cancel
from ..runtime.cpus import available_cpus
from ..runtime.progress import ProgressCallback, report
from ..tile import TileLike

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Matching modes: gain and offset, offset only, or nothing.
MODES: tuple[str, ...] = MATCH_MODES
#: Largest side of the coarse output grid the overlaps are measured on, pixels.
COARSE_TARGET = 512
#: A block median needs at least this fraction of finite pixels in its block.
MIN_BLOCK_FILL = 0.75
#: A pair needs at least this many common coarse pixels to be used.
MIN_PAIR_PIXELS = 16
#: Compact sources (stars, trails) departing this far from the local median are masked.
SOURCE_SIGMA = 4.0
#: A pair whose log slope is uncertain by more than this gives no gain information.
MAX_GAIN_SD = 0.05
#: Weak prior on every log gain: 0 +- this (keeps gains from wandering off through
#: weakly measured overlaps; negligible against any well measured one).
GAIN_PRIOR_SIGMA = 0.25
#: Gains outside this range are clipped (with a WARNING).
GAIN_LIMITS: tuple[float, float] = (0.5, 2.0)
#: Per-pixel residual clip of the pair fits, robust sigma.
PAIR_CLIP_SIGMA = 3.5
#: Rejection threshold of whole pairs in the global solve, robust sigma.
PAIR_REJECT_SIGMA = 5.0
#: Threads used to prepare and correct tiles (at most; never more than the CPUs).
MAX_THREADS = 8
_PAIR_ITERATIONS = 20
_GLOBAL_ITERATIONS = 5
_IRLS_ITERATIONS = 30
_HUBER_K = 1.345
_MAD_TO_SIGMA = 1.4826
_PHASE = "match"


@dataclass
class MatchResult:
    """The outcome of :func:`match_tiles`.

    Attributes
    ----------
    tiles : list of TileLike
        The corrected tiles, in input order: new tiles holding new arrays
        (``gain * data + offset``, through the tile's ``corrected`` method when it has
        one, so that a tile kept on disk applies it on read); a tile left as it is
        (gain 1, offset 0) is returned as the same object. The caller's arrays are
        never modified.
    gains : ndarray, shape (N,)
        One gain per tile, shared by all its channels.
    offsets : ndarray, shape (N, C)
        One offset per tile and channel.
    reference : int
        Index of the reference tile (gain 1, offsets 0).
    """

    tiles: list[TileLike]
    gains: np.ndarray
    offsets: np.ndarray
    reference: int


@dataclass
class _Sample:
    """A tile's coarse samples on its box of the coarse output grid."""

    box: BoundingBox  # on the coarse output grid
    values: np.ndarray  # (C, h, w) float32, NaN where the tile has no data (or a source)
    footprint: np.ndarray  # (h, w) bool, where the tile has data (sources included)
    var_factor: np.ndarray  # (h, w) float32, sum of the squared bilinear weights
    noise: np.ndarray  # (C,) noise sigma of one coarse tile pixel, tile units


@dataclass
class _Pair:
    """The robust fit ``b = r a + d_c`` between tiles ``i`` (a) and ``j`` (b)."""

    i: int
    j: int
    n: int  # inlier pixels
    log_r: float
    var_log_r: float  # inf when the overlap carries no gain information
    mean_a: np.ndarray  # (C,) inlier means of tile i
    mean_b: np.ndarray  # (C,) inlier means of tile j
    scale: np.ndarray  # (C,) robust sigma of the residuals, tile-j units


# --------------------------------------------------------------------------- coarse grid


def coarse_factor(shape: tuple[int, int], target: int | None = None) -> int:
    """Block size ``k`` of the coarse output grid: its long side is at most ``target``.

    ``k = max(1, ceil(max(shape) / target))``, so a canvas larger than ``target`` gives
    a coarse grid between ``target / 2`` and ``target`` pixels on its long side.
    """
    target = COARSE_TARGET if target is None else target
    return max(1, math.ceil(max(shape) / target))


def _mean_pixel_scale(wcs: WCS) -> float:
    scales = proj_plane_pixel_scales(wcs.celestial)
    return float(np.sqrt(abs(scales[0] * scales[1])))


def tile_block_factor(tile_wcs: WCS, out_wcs: WCS, k: int) -> int:
    """Block size on a tile covering about the same sky as ``k`` output pixels."""
    if k <= 1:
        return 1
    try:
        ratio = _mean_pixel_scale(out_wcs) / _mean_pixel_scale(tile_wcs)
    except Exception:  # degenerate WCS: assume equal scales
        ratio = 1.0
    if not np.isfinite(ratio) or ratio <= 0:
        ratio = 1.0
    return max(1, int(round(k * ratio)))


def block_median(data: np.ndarray, k: int, min_fill: float = MIN_BLOCK_FILL) -> np.ndarray:
    """NaN-aware median of ``k x k`` blocks of a ``(C, H, W)`` array.

    Partial blocks at the right and bottom edges are dropped; a block with fewer than
    ``min_fill * k * k`` finite pixels is NaN. Returns float32 ``(C, H // k, W // k)``.
    """
    c, h, w = data.shape
    hb, wb = h // k, w // k
    if k == 1:
        return np.asarray(data, dtype=np.float32)
    if hb == 0 or wb == 0:
        return np.full((c, hb, wb), np.nan, dtype=np.float32)
    # A fresh array (never a view of the caller's data: it is sorted in place).
    blocks = np.empty((c, hb, wb, k, k), dtype=np.float32)
    blocks[...] = data[:, : hb * k, : wb * k].reshape(c, hb, k, wb, k).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(c, hb, wb, k * k)
    blocks.sort(axis=-1)  # in place, NaN last; fast for short rows (SIMD sorts)
    n = k * k
    out = 0.5 * (blocks[..., (n - 1) // 2] + blocks[..., n // 2])
    partial = np.isnan(blocks[..., -1])
    if partial.any():
        sub = blocks[partial]
        count = np.count_nonzero(~np.isnan(sub), axis=-1)
        lo = np.take_along_axis(sub, (np.maximum(count - 1, 0) // 2)[:, None], axis=-1)[:, 0]
        hi = np.take_along_axis(sub, (count // 2)[:, None], axis=-1)[:, 0]
        med = 0.5 * (lo + hi)
        med[count < max(1, math.ceil(min_fill * n))] = np.nan
        out[partial] = med
    return out.astype(np.float32, copy=False)


def _noise_sigma(coarse: np.ndarray) -> np.ndarray:
    """Per-channel noise sigma of the pixels of ``coarse`` (C, h, w).

    From the MAD of second differences along rows: linear gradients cancel and the
    median ignores stars and edges. 1 where it cannot be measured.
    """
    out = np.ones(coarse.shape[0])
    if coarse.shape[2] < 3:
        return out
    second = coarse[:, :, 1:-1] - 0.5 * (coarse[:, :, :-2] + coarse[:, :, 2:])
    for c in range(coarse.shape[0]):
        d = second[c][np.isfinite(second[c])]
        if d.size < 8:
            continue
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(1.5)
        if np.isfinite(sigma) and sigma > 0:
            out[c] = sigma
    return out


def _pad_linear(image: np.ndarray, widths: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Pad by continuing the image linearly (odd reflection); repeat a single row."""
    out = image
    for axis, width in enumerate(widths):
        if width == (0, 0):
            continue
        pad = [(0, 0)] * image.ndim
        pad[axis] = width
        if out.shape[axis] > max(width):
            out = np.pad(out, pad, mode="reflect", reflect_type="odd")
        else:
            out = np.pad(out, pad, mode="edge")
    return out


def _local_background(image: np.ndarray, size: int) -> np.ndarray:
    """A smooth background of a 2-D image (NaN allowed) on its own grid.

    Medians of ``size x size`` blocks (the image continued linearly past its edges to
    fill the last blocks), blocks without data taking their nearest neighbour's value,
    interpolated bilinearly back to every pixel. Linear gradients come out exact.
    """
    h, w = image.shape
    finite = np.isfinite(image)
    if h < size or w < size:
        level = float(np.median(image[finite])) if finite.any() else 0.0
        return np.full(image.shape, level, dtype=np.float32)
    hb, wb = -(-h // size), -(-w // size)
    padded = _pad_linear(image, ((0, hb * size - h), (0, wb * size - w)))
    blocks = block_median(padded[None], size, min_fill=0.25)[0]
    missing = ~np.isfinite(blocks)
    if missing.all():
        return np.zeros(image.shape, dtype=np.float32)
    if missing.any():
        nearest = ndimage.distance_transform_edt(
            missing, return_distances=False, return_indices=True
        )
        blocks = blocks[tuple(nearest)]
    blocks = _pad_linear(blocks, ((1, 1), (1, 1)))
    ys = (np.arange(h) - (size - 1) / 2) / size + 1
    xs = (np.arange(w) - (size - 1) / 2) / size + 1
    grid = np.meshgrid(ys, xs, indexing="ij")
    return ndimage.map_coordinates(blocks, grid, order=1, mode="nearest", prefilter=False)


def mask_compact_sources(coarse: np.ndarray, noise: np.ndarray, kt: int) -> np.ndarray:
    """``coarse`` with stars, trails and other compact features set to NaN (a new array).

    A pixel is masked where the noise-weighted sum of its channels departs from its
    local background (medians of blocks of about 12 tile pixels, at least 5 coarse
    pixels, interpolated bilinearly) by more than `SOURCE_SIGMA` robust sigma; the mask is grown by about 3 tile pixels
    (at least one coarse pixel) to take the wings. The test is two-sided so that the
    noise of the pixels kept stays symmetric.
    """
    lum = np.tensordot(1.0 / noise, coarse, axes=1)
    finite = np.isfinite(lum)
    out = np.array(coarse, dtype=np.float32, copy=True)
    if finite.sum() < 16 or min(lum.shape) < 3:
        return out
    size = max(5, int(round(12 / kt)))
    dev = lum - _local_background(lum, size)
    d = dev[finite]
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(d - np.median(d))))
    # Floor: noise-free data must not have its rounding errors taken for sources.
    sigma = max(sigma, 1e-4 * float(np.median(np.abs(lum[finite]))))
    if not (np.isfinite(sigma) and sigma > 0):
        return out
    with np.errstate(invalid="ignore"):
        mask = np.abs(dev) > SOURCE_SIGMA * sigma
    grow = max(1, int(round(3 / kt)))
    mask = ndimage.binary_dilation(mask, iterations=grow) & finite
    out[:, mask] = np.nan
    return out


def _coarse_box(box: BoundingBox, k: int, coarse_shape: tuple[int, int]) -> BoundingBox:
    """The coarse pixels whose ``k x k`` blocks touch ``box``."""
    return BoundingBox(
        max(0, box.y0 // k),
        min(coarse_shape[0], -(-box.y1 // k)),
        max(0, box.x0 // k),
        min(coarse_shape[1], -(-box.x1 // k)),
    )


def _sample_tile(
    tile: TileLike, plan: MosaicPlan, box: BoundingBox, k: int, coarse_shape: tuple[int, int]
) -> _Sample | None:
    """Block-median ``tile`` and sample it at the coarse output pixels of ``box``."""
    cbox = _coarse_box(box, k, coarse_shape)
    if cbox.is_empty:
        return None
    data = tile.data
    if tile.weight_map is not None:
        data = np.where(np.asarray(tile.weight_map) > 0, data, np.float32(np.nan))
    # Private copies: WCSLIB structures are not safe to share between threads.
    out_wcs, tile_wcs = plan.wcs.deepcopy(), tile.wcs.deepcopy()
    kt = tile_block_factor(tile_wcs, out_wcs, k)
    coarse = block_median(data, kt)
    hb, wb = coarse.shape[1:]
    if hb == 0 or wb == 0:
        return None
    noise = _noise_sigma(coarse)
    has_data = np.isfinite(coarse).all(axis=0).astype(np.float32)
    coarse = mask_compact_sources(coarse, noise, kt)

    rows = np.arange(cbox.y0, cbox.y1, dtype=float) * k + (k - 1) / 2
    cols = np.arange(cbox.x0, cbox.x1, dtype=float) * k + (k - 1) / 2
    xo, yo = np.meshgrid(cols, rows)
    with np.errstate(invalid="ignore"):
        xt, yt = pixel_to_pixel(out_wcs, tile_wcs, xo, yo)
    xc = (np.asarray(xt, dtype=float) - (kt - 1) / 2) / kt
    yc = (np.asarray(yt, dtype=float) - (kt - 1) / 2) / kt
    inside = (
        np.isfinite(xc) & np.isfinite(yc) & (xc >= 0) & (xc <= wb - 1) & (yc >= 0) & (yc <= hb - 1)
    )
    if not inside.any():
        return None
    xs, ys = np.where(inside, xc, 0.0), np.where(inside, yc, 0.0)
    values = np.empty((coarse.shape[0],) + xo.shape, dtype=np.float32)
    for c in range(coarse.shape[0]):
        values[c] = ndimage.map_coordinates(
            coarse[c], [ys, xs], order=1, mode="nearest", prefilter=False
        )
    values[:, ~inside] = np.nan
    footprint = inside & (
        ndimage.map_coordinates(has_data, [ys, xs], order=0, mode="nearest", prefilter=False) > 0
    )
    fx, fy = xs - np.floor(xs), ys - np.floor(ys)
    var_factor = (((1 - fx) ** 2 + fx**2) * ((1 - fy) ** 2 + fy**2)).astype(np.float32)
    return _Sample(box=cbox, values=values, footprint=footprint, var_factor=var_factor, noise=noise)


# --------------------------------------------------------------------------- pair fits


def _deming_slope(sxx: float, syy: float, sxy: float, lam: float) -> float:
    """Slope of ``y = r x`` with noise variance ratio ``lam = var_y / var_x``."""
    diff = syy - lam * sxx
    return (diff + math.sqrt(diff * diff + 4.0 * lam * sxy * sxy)) / (2.0 * sxy)


def _fit_pair(
    i: int, j: int, a: np.ndarray, b: np.ndarray, va: np.ndarray, vb: np.ndarray, fit_gain: bool
) -> _Pair | None:
    """Robust fit of ``b = r a + d_c`` over common pixels.

    ``a``, ``b``: (C, n) values of tiles i and j; ``va``, ``vb``: (C, n) their noise
    variances. With ``fit_gain`` false the slope is held at 1.
    """
    n_channels, n = a.shape
    mean_a = np.median(a, axis=1)
    mean_b = np.median(b, axis=1)
    r = 1.0
    if fit_gain:
        mad_a = np.median(np.abs(a - mean_a[:, None]), axis=1).sum()
        mad_b = np.median(np.abs(b - mean_b[:, None]), axis=1).sum()
        if mad_a > 0 and mad_b > 0:
            r = float(np.clip(mad_b / mad_a, 0.25, 4.0))
    inliers = np.ones(n, dtype=bool)
    informative = False
    scale = np.ones(n_channels)
    var_log_r = math.inf
    for iteration in range(_PAIR_ITERATIONS):
        resid = (b - mean_b[:, None]) - r * (a - mean_a[:, None])
        centre = np.median(resid[:, inliers], axis=1)
        dev = np.abs(resid - centre[:, None])
        scale = _MAD_TO_SIGMA * np.median(dev[:, inliers], axis=1)
        tiny = 1e-6 * (np.abs(mean_b) + 1.0)
        scale = np.maximum(scale, tiny)
        new = np.all(dev <= PAIR_CLIP_SIGMA * scale[:, None], axis=0)
        if new.sum() < MIN_PAIR_PIXELS:
            return None
        # Converged when (almost) no pixel changes side: at most 1 in 1000.
        converged = iteration > 0 and np.count_nonzero(new != inliers) <= 1e-3 * n
        inliers = new
        sa, sb = a[:, inliers], b[:, inliers]
        mean_a = sa.mean(axis=1)
        mean_b = sb.mean(axis=1)
        if fit_gain:
            w = 1.0 / scale**2  # equalise the channels' residual noise
            x = sa - mean_a[:, None]
            y = sb - mean_b[:, None]
            sxx = float((w * (x * x).sum(axis=1)).sum())
            syy = float((w * (y * y).sum(axis=1)).sum())
            sxy = float((w * (x * y).sum(axis=1)).sum())
            noise_a = float((w * va[:, inliers].sum(axis=1)).sum())
            noise_b = float((w * vb[:, inliers].sum(axis=1)).sum())
            informative = sxy > 0 and noise_a > 0 and noise_b > 0
            if informative:
                r_new = _deming_slope(sxx, syy, sxy, noise_b / noise_a)
                signal = sxy / r_new  # noise-free moment of x
                informative = np.isfinite(r_new) and r_new > 0 and signal > 0
            if informative:
                r = r_new
                e = y - r * x
                mse = float((w * (e * e).sum(axis=1)).sum()) / e.size
                noise_x = max(sxx - signal, 0.0)
                var_log_r = mse / (r * r * signal) * (1.0 + noise_x / signal)
                var_log_r = max(var_log_r, 1e-14)  # noise-free data: finite weights
            else:
                var_log_r = math.inf
        if converged:
            break
    # A slope known to no better than MAX_GAIN_SD says nothing useful about the gains
    # (an overlap of noise, or of noise and a little vignetting): offsets only.
    informative = fit_gain and informative and var_log_r <= MAX_GAIN_SD**2
    return _Pair(
        i=i,
        j=j,
        n=int(inliers.sum()),
        log_r=math.log(r) if informative else 0.0,
        var_log_r=var_log_r if informative else math.inf,
        mean_a=mean_a,
        mean_b=mean_b,
        scale=scale,
    )


def _overlap_area(si: _Sample, sj: _Sample) -> int:
    """Coarse pixels where both tiles have data."""
    box = si.box.intersect(sj.box)
    if box.is_empty:
        return 0
    return int(
        np.count_nonzero(
            si.footprint[box.relative_to(si.box)] & sj.footprint[box.relative_to(sj.box)]
        )
    )


def _pair_data(
    si: _Sample, sj: _Sample
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Common finite pixels of two samples: values and noise variances, (C, n) float64."""
    box = si.box.intersect(sj.box)
    if box.is_empty:
        return None
    sl_i, sl_j = box.relative_to(si.box), box.relative_to(sj.box)
    a = si.values[(slice(None),) + sl_i]
    b = sj.values[(slice(None),) + sl_j]
    mask = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    if int(mask.sum()) < MIN_PAIR_PIXELS:
        return None
    fa = si.var_factor[sl_i][mask].astype(float)
    fb = sj.var_factor[sl_j][mask].astype(float)
    va = (si.noise**2)[:, None] * fa[None, :]
    vb = (sj.noise**2)[:, None] * fb[None, :]
    return a[:, mask].astype(float), b[:, mask].astype(float), va, vb


# --------------------------------------------------------------------------- global solve


def _components(n: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """Component label of each node (the lowest node index of its component)."""
    return component_labels(n, edges).tolist()


def _solve_differences(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    fixed: Sequence[int],
    prior: float = 0.0,
) -> np.ndarray:
    """Weighted least squares of ``x_i - x_j = y`` (weights ``w``), ``x = 0`` on ``fixed``.

    The normal equations of the free unknowns (a sparse weighted graph Laplacian) are
    solved directly. ``prior`` adds the equation ``x = 0`` with that weight for every
    free unknown; a tiny ridge towards 0 does the same for unknowns that no weighted
    equation reaches. Equations with a non-positive or non-finite weight are ignored.
    """
    keep = (w > 0) & np.isfinite(w) & np.isfinite(y)
    i, j, y, w = i[keep], j[keep], y[keep], w[keep]
    is_fixed = np.zeros(n, dtype=bool)
    is_fixed[list(fixed)] = True
    free = np.flatnonzero(~is_fixed)
    x = np.zeros(n)
    if free.size == 0:
        return x
    index = np.full(n, -1)
    index[free] = np.arange(free.size)
    fi, fj = index[i], index[j]
    m = free.size
    diag = np.bincount(fi[fi >= 0], weights=w[fi >= 0], minlength=m) + np.bincount(
        fj[fj >= 0], weights=w[fj >= 0], minlength=m
    )
    rhs = np.bincount(fi[fi >= 0], weights=(w * y)[fi >= 0], minlength=m) - np.bincount(
        fj[fj >= 0], weights=(w * y)[fj >= 0], minlength=m
    )
    both = (fi >= 0) & (fj >= 0)
    ridge = 1e-9 * (diag.max() if diag.size and diag.max() > 0 else 1.0)
    rows = np.concatenate([fi[both], fj[both], np.arange(m)])
    cols = np.concatenate([fj[both], fi[both], np.arange(m)])
    vals = np.concatenate([-w[both], -w[both], diag + ridge + prior])
    matrix = sparse.csc_matrix((vals, (rows, cols)), shape=(m, m))
    x[free] = np.atleast_1d(sparse_linalg.spsolve(matrix, rhs))
    return x


def _robust_solve(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    fixed: Sequence[int],
    prior: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Iteratively reweighted least squares (Huber) of ``x_i - x_j = y``.

    ``w`` = 1 / variance of each equation. Returns the solution, the normalised
    residuals ``(x_i - x_j - y) sqrt(w)`` (0 for an unusable equation) and their
    robust scale (MAD, never below 1). Huber weights keep one bad equation from being
    smeared over its neighbours, so that it stands out of the residuals. ``prior``: see
    `_solve_differences`.
    """
    usable = (w > 0) & np.isfinite(w) & np.isfinite(y)
    z_all = np.zeros(len(y))
    if not usable.any():
        return np.zeros(n), z_all, 1.0
    i, j, y, w = i[usable], j[usable], y[usable], w[usable]
    weights = w.copy()
    x = np.zeros(n)
    z = np.zeros(len(y))
    scale = 1.0
    for _ in range(_IRLS_ITERATIONS):
        x_new = _solve_differences(n, i, j, y, weights, fixed, prior)
        z = (x_new[i] - x_new[j] - y) * np.sqrt(w)
        scale = max(1.0, _MAD_TO_SIGMA * float(np.median(np.abs(z))))
        u = np.abs(z) / (_HUBER_K * scale)
        weights = w * np.minimum(1.0, 1.0 / np.maximum(u, 1e-12))
        converged = np.allclose(x_new, x, rtol=0.0, atol=1e-9 * (1.0 + np.abs(x_new).max()))
        x = x_new
        if converged:
            break
    z_all[usable] = z
    return x, z_all, scale


def _solve_global(
    n: int,
    n_channels: int,
    pairs: list[_Pair],
    fixed: list[int],
    fit_gain: bool,
    names: Sequence[str],
    cancel: CancelToken | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gains (N,) and offsets (N, C) from the pair fits, with an outer robust loop.

    Returns the gains as solved, the gains clipped to `GAIN_LIMITS` (used for the
    offsets) and the offsets.
    """
    labels = _components(n, [(p.i, p.j) for p in pairs])
    active = list(range(len(pairs)))
    raw_gains = np.ones(n)
    gains = np.ones(n)
    offsets = np.zeros((n, n_channels))
    for iteration in range(_GLOBAL_ITERATIONS + 1):
        check_cancel(cancel)
        use = [pairs[k] for k in active]
        score = np.zeros(len(use))
        pi = np.array([p.i for p in use], dtype=int)
        pj = np.array([p.j for p in use], dtype=int)
        if fit_gain:
            log_r = np.array([p.log_r for p in use])
            with np.errstate(divide="ignore"):
                w_gain = 1.0 / np.array([p.var_log_r for p in use])  # 0 when uninformative
            log_g, z, scale = _robust_solve(
                n, pi, pj, log_r, w_gain, fixed, prior=GAIN_PRIOR_SIGMA**-2
            )
            raw_gains = np.exp(log_g)
            gains = np.clip(raw_gains, *GAIN_LIMITS)
            score = np.abs(z) / scale
        mean_a = np.array([p.mean_a for p in use]).reshape(len(use), n_channels)
        mean_b = np.array([p.mean_b for p in use]).reshape(len(use), n_channels)
        spread = np.array([p.scale for p in use]).reshape(len(use), n_channels)
        count = np.array([p.n for p in use], dtype=float)
        for c in range(n_channels):
            # o_i - o_j = g_j mean_b - g_i mean_a, weighted by its inverse variance.
            delta = gains[pj] * mean_b[:, c] - gains[pi] * mean_a[:, c]
            w_off = count / (gains[pj] * spread[:, c]) ** 2
            offsets[:, c], z, scale = _robust_solve(n, pi, pj, delta, w_off, fixed)
            score = np.maximum(score, np.abs(z) / scale)
        if iteration == _GLOBAL_ITERATIONS:
            break  # the solution for the pairs kept
        order = sorted(
            (m for m in range(len(use)) if score[m] > PAIR_REJECT_SIGMA),
            key=lambda m: (-score[m], m),
        )
        rejected: set[int] = set()
        for m in order:
            trial = [k for k in active if k != active[m] and k not in rejected]
            if _components(n, [(pairs[k].i, pairs[k].j) for k in trial]) == labels:
                rejected.add(active[m])
                p = pairs[active[m]]
                logger.debug(
                    "match: pair %s / %s rejected (residual %.1f robust sigma)",
                    names[p.i],
                    names[p.j],
                    score[m],
                )
        if not rejected:
            break
        active = [k for k in active if k not in rejected]
    return raw_gains, gains, offsets


def _warn_clipped(raw: np.ndarray, clipped: np.ndarray, names: Sequence[str]) -> None:
    lo, hi = GAIN_LIMITS
    for i in np.flatnonzero(raw != clipped):
        logger.warning(
            "%s: matched gain %.3f outside [%.2f, %.2f], clipped to %.3f",
            names[int(i)],
            raw[i],
            lo,
            hi,
            clipped[i],
        )


# --------------------------------------------------------------------------- entry point


def _n_workers(n_jobs: int) -> int:
    return max(1, min(n_jobs, available_cpus(), MAX_THREADS))


def _in_threads(func: Callable[[int], T], n_jobs: int) -> Iterator[T]:
    """``func(0), func(1), ...`` computed in a few threads, yielded in order.

    NumPy, SciPy and WCSLIB release the GIL in the heavy parts; every job is
    independent, so the results do not depend on the number of threads.
    """
    workers = _n_workers(n_jobs)
    if workers == 1:
        for idx in range(n_jobs):
            yield func(idx)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zemosaic-match")
    try:
        futures = [pool.submit(func, idx) for idx in range(n_jobs)]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _identity(tiles: Sequence[TileLike]) -> MatchResult:
    n_channels = tiles[0].n_channels if tiles else 0
    return MatchResult(
        tiles=list(tiles),
        gains=np.ones(len(tiles)),
        offsets=np.zeros((len(tiles), n_channels)),
        reference=0,
    )


def match_tiles(
    tiles: Sequence[TileLike],
    plan: MosaicPlan,
    *,
    mode: str = "affine",
    cancel: CancelToken | None = None,
    progress: ProgressCallback | None = None,
) -> MatchResult:
    """Photometrically match ``tiles`` from their overlaps on ``plan``.

    Parameters
    ----------
    tiles : sequence of TileLike
        The tiles of the build, in the order of ``plan.bboxes``, one channel count.
    plan : MosaicPlan
        The output grid the tiles were planned on.
    mode : {"affine", "offset", "none"}
        ``"affine"``: a gain (shared by the channels) and an offset per channel;
        ``"offset"``: offsets only (gains 1); ``"none"``: the tiles as they are.
    cancel : CancelToken, optional
        Checked between tiles and solver iterations.
    progress : callable, optional
        ``progress("match", done, total)``.

    Returns
    -------
    MatchResult
        Corrected tiles (``gain * data + offset``), gains, offsets and the reference.

    Raises
    ------
    ValueError
        Unknown mode, a plan made for another number of tiles, or mixed channel counts.
    BuildCancelled
        When ``cancel`` is set.
    """
    if mode not in MODES:
        raise ValueError(f"unknown match mode {mode!r}; choose one of {MODES}")
    if len(plan.bboxes) != len(tiles):
        raise ValueError(f"the plan is for {len(plan.bboxes)} tiles, got {len(tiles)}")
    if len({t.n_channels for t in tiles}) > 1:
        raise ValueError("all tiles must have the same number of channels")
    n = len(tiles)
    if mode == "none" or n <= 1:
        if n == 1 and mode != "none":
            logger.info("Photometric matching: one tile, nothing to match")
        return _identity(tiles)

    fit_gain = mode == "affine"
    n_channels = tiles[0].n_channels
    names = [str(t.path) for t in tiles]
    k = coarse_factor(plan.shape)
    coarse_shape = (-(-plan.shape[0] // k), -(-plan.shape[1] // k))
    total = 2 * n + 1
    logger.debug(
        "match: mode=%s coarse factor k=%d, coarse grid %d x %d px",
        mode,
        k,
        coarse_shape[1],
        coarse_shape[0],
    )

    def prepare(idx: int) -> _Sample | None:
        check_cancel(cancel)
        return _sample_tile(tiles[idx], plan, plan.bboxes[idx], k, coarse_shape)

    samples: list[_Sample | None] = []
    for idx, sample in enumerate(_in_threads(prepare, n)):
        samples.append(sample)
        report(progress, _PHASE, idx + 1, total)

    pairs: list[_Pair] = []
    area = np.zeros(n)
    for i in range(n):
        si = samples[i]
        if si is None:
            continue
        check_cancel(cancel)
        for j in range(i + 1, n):
            sj = samples[j]
            if sj is None or not plan.bboxes[i].overlaps(plan.bboxes[j]):
                continue
            overlap = _overlap_area(si, sj)
            area[i] += overlap
            area[j] += overlap
            common = _pair_data(si, sj)
            if common is None:
                continue
            pair = _fit_pair(i, j, *common, fit_gain=fit_gain)
            if pair is not None:
                pairs.append(pair)
    report(progress, _PHASE, n + 1, total)

    reference = int(np.argmax(area))  # first maximum: ties go to the lowest index
    labels = _components(n, [(p.i, p.j) for p in pairs])
    fixed: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i in range(n) if labels[i] == label]
        if len(members) == 1:
            fixed.append(members[0])
            logger.warning(
                "%s: overlaps no other tile; left unmatched (gain 1, offset 0)",
                names[members[0]],
            )
            continue
        if labels[reference] == label:
            fixed.append(reference)
            continue
        local = max(members, key=lambda m: (area[m], -m))
        fixed.append(local)
        logger.warning(
            "%d tiles (%s) do not overlap the group of the reference tile %s; matched "
            "among themselves against %s",
            len(members),
            ", ".join(tiles[m].name for m in members),
            tiles[reference].name,
            tiles[local].name,
        )

    raw_gains, gains, offsets = _solve_global(n, n_channels, pairs, fixed, fit_gain, names, cancel)
    _warn_clipped(raw_gains, gains, names)
    for f in fixed:
        gains[f] = 1.0
        offsets[f] = 0.0

    def apply(idx: int) -> TileLike:
        check_cancel(cancel)
        tile, g, off = tiles[idx], float(gains[idx]), offsets[idx]
        if g == 1.0 and not np.any(off):
            return tile
        corrected = getattr(tile, "corrected", None)
        if corrected is not None:  # lets a tile kept on disk apply it on read
            return corrected(g, off)
        data = np.multiply(tile.data, np.float32(g), dtype=np.float32)  # a new array
        data += off.astype(np.float32)[:, None, None]
        return tile.with_data(data)

    matched: list[TileLike] = []
    for idx, tile in enumerate(_in_threads(apply, n)):
        matched.append(tile)
        logger.debug(
            "%s: gain=%.5f, offsets=[%s]",
            tile.name,
            gains[idx],
            ", ".join(f"{o:.4g}" for o in offsets[idx]),
        )
        report(progress, _PHASE, n + 2 + idx, total)

    logger.info(
        "Photometric matching (%s): %d tiles, %d overlaps, reference %s; gains %.4f..%.4f, "
        "offsets %.4g..%.4g",
        mode,
        n,
        len(pairs),
        tiles[reference].name,
        float(gains.min()),
        float(gains.max()),
        float(offsets.min()),
        float(offsets.max()),
    )
    return MatchResult(tiles=matched, gains=gains, offsets=offsets, reference=reference)
