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


def test_component_labels_name_each_group_by_its_lowest_node():
    from zemosaic_core.geometry.graph import component_labels

    labels = component_labels(6, [(5, 3), (1, 4), (3, 0)])
    assert labels.tolist() == [0, 1, 2, 0, 1, 0]
    assert component_labels(3, []).tolist() == [0, 1, 2]


def _tile_at(center, name, size=80, scale_factor=1.0) -> Tile:
    from pathlib import Path

    wcs = make_wcs(center, (size, size))
    wcs.wcs.cd = wcs.wcs.cd * scale_factor
    return Tile(data=sky(wcs, (size, size)), wcs=wcs, path=Path(name))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("away_deg", [95.0, 120.0, 150.0, 179.0])
def test_a_tile_solved_on_the_far_side_of_the_sky_is_excluded_by_name(caplog, away_deg):
    """120-180 deg away, the canvas used to come out NaN: a crash, no mosaic."""
    tiles = grid_tiles(2, 2, size=80)
    far = _tile_at(((150.0 + away_deg) % 360.0, 20.0), "far_side.fits")
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        plan, kept = plan_mosaic([*tiles[:2], far, *tiles[2:]])
    assert [t.path.name for t in kept] == [t.path.name for t in tiles]
    messages = _warnings(caplog)
    assert len(messages) == 1 and "far_side.fits: excluded" in messages[0]
    assert [e.path.name for e in plan.excluded] == ["far_side.fits"]
    assert max(plan.shape) < 300


@pytest.mark.parametrize("factor", [30.0, 1 / 30.0, 7200.0])
def test_a_tile_with_an_absurd_plate_scale_is_skipped_by_name(caplog, factor):
    tiles = grid_tiles(3, 2, size=80)
    odd = _tile_at(tiles[4].wcs.wcs.crval, "odd_scale.fits", scale_factor=factor)
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        plan, kept = plan_mosaic([*tiles, odd])
    assert len(kept) == 6 and "odd_scale.fits" not in [t.path.name for t in kept]
    messages = _warnings(caplog)
    assert len(messages) == 1 and "odd_scale.fits: skipped: pixel scale" in messages[0]
    assert 'median of 1"/px' in messages[0]
    assert max(plan.shape) < 400


def test_survey_maps_a_few_times_apart_in_scale_are_kept():
    """Scales 1, 1, 1 and 4.8 arcsec/px (2MASS beside MSX, say) are one legitimate set."""
    tiles = grid_tiles(3, 1, size=80)
    coarse = _tile_at(tiles[1].wcs.wcs.crval, "coarse.fits", size=40, scale_factor=4.8)
    plan, kept = plan_mosaic([*tiles, coarse])
    assert len(kept) == 4 and not plan.excluded


def test_a_separate_group_of_frames_is_reported_as_one_group(caplog):
    """Two fields in one input: the smaller one is named as a group, not as isolated tiles."""
    main_field = grid_tiles(3, 2, size=80)
    other = [_tile_at((150.0 + 30.0 + 0.002 * k, 50.0), f"other_{k}.fits") for k in range(3)]
    tiles = [main_field[0], other[0], *main_field[1:4], other[1], other[2], *main_field[4:]]
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        plan, kept = plan_mosaic(tiles)
    assert {t.path.name for t in kept} == {t.path.name for t in main_field}
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "separate group of 3 tiles" in messages[0]
    assert all(f"other_{k}.fits" in messages[0] for k in range(3))
    assert "overlaps no other tile" not in messages[0]
    assert "Keep isolated tiles" in messages[0]
    assert sorted(e.path.name for e in plan.excluded) == [f"other_{k}.fits" for k in range(3)]
    assert all("separate group of 3" in e.reason for e in plan.excluded)

    plan, kept = plan_mosaic(tiles, keep_isolated=True, max_size=10**6)
    assert len(kept) == 9 and not plan.excluded


@pytest.mark.parametrize("away_deg", [160.0, 180.0])
def test_two_tiles_far_apart_give_a_clear_planning_error(away_deg):
    """With two tiles neither is the odd one out: a clear error, never a ValueError."""
    tiles = [_tile_at((10.0, 0.0), "a.fits"), _tile_at((10.0 + away_deg, 0.0), "b.fits")]
    with pytest.raises(PlanningError, match="no common projection|above the limit"):
        plan_mosaic(tiles)
