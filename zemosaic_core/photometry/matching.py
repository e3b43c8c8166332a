"""Photometric matching of tiles from their overlaps (docs/architecture.md §1 step 3).

Every tile gets one gain, shared by its channels (so its colour balance is kept), and
one offset per channel, so that ``corrected = gain * data + offset`` agrees with its
neighbours where they overlap. Matching must never make consistent data worse, so a
gain is fitted only where the overlaps prove it is needed; otherwise offsets alone.
The solution is computed once, on the CPU, with NumPy/SciPy only and without any
randomness, from downsampled overlap statistics:

1. **Coarse grid.** The output grid is seen through blocks of ``k x k`` pixels, ``k``
   chosen so that the coarse grid is at most `COARSE_TARGET` pixels on its long
   side (``k = 1`` for smaller canvases), and so that the coarse boxes of all tiles
   together hold at most `MAX_COARSE_CELLS` pixels: a night of hundreds of subs over
   one field is matched on coarser blocks, and the samples held stay flat in N.
2. **Block medians.** Each tile is reduced by the median of its own ``k_t x k_t``
   blocks (``k_t`` = ``k`` scaled by the ratio of the output and tile pixel scales),
   NaN-aware; pixels of weight 0 count as NaN. What is left of stars and trails is
   masked against a local background (`SOURCE_SIGMA`). A tile whose blocks are all
   equal (blank or constant) is left out of matching with a WARNING.
3. **Resampling.** Each coarse tile is sampled bilinearly at the centres of the coarse
   output pixels its box covers, through the exact astropy transform (SIP included).
4. **Overlap graph.** Matching every overlapping pair costs O(n^2) (1000 subs of one
   field overlap 500 000 times), so each tile is linked to its `NEIGHBOURS` largest
   overlaps (by box intersection) plus the edges of a maximum spanning forest of the
   overlap areas, which keeps every group of overlapping tiles connected: at most
   ``n * NEIGHBOURS + n - 1`` pairs.
5. **Pairs.** The common coarse pixels of a pair are averaged in cells of
   `CELL_SIZE` x `CELL_SIZE` coarse pixels. Cell means are insensitive to the two
   tiles' different resampling (a rotated tile is smoothed more by its interpolation,
   which biases a pixel-by-pixel slope by percents on structured skies) and are nearly
   independent, so their scatter is an honest measure of the pair's uncertainty. A
   robust errors-in-variables (Deming) fit ``b = r a + d_c`` (one slope, one intercept
   per channel, iterative clipping at `PAIR_CLIP_SIGMA`) gives the log slope, its
   variance **from the fit's own residuals**, and the inlier means.
6. **Gains, by model selection.** ``log g_i - log g_j = log r_ij`` is solved by robust
   weighted least squares (Huber) over the pairs whose slope is known to
   `MAX_GAIN_SD`. A tile keeps its gain only when the data demand it: with ``z_i`` its
   log gain over its standard error (the inverse of the normal matrix, scaled up by
   the robust spread of the normalised pair residuals when they scatter more than
   their own error bars, and never below half the variance of the tile's best pair:
   the pairs of one tile share its pixels, so their errors are not independent), the
   gain lowers the overlap chi-square by about ``z_i^2``
   and costs one parameter; the Bayesian information criterion keeps it when
   ``z_i^2 > ln N_i`` (``N_i`` = the cells of its informative overlaps). Tiles whose
   gain fails the test are fixed at 1 and the rest is solved again (backward
   elimination, a few rounds). On consistent tiles every gain is exactly 1.
7. **Offsets and the level.** With the gains fixed, per channel,
   ``o_i - o_j = g_j mean_b - g_i mean_a`` (the pair's inlier means), weighted by its
   inverse variance, by the same robust solver. Neither system gets a ridge, prior or
   floor: each connected group is solved exactly, its gauge fixed afterwards by
   shifting the solution so that the **median** over its tiles is 0: the median log
   gain, and per channel the median change of level ``o_i + (g_i - 1) L_i`` (``L_i``
   the tile's median level). The mosaic keeps the level of its typical tile; no single
   tile (a blank one, a cloudy one) is its reference. An outer loop drops pairs whose
   residual exceeds `PAIR_REJECT_SIGMA` robust sigma, never one that would split a
   group, and solves again. Gains are clipped to `GAIN_LIMITS` (WARNING).

Tiles that overlap no other tile keep gain 1 and offset 0 (WARNING naming each); a
group of tiles that does not touch the largest group is matched within itself,
anchored on its own median level (WARNING).
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
from ..stats import MAD_TO_SIGMA, mad_std
from ..tile import TileLike

__all__ = [
    "MODES",
    "MatchResult",
    "block_median",
    "coarse_factor",
    "mask_compact_sources",
    "match_tiles",
    "overlap_graph",
    "tile_block_factor",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Matching modes: gain and offset, offset only, or nothing.
MODES: tuple[str, ...] = MATCH_MODES
#: Largest side of the coarse output grid the overlaps are measured on, pixels.
COARSE_TARGET = 512
#: Coarse pixels of all tiles' boxes together, at most (~17 bytes each for RGB): 600
#: subs of one field held 0.7 GB of samples before this bound.
MAX_COARSE_CELLS = 8_000_000
#: A block median needs at least this fraction of finite pixels in its block.
MIN_BLOCK_FILL = 0.75
#: Side of the cells (coarse pixels) a pair's common pixels are averaged in.
CELL_SIZE = 4
#: A pair needs at least this many common cells to be used.
MIN_PAIR_CELLS = 8
#: Compact sources (stars, trails) departing this far from the local median are masked.
SOURCE_SIGMA = 4.0
#: A pair whose log slope is uncertain by more than this gives no gain information.
MAX_GAIN_SD = 0.05
#: Gains outside this range are clipped (with a WARNING).
GAIN_LIMITS: tuple[float, float] = (0.5, 2.0)
#: Per-cell residual clip of the pair fits, robust sigma.
PAIR_CLIP_SIGMA = 3.5
#: Rejection threshold of whole pairs in the global solve, robust sigma.
PAIR_REJECT_SIGMA = 5.0
#: Each tile is matched against (at most) this many of its largest overlaps, plus the
#: links that keep the overlap graph connected.
NEIGHBOURS = 8
#: Threads used to prepare and correct tiles (at most; never more than the CPUs).
MAX_THREADS = 8
#: Above this many unknowns the gain uncertainties come from each tile's own overlaps
#: (the diagonal of the normal matrix) instead of a dense inverse.
DENSE_COVARIANCE_LIMIT = 2000
_PAIR_ITERATIONS = 20
_GLOBAL_ITERATIONS = 5
_SELECTION_ROUNDS = 10
_IRLS_ITERATIONS = 30
_HUBER_K = 1.345
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
        One gain per tile, shared by all its channels; exactly 1 where the overlaps do
        not prove a gain.
    offsets : ndarray, shape (N, C)
        One offset per tile and channel.
    gain_fitted : ndarray of bool, shape (N,)
        Whether the tile's gain passed model selection (False: held at 1).
    n_pairs : int
        Overlaps that entered the solve.
    """

    tiles: list[TileLike]
    gains: np.ndarray
    offsets: np.ndarray
    gain_fitted: np.ndarray
    n_pairs: int = 0


