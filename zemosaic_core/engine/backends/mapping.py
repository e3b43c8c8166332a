"""Coordinate maps for the ``gpu`` backend: output pixels -> a tile's pixels.

The exact transform is astropy's (``pixel_to_pixel``, full WCS, SIP included), as
``reproject_interp`` uses it (see :func:`exact_positions`). Evaluating it at every output pixel is what makes the CPU
backend slow, so the GPU engine evaluates it on a coarse grid of output pixels only,
uploads that grid, and upsamples it bilinearly to every pixel on the device.

Grid
    Nodes sit at multiples of the step from the origin of a *frame* (the tile's box on
    the output grid), and the node rows and columns of a region run from the last node
    at or before its first pixel to the first node at or after its last pixel, so the
    last row and column are always bracketed (interpolated, never extrapolated). A row
    chunk of the box therefore sees exactly the nodes the whole box would: the map, and
    so the mosaic, does not depend on how the output is cut into chunks.
Step
    Chosen once per tile box by :func:`choose_step`: the exact transform is also
    evaluated half-way between the nodes (cell centres and edge midpoints), where
    bilinear interpolation errs most, and the step (32 px first) is halved until the
    error there is at most :data:`MAP_TOLERANCE`. That tolerance is well under the 1e-3 px
    edge band of docs/architecture.md §3, so the ``gpu`` coverage equals the ``cpu`` coverage outside
    that band (and it is far under the 0.01 px the design asks of the map itself).
Fallback
    Where a node is not finite (a tile wrapping the projection, a failed round trip), or
    where a grid would cost as much as the full transform, every pixel goes through the
    exact transform.

Like ``reproject_interp`` (``roundtrip_coords=True``), positions whose round trip back
to the output grid misses by more than one pixel are NaN (no data).

Grid-aligned tiles
    When a tile's pixel grid is the output grid shifted by whole pixels
    (:func:`~zemosaic_core.geometry.planning.grid_offset`), both backends copy the tile
    instead of resampling it (:func:`shifted_placement`): a transform carries ~1e-10 px
    of jitter, and a bilinear sample a hair off an integer position next to a NaN
    pixel is NaN, so the copy is the only way both backends keep every valid pixel.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from astropy.wcs import WCS, NoConvergence
from astropy.wcs.utils import pixel_to_pixel, wcs_to_celestial_frame

logger = logging.getLogger(__name__)

#: First grid step tried, in output pixels.
DEFAULT_STEP = 32
#: Largest interpolation error accepted at the check points, in tile pixels.
MAP_TOLERANCE = 2e-4
#: A round trip (output -> tile -> output) that misses by more than this is "no data".
ROUNDTRIP_TOLERANCE = 1.0
#: Transforms per node of a grid (the node, its round trip, ~4 check points).
_COST_PER_NODE = 6


@dataclass(frozen=True)
class Placement:
    """Where a grid-aligned tile lands in an output region: ``out[out_slices] =
    tile[tile_slices]``, nothing elsewhere."""

    tile_slices: tuple[slice, slice]
    out_slices: tuple[slice, slice]


def shifted_placement(
    tile_shape: tuple[int, int], offset: tuple[int, int], out_shape: tuple[int, int]
) -> Placement | None:
    """The overlap of a tile shifted by ``offset = (dy, dx)`` with an output region.

    Output pixel ``(y, x)`` is tile pixel ``(y - dy, x - dx)``. Returns ``None`` when the
    shifted tile misses the region.
    """
    dy, dx = offset
    y0, x0 = max(0, dy), max(0, dx)
    y1 = min(out_shape[0], tile_shape[0] + dy)
    x1 = min(out_shape[1], tile_shape[1] + dx)
    if y1 <= y0 or x1 <= x0:
        return None
    return Placement(
        tile_slices=(slice(y0 - dy, y1 - dy), slice(x0 - dx, x1 - dx)),
        out_slices=(slice(y0, y1), slice(x0, x1)),
    )


@dataclass
class CoordinateMap:
    """Tile pixel positions of every output pixel of a region.

    Attributes
    ----------
    x, y : xp.ndarray, float64, shape ``(H, W)``
        Column and row positions in the tile (0-based, pixel centres at integers); NaN
        where the transform is undefined.
    step : int
        Grid step used (1 when the exact transform was evaluated at every pixel).
    bounds : (float, float, float, float) or None
        ``(xmin, xmax, ymin, ymax)`` of the finite positions (host floats), ``None``
        when no position is finite. Bilinear upsampling never leaves the nodes' hull,
        so these bound every value of ``x`` and ``y``.
    """

    x: Any
    y: Any
    step: int
    bounds: tuple[float, float, float, float] | None

    @property
    def exact(self) -> bool:
        """True when every pixel went through the exact transform."""
        return self.step == 1


def _same_celestial_frame(a: WCS, b: WCS) -> bool:
    """True when two celestial WCS share frame and axis order (no frame conversion needed)."""
    try:
        return (
            a.naxis == 2
            and b.naxis == 2
            and (a.wcs.lng, a.wcs.lat) == (b.wcs.lng, b.wcs.lat)
            and a.wcs.lng >= 0
            and wcs_to_celestial_frame(a).is_equivalent_frame(wcs_to_celestial_frame(b))
        )
    except Exception:  # not a plain celestial FITS WCS: let pixel_to_pixel sort it out
        return False


def _transform(src: WCS, dst: WCS, x: np.ndarray, y: np.ndarray, direct: bool):
    """Pixel positions of ``src`` -> pixel positions of ``dst`` (float64, shape of ``x``).

    ``direct``: both share a celestial frame, so ``all_pix2world`` then ``all_world2pix``
    give what astropy's ``pixel_to_pixel`` gives (it makes the same two calls, plus a
    frame conversion that is then the identity) without its per-call overhead.
    """
    if not direct:
        xo, yo = pixel_to_pixel(src, dst, x, y)
    else:
        lon, lat = src.all_pix2world(x, y, 0)
        try:
            xo, yo = dst.all_world2pix(lon, lat, 0)
        except NoConvergence as exc:
            # As astropy's world_to_pixel does: keep the best solution it found.
            best = np.asarray(exc.best_solution, dtype=np.float64)
            xo, yo = best[:, 0], best[:, 1]
    return (
        np.array(xo, dtype=np.float64).reshape(x.shape),
        np.array(yo, dtype=np.float64).reshape(x.shape),
    )


def exact_positions(
    out_wcs: WCS, tile_wcs: WCS, x: np.ndarray, y: np.ndarray, *, roundtrip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Tile pixel positions of output pixel positions, with astropy (host, float64).

    The transform of ``astropy.wcs.utils.pixel_to_pixel`` (full WCS, SIP included);
    when both WCS share a celestial frame it is evaluated through the low-level
    ``all_pix2world``/``all_world2pix`` calls directly, which is much cheaper on the
    small arrays of a coarse grid.

    Parameters
    ----------
    out_wcs, tile_wcs : WCS
        Output (sub-)grid and tile WCS.
    x, y : ndarray
        Output pixel positions (any shape, same shape).
    roundtrip : bool
        Set positions to NaN where the transform back misses by more than
        :data:`ROUNDTRIP_TOLERANCE` px (as ``reproject_interp`` does).

    Returns
    -------
    xt, yt : ndarray, float64
        Positions in the tile, shaped like ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return x.copy(), y.copy()
    direct = _same_celestial_frame(out_wcs, tile_wcs)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # NoConvergence and NaN warnings far off a tile
        xt, yt = _transform(out_wcs, tile_wcs, x, y, direct)
        if roundtrip:
            xb, yb = _transform(tile_wcs, out_wcs, xt, yt, direct)
            # NaN comparisons are False: a NaN round trip leaves the (already NaN) output.
            reset = (np.abs(xb - x) > ROUNDTRIP_TOLERANCE) | (np.abs(yb - y) > ROUNDTRIP_TOLERANCE)
            xt[reset] = np.nan
            yt[reset] = np.nan
    return xt, yt


def anchored_nodes(start: int, stop: int, step: int) -> np.ndarray:
    """Multiples of ``step`` that bracket the pixels ``start .. stop - 1``.

    Raises
    ------
    ValueError
        ``stop <= start`` or ``step < 1``.
    """
    if stop <= start or step < 1:
        raise ValueError(f"pixels {start}..{stop - 1} with step {step} px")
    first = (start // step) * step
    last = -(-(stop - 1) // step) * step
    return np.arange(first, last + 1, step, dtype=np.float64)


@dataclass(frozen=True)
class AxisWeights:
    """Bilinear interpolation along one axis: ``value = a[k0] + t * (a[k1] - a[k0])``."""

    k0: np.ndarray
    k1: np.ndarray
    t: np.ndarray


def axis_weights(nodes: np.ndarray, targets: np.ndarray) -> AxisWeights:
    """Interval indices and fractions of ``targets`` between increasing ``nodes``.

    Targets outside ``[nodes[0], nodes[-1]]`` extrapolate linearly from the end interval.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if nodes.size == 1:
        zeros = np.zeros(targets.shape, dtype=np.intp)
        return AxisWeights(zeros, zeros, np.zeros(targets.shape, dtype=np.float64))
    k0 = np.clip(np.searchsorted(nodes, targets, side="right") - 1, 0, nodes.size - 2)
    k1 = k0 + 1
    t = (targets - nodes[k0]) / (nodes[k1] - nodes[k0])
    return AxisWeights(k0.astype(np.intp), k1.astype(np.intp), t)


