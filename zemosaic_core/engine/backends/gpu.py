"""The ``gpu`` backend: one engine written against an array module (docs/architecture.md §4).

On a CUDA machine the engine runs on CuPy + ``cupyx.scipy.ndimage``; with
``ZEMOSAIC_GPU_SIMULATE=1`` (or ``simulate=True``) the very same code runs on NumPy +
``scipy.ndimage`` as a simulated device, so CI exercises the GPU code path.

Per tile and output region, :meth:`GpuBackend.prepare`

1. maps the region's output pixels into the tile (:mod:`.mapping`: exact astropy
   transform on a coarse grid, bilinear upsampling on the device);
2. applies reproject's edge rule once: per axis, positions in ``[-0.5, 0)`` sample
   pixel 0, positions in ``[n - 1, n - 0.5)`` sample pixel ``n - 1``, positions outside
   ``[-0.5, n - 0.5)`` (or NaN) are outside the tile (f = 0);
3. uploads the tile's channels (and its weight map) once, cropped to the rows and
   columns the mapping touches plus a one-pixel margin, so a tile crosses the bus once
   per pass and not once per channel.

A tile whose pixel grid is the output grid shifted by whole pixels is copied instead,
as the ``cpu`` backend does (see :mod:`.mapping`, "Grid-aligned tiles").

:meth:`GpuBackend.sample` then resamples one channel with
``ndimage.map_coordinates(order=1, mode="constant", cval=nan)`` — what
``reproject_interp`` calls on the CPU — and applies the f rule of docs/architecture.md §3 through
:func:`~zemosaic_core.engine.coverage.masked_samples`.

Device failures (CUDA errors, device out of memory; on the simulated device its
injected out-of-memory error) are raised as :class:`~zemosaic_core.errors.BackendError`,
which the orchestrator answers by rerunning the pass on the CPU. Any other exception (a
``TypeError`` from a bug, say) propagates unchanged: turned into a silent CPU fallback
it would hide the bug on every machine with a GPU. The backend never falls back to the
CPU by itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ...errors import BackendError, ZeMosaicError
from ...geometry.planning import BoundingBox, MosaicPlan, grid_offset
from ...runtime.memory import default_budget
from ...tile import TileLike
from ..coverage import masked_samples
from .base import PreparedTile
from .device import FailSpec, array_modules, simulated_failure, simulation_enabled
from .mapping import Placement, choose_step, coordinate_map, shifted_placement

logger = logging.getLogger(__name__)

#: Share of the free device memory a build may plan to use.
VRAM_FRACTION = 0.6


class SimulatedOutOfMemory(MemoryError):
    """The out-of-memory error the simulated device raises on request.

    Raised inside the backend (``ZEMOSAIC_GPU_SIMULATE_FAIL``) and wrapped, like a real
    CuPy ``OutOfMemoryError``, into :class:`~zemosaic_core.errors.BackendError`.
    """


#: Top-level packages whose exceptions are failures of the CUDA stack (CuPy raises
#: ``CUDARuntimeError``, ``CUDADriverError``, ``CUBLASError``, ``CompileException``...
#: from these; their names and homes vary between CuPy versions, their packages don't).
_DEVICE_PACKAGES = frozenset({"cupy", "cupy_backends", "cupyx", "cuda"})


def is_device_error(exc: BaseException) -> bool:
    """True when ``exc`` is a failure of the device, not a bug in the code driving it.

    Out of memory (CuPy's ``OutOfMemoryError`` is a ``MemoryError``, and so is the
    simulated device's :class:`SimulatedOutOfMemory`) and any exception raised by the
    CUDA stack's own packages. A ``TypeError``, ``ValueError``, ``IndexError``... raised
    by NumPy, SciPy or our code is not: it must surface as the bug it is.
    """
    if isinstance(exc, MemoryError):
        return True
    return type(exc).__module__.split(".")[0] in _DEVICE_PACKAGES


@dataclass
class _TileState:
    """What :meth:`GpuBackend.prepare` holds for one tile and region (device arrays).

    Attributes
    ----------
    coords : xp.ndarray, float64, (2, H, W), or None
        ``(row, col)`` positions in the uploaded window, edge rule applied (0 where the
        position is outside the tile). ``None`` when the tile is copied (``placement``)
        or the region misses the tile.
    valid : xp.ndarray, bool, (H, W)
        Inside the tile's pixel domain (and the weight-map sample is finite).
    weight : xp.ndarray float32 (H, W), or numpy.float32
        ``W = t * w(p)``: the tile weight times the resampled weight map.
    cube : xp.ndarray, float32, (C, h, w), or None
        The tile's channels cropped to the window the mapping touches; ``None`` when
        the region misses the tile.
    tile_name : str
        For error messages.
    placement : Placement, optional
        Set when the tile sits on the output grid: ``cube`` is copied there, exactly as
        the cpu backend does, instead of being resampled.
    """

    coords: Any
    valid: Any
    weight: Any
    cube: Any
    tile_name: str
    placement: Placement | None = None


def _edge_rule(position: Any, n: int, xp: ModuleType) -> tuple[Any, Any]:
    """reproject's edge rule along one axis of ``n`` pixels.

    Returns the clamped positions and the mask of positions inside ``[-0.5, n - 0.5)``
    (NaN -> outside). Positions in ``[-0.5, 0)`` become 0 and positions in
    ``[n - 1, n - 0.5)`` become ``n - 1``, so the bilinear sample there is the edge pixel.
    """
    inside = (position >= -0.5) & (position < n - 0.5)
    clamped = xp.minimum(xp.maximum(position, 0.0), float(n - 1))
    return clamped, inside


def _window(lo: float, hi: float, n: int) -> tuple[int, int]:
    """Pixels ``[start, stop)`` that bilinear samples at ``[lo, hi]`` need, plus 1 px margin.

    ``lo``/``hi`` are clamped into ``[0, n - 1]`` first (the edge rule).
    """
    lo = min(max(lo, 0.0), n - 1.0)
    hi = min(max(hi, 0.0), n - 1.0)
    return max(0, math.floor(lo) - 1), min(n, math.floor(hi) + 3)


class GpuBackend:
    """Resampling on a GPU with CuPy, or on NumPy as a simulated device.

    Parameters
    ----------
    memory_budget : int, optional
        Bytes for accumulators and stacks of one chunk. Default: 60 % of the free device
        memory (simulated: `default_budget`). With a real device, the smaller of the two.
    simulate : bool, optional
        Run on NumPy as a simulated device. Default: ``ZEMOSAIC_GPU_SIMULATE``.

    Raises
    ------
    BackendError
        Not simulated and CuPy cannot be imported or sees no CUDA device.

    Attributes
    ----------
    name : str
        Always ``"gpu"``, simulated or not.
    xp : module
        ``cupy``, or ``numpy`` when simulated.
    ndimage : module
        ``cupyx.scipy.ndimage``, or ``scipy.ndimage`` when simulated.
    simulated : bool
    """

    name = "gpu"

    def __init__(self, memory_budget: int | None = None, simulate: bool | None = None) -> None:
        self.simulated = simulation_enabled() if simulate is None else bool(simulate)
        self.xp, self.ndimage = array_modules(self.simulated)
        self._budget = int(memory_budget) if memory_budget else None
        self._pass_index = 1
        self._fail: FailSpec | None = None
        # (tile index, frame) -> (plan WCS, tile WCS, frame WCS, grid step), per build.
        self._frames: dict[tuple[int, BoundingBox], tuple[Any, Any, Any, int]] = {}
        if not self.simulated:
            with self._device_errors("opening the CUDA device"):
                if int(self.xp.cuda.runtime.getDeviceCount()) < 1:
                    raise BackendError("GPU backend: no CUDA device found")
        logger.debug("gpu backend on %s", "NumPy (simulated)" if self.simulated else "CuPy")

    # -- errors ---------------------------------------------------------------------

    @contextmanager
    def _device_errors(self, action: str) -> Iterator[None]:
        """Turn a device failure (:func:`is_device_error`) into a BackendError naming
        ``action``; every other exception propagates unchanged."""
        try:
            yield
        except ZeMosaicError:  # BackendError, and a cancel is not a device failure
            raise
        except Exception as exc:
            if not is_device_error(exc):
                raise
            raise BackendError(self._describe(action, exc)) from exc

    def device_errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        """Public form of the error translation, for device work done by the driver
        (accumulators, reductions) outside this object's own methods."""
        return self._device_errors(action)

    def _describe(self, action: str, exc: BaseException) -> str:
        kind = type(exc).__name__
        detail = str(exc)
        if isinstance(exc, SimulatedOutOfMemory):
            return f"simulated GPU out of memory while {action}"
        what = "GPU out of memory" if isinstance(exc, MemoryError) else "CUDA error"
        return f"{what} while {action}: {kind}: {detail}" if detail else f"{what} while {action}"

    def _check_injected_failure(self, channel: int, tile_name: str) -> None:
        if (
            self.simulated
            and self._fail is not None
            and self._fail.matches(self._pass_index, channel)
        ):
            raise SimulatedOutOfMemory(
                f"out of memory on the simulated device (channel {channel}, pass "
                f"{self._pass_index}, tile {tile_name})"
            )

    # -- Backend protocol ------------------------------------------------------------

    @property
    def prepare_threads(self) -> int:
        """One tile at a time: the device works on one tile's arrays after another."""
        return 1

    def begin_pass(self, pass_index: int) -> None:
        """Remember the pass (for fault injection) and read ``ZEMOSAIC_GPU_SIMULATE_FAIL``."""
        self._pass_index = int(pass_index)
        self._fail = simulated_failure() if self.simulated else None

    def prepare(
        self, tile: TileLike, tile_index: int, region: BoundingBox, plan: MosaicPlan
    ) -> PreparedTile:
        """Map ``region`` into ``tile`` and upload the part of the tile it touches.

        Parameters
        ----------
        tile : TileLike
        tile_index : int
            Index of the tile in the pass.
        region : BoundingBox
            Output pixels to cover (part of the tile's box).
        plan : MosaicPlan

        Returns
        -------
        PreparedTile
            Holds the device coordinate map, validity, weights and the tile window;
            shared by every channel.

        Raises
        ------
        BackendError
            Any failure while computing, uploading or resampling on the device.
        """
        action = f"preparing tile {tile.name} (pass {self._pass_index})"
        with self._device_errors(action):
            state = self._prepare(tile, tile_index, region, plan)
        return PreparedTile(tile_index=tile_index, region=region, state=state)

    def prepare_many(
        self, requests: Sequence[tuple[TileLike, int, BoundingBox]], plan: MosaicPlan
    ) -> list[PreparedTile]:
        """:meth:`prepare` for each ``(tile, tile_index, region)``, in order."""
        return [self.prepare(tile, i, region, plan) for tile, i, region in requests]

    def _frame(
        self, tile: TileLike, tile_index: int, region: BoundingBox, plan: MosaicPlan
    ) -> tuple[BoundingBox, Any, int]:
        """The frame the coarse grid is anchored to, its WCS, and the tile's grid step.

        The frame is the tile's box, so every row chunk of it sees the same nodes and the
        mosaic does not depend on the chunking. Frame WCS and step are computed once per
        tile and plan and kept for the build.
        """
        box = plan.bboxes[tile_index] if tile_index < len(plan.bboxes) else region
        if box.intersect(region) != region:
            box = region
        key = (tile_index, box)
        cached = self._frames.get(key)
        if cached is not None and cached[0] is plan.wcs and cached[1] is tile.wcs:
            return box, cached[2], cached[3]
        frame_wcs = plan.sub_wcs(box)
        step, error = choose_step(frame_wcs, tile.wcs, box.shape)
        self._frames[key] = (plan.wcs, tile.wcs, frame_wcs, step)
        logger.debug(
            "tile %s: coordinate grid step %d px (max error %.1e px)", tile.name, step, error
        )
        return box, frame_wcs, step

    def _prepare(
        self, tile: TileLike, tile_index: int, region: BoundingBox, plan: MosaicPlan
    ) -> _TileState:
        offset = grid_offset(tile.wcs, plan.sub_wcs(region))
        if offset is not None:
            return self._prepare_copy(tile, region, offset)
        xp = self.xp
        height, width = tile.shape
        box, frame_wcs, step = self._frame(tile, tile_index, region, plan)
        cmap = coordinate_map(
            frame_wcs,
            tile.wcs,
            region.shape,
            xp,
            step=step,
            origin=(region.y0 - box.y0, region.x0 - box.x0),
        )
        empty = _TileState(None, None, np.float32(0), None, tile.name)
        if cmap.bounds is None:
            return empty
        xmin, xmax, ymin, ymax = cmap.bounds
        if xmax < -0.5 or xmin >= width - 0.5 or ymax < -0.5 or ymin >= height - 0.5:
            return empty  # the region lies beside the tile: nothing to sample
        y0, y1 = _window(ymin, ymax, height)
        x0, x1 = _window(xmin, xmax, width)

        cx, inside_x = _edge_rule(cmap.x, width, xp)
        cy, inside_y = _edge_rule(cmap.y, height, xp)
        valid = inside_x & inside_y
        del cmap
        zero = xp.float64(0)
        # Window-relative positions (exact: integer shifts); 0 where outside the tile.
        coords = xp.stack([xp.where(valid, cy - y0, zero), xp.where(valid, cx - x0, zero)])
        del cx, cy, inside_x, inside_y

        cube = xp.asarray(np.ascontiguousarray(tile.data[:, y0:y1, x0:x1], dtype=np.float32))
        weight: Any = np.float32(tile.tile_weight)
        if tile.weight_map is not None:
            # NaN weights mean "no weight", as in the cpu backend (reproject_and_coadd).
            window = np.nan_to_num(tile.weight_map[y0:y1, x0:x1], nan=0.0)
            plane = self._resample(
                xp.asarray(np.ascontiguousarray(window, dtype=np.float32)), coords
            )
            valid &= xp.isfinite(plane)
            weight = plane * np.float32(tile.tile_weight)
        return _TileState(coords=coords, valid=valid, weight=weight, cube=cube, tile_name=tile.name)

    def _prepare_copy(
        self, tile: TileLike, region: BoundingBox, offset: tuple[int, int]
    ) -> _TileState:
        """A tile on the output grid, shifted by whole pixels: copied, not resampled."""
        xp = self.xp
        placement = shifted_placement(tile.shape, offset, region.shape)
        if placement is None:
            return _TileState(None, None, np.float32(0), None, tile.name)
        window = (slice(None), *placement.tile_slices)
        cube = xp.asarray(np.ascontiguousarray(tile.data[window], dtype=np.float32))
        valid = xp.zeros(region.shape, dtype=bool)
        valid[placement.out_slices] = True
        weight: Any = np.float32(tile.tile_weight)
        if tile.weight_map is not None:
            # NaN weights mean "no weight", as in the cpu backend (reproject_and_coadd).
            plane = xp.zeros(region.shape, dtype=xp.float32)
            cut = np.nan_to_num(tile.weight_map[placement.tile_slices], nan=0.0)
            plane[placement.out_slices] = xp.asarray(cut.astype(np.float32))
            weight = plane * np.float32(tile.tile_weight)
        return _TileState(None, valid, weight, cube, tile.name, placement=placement)

    def _resample(self, plane: Any, coords: Any) -> Any:
        """Bilinear samples of ``plane`` at ``coords`` (NaN outside), float32."""
        return self.ndimage.map_coordinates(
            plane,
            coords,
            output=self.xp.float32,
            order=1,
            mode="constant",
            cval=float("nan"),
            prefilter=False,
        )

    def sample(self, prepared: PreparedTile, channel: int) -> tuple[Any, Any]:
        """Values and ``f * W`` of one channel of a prepared tile (docs/architecture.md §3).

        Returns
        -------
        values, weights : xp.ndarray, float32, shape ``prepared.region.shape``

        Raises
        ------
        BackendError
            Any device failure (including the simulated out-of-memory error).
        """
        state: _TileState = prepared.state
        action = f"processing channel {channel} of tile {state.tile_name} (pass {self._pass_index})"
        with self._device_errors(action):
            self._check_injected_failure(channel, state.tile_name)
            xp = self.xp
            if state.cube is None:
                zeros = xp.zeros(prepared.region.shape, dtype=xp.float32)
                return zeros, zeros.copy()
            if state.placement is not None:
                values = xp.full(prepared.region.shape, np.nan, dtype=xp.float32)
                values[state.placement.out_slices] = state.cube[channel]
            else:
                values = self._resample(state.cube[channel], state.coords)
            valid = state.valid & xp.isfinite(values)
            return masked_samples(values, valid, state.weight, xp)

    def release(self, prepared: PreparedTile) -> None:
        """Drop the device arrays of a prepared tile (they return to CuPy's pool)."""
        prepared.state = None

    def to_host(self, array: Any) -> np.ndarray:
        """Copy a device array to a NumPy array.

        Raises
        ------
        BackendError
            The copy failed (a CUDA error surfacing at synchronisation).
        """
        with self._device_errors("copying a result to the host"):
            if self.simulated:
                return np.asarray(array)
            return self.xp.asnumpy(array)

    def memory_budget(self) -> int:
        """Bytes one chunk may use on the device.

        Simulated: the given budget, else `default_budget`. Real: 60 % of the free device
        memory, or the given budget when that is smaller.
        """
        if self.simulated:
            return self._budget or default_budget()
        with self._device_errors("reading the free device memory"):
            free, _total = self.xp.cuda.Device().mem_info
        budget = int(free * VRAM_FRACTION)
        return min(budget, self._budget) if self._budget else budget

    def end_build(self) -> None:
        """Free CuPy's default and pinned memory pools (nothing to do when simulated).

        Never raises: freeing must not mask the outcome of a build (failures are logged).
        """
        self._frames.clear()
        if self.simulated:
            return
        try:
            self.xp.get_default_memory_pool().free_all_blocks()
            self.xp.get_default_pinned_memory_pool().free_all_blocks()
        except Exception:
            # DEBUG: after a CUDA failure this often fails too, and the pass has already
            # said its one WARNING.
            logger.debug("freeing the GPU memory pools failed", exc_info=True)
