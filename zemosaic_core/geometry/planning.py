"""Planning: the output grid of a mosaic and where each tile lands on it (docs/architecture.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from reproject.mosaicking import find_optimal_celestial_wcs

from ..config import DEFAULT_MAX_SIZE_PX, setting_name
from ..errors import InputError, PlanningError, printable_path
from ..stats import mad_std
from ..tile import TileLike
from .graph import component_labels

logger = logging.getLogger(__name__)

#: Samples per image edge when projecting a tile's outline onto the output grid. The
#: same rule (and count) as ``reproject_and_coadd``, so both backends cut identical boxes.
EDGE_SAMPLES = 11


@dataclass(frozen=True)
class BoundingBox:
    """A half-open rectangle ``[y0, y1) x [x0, x1)`` of output pixels."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def is_empty(self) -> bool:
        return self.y1 <= self.y0 or self.x1 <= self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def intersect(self, other: BoundingBox) -> BoundingBox:
        return BoundingBox(
            max(self.y0, other.y0),
            min(self.y1, other.y1),
            max(self.x0, other.x0),
            min(self.x1, other.x1),
        )

    def overlaps(self, other: BoundingBox) -> bool:
        return not self.intersect(other).is_empty

    def relative_to(self, outer: BoundingBox) -> tuple[slice, slice]:
        """Slices that pick this box out of an array covering ``outer``."""
        return (
            slice(self.y0 - outer.y0, self.y1 - outer.y0),
            slice(self.x0 - outer.x0, self.x1 - outer.x0),
        )


@dataclass(frozen=True)
class MosaicPlan:
    """The output grid and each tile's box on it.

    Attributes
    ----------
    wcs : WCS
        Output celestial WCS.
    shape : (int, int)
        Output ``(H, W)``.
    bboxes : tuple of BoundingBox
        One per tile, in the order of the tiles the plan was made for.
    excluded : tuple of InputError
        The tiles left out of the plan (scale outliers, separate groups), with reasons.
    """

    wcs: WCS
    shape: tuple[int, int]
    bboxes: tuple[BoundingBox, ...]
    excluded: tuple[InputError, ...] = ()

    def sub_wcs(self, box: BoundingBox) -> WCS:
        """The output WCS of the sub-grid ``box`` (CRPIX shifted)."""
        return self.wcs[box.slices]


def sample_edges(shape: tuple[int, int], n_samples: int = EDGE_SAMPLES) -> np.ndarray:
    """Pixel positions ``(2, N)`` as ``(x, y)`` along the outer edge of an ``(H, W)`` image.

    Like reproject, the outline runs through the outer pixel edges (-0.5, n - 0.5).
    """
    height, width = shape
    xs = np.linspace(-0.5, width - 0.5, n_samples)
    ys = np.linspace(-0.5, height - 0.5, n_samples)
    top = np.stack([xs, np.full_like(xs, -0.5)])
    bottom = np.stack([xs, np.full_like(xs, height - 0.5)])
    left = np.stack([np.full_like(ys, -0.5), ys])
    right = np.stack([np.full_like(ys, width - 0.5), ys])
    return np.concatenate([top, bottom, left, right], axis=1)


def tile_bounding_box(
    tile_wcs: WCS, tile_shape: tuple[int, int], out_wcs: WCS, out_shape: tuple[int, int]
) -> BoundingBox:
    """The box of output pixels a tile can touch (empty when it lands off the grid)."""
    x, y = sample_edges(tile_shape)
    with np.errstate(invalid="ignore"):
        xo, yo = pixel_to_pixel(tile_wcs, out_wcs, x, y)
    xo, yo = np.asarray(xo, dtype=float), np.asarray(yo, dtype=float)
    if not (np.all(np.isfinite(xo)) and np.all(np.isfinite(yo))):
        # Outline not fully representable (e.g. wraps the projection): use the whole grid.
        return BoundingBox(0, out_shape[0], 0, out_shape[1])
    y0 = max(0, int(np.floor(yo.min() + 0.5)))
    y1 = min(out_shape[0], int(np.ceil(yo.max() + 0.5)))
    x0 = max(0, int(np.floor(xo.min() + 0.5)))
    x1 = min(out_shape[1], int(np.ceil(xo.max() + 0.5)))
    return BoundingBox(y0, max(y0, y1), x0, max(x0, x1))