def upsample(coarse: Any, wy: AxisWeights, wx: AxisWeights, xp: ModuleType = np) -> Any:
    """Bilinear upsampling of ``coarse[..., ny, nx]`` to ``[..., len(wy.t), len(wx.t)]``.

    Runs on ``xp`` (NumPy or CuPy): ``coarse`` must be an ``xp`` array; the weights are
    uploaded here. Separable: along x for every node row first, then along y.
    """
    kx0, kx1, tx = (xp.asarray(a) for a in (wx.k0, wx.k1, wx.t))
    ky0, ky1, ty = (xp.asarray(a) for a in (wy.k0, wy.k1, wy.t))
    left = coarse[..., kx0]
    rows = left + tx * (coarse[..., kx1] - left)
    top = rows[..., ky0, :]
    return top + ty[:, None] * (rows[..., ky1, :] - top)


def _bounds(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float] | None:
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return None
    xs, ys = x[finite], y[finite]
    return float(xs.min()), float(xs.max()), float(ys.min()), float(ys.max())


def _grid_cost(shape: tuple[int, int], step: int) -> int:
    """Transforms a grid of ``step`` costs (nodes, round trips, check points)."""
    ny = math.ceil((shape[0] - 1) / step) + 1
    nx = math.ceil((shape[1] - 1) / step) + 1
    return _COST_PER_NODE * ny * nx