@dataclass
class _Sample:
    """A tile's coarse samples on its box of the coarse output grid."""

    box: BoundingBox  # on the coarse output grid
    values: np.ndarray  # (C, h, w) float32, NaN where the tile has no data (or a source)
    footprint: np.ndarray  # (h, w) bool, where the tile has data (sources included)
    var_factor: np.ndarray  # (h, w) float32, sum of the squared bilinear weights
    noise: np.ndarray  # (C,) noise sigma of one coarse tile pixel, tile units
    level: np.ndarray  # (C,) median of the tile's block medians, tile units
    blank: bool = False  # every block equal: nothing to match on


@dataclass
class _Pair:
    """The robust fit ``b = r a + d_c`` between tiles ``i`` (a) and ``j`` (b)."""

    i: int
    j: int
    n: int  # inlier cells
    log_r: float
    var_log_r: float  # inf when the overlap carries no gain information
    mean_a: np.ndarray  # (C,) inlier means of tile i
    mean_b: np.ndarray  # (C,) inlier means of tile j
    scale: np.ndarray  # (C,) robust sigma of the cell residuals, tile-j units


# --------------------------------------------------------------------------- coarse grid


def coarse_factor(shape: tuple[int, int], target: int | None = None) -> int:
    """Block size ``k`` of the coarse output grid: its long side is at most ``target``.

    ``k = max(1, ceil(max(shape) / target))``, so a canvas larger than ``target`` gives
    a coarse grid between ``target / 2`` and ``target`` pixels on its long side.
    """
    target = COARSE_TARGET if target is None else target
    return max(1, math.ceil(max(shape) / target))