def grid_offset(tile_wcs: WCS, out_wcs: WCS) -> tuple[int, int] | None:
    """``(dy, dx)`` when the tile's pixel grid is the output grid shifted by whole pixels.

    Then output pixel (y, x) is exactly tile pixel (y - dy, x - dx) and resampling is a
    copy; both backends use this so an identity mapping reproduces the tile exactly
    (a WCS round trip would otherwise leave ~1e-9 px of jitter).
    """
    shift = np.asarray(out_wcs.wcs.crpix) - np.asarray(tile_wcs.wcs.crpix)
    if not np.allclose(shift, np.round(shift), rtol=0, atol=1e-9):
        return None
    candidate = tile_wcs.deepcopy()
    candidate.wcs.crpix = np.asarray(tile_wcs.wcs.crpix) + np.round(shift)
    if not candidate.wcs.compare(out_wcs.wcs, tolerance=1e-12):
        return None
    distortions = ("sip", "cpdis1", "cpdis2", "det2im1", "det2im2")
    if any(getattr(w, d, None) is not None for w in (tile_wcs, out_wcs) for d in distortions):
        return None
    dx, dy = (int(v) for v in np.round(shift))
    return dy, dx


def _optimal_grid(tiles: Sequence[TileLike], north_up: bool = False) -> tuple[WCS, tuple[int, int]]:
    """The output grid: the minimum-area rotated canvas, or north up on request.

    A single pointing of a smart telescope is seldom aligned with north; a north-up
    canvas around it is about half empty. The rotation lives in the WCS (PC matrix).
    PlanningError when no canvas can be computed.
    """
    try:
        with np.errstate(all="ignore"):
            wcs, shape = find_optimal_celestial_wcs(
                [(t.shape, t.wcs) for t in tiles], auto_rotate=not north_up
            )
        height, width = float(shape[0]), float(shape[1])
    except Exception as exc:  # reproject fails with NaN when no projection holds them all
        logger.debug("find_optimal_celestial_wcs failed", exc_info=True)
        raise PlanningError(
            f"no common projection for these {len(tiles)} tiles "
            f"({type(exc).__name__}: {exc}); they span too much of the sky"
        ) from None
    if not (np.isfinite(height) and np.isfinite(width)) or not np.all(np.isfinite(wcs.wcs.crval)):
        raise PlanningError(
            f"no common projection for these {len(tiles)} tiles: they span too much of the sky"
        )
    return wcs, (int(height), int(width))


# --------------------------------------------------------------------------- outliers


#: A tile whose pixel scale differs from the set's median by more than this factor (or
#: by more than `SCALE_OUTLIER_SIGMAS` robust deviations of the set, when the set itself
#: mixes scales widely) is skipped: a mis-solved plate scale would otherwise blow the
#: canvas up. Mixing survey maps a few times apart in scale stays possible.
SCALE_OUTLIER_FACTOR = 10.0
SCALE_OUTLIER_SIGMAS = 5.0


@dataclass(frozen=True)
class _Footprint:
    """A tile's place on the sky: centre direction (unit vector) and angular radius."""

    center: np.ndarray
    radius: float  # radians


