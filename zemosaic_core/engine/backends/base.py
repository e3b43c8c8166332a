"""The backend interface: what a pass needs from the CPU or the GPU.

A backend is a *resampler* bound to an array module ``xp`` (NumPy or CuPy). The
coadd driver (:mod:`zemosaic_core.engine.coadd`) is written once against that interface and
does the accumulation, the chunking and the combines, so both backends share one
implementation of the coverage contract (:mod:`zemosaic_core.engine.coverage`).

A backend never falls back to another one by itself: any failure is raised as
:class:`~zemosaic_core.errors.BackendError`, and the orchestrator
(:mod:`zemosaic_core.engine.passes`) decides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from ...geometry.planning import BoundingBox, MosaicPlan
from ...tile import TileLike

__all__ = ["Backend", "PreparedTile"]


@dataclass
class PreparedTile:
    """One tile mapped onto one region of the output grid, ready to sample per channel.

    Attributes
    ----------
    tile_index : int
        Index of the tile in the pass's tile list.
    region : BoundingBox
        Output pixels this preparation covers (a part of the tile's box).
    state : Any
        Backend-private data (device arrays, coordinate maps, resampled planes...).
    """

    tile_index: int
    region: BoundingBox
    state: Any = field(default=None, repr=False)


class Backend(Protocol):
    """What the coadd driver needs from a backend.

    Every member is required: the driver and the two-pass call them directly, so a
    backend that lacks one fails type checking instead of being probed at run time.

    Attributes
    ----------
    name : {"cpu", "gpu"}
        The backend recorded in results and in the FITS card ``BACKEND``.
    xp : module
        Array module of the arrays this backend returns (numpy or cupy).
    """

    name: str
    xp: ModuleType

    @property
    def prepare_threads(self) -> int:
        """How many tiles :meth:`prepare_many` works on at once (>= 1); callers hand it
        that many at a time so that progress and cancel stay responsive."""
        ...

    def begin_pass(self, pass_index: int) -> None:
        """Called once before a pass (1 = first coadd, 2 = two-pass)."""
        ...

    def prepare(
        self, tile: TileLike, tile_index: int, region: BoundingBox, plan: MosaicPlan
    ) -> PreparedTile:
        """Compute the mapping of ``tile`` onto ``region`` (once, shared by all channels)."""
        ...

    def prepare_many(
        self, requests: Sequence[tuple[TileLike, int, BoundingBox]], plan: MosaicPlan
    ) -> list[PreparedTile]:
        """:meth:`prepare` for each ``(tile, tile_index, region)``, in order (in
        parallel where the backend can)."""
        ...

    def sample(self, prepared: PreparedTile, channel: int) -> tuple[Any, Any]:
        """Resample one channel of a prepared tile.

        Returns
        -------
        values : xp.ndarray, float32, shape ``region.shape``
            Bilinear samples; 0 where ``weights`` is 0.
        weights : xp.ndarray, float32, shape ``region.shape``
            ``f * W`` of docs/architecture.md §3: the tile weight times the resampled weight map where
            the position is inside the tile's pixel domain and the sample is finite;
            0 elsewhere.
        """
        ...

    def release(self, prepared: PreparedTile) -> None:
        """Drop what ``prepare`` holds for this tile."""
        ...

    def to_host(self, array: Any) -> np.ndarray:
        """Copy an ``xp`` array to a NumPy array."""
        ...

    def memory_budget(self) -> int:
        """Bytes this backend may use for accumulators and stacks in one chunk."""
        ...

    def device_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """A context in which failures of device work done *outside* the backend (the
        driver's accumulators and reductions on ``xp``) become ``BackendError``, so the
        orchestrator's fallback sees every device failure. Only device failures are
        translated: any other exception is a bug and propagates as it is."""
        ...

    def end_build(self) -> None:
        """Free pools and caches once a build ends (success, error or cancel)."""
        ...