def _interpolation_error(out_wcs: WCS, tile_wcs: WCS, shape: tuple[int, int], step: int) -> float:
    """Largest bilinear-map error half-way between the nodes of a grid (inf if undefined)."""
    ny, nx = anchored_nodes(0, shape[0], step), anchored_nodes(0, shape[1], step)
    gx, gy = np.meshgrid(nx, ny)
    xt, yt = exact_positions(out_wcs, tile_wcs, gx, gy, roundtrip=False)
    if not (np.isfinite(xt).all() and np.isfinite(yt).all()):
        return math.inf
    # Nodes and the midpoints between them: cell centres and edge midpoints included.
    ry = np.arange(ny[0], ny[-1] + 0.25 * step, 0.5 * step)
    rx = np.arange(nx[0], nx[-1] + 0.25 * step, 0.5 * step)
    cx, cy = np.meshgrid(rx, ry)
    ex, ey = exact_positions(out_wcs, tile_wcs, cx, cy, roundtrip=False)
    interp = upsample(np.stack([xt, yt]), axis_weights(ny, ry), axis_weights(nx, rx), np)
    with np.errstate(invalid="ignore"):
        error = np.hypot(interp[0] - ex, interp[1] - ey)
    return float(error.max()) if np.isfinite(error).all() else math.inf


