"""The coadd driver: one pass of one backend over all tiles and channels.

Written once against the :class:`~zemosaic_core.engine.backends.base.Backend` interface, so
the CPU and the GPU share the chunking, the accumulation, the combines and the
coverage contract. The driver never switches backend: whatever the backend raises
propagates (see :mod:`zemosaic_core.engine.passes` for the single-backend invariant).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import CombineSpec
from ..geometry.planning import BoundingBox, MosaicPlan
from ..result import CoaddResult
from ..runtime.cancel import CancelToken, check_cancel
from ..runtime.progress import ProgressCallback, report
from ..runtime.scratch import release_pages
from ..tile import TileLike
from .backends.base import Backend
from .coverage import compact_coverage, is_compact, mean_from_sums, sanitize_coverage

logger = logging.getLogger(__name__)

_FLOAT32 = 4


#: Working memory of a rejecting combine, in stack planes of one channel (measured:
#: ~6.5x for median, 9x kappa-sigma, up to ~29x winsorized on shallow stacks).
_COMBINE_WORK_PLANES = {"median": 10, "kappa-sigma": 12, "winsorized": 30}

#: The combines that clip around a band (the median needs every sample at once).
_CLIPPING = ("kappa-sigma", "winsorized")


#: Samples per pixel from which a deep stack's clipping band is estimated. A chunk whose
#: stack is deeper is clipped in two streams over its tiles (see `_StreamingClipReducer`),
#: so a rejecting combine holds at most this many layers whatever the number of subs:
#: memory stays flat in N. 16 samples give the band's centre (a median) and sigma a
#: relative error of ~20 %, and a lone outlier among them lies up to 3.75 sigmas from
#: the rest (kappa-sigma's ``(n - 1) / sqrt(n)`` bound), above the usual kappa of 3.
REFERENCE_DEPTH = 16


def _stack_planes(n_tiles: int, n_channels: int, combine: CombineSpec) -> int:
    """Float32 planes of one output pixel that a chunk of ``n_tiles`` tiles holds."""
    if combine.method == "mean":  # two accumulators per channel
        return 2 * n_channels
    layers = n_tiles
    if combine.method in _CLIPPING and n_tiles > REFERENCE_DEPTH:
        layers = REFERENCE_DEPTH  # + centre, band and 4 sums per channel afterwards
    return layers * (2 * n_channels + _COMBINE_WORK_PLANES[combine.method]) + 6 * n_channels


def _rows_per_chunk(plan: MosaicPlan, planes: int, budget_bytes: int) -> int:
    """Output rows per chunk so that ``planes`` float32 planes of chunk size fit."""
    row_bytes = max(1, planes * plan.shape[1] * _FLOAT32)
    return int(min(plan.shape[0], max(1, budget_bytes // row_bytes)))


def _row_chunks(height: int, rows: int) -> list[tuple[int, int]]:
    return [(y0, min(height, y0 + rows)) for y0 in range(0, height, rows)]


def _auto_batch(plan: MosaicPlan, members: list[int], n_channels: int, budget: int) -> int:
    """Tiles prepared at once when the user left it to us: as many as half the budget holds."""
    largest = max((plan.bboxes[i].shape[0] * plan.bboxes[i].shape[1] for i in members), default=1)
    # A prepared tile holds its channels plus coordinates, masks and weights (~7 planes).
    per_tile = max(1, (n_channels + 7) * largest * _FLOAT32)
    return int(max(1, min(len(members), (budget // 2) // per_tile)))


def _spread(indices: list[int], first: int) -> list[int]:
    """``indices`` reordered so that any leading ``first`` of them span the whole list.

    Every ``k``-th index first (``k = ceil(n / first)``), then the ones after them, and
    so on: ``[0, k, 2k, ..., 1, k + 1, ...]``.
    """
    step = max(1, -(-len(indices) // max(1, first)))
    return [indices[j] for start in range(step) for j in range(start, len(indices), step)]


def _batches(indices: list[int], batch_size: int) -> list[list[int]]:
    if batch_size <= 0:
        return [indices]
    return [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]


def coadd_pass(
    backend: Backend,
    tiles: Sequence[TileLike],
    plan: MosaicPlan,
    *,
    combine: CombineSpec,
    pass_index: int = 1,
    gains: np.ndarray | None = None,
    batch_size: int = 0,
    cancel: CancelToken | None = None,
    progress: ProgressCallback | None = None,
    allocate: Callable[[tuple[int, ...], type], np.ndarray] | None = None,
) -> CoaddResult:
    """Coadd every channel of ``tiles`` onto ``plan`` with one backend.

    Parameters
    ----------
    backend : Backend
        The one backend of this pass.
    tiles : sequence of TileLike
        Tiles, all with the same channel count, in the order of ``plan.bboxes``.
    plan : MosaicPlan
    combine : CombineSpec
    pass_index : int
        1 = first coadd, 2 = two-pass (used for logs and fault injection).
    gains : ndarray, optional
        One multiplicative gain per tile, applied to its samples (two-pass).
    batch_size : int
        Tiles prepared at once; 0 = automatic. Never changes the result: within each
        channel, samples are always accumulated in tile order.
    cancel : CancelToken, optional
    progress : callable, optional
    allocate : callable, optional
        ``allocate(shape, dtype)`` for the full-size result when the output is processed
        in several row chunks (e.g. :meth:`ScratchSpace.allocate`, which spills to
        memory-mapped files beyond its budget). Every element gets written. Default:
        ``numpy.empty``.

    Returns
    -------
    CoaddResult
        ``image`` and ``coverage`` as (C, H, W) float32 NumPy arrays; ``coverage`` is a
        read-only broadcast of one plane when all channels share it.
    """
    n_channels = tiles[0].n_channels
    height, width = plan.shape
    stacking = combine.method != "mean"
    budget = backend.memory_budget()
    rows = _rows_per_chunk(plan, _stack_planes(len(tiles), n_channels, combine), budget)
    chunks = _row_chunks(height, rows)

    # With a single chunk the reducer's own arrays become the result (no extra copy).
    # Coverage is kept as one plane while every channel agrees (see compact_coverage).
    allocate = allocate or np.empty
    image: np.ndarray | None = None
    coverage_plane: np.ndarray | None = None
    coverage: np.ndarray | None = None
    if len(chunks) > 1:
        image = allocate((n_channels, height, width), np.float32)
        coverage_plane = allocate((height, width), np.float32)

    # Work units: per tile and chunk, one for its resampling and one per channel sampled
    # into the accumulators; per chunk, its combine (as costly as a channel per tile for
    # the stacking combines). A bar never sits at 100 % while channels still run.
    def combine_units(n_members: int) -> int:
        return n_members if stacking else 1

    def streams(n_members: int) -> int:
        return 2 if combine.method in _CLIPPING and n_members > REFERENCE_DEPTH else 1

    members_per_chunk = [
        sum(1 for box in plan.bboxes if box.overlaps(BoundingBox(y0, y1, 0, width)))
        for y0, y1 in chunks
    ]
    total = sum(streams(m) * m * (1 + n_channels) + combine_units(m) for m in members_per_chunk)
    done = 0
    phase = f"coadd pass {pass_index}"
    report(progress, phase, 0, total)
    backend.begin_pass(pass_index)
    logger.debug(
        "pass %d on %s: %d chunk(s) of %d rows, combine=%s",
        pass_index,
        backend.name,
        len(chunks),
        rows,
        combine.method,
    )

    with backend.device_errors(f"coadding pass {pass_index}"):
        for y0, y1 in chunks:
            check_cancel(cancel)
            chunk = BoundingBox(y0, y1, 0, width)
            members = [i for i, box in enumerate(plan.bboxes) if box.overlaps(chunk)]
            layer_of = {tile_index: layer for layer, tile_index in enumerate(members)}
            reducer: _Reducer
            if streams(len(members)) > 1:
                reducer = _StreamingClipReducer(
                    backend.xp, REFERENCE_DEPTH, n_channels, chunk, combine
                )
            elif stacking:
                reducer = _StackReducer(backend.xp, len(members), n_channels, chunk, combine)
            else:
                reducer = _MeanReducer(backend.xp, n_channels, chunk)
            for stream in range(streams(len(members))):
                if stream:
                    reducer.next_stream(cancel)
                # The band's samples are each pixel's first ones: spread over the night
                # (every k-th sub first), so that a drift does not fall outside the band.
                order = _spread(members, REFERENCE_DEPTH) if streams(len(members)) > 1 else members
                for batch in _batches(
                    order, batch_size or _auto_batch(plan, members, n_channels, budget)
                ):
                    prepared = []
                    try:
                        # Prepared a few at a time (as many as the backend runs at once),
                        # so progress and cancel stay responsive during the resampling.
                        step = max(1, backend.prepare_threads)
                        for k in range(0, len(batch), step):
                            check_cancel(cancel)
                            requests = [
                                (tiles[i], i, plan.bboxes[i].intersect(chunk))
                                for i in batch[k : k + step]
                            ]
                            prepared.extend(backend.prepare_many(requests, plan))
                            done += len(requests)
                            report(progress, phase, done, total)
                        for channel in range(n_channels):
                            for prep in prepared:
                                check_cancel(cancel)
                                values, weights = backend.sample(prep, channel)
                                if gains is not None:
                                    values = values * backend.xp.float32(gains[prep.tile_index])
                                reducer.add(
                                    layer_of[prep.tile_index],
                                    channel,
                                    prep.region,
                                    values,
                                    weights,
                                )
                            done += len(prepared)
                            report(progress, phase, done, total)
                    finally:
                        for prep in prepared:
                            backend.release(prep)
            chunk_image, chunk_cov = reducer.result(cancel)
            del reducer
            done += combine_units(len(members))
            report(progress, phase, done, total)
            chunk_cov = compact_coverage(backend.to_host(chunk_cov))
            if image is None:
                image, coverage = backend.to_host(chunk_image), chunk_cov
            else:
                assert coverage_plane is not None  # allocated with ``image`` (several chunks)
                image[:, y0:y1] = backend.to_host(chunk_image)
                if coverage is None and is_compact(chunk_cov):
                    coverage_plane[y0:y1] = chunk_cov[0]
                else:
                    if coverage is None:  # first chunk whose channels differ: go 3-D
                        coverage = allocate((n_channels, height, width), np.float32)
                        coverage[:, :y0] = coverage_plane[None, :y0]
                    coverage[:, y0:y1] = chunk_cov
                for done_array in (image, coverage_plane, coverage):
                    if done_array is not None:
                        release_pages(done_array)  # memory-mapped results leave RSS
            del chunk_image, chunk_cov
    if coverage is None:
        assert coverage_plane is not None  # several chunks, all with one shared plane
        coverage = np.broadcast_to(coverage_plane, (n_channels, height, width))
    assert image is not None  # every chunk wrote its rows

    return CoaddResult(image=image, coverage=coverage, backend=backend.name)


#: Output pixels per call of a stack combine: every pixel's stack is independent, so the
#: blocks give the same result as one call, and cancel is checked between them
#: (a 1-megapixel chunk of 16 layers took 4-5 s in one call).
_COMBINE_BLOCK_PIXELS = 1 << 17


def _per_block(
    xp: Any,
    reduce: Callable[[Any, Any, Any, CombineSpec], tuple[Any, Any]],
    values: Any,
    weights: Any,
    combine: CombineSpec,
    cancel: CancelToken | None,
) -> tuple[Any, Any]:
    """``reduce`` (a stack combine) of ``(C, N, h, w)`` stacks, channel by row block.

    Returns its two ``(C, h, w)`` float32 planes; ``cancel`` is checked before each block.
    """
    n_channels, _, height, width = values.shape
    first = xp.empty((n_channels, height, width), dtype=xp.float32)
    second = xp.empty((n_channels, height, width), dtype=xp.float32)
    rows = max(1, _COMBINE_BLOCK_PIXELS // max(1, width))
    for c in range(n_channels):
        for y0 in range(0, height, rows):
            check_cancel(cancel)
            y1 = min(height, y0 + rows)
            first[c, y0:y1], second[c, y0:y1] = reduce(
                xp, values[c][:, y0:y1], weights[c][:, y0:y1], combine
            )
    return first, second


class _Reducer:
    def add(self, layer: int, channel: int, region: BoundingBox, values: Any, weights: Any) -> None:
        raise NotImplementedError

    def next_stream(self, cancel: CancelToken | None) -> None:
        """Called before the tiles are streamed again (only by two-stream reducers)."""
        raise NotImplementedError

    def result(self, cancel: CancelToken | None) -> tuple[Any, Any]:
        raise NotImplementedError


class _MeanReducer(_Reducer):
    """Streaming sums: sum(f*W*v) and sum(f*W) in float32."""

    def __init__(self, xp: Any, n_channels: int, chunk: BoundingBox) -> None:
        self.xp = xp
        self.chunk = chunk
        self.weighted_sum = xp.zeros((n_channels, *chunk.shape), dtype=xp.float32)
        self.coverage = xp.zeros((n_channels, *chunk.shape), dtype=xp.float32)

    def add(self, layer: int, channel: int, region: BoundingBox, values: Any, weights: Any) -> None:
        sl = region.relative_to(self.chunk)
        self.weighted_sum[(channel,) + sl] += values * weights
        self.coverage[(channel,) + sl] += weights

    def result(self, cancel: CancelToken | None) -> tuple[Any, Any]:
        coverage = sanitize_coverage(self.coverage, self.xp, in_place=True)
        return mean_from_sums(self.weighted_sum, coverage, self.xp, in_place=True), coverage


class _StackReducer(_Reducer):
    """Per-pixel stacks of every overlapping tile, reduced by a rejecting combine."""

    def __init__(
        self, xp: Any, n_layers: int, n_channels: int, chunk: BoundingBox, combine: CombineSpec
    ) -> None:
        self.xp = xp
        self.chunk = chunk
        self.combine = combine
        shape = (n_channels, n_layers, *chunk.shape)
        self.values = xp.zeros(shape, dtype=xp.float32)
        self.weights = xp.zeros(shape, dtype=xp.float32)

    def add(self, layer: int, channel: int, region: BoundingBox, values: Any, weights: Any) -> None:
        sl = region.relative_to(self.chunk)
        self.values[(channel, layer) + sl] = values
        self.weights[(channel, layer) + sl] = weights

    def result(self, cancel: CancelToken | None) -> tuple[Any, Any]:
        from .rejection import combine_stack

        image, coverage = _per_block(
            self.xp, combine_stack, self.values, self.weights, self.combine, cancel
        )
        return image, sanitize_coverage(coverage, self.xp, in_place=True)


class _StreamingClipReducer(_Reducer):
    """Clipping of a stack deeper than `REFERENCE_DEPTH`, in two streams over the tiles.

    Stream 1 keeps, per pixel and channel, the first ``depth`` valid samples (in tile
    order) and estimates the clipping band from them with the combine's own iterations
    (:func:`~zemosaic_core.engine.rejection.clip_limits`). Stream 2 sees every sample
    again and keeps those inside the band: the result is their weighted mean and the
    coverage their summed weight (docs/architecture.md §3), as for the in-memory stack. Memory is
    ``depth`` layers plus six planes per channel, whatever the depth of the stack. A
    pixel whose every sample falls outside its band (possible only when the subset
    misled the band) keeps the plain mean rather than becoming empty.
    """

    def __init__(
        self, xp: Any, depth: int, n_channels: int, chunk: BoundingBox, combine: CombineSpec
    ) -> None:
        self.xp = xp
        self.chunk = chunk
        self.combine = combine
        self.depth = depth
        shape = (n_channels, depth, *chunk.shape)
        self.values: Any = xp.zeros(shape, dtype=xp.float32)
        self.weights: Any = xp.zeros(shape, dtype=xp.float32)
        self.count: Any = xp.zeros((n_channels, *chunk.shape), dtype=xp.int32)
        self.centre: Any = None
        self.limit: Any = None
        self.sums: Any = None  # kept Σw(v - centre), kept Σw, all Σw(v - centre), all Σw

    def add(self, layer: int, channel: int, region: BoundingBox, values: Any, weights: Any) -> None:
        xp = self.xp
        sl = region.relative_to(self.chunk)
        valid = xp.isfinite(values) & xp.isfinite(weights) & (weights > 0)
        if self.sums is None:  # stream 1: fill the reservoir of this pixel's first samples
            slot = self.count[(channel,) + sl]
            ys, xs = xp.nonzero(valid & (slot < self.depth))
            rows, cols = ys + sl[0].start, xs + sl[1].start
            self.values[channel, slot[ys, xs], rows, cols] = values[ys, xs]
            self.weights[channel, slot[ys, xs], rows, cols] = weights[ys, xs]
            self.count[channel, rows, cols] += 1
            return
        w = xp.where(valid, weights, xp.float32(0))
        # Sums around the band's centre: small numbers, so float32 keeps the precision
        # of a mean of hundreds of samples on a large pedestal.
        d = xp.where(valid, values, self.centre[(channel,) + sl]) - self.centre[(channel,) + sl]
        wd = w * d
        inside = xp.abs(d) <= self.limit[(channel,) + sl]
        self.sums[(0, channel) + sl] += xp.where(inside, wd, xp.float32(0))
        self.sums[(1, channel) + sl] += xp.where(inside, w, xp.float32(0))
        self.sums[(2, channel) + sl] += wd
        self.sums[(3, channel) + sl] += w

    def next_stream(self, cancel: CancelToken | None) -> None:
        from .rejection import clip_limits

        xp = self.xp
        self.centre, self.limit = _per_block(
            xp, clip_limits, self.values, self.weights, self.combine, cancel
        )
        self.values = self.weights = self.count = None
        self.sums = xp.zeros((4, *self.centre.shape), dtype=xp.float32)

    def result(self, cancel: CancelToken | None) -> tuple[Any, Any]:
        xp = self.xp
        kept = self.sums[1] > 0
        offset_sum = xp.where(kept, self.sums[0], self.sums[2])
        coverage = sanitize_coverage(xp.where(kept, self.sums[1], self.sums[3]), xp, in_place=True)
        covered = coverage > 0
        offset = offset_sum / xp.where(covered, coverage, xp.float32(1))
        image = xp.where(covered, self.centre + offset, xp.float32("nan")).astype(xp.float32)
        return image, coverage
