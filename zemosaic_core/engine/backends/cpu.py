"""The ``cpu`` backend: astropy ``reproject_interp`` (bilinear), one call per tile.

All channels of a tile (and its weight map, if any) go through one
``reproject_interp`` call on a (C, H, W) cube, so the costly WCS transform runs once
per tile and region, not once per channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
from astropy.wcs import WCS
from reproject import reproject_interp

from ...geometry.planning import BoundingBox, MosaicPlan, grid_offset
from ...runtime.cpus import available_cpus
from ...runtime.memory import default_budget
from ...runtime.scratch import ScratchSpace
from ...tile import TileLike
from ..coverage import masked_samples
from .base import PreparedTile
from .mapping import shifted_placement


def _copy_shifted(cube: np.ndarray, offset: tuple[int, int], out: np.ndarray) -> None:
    """``out[:, y, x] = cube[:, y - dy, x - dx]``, NaN where that falls off the tile."""
    out.fill(np.nan)
    placement = shifted_placement(
        (cube.shape[1], cube.shape[2]), offset, (out.shape[1], out.shape[2])
    )
    if placement is not None:
        everything = (slice(None),)
        out[everything + placement.out_slices] = cube[everything + placement.tile_slices]


#: Output pixels per ``reproject_interp`` call: reproject holds ~100 bytes of float64
#: coordinates per output pixel while it runs, so whole tiles in parallel threads
#: would cost more memory than the mosaic; bands keep that small at no speed cost.
_BAND_PIXELS = 1 << 18


def _reproject(cube: np.ndarray, tile: TileLike, sub_wcs: WCS, out: np.ndarray) -> None:
    height, width = out.shape[1:]
    rows = max(1, _BAND_PIXELS // max(1, width))
    band = np.empty((out.shape[0], min(rows, height), width), dtype=np.float32)
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        target = out if (y0, y1) == (0, height) else band[:, : y1 - y0]
        # No round-trip check: it doubles the transform cost and only matters for
        # projections that wrap, which a mosaic's tile boxes never reach.
        reproject_interp(
            (cube, tile.wcs),
            sub_wcs[y0:y1, :] if (y0, y1) != (0, height) else sub_wcs,
            shape_out=target.shape,
            order="bilinear",
            output_array=target,
            return_footprint=False,
            roundtrip_coords=False,
        )
        if target is not out:
            out[:, y0:y1] = target


class CpuBackend:
    """Resampling with astropy reproject on the CPU.

    Resampled tiles are kept for the whole build while ``scratch``'s RAM budget allows:
    the two-pass gains and pass 2 reuse them, as resampling is linear and pass 2 only
    scales each tile. Every tile's WCS transform thus runs once per build, not once per
    pass and channel; beyond the budget, tiles are resampled again instead.

    Parameters
    ----------
    memory_budget : int, optional
        Bytes for accumulators and stacks of one chunk (default: `default_budget`).
    scratch : ScratchSpace, optional
        Accounts the RAM of kept tiles; ``None`` keeps nothing between calls.
    threads : int, optional
        Reprojections run at once (default: one per CPU core this process may use).
    """

    name = "cpu"
    xp: ModuleType = np

    @property
    def prepare_threads(self) -> int:
        """How many tiles :meth:`prepare_many` resamples at once."""
        return self._threads

    def __init__(
        self,
        memory_budget: int | None = None,
        scratch: ScratchSpace | None = None,
        threads: int | None = None,
    ) -> None:
        self._budget = int(memory_budget) if memory_budget else default_budget()
        self._threads = threads or available_cpus()
        self._scratch = scratch
        self._cache: dict[tuple[int, int, BoundingBox], tuple[np.ndarray, TileLike]] = {}

    def begin_pass(self, pass_index: int) -> None:
        """Nothing to set up on the CPU."""

    def prepare(
        self, tile: TileLike, tile_index: int, region: BoundingBox, plan: MosaicPlan
    ) -> PreparedTile:
        """Reproject every channel (and the weight map) of ``tile`` onto ``region``."""
        return self.prepare_many([(tile, tile_index, region)], plan)[0]

    def prepare_many(
        self, requests: Sequence[tuple[TileLike, int, BoundingBox]], plan: MosaicPlan
    ) -> list[PreparedTile]:
        """Prepare several tiles, their reprojections running in parallel threads.

        Everything that touches shared state (reading pixels, slicing the output WCS,
        the cache and the scratch budget) happens here in the calling thread, in order;
        the threads only run ``reproject_interp`` on objects of their own (astropy's
        WCS is not thread-safe on a shared object). Results do not depend on threads.
        """
        prepared: list[PreparedTile] = []
        jobs: list[tuple[np.ndarray, TileLike, WCS, np.ndarray]] = []
        for tile, tile_index, region in requests:
            key = (id(tile), tile_index, region)
            cached = self._cache.get(key)
            if cached is not None and cached[1] is tile:
                prepared.append(PreparedTile(tile_index, region, state=cached))
                continue
            cube = tile.data
            if tile.weight_map is not None:
                # NaN weights mean "no weight" (as reproject_and_coadd treats them).
                weight = np.nan_to_num(tile.weight_map, nan=0.0).astype(np.float32)
                cube = np.concatenate([cube, weight[None]], axis=0)
            shape = (cube.shape[0], *region.shape)
            # Kept for later passes only while the scratch RAM budget allows: resampling
            # again beyond it costs time, but memory stays bounded on any tile count.
            kept = self._scratch.try_ram(shape) if self._scratch is not None else None
            out = kept if kept is not None else np.empty(shape, dtype=np.float32)
            sub_wcs = plan.sub_wcs(region)
            offset = grid_offset(tile.wcs, sub_wcs)
            if offset is not None:
                _copy_shifted(cube, offset, out)
            else:
                jobs.append((cube, tile, sub_wcs, out))
            if kept is not None:
                self._cache[key] = (out, tile)  # holding the tile keeps its id unused
            prepared.append(PreparedTile(tile_index, region, state=(out, tile)))
        if len(jobs) > 1 and self._threads > 1:
            with ThreadPoolExecutor(min(self._threads, len(jobs))) as pool:
                list(pool.map(lambda job: _reproject(*job), jobs))
        else:
            for job in jobs:
                _reproject(*job)
        return prepared

    def sample(self, prepared: PreparedTile, channel: int) -> tuple[Any, Any]:
        """Values and ``f * W`` of one channel (docs/architecture.md §3)."""
        out, tile = prepared.state
        values = out[channel]
        valid = np.isfinite(values)
        weight: Any = np.float32(tile.tile_weight)
        if tile.weight_map is not None:
            plane = out[-1]
            valid &= np.isfinite(plane)
            weight = weight * plane
        return masked_samples(values, valid, weight, np)

    def release(self, prepared: PreparedTile) -> None:
        prepared.state = None

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def memory_budget(self) -> int:
        return self._budget

    def device_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """No device here: a failure on the CPU is what it is, never a ``BackendError``
        (the orchestrator has nothing to fall back to)."""
        return contextlib.nullcontext()

    def end_build(self) -> None:
        """Drop the resampled tiles (the scratch space owns and removes their files)."""
        self._cache.clear()