def depth_factor(boxes: Sequence[BoundingBox], max_cells: int | None = None) -> int:
    """Smallest block size ``k`` at which the boxes hold at most ``max_cells`` coarse pixels."""
    max_cells = MAX_COARSE_CELLS if max_cells is None else max_cells
    area = sum(box.shape[0] * box.shape[1] for box in boxes if not box.is_empty)
    return max(1, math.ceil(math.sqrt(area / max_cells)))


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
        sigma = float(mad_std(d)) / math.sqrt(1.5)
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
    sigma = float(mad_std(d))
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
    level = np.full(coarse.shape[0], np.nan)
    spread = np.zeros(coarse.shape[0])
    for c in range(coarse.shape[0]):
        finite = coarse[c][np.isfinite(coarse[c])]
        if finite.size:
            level[c] = float(np.median(finite))
            spread[c] = float(finite.max()) - float(finite.min())
    if not np.any(spread > 0):  # blank or constant: no level, no structure to match
        return _Sample(box=cbox, values=np.empty((coarse.shape[0], 0, 0), np.float32),
                       footprint=np.empty((0, 0), bool), var_factor=np.empty((0, 0), np.float32),
                       noise=np.ones(coarse.shape[0]), level=level, blank=True)  # fmt: skip
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
    return _Sample(
        box=cbox,
        values=values,
        footprint=footprint,
        var_factor=var_factor,
        noise=noise,
        level=level,
    )


# --------------------------------------------------------------------------- overlap graph


def _box_arrays(boxes: Sequence[BoundingBox]) -> tuple[np.ndarray, ...]:
    return tuple(
        np.array([getattr(b, f) for b in boxes], dtype=np.int64) for f in ("y0", "y1", "x0", "x1")
    )


def _overlap_row(
    i: int, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray
) -> np.ndarray:
    """Intersection areas of box ``i`` with every box (0 for itself), float64."""
    h = np.minimum(y1, y1[i]) - np.maximum(y0, y0[i])
    w = np.minimum(x1, x1[i]) - np.maximum(x0, x0[i])
    area = (np.maximum(h, 0) * np.maximum(w, 0)).astype(np.float64)
    area[i] = 0.0
    return area


def overlap_graph(
    boxes: Sequence[BoundingBox], neighbours: int = NEIGHBOURS
) -> list[tuple[int, int]]:
    """The pairs of tiles to match: O(n) of them, every overlapping group connected.

    Each tile is linked to its ``neighbours`` largest box intersections, and the edges
    of a maximum spanning forest of the intersection areas (Prim's algorithm, one row
    of areas at a time: O(n) memory) are added so that the graph has exactly the
    connected groups of the full overlap graph. Ties go to the lower index.

    Parameters
    ----------
    boxes : sequence of BoundingBox
        The tiles' boxes on the output grid.
    neighbours : int
        Largest overlaps kept per tile.

    Returns
    -------
    list of (int, int)
        Sorted pairs ``(i, j)`` with ``i < j``; at most ``n * neighbours + n - 1``.
    """
    n = len(boxes)
    if n < 2:
        return []
    y0, y1, x0, x1 = _box_arrays(boxes)
    edges: set[tuple[int, int]] = set()
    in_tree = np.zeros(n, dtype=bool)
    best = np.full(n, -1.0)  # Prim: largest area linking each node to the tree
    parent = np.full(n, -1)
    rows: dict[int, np.ndarray] = {}
    for i in range(n):
        area = _overlap_row(i, y0, y1, x0, x1)
        candidates = np.flatnonzero(area > 0)
        if candidates.size > neighbours:
            # Largest first; a stable sort on -area keeps ties in index order.
            candidates = candidates[np.argsort(-area[candidates], kind="stable")[:neighbours]]
        for j in candidates:
            edges.add((min(i, int(j)), max(i, int(j))))
        if i == 0:
            rows[0] = area
    # Maximum spanning forest.
    for _ in range(n):
        outside = np.flatnonzero(~in_tree)
        if outside.size == 0:
            break
        node = int(outside[np.argmax(best[outside])])
        if best[node] <= 0:  # nothing links the tree any more: start a new tree here
            node = int(outside[0])
        elif parent[node] >= 0:
            edges.add((min(node, int(parent[node])), max(node, int(parent[node]))))
        in_tree[node] = True
        cached = rows.pop(node, None)
        area = cached if cached is not None else _overlap_row(node, y0, y1, x0, x1)
        better = (~in_tree) & (area > best)
        best[better] = area[better]
        parent[better] = node
    return sorted(edges)


# --------------------------------------------------------------------------- pair fits


