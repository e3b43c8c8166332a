"""Planning: the output grid, tile boxes, and the isolated-tile and canvas guards."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.wcs.utils import pixel_to_pixel
from synthetic import grid_tiles, make_wcs, sky

from zemosaic_core.errors import PlanningError
from zemosaic_core.geometry.planning import plan_mosaic
from zemosaic_core.tile import Tile


def test_boxes_contain_every_tile_pixel():
    tiles = grid_tiles(3, 2, size=80)
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == 6
    for tile, box in zip(kept, plan.bboxes, strict=True):
        yy, xx = np.mgrid[0 : tile.shape[0], 0 : tile.shape[1]]
        xo, yo = pixel_to_pixel(tile.wcs, plan.wcs, xx.ravel(), yy.ravel())
        assert xo.min() >= box.x0 - 0.5 and xo.max() <= box.x1 - 0.5
        assert yo.min() >= box.y0 - 0.5 and yo.max() <= box.y1 - 0.5


def _far_tile() -> Tile:
    wcs = make_wcs((170.0, 35.0), (80, 80))
    from pathlib import Path

    return Tile(data=sky(wcs, (80, 80)), wcs=wcs, path=Path("mis_solved.fits"))


def test_isolated_tile_is_excluded_by_name(caplog):
    tiles = grid_tiles(2, 2, size=80) + [_far_tile()]
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        plan, kept = plan_mosaic(tiles)
    assert [t.path.name for t in kept] == [t.path.name for t in tiles[:4]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "mis_solved.fits" in warnings[0]
    # The message names the setting both front ends show, not a CLI flag.
    assert "'Keep isolated tiles' setting" in warnings[0] and "--" not in warnings[0]
    assert max(plan.shape) < 300


def test_keep_isolated_keeps_it():
    tiles = grid_tiles(2, 2, size=80) + [_far_tile()]
    plan, kept = plan_mosaic(tiles, keep_isolated=True, max_size=100000)
    assert len(kept) == 5
    assert max(plan.shape) > 1000


def test_canvas_limit_is_refused_with_a_clear_message():
    tiles = grid_tiles(2, 2, size=80)
    with pytest.raises(PlanningError, match="above the limit of 100 px") as info:
        plan_mosaic(tiles, max_size=100)
    assert "'Maximum canvas size' setting" in str(info.value) and "--" not in str(info.value)


def test_galactic_and_equatorial_tiles_plan_together():
    from astropy.coordinates import SkyCoord

    tiles = grid_tiles(2, 1, size=80)
    eq = tiles[1]
    c = SkyCoord(*eq.wcs.wcs.crval, unit="deg", frame="icrs").galactic
    gal = eq.wcs.deepcopy()
    gal.wcs.ctype = ["GLON-TAN", "GLAT-TAN"]
    gal.wcs.crval = [c.l.deg, c.b.deg]
    tiles[1] = Tile(data=eq.data, wcs=gal, path=eq.path)
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == 2
    assert plan.bboxes[0].overlaps(plan.bboxes[1])