def _unit_vectors(lon_deg: np.ndarray, lat_deg: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two unit vectors, radians (stable for small and large angles)."""
    return float(np.arctan2(np.linalg.norm(np.cross(a, b)), np.dot(a, b)))


def _footprint(tile: TileLike) -> _Footprint:
    """Centre and radius of the circle around a tile's outline, in ICRS."""
    from astropy.wcs.utils import pixel_to_skycoord

    height, width = tile.shape
    x, y = sample_edges((height, width))
    x = np.append(x, (width - 1) / 2.0)
    y = np.append(y, (height - 1) / 2.0)
    with np.errstate(all="ignore"):
        sky = pixel_to_skycoord(x, y, tile.wcs, origin=0).icrs
    vectors = _unit_vectors(sky.ra.deg, sky.dec.deg)
    vectors = vectors[np.all(np.isfinite(vectors), axis=1)]
    center = vectors[-1] if len(vectors) else np.array([1.0, 0.0, 0.0])
    radius = max((_angle(center, v) for v in vectors), default=0.0)
    return _Footprint(center=center, radius=radius)


def _pixel_scale_deg(tile: TileLike) -> float:
    """Geometric-mean pixel scale of a tile, degrees per pixel."""
    matrix = np.asarray(tile.wcs.pixel_scale_matrix, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(matrix))))


def _scale_outliers(tiles: Sequence[TileLike]) -> dict[int, str]:
    """Tiles whose pixel scale is far from the set's median: index -> reason."""
    if len(tiles) < 3:
        return {}  # with two tiles, neither is the odd one out
    scales = np.array([_pixel_scale_deg(t) for t in tiles], dtype=np.float64)
    logs = np.log(scales)
    median = float(np.median(logs))
    spread = float(mad_std(logs))
    limit = max(np.log(SCALE_OUTLIER_FACTOR), SCALE_OUTLIER_SIGMAS * spread)
    median_arcsec = float(np.exp(median)) * 3600.0
    reasons = {}
    for i, value in enumerate(logs):
        if abs(value - median) > limit:
            arcsec = scales[i] * 3600.0
            ratio = float(np.exp(abs(value - median)))
            side = "larger" if value > median else "smaller"
            reasons[i] = (
                f"pixel scale {arcsec:.3g}\"/px is {ratio:.3g} times {side} than the set's "
                f'median of {median_arcsec:.3g}"/px (mis-solved?)'
            )
    return reasons