def _deming_slope(sxx: float, syy: float, sxy: float, lam: float) -> float:
    """Slope of ``y = r x`` with noise variance ratio ``lam = var_y / var_x``.

    NaN where it cannot be computed (overflow, no covariance).
    """
    with np.errstate(all="ignore"):
        diff = np.float64(syy) - lam * np.float64(sxx)
        root = np.sqrt(diff * diff + 4.0 * lam * np.float64(sxy) ** 2)
        # The two forms are equal; the second avoids cancellation when diff < 0.
        slope = (diff + root) / (2.0 * sxy) if diff >= 0 else 2.0 * lam * sxy / (root - diff)
    return float(slope) if np.isfinite(slope) else math.nan


def _fit_pair(
    i: int, j: int, a: np.ndarray, b: np.ndarray, va: np.ndarray, vb: np.ndarray, fit_gain: bool
) -> _Pair | None:
    """Robust fit of ``b = r a + d_c`` over common cells.

    ``a``, ``b``: (C, n) cell means of tiles i and j; ``va``, ``vb``: (C, n) their noise
    variances (used only for the Deming variance ratio). With ``fit_gain`` false the
    slope is held at 1. The variance of the log slope comes from the residuals. None
    when too few cells survive the clipping.
    """
    n_channels, n = a.shape
    mean_a = np.median(a, axis=1)
    mean_b = np.median(b, axis=1)
    r = 1.0
    if fit_gain:
        mad_a = np.median(np.abs(a - mean_a[:, None]), axis=1).sum()
        mad_b = np.median(np.abs(b - mean_b[:, None]), axis=1).sum()
        if mad_a > 0 and mad_b > 0 and np.isfinite(mad_a) and np.isfinite(mad_b):
            r = float(np.clip(mad_b / mad_a, 0.25, 4.0))
    inliers = np.ones(n, dtype=bool)
    informative = False
    scale = np.ones(n_channels)
    var_log_r = math.inf
    for iteration in range(_PAIR_ITERATIONS):
        with np.errstate(all="ignore"):
            resid = (b - mean_b[:, None]) - r * (a - mean_a[:, None])
        centre = np.median(resid[:, inliers], axis=1)
        dev = np.abs(resid - centre[:, None])
        scale = MAD_TO_SIGMA * np.median(dev[:, inliers], axis=1)
        # Exact data: residuals of rounding size only, never a zero scale.
        tiny = 1e-6 * (np.abs(mean_b) + 1.0)
        scale = np.where(np.isfinite(scale), np.maximum(scale, tiny), tiny)
        with np.errstate(invalid="ignore"):
            new = np.all(dev <= PAIR_CLIP_SIGMA * scale[:, None], axis=0)
        if new.sum() < MIN_PAIR_CELLS:
            return None
        # Converged when (almost) no cell changes side: at most 1 in 1000.
        converged = iteration > 0 and np.count_nonzero(new != inliers) <= 1e-3 * n
        inliers = new
        sa, sb = a[:, inliers], b[:, inliers]
        mean_a = sa.mean(axis=1)
        mean_b = sb.mean(axis=1)
        if fit_gain:
            w = 1.0 / scale**2  # equalise the channels' residual noise
            x = sa - mean_a[:, None]
            y = sb - mean_b[:, None]
            with np.errstate(all="ignore"):
                sxx = float((w * (x * x).sum(axis=1)).sum())
                syy = float((w * (y * y).sum(axis=1)).sum())
                sxy = float((w * (x * y).sum(axis=1)).sum())
                noise_a = float((w * va[:, inliers].sum(axis=1)).sum())
                noise_b = float((w * vb[:, inliers].sum(axis=1)).sum())
            informative = sxy > 0 and noise_a > 0 and noise_b > 0 and math.isfinite(sxx + syy + sxy)
            r_new = math.nan
            if informative:
                r_new = _deming_slope(sxx, syy, sxy, noise_b / noise_a)
                # Garbage data can round the slope to 0 or inf: no gain information.
                informative = math.isfinite(r_new) and 1e-6 < r_new < 1e6
            if informative:
                signal = sxy / r_new  # noise-free moment of x
                informative = math.isfinite(signal) and signal > 0
            if informative:
                r = r_new
                e = y - r * x
                dof = max(e.size - n_channels - 1, 1)
                mse = float((w * (e * e).sum(axis=1)).sum()) / dof
                noise_x = max(sxx - signal, 0.0)
                var_log_r = mse / (r * r * signal) * (1.0 + noise_x / signal)
                if not math.isfinite(var_log_r):
                    informative, var_log_r = False, math.inf
                else:
                    var_log_r = max(var_log_r, 1e-14)  # noise-free data: finite weights
            else:
                var_log_r = math.inf
        if converged:
            break
    if not (np.all(np.isfinite(mean_a)) and np.all(np.isfinite(mean_b))):
        return None
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