def choose_step(
    out_wcs: WCS,
    tile_wcs: WCS,
    shape: tuple[int, int],
    *,
    step: int = DEFAULT_STEP,
    tolerance: float = MAP_TOLERANCE,
) -> tuple[int, float]:
    """The coarsest grid step whose bilinear map of a frame errs at most ``tolerance``.

    Parameters
    ----------
    out_wcs : WCS
        WCS of the frame (the tile's box on the output grid).
    tile_wcs : WCS
        The tile's full WCS (SIP included).
    shape : (int, int)
        ``(H, W)`` of the frame.
    step : int
        First step tried; halved until the error is within ``tolerance``.
    tolerance : float
        Largest error accepted half-way between nodes, in tile pixels.

    Returns
    -------
    step : int
        The step, or 1 when every pixel must go through the exact transform (a node
        not finite, or no grid cheaper than the exact transform is good enough).
    error : float
        The error measured for that step (0 for the exact transform).
    """
    s = max(1, int(step))
    while s >= 2 and _grid_cost(shape, s) < shape[0] * shape[1]:
        error = _interpolation_error(out_wcs, tile_wcs, shape, s)
        if error <= tolerance:
            return s, error
        logger.debug("coordinate map: step %d px errs %.2e px (> %.1e)", s, error, tolerance)
        if not math.isfinite(error):
            break
        s //= 2
    return 1, 0.0


def coordinate_map(
    out_wcs: WCS,
    tile_wcs: WCS,
    shape: tuple[int, int],
    xp: ModuleType = np,
    *,
    step: int | None = None,
    origin: tuple[int, int] = (0, 0),
    tolerance: float = MAP_TOLERANCE,
) -> CoordinateMap:
    """Map every pixel of an output region into a tile, on the device.

    Parameters
    ----------
    out_wcs : WCS
        WCS of the frame the nodes are anchored to (the tile's box,
        ``plan.sub_wcs(box)``, or the region itself).
    tile_wcs : WCS
        The tile's full WCS (SIP included).
    shape : (int, int)
        ``(H, W)`` of the region.
    xp : module
        Array module of the result (NumPy or CuPy).
    step : int, optional
        Grid step (from :func:`choose_step` on the frame); 1 = exact transform at every
        pixel. Default: chosen here, on the region.
    origin : (int, int)
        ``(row, col)`` of the region's first pixel in the frame.
    tolerance : float
        Error bound for the step chosen here (when ``step`` is None).

    Returns
    -------
    CoordinateMap
    """
    height, width = shape
    row0, col0 = origin
    if step is None:
        step, _ = choose_step(out_wcs, tile_wcs, shape, tolerance=tolerance)
    rows = np.arange(row0, row0 + height, dtype=np.float64)
    cols = np.arange(col0, col0 + width, dtype=np.float64)
    if step > 1:
        ny = anchored_nodes(row0, row0 + height, step)
        nx = anchored_nodes(col0, col0 + width, step)
        gx, gy = np.meshgrid(nx, ny)
        xt, yt = exact_positions(out_wcs, tile_wcs, gx, gy, roundtrip=True)
        if np.isfinite(xt).all() and np.isfinite(yt).all():
            full = upsample(
                xp.asarray(np.stack([xt, yt])),
                axis_weights(ny, rows),
                axis_weights(nx, cols),
                xp,
            )
            return CoordinateMap(x=full[0], y=full[1], step=step, bounds=_bounds(xt, yt))
        logger.debug("coordinate map: a node has no position; exact transform")
    gx, gy = np.meshgrid(cols, rows)
    xt, yt = exact_positions(out_wcs, tile_wcs, gx, gy, roundtrip=True)
    return CoordinateMap(x=xp.asarray(xt), y=xp.asarray(yt), step=1, bounds=_bounds(xt, yt))