def _sky_groups(footprints: Sequence[_Footprint]) -> list[list[int]]:
    """Groups of tiles linked by overlapping footprints, largest first (ties: earliest)."""
    centers = np.array([f.center for f in footprints], dtype=np.float64).reshape(-1, 3)
    radii = np.array([f.radius for f in footprints], dtype=np.float64)
    # Pairwise angles between the centres (arctan2 form: stable near 0 and near 180 deg).
    cross = np.linalg.norm(np.cross(centers[:, None, :], centers[None, :, :]), axis=-1)
    angles = np.arctan2(cross, centers @ centers.T)
    linked = angles < radii[:, None] + radii[None, :]
    labels = component_labels(len(footprints), zip(*np.nonzero(linked), strict=True))
    groups = [np.flatnonzero(labels == label).tolist() for label in np.unique(labels)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def _names(tiles: Sequence[TileLike]) -> str:
    return ", ".join(printable_path(t.path) for t in tiles)


def _separate_groups(tiles: Sequence[TileLike], keep_isolated: bool) -> dict[int, str]:
    """Tiles apart from the main group that would blow the canvas up: index -> reason.

    The main group is the largest set of tiles linked by overlaps. Another group is
    excluded when adding it would more than double the main group's canvas, or when no
    projection holds both (tiles solved on the far side of the sky). One WARNING per
    group names its files.
    """
    if keep_isolated or len(tiles) < 3:
        return {}
    footprints = [_footprint(t) for t in tiles]
    groups = _sky_groups(footprints)
    main = groups[0]
    if len(groups) == 1 or len(main) < 2:
        return {}
    main_tiles = [tiles[i] for i in main]
    _, main_shape = _optimal_grid(main_tiles)
    main_area = main_shape[0] * main_shape[1]
    main_center = np.sum([footprints[i].center for i in main], axis=0)
    main_center = main_center / np.linalg.norm(main_center)
    reasons: dict[int, str] = {}
    for group in groups[1:]:
        members = [tiles[i] for i in group]
        distance = np.degrees(min(_angle(main_center, footprints[i].center) for i in group))
        try:
            _, trial_shape = _optimal_grid(main_tiles + members)
            blows_up = trial_shape[0] * trial_shape[1] > 2 * main_area
        except PlanningError:
            blows_up = True
        if not blows_up:
            continue
        where = f"{distance:.3g} deg from the main group of {len(main)} tiles"
        if len(group) == 1:
            reason = (
                f"it overlaps no other tile, lies {where} and would more than double the "
                "canvas (mis-solved?)"
            )
            logger.warning(
                "%s: excluded: %s; turn on %s to keep it",
                printable_path(members[0].path),
                reason,
                setting_name("keep_isolated"),
            )
        else:
            reason = (
                f"part of a separate group of {len(group)} overlapping tiles {where} "
                "(another field?) that would more than double the canvas"
            )
            logger.warning(
                "excluded a separate group of %d tiles that overlap each other but not the "
                "main group (another field?; %s; it would more than double the canvas): "
                "%s; turn on %s to keep them",
                len(group),
                where,
                _names(members),
                setting_name("keep_isolated"),
            )
        for i in group:
            reasons[i] = reason
    return reasons


def plan_mosaic(
    tiles: Sequence[TileLike],
    *,
    max_size: int = DEFAULT_MAX_SIZE_PX,
    keep_isolated: bool = False,
    north_up: bool = False,
) -> tuple[MosaicPlan, list[TileLike]]:
    """Plan the output grid for ``tiles``.

    Outliers are excluded before the canvas is computed, each with a WARNING naming
    it: tiles whose pixel scale is far from the set's median (`SCALE_OUTLIER_FACTOR`),
    and, unless ``keep_isolated``, tiles or groups of tiles that overlap none of the
    largest connected group and would more than double the canvas (or cannot share a
    projection with it at all).

    Parameters
    ----------
    tiles : sequence of TileLike
    max_size : int
        Largest canvas side accepted, in pixels.
    keep_isolated : bool
        Keep isolated tiles and separate groups even when they blow the canvas up.
    north_up : bool
        A north-up canvas instead of the minimum-area rotated one (the default).

    Returns
    -------
    plan : MosaicPlan
        Grid and boxes for the kept tiles; ``plan.excluded`` lists the others with
        their reasons.
    kept : list of TileLike
        The tiles the plan is for, in input order.

    Raises
    ------
    PlanningError
        No tiles, no projection holds the kept tiles, or the canvas exceeds ``max_size``.
    """
    if not tiles:
        raise PlanningError("no tiles to plan a mosaic for")
    excluded: list[InputError] = []

    scale_reasons = _scale_outliers(tiles)
    for i, reason in scale_reasons.items():
        logger.warning("%s: skipped: %s", printable_path(tiles[i].path), reason)
        excluded.append(InputError(tiles[i].path, reason))
    kept = [t for i, t in enumerate(tiles) if i not in scale_reasons]

    group_reasons = _separate_groups(kept, keep_isolated)
    excluded.extend(InputError(kept[i].path, r) for i, r in sorted(group_reasons.items()))
    kept = [t for i, t in enumerate(kept) if i not in group_reasons]

    wcs, shape = _optimal_grid(kept, north_up)
    if max(shape) > max_size:
        raise PlanningError(
            f"the mosaic canvas would be {shape[1]} x {shape[0]} px, above the limit of "
            f"{max_size} px a side (raise {setting_name('max_size')}, or check the tiles' WCS)"
        )
    boxes = [tile_bounding_box(t.wcs, t.shape, wcs, shape) for t in kept]
    logger.info("Output grid: %d x %d px from %d tiles", shape[1], shape[0], len(kept))
    plan = MosaicPlan(wcs=wcs, shape=shape, bboxes=tuple(boxes), excluded=tuple(excluded))
    return plan, kept