def _pair_data(
    si: _Sample, sj: _Sample
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Cell means of two samples over their common finite pixels.

    Returns the cell means of tiles i and j and their noise variances, (C, m) float64,
    over the cells at least half filled with common pixels; None when fewer than
    `MIN_PAIR_CELLS` cells.
    """
    box = si.box.intersect(sj.box)
    if box.is_empty:
        return None
    sl_i, sl_j = box.relative_to(si.box), box.relative_to(sj.box)
    a = si.values[(slice(None),) + sl_i]
    b = sj.values[(slice(None),) + sl_j]
    mask = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    if int(mask.sum()) < MIN_PAIR_CELLS:
        return None
    h, w = box.shape
    ncx = -(-w // CELL_SIZE)
    n_cells = -(-h // CELL_SIZE) * ncx
    cell = ((np.arange(h) // CELL_SIZE)[:, None] * ncx + (np.arange(w) // CELL_SIZE)[None, :])[mask]
    count = np.bincount(cell, minlength=n_cells).astype(np.float64)
    keep = count >= (CELL_SIZE * CELL_SIZE + 1) // 2
    if int(keep.sum()) < MIN_PAIR_CELLS:
        return None
    fa = np.bincount(cell, weights=si.var_factor[sl_i][mask], minlength=n_cells)
    fb = np.bincount(cell, weights=sj.var_factor[sl_j][mask], minlength=n_cells)
    n_channels = a.shape[0]
    mean_a = np.empty((n_channels, int(keep.sum())))
    mean_b = np.empty_like(mean_a)
    with np.errstate(all="ignore"):  # garbage tiles may overflow: their cells go
        for c in range(n_channels):
            sums = np.bincount(cell, weights=a[c][mask].astype(np.float64), minlength=n_cells)
            mean_a[c] = sums[keep] / count[keep]
            sums = np.bincount(cell, weights=b[c][mask].astype(np.float64), minlength=n_cells)
            mean_b[c] = sums[keep] / count[keep]
    finite = np.isfinite(mean_a).all(axis=0) & np.isfinite(mean_b).all(axis=0)
    if int(finite.sum()) < MIN_PAIR_CELLS:
        return None
    # Variance of a mean of m samples (their correlation through the interpolation is
    # ignored: only the ratio of the two tiles' variances is used).
    va = (si.noise**2)[:, None] * (fa[keep] / count[keep] ** 2)[None, :]
    vb = (sj.noise**2)[:, None] * (fb[keep] / count[keep] ** 2)[None, :]
    return mean_a[:, finite], mean_b[:, finite], va[:, finite], vb[:, finite]


# --------------------------------------------------------------------------- global solve


def _components(n: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """Component label of each node (the lowest node index of its component)."""
    return component_labels(n, edges).tolist()


def _usable(i: np.ndarray, j: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w > 0) & np.isfinite(w) & np.isfinite(y) & (i != j)


def _gauge_groups(
    n: int, i: np.ndarray, j: np.ndarray, fixed: np.ndarray
) -> tuple[list[int], list[np.ndarray]]:
    """Groups of unknowns linked by equations that hold no fixed unknown.

    Returns one pivot per such group (its lowest index, held at 0 while solving) and
    the members of each group (shifted afterwards to a median of 0).
    """
    labels = np.asarray(_components(n, list(zip(i.tolist(), j.tolist(), strict=True))))
    pivots: list[int] = []
    groups: list[np.ndarray] = []
    anchored = set(labels[fixed].tolist())
    for label in np.unique(labels):
        if label in anchored:
            continue
        members = np.flatnonzero(labels == label)
        pivots.append(int(members[0]))
        groups.append(members)
    return pivots, groups


def _normal_matrix(
    n: int, i: np.ndarray, j: np.ndarray, y: np.ndarray, w: np.ndarray, free: np.ndarray
) -> tuple[sparse.csc_matrix, np.ndarray]:
    """Normal equations (a weighted graph Laplacian) of ``x_i - x_j = y`` on ``free``."""
    index = np.full(n, -1)
    index[free] = np.arange(free.size)
    fi, fj = index[i], index[j]
    m = free.size
    on_i, on_j = fi >= 0, fj >= 0
    diag = np.bincount(fi[on_i], weights=w[on_i], minlength=m) + np.bincount(
        fj[on_j], weights=w[on_j], minlength=m
    )
    rhs = np.bincount(fi[on_i], weights=(w * y)[on_i], minlength=m) - np.bincount(
        fj[on_j], weights=(w * y)[on_j], minlength=m
    )
    both = on_i & on_j
    rows = np.concatenate([fi[both], fj[both], np.arange(m)])
    cols = np.concatenate([fj[both], fi[both], np.arange(m)])
    vals = np.concatenate([-w[both], -w[both], diag])
    return sparse.csc_matrix((vals, (rows, cols)), shape=(m, m)), rhs


def _solve_differences(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    fixed: np.ndarray,
) -> np.ndarray:
    """Weighted least squares of ``x_i - x_j = y`` (weights ``w``), ``x = 0`` on ``fixed``.

    Exact: no ridge or prior. Each group of unknowns that the equations link to no
    fixed unknown is solved with one of its members held at 0 (the differences do not
    depend on which), then shifted so that its median is 0. Unknowns that no equation
    reaches are 0. Equations with a non-positive or non-finite weight are ignored.
    """
    keep = _usable(i, j, y, w)
    i, j, y, w = i[keep], j[keep], y[keep], w[keep]
    x = np.zeros(n)
    if not keep.any():
        return x
    w = w / w.max()  # the solution does not depend on the weights' unit
    pivots, groups = _gauge_groups(n, i, j, fixed)
    held = fixed.copy()
    held[pivots] = True
    free = np.flatnonzero(~held)
    if free.size:
        matrix, rhs = _normal_matrix(n, i, j, y, w, free)
        # Unknowns in no equation have an empty row: give them a unit diagonal (x = 0).
        empty = np.asarray(matrix.diagonal()) == 0
        if empty.any():
            matrix = matrix + sparse.diags(empty.astype(np.float64), format="csc")
        x[free] = np.atleast_1d(sparse_linalg.spsolve(matrix, rhs))
    for members in groups:
        x[members] -= np.median(x[members])
    return x


def _solution_sd(
    n: int, i: np.ndarray, j: np.ndarray, w: np.ndarray, fixed: np.ndarray
) -> np.ndarray:
    """Standard errors of the solution of `_solve_differences` (inf where unsolved).

    From the inverse of the normal matrix: for a group with a fixed member, the
    reduced matrix; for a group gauged by its own median, the pseudo-inverse of its
    Laplacian (the mean gauge, close to the median's), computed as
    ``inv(L + s 1 1^T / m) - 1 1^T / (s m)``. Above `DENSE_COVARIANCE_LIMIT` unknowns,
    ``1 / sqrt(diagonal)``: the tile's own overlaps only (its neighbours taken as known).
    """
    keep = _usable(i, j, np.zeros(len(i)), w)
    i, j, w = i[keep], j[keep], w[keep]
    sd = np.full(n, np.inf)
    if not keep.any():
        return sd
    free = np.flatnonzero(~fixed)
    matrix, _ = _normal_matrix(n, i, j, np.zeros(len(i)), w, free)
    diag = np.asarray(matrix.diagonal())
    solved = diag > 0
    if free.size > DENSE_COVARIANCE_LIMIT:
        with np.errstate(divide="ignore"):
            sd[free] = 1.0 / np.sqrt(diag)
        return sd
    dense = matrix.toarray()
    dense[~solved, ~solved] = 1.0
    _, groups = _gauge_groups(n, i, j, fixed)
    index = np.full(n, -1)
    index[free] = np.arange(free.size)
    shift = np.zeros(free.size)
    for members in groups:
        at = index[members]
        at = at[solved[at]]
        if at.size < 2:
            continue
        s = float(diag[at].mean())
        dense[np.ix_(at, at)] += s / at.size
        shift[at] = 1.0 / (s * at.size)
    try:
        var = np.diag(np.linalg.inv(dense)) - shift
    except np.linalg.LinAlgError:
        var = 1.0 / np.where(solved, diag, np.nan)
    var = np.where(solved & np.isfinite(var), np.maximum(var, 0.0), np.inf)
    sd[free] = np.sqrt(var)
    return sd


def _robust_solve(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    fixed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Iteratively reweighted least squares (Huber) of ``x_i - x_j = y``.

    ``w`` = 1 / variance of each equation. Returns the solution, the normalised
    residuals ``(x_i - x_j - y) sqrt(w)`` (0 for an unusable equation), their robust
    scale (MAD, never below 1) and the final Huber-adjusted weights. Huber weights keep
    one bad equation from being smeared over its neighbours, so that it stands out.
    """
    usable = _usable(i, j, y, w)
    z_all = np.zeros(len(y))
    final = np.zeros(len(y))
    if not usable.any():
        return np.zeros(n), z_all, 1.0, final
    i, j, y, w = i[usable], j[usable], y[usable], w[usable]
    weights = w.copy()
    x = np.zeros(n)
    z = np.zeros(len(y))
    scale = 1.0
    for _ in range(_IRLS_ITERATIONS):
        x_new = _solve_differences(n, i, j, y, weights, fixed)
        z = (x_new[i] - x_new[j] - y) * np.sqrt(w)
        scale = max(1.0, MAD_TO_SIGMA * float(np.median(np.abs(z))))
        u = np.abs(z) / (_HUBER_K * scale)
        weights = w * np.minimum(1.0, 1.0 / np.maximum(u, 1e-12))
        converged = np.allclose(x_new, x, rtol=0.0, atol=1e-12 * (1.0 + np.abs(x_new).max()))
        x = x_new
        if converged:
            break
    z_all[usable] = z
    final[usable] = weights
    return x, z_all, scale, final


def _select_gains(
    n: int,
    pi: np.ndarray,
    pj: np.ndarray,
    log_r: np.ndarray,
    var_log_r: np.ndarray,
    cells: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log gains by backward elimination with the BIC (see the module notes, step 6).

    Returns the log gains (0 where not kept), which tiles kept a gain and the
    normalised residuals of the gain equations.
    """
    with np.errstate(divide="ignore"):
        w = np.where(np.isfinite(var_log_r), 1.0 / var_log_r, 0.0)
    informative = w > 0
    evidence = np.bincount(pi[informative], weights=cells[informative], minlength=n)
    evidence += np.bincount(pj[informative], weights=cells[informative], minlength=n)
    fitted = evidence > 0
    own_floor = np.full(n, np.inf)
    with np.errstate(divide="ignore"):
        half = np.where(informative, 0.5 / w, np.inf)
    np.minimum.at(own_floor, pi, half)
    np.minimum.at(own_floor, pj, half)
    log_g = np.zeros(n)
    z = np.zeros(len(log_r))
    for _ in range(_SELECTION_ROUNDS):
        if not fitted.any():
            return np.zeros(n), fitted, np.zeros(len(log_r))
        log_g, z, scale, huber = _robust_solve(n, pi, pj, log_r, w, ~fitted)
        # A tile's pairs share its pixels, so their errors are correlated (in a stack of
        # subs, entirely): its gain is never known better than its own noise share of
        # its best pair, half that pair's variance.
        sd = np.sqrt(np.maximum(_solution_sd(n, pi, pj, huber, ~fitted) ** 2, own_floor))
        sd *= scale
        with np.errstate(divide="ignore", invalid="ignore"):
            z_tile = np.where(fitted, np.abs(log_g) / sd, 0.0)
        keep = fitted & (z_tile**2 > np.log(np.maximum(evidence, 2.0)))
        if np.array_equal(keep, fitted):
            break
        fitted = keep
    log_g = np.where(fitted, log_g, 0.0)
    return log_g, fitted, z


def _solve_global(
    n: int,
    n_channels: int,
    pairs: list[_Pair],
    levels: np.ndarray,
    fit_gain: bool,
    names: Sequence[str],
    cancel: CancelToken | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gains (N,) and offsets (N, C) from the pair fits, with an outer robust loop.

    ``levels`` (N, C): each tile's median level, for the median gauge of the offsets.
    Returns the gains as solved, the gains clipped to `GAIN_LIMITS` (used for the
    offsets), the offsets and which tiles kept a fitted gain.
    """
    labels = _components(n, [(p.i, p.j) for p in pairs])
    active = list(range(len(pairs)))
    raw_gains = np.ones(n)
    gains = np.ones(n)
    offsets = np.zeros((n, n_channels))
    fitted = np.zeros(n, dtype=bool)
    none_fixed = np.zeros(n, dtype=bool)
    for iteration in range(_GLOBAL_ITERATIONS + 1):
        check_cancel(cancel)
        use = [pairs[k] for k in active]
        score = np.zeros(len(use))
        pi = np.array([p.i for p in use], dtype=int)
        pj = np.array([p.j for p in use], dtype=int)
        if fit_gain:
            log_g, fitted, z = _select_gains(
                n,
                pi,
                pj,
                np.array([p.log_r for p in use]),
                np.array([p.var_log_r for p in use]),
                np.array([p.n for p in use], dtype=float),
            )
            raw_gains = np.exp(log_g)
            gains = np.clip(raw_gains, *GAIN_LIMITS)
            informative = np.isfinite([p.var_log_r for p in use])
            if informative.any():
                robust = max(1.0, MAD_TO_SIGMA * float(np.median(np.abs(z[informative]))))
                score = np.abs(z) / robust
        mean_a = np.array([p.mean_a for p in use]).reshape(len(use), n_channels)
        mean_b = np.array([p.mean_b for p in use]).reshape(len(use), n_channels)
        spread = np.array([p.scale for p in use]).reshape(len(use), n_channels)
        count = np.array([p.n for p in use], dtype=float)
        for c in range(n_channels):
            # o_i - o_j = g_j mean_b - g_i mean_a, weighted by its inverse variance.
            delta = gains[pj] * mean_b[:, c] - gains[pi] * mean_a[:, c]
            w_off = count / (gains[pj] * spread[:, c]) ** 2
            offsets[:, c], z, scale, _ = _robust_solve(n, pi, pj, delta, w_off, none_fixed)
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
    # The level belongs to the mosaic: per group and channel, the median tile keeps its
    # level (the solver's median gauge on the offsets alone ignores the gains' share).
    groups = np.asarray(labels)
    linked = np.zeros(n, dtype=bool)
    for p in (pairs[k] for k in active):
        linked[p.i] = linked[p.j] = True
    for label in np.unique(groups[linked]):
        members = np.flatnonzero((groups == label) & linked)
        for c in range(n_channels):
            change = offsets[members, c] + (gains[members] - 1.0) * levels[members, c]
            finite = np.isfinite(change)
            if finite.any():
                offsets[members, c] -= np.median(change[finite])
    return raw_gains, gains, offsets, fitted


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
        gain_fitted=np.zeros(len(tiles), dtype=bool),
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
        ``"affine"``: a gain (shared by the channels, kept only where the overlaps
        prove it) and an offset per channel; ``"offset"``: offsets only (gains 1);
        ``"none"``: the tiles as they are.
    cancel : CancelToken, optional
        Checked between tiles and solver iterations.
    progress : callable, optional
        ``progress("match", done, total)``.

    Returns
    -------
    MatchResult
        Corrected tiles (``gain * data + offset``), gains, offsets.

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
    k = max(coarse_factor(plan.shape), depth_factor(plan.bboxes))
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
        if sample is not None and sample.blank:
            logger.warning(
                "%s: blank or constant tile (no structure, no sky level to match); left "
                "out of matching (gain 1, offset 0)",
                names[idx],
            )
            sample = None
        samples.append(sample)
        report(progress, _PHASE, idx + 1, total)

    usable = [i for i in range(n) if samples[i] is not None]
    graph = overlap_graph([plan.bboxes[i] for i in usable])
    pairs: list[_Pair] = []
    for a, b in graph:
        check_cancel(cancel)
        i, j = usable[a], usable[b]
        si, sj = samples[i], samples[j]
        assert si is not None and sj is not None
        common = _pair_data(si, sj)
        if common is None:
            continue
        pair = _fit_pair(i, j, *common, fit_gain=fit_gain)
        if pair is not None:
            pairs.append(pair)
    report(progress, _PHASE, n + 1, total)

    labels = _components(n, [(p.i, p.j) for p in pairs])
    sizes = {label: labels.count(label) for label in set(labels)}
    largest = max(sorted(sizes), key=lambda label: sizes[label])
    for label in sorted(sizes):
        members = [i for i in range(n) if labels[i] == label]
        if len(members) == 1:
            if samples[members[0]] is not None:
                logger.warning(
                    "%s: overlaps no other tile; left unmatched (gain 1, offset 0)",
                    names[members[0]],
                )
        elif label != largest:
            logger.warning(
                "%d tiles (%s) do not overlap the largest group of tiles; matched among "
                "themselves, anchored on their own median level",
                len(members),
                ", ".join(tiles[m].name for m in members),
            )

    levels = np.array(
        [s.level if s is not None else np.full(n_channels, np.nan) for s in samples],
        dtype=np.float64,
    ).reshape(n, n_channels)
    raw_gains, gains, offsets, fitted = _solve_global(
        n, n_channels, pairs, levels, fit_gain, names, cancel
    )
    _warn_clipped(raw_gains, gains, names)

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
            "%s: gain=%.5f%s, offsets=[%s]",
            tile.name,
            gains[idx],
            "" if fitted[idx] else " (held)",
            ", ".join(f"{o:.4g}" for o in offsets[idx]),
        )
        report(progress, _PHASE, n + 2 + idx, total)

    logger.info(
        "Photometric matching (%s): %d tiles, %d overlaps, %d gains fitted; gains "
        "%.4f..%.4f, offsets %.4g..%.4g",
        mode,
        n,
        len(pairs),
        int(fitted.sum()),
        float(gains.min()),
        float(gains.max()),
        float(offsets.min()),
        float(offsets.max()),
    )
    return MatchResult(
        tiles=matched, gains=gains, offsets=offsets, gain_fitted=fitted, n_pairs=len(pairs)
    )
