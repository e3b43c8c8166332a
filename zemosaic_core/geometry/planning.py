"""Planning: the output grid of a mosaic and where each tile lands on it (DESIGN §2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from reproject.mosaicking import find_optimal_celestial_wcs

from ..config import DEFAULT_MAX_SIZE_PX, setting_name
from ..errors import PlanningError
from ..tile import Tile

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
    """

    wcs: WCS
    shape: tuple[int, int]
    bboxes: tuple[BoundingBox, ...]

    @property
    def full_box(self) -> BoundingBox:
        return BoundingBox(0, self.shape[0], 0, self.shape[1])

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


def _optimal_grid(tiles: Sequence[Tile], north_up: bool = False) -> tuple[WCS, tuple[int, int]]:
    """The output grid: the minimum-area rotated canvas, or north up on request.

    A single pointing of a smart telescope is seldom aligned with north; a north-up
    canvas around it is about half empty. The rotation lives in the WCS (PC matrix).
    """
    wcs, shape = find_optimal_celestial_wcs(
        [(t.shape, t.wcs) for t in tiles], auto_rotate=not north_up
    )
    return wcs, (int(shape[0]), int(shape[1]))


def _connected_groups(boxes: Sequence[BoundingBox]) -> list[list[int]]:
    """Groups of tiles linked by overlapping boxes, largest first (ties: earliest tile)."""
    n = len(boxes)
    seen = [False] * n
    groups: list[list[int]] = []
    for start in range(n):
        if seen[start]:
            continue
        stack, group = [start], []
        seen[start] = True
        while stack:
            i = stack.pop()
            group.append(i)
            for j in range(n):
                if not seen[j] and boxes[i].overlaps(boxes[j]):
                    seen[j] = True
                    stack.append(j)
        groups.append(sorted(group))
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def plan_mosaic(
    tiles: Sequence[Tile],
    *,
    max_size: int = DEFAULT_MAX_SIZE_PX,
    keep_isolated: bool = False,
    north_up: bool = False,
) -> tuple[MosaicPlan, list[Tile]]:
    """Plan the output grid for ``tiles``.

    Tiles that overlap none of the largest connected group and would more than double
    the canvas are excluded with a WARNING naming them, unless ``keep_isolated``.

    Parameters
    ----------
    tiles : sequence of Tile
    max_size : int
        Largest canvas side accepted, in pixels.
    keep_isolated : bool
        Keep isolated tiles even when they blow the canvas up.
    north_up : bool
        A north-up canvas instead of the minimum-area rotated one (the default).

    Returns
    -------
    plan : MosaicPlan
        Grid and boxes for the kept tiles.
    kept : list of Tile
        The tiles the plan is for, in input order.

    Raises
    ------
    PlanningError
        No tiles, or the canvas exceeds ``max_size``.
    """
    if not tiles:
        raise PlanningError("no tiles to plan a mosaic for")
    kept = list(tiles)
    wcs, shape = _optimal_grid(kept, north_up)
    boxes = [tile_bounding_box(t.wcs, t.shape, wcs, shape) for t in kept]

    if not keep_isolated and len(kept) > 2:
        groups = _connected_groups(boxes)
        main = groups[0]
        if len(groups) > 1 and len(main) >= 2:
            main_wcs, main_shape = _optimal_grid([kept[i] for i in main], north_up)
            main_area = main_shape[0] * main_shape[1]
            excluded = []
            for group in groups[1:]:
                trial = [kept[i] for i in main + group]
                _, trial_shape = _optimal_grid(trial, north_up)
                if trial_shape[0] * trial_shape[1] > 2 * main_area:
                    excluded.extend(group)
            for i in excluded:
                logger.warning(
                    "%s: excluded: it overlaps no other tile and would more than double the "
                    "canvas (mis-solved?); turn on %s to keep it",
                    kept[i].path,
                    setting_name("keep_isolated"),
                )
            if excluded:
                kept = [t for i, t in enumerate(kept) if i not in set(excluded)]
                wcs, shape = _optimal_grid(kept, north_up)
                boxes = [tile_bounding_box(t.wcs, t.shape, wcs, shape) for t in kept]

    if max(shape) > max_size:
        raise PlanningError(
            f"the mosaic canvas would be {shape[1]} x {shape[0]} px, above the limit of "
            f"{max_size} px a side (raise {setting_name('max_size')}, or check the tiles' WCS)"
        )
    logger.info("Output grid: %d x %d px from %d tiles", shape[1], shape[0], len(kept))
    return MosaicPlan(wcs=wcs, shape=shape, bboxes=tuple(boxes)), kept
