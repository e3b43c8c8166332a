"""The CPU backend through the shared coadd driver, against astropy reproject itself."""

from __future__ import annotations

import numpy as np
import pytest
from reproject import reproject_interp
from reproject.mosaicking import reproject_and_coadd
from synthetic import grid_tiles

from zemosaic_core.config import CombineSpec
from zemosaic_core.engine.backends.cpu import CpuBackend
from zemosaic_core.engine.coadd import coadd_pass
from zemosaic_core.geometry.planning import BoundingBox, MosaicPlan, plan_mosaic

MEAN = CombineSpec("mean")


@pytest.fixture(scope="module")
def tiles_and_plan():
    tiles = grid_tiles(2, 2, size=120, noise=1.0)
    # A NaN border, like a cropped stack.
    data = tiles[1].data.copy()
    data[:, :, :12] = np.nan
    tiles[1] = tiles[1].with_data(data)
    plan, kept = plan_mosaic(tiles)
    return kept, plan


def test_identity_mapping_is_exact():
    tile = grid_tiles(1, 1, size=64)[0]
    values = np.arange(3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64)
    tile = tile.with_data(values)
    plan = MosaicPlan(wcs=tile.wcs, shape=(64, 64), bboxes=(BoundingBox(0, 64, 0, 64),))
    result = coadd_pass(CpuBackend(), [tile], plan, combine=MEAN)
    assert np.array_equal(result.image, values)
    assert np.all(result.coverage == 1.0)
    assert result.image.dtype == np.float32 and result.coverage.dtype == np.float32


def test_matches_reproject_and_coadd_per_channel(tiles_and_plan):
    tiles, plan = tiles_and_plan
    result = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    assert result.backend == "cpu"
    for c in range(3):
        ref, footprint = reproject_and_coadd(
            [(t.data[c], t.wcs) for t in tiles],
            plan.wcs,
            shape_out=plan.shape,
            reproject_function=reproject_interp,
            combine_function="mean",
        )
        assert np.array_equal(result.coverage[c], footprint.astype(np.float32))
        covered = footprint > 0
        assert np.array_equal(np.isnan(result.image[c]), ~covered)
        rel = np.abs(result.image[c][covered] - ref[covered]) / np.abs(ref[covered])
        assert rel.max() <= 1e-5


def test_coverage_is_the_sum_of_weights(tiles_and_plan):
    tiles, plan = tiles_and_plan
    result = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    # Four tiles overlap in the middle of a 2x2 grid: coverage counts them, not <= 1.
    assert result.coverage.max() == 4.0
    weighted = [t.__class__(t.data, t.wcs, t.path, None, 2.5) for t in tiles]
    heavy = coadd_pass(CpuBackend(), weighted, plan, combine=MEAN)
    np.testing.assert_allclose(heavy.coverage, 2.5 * result.coverage, rtol=1e-6)
    np.testing.assert_allclose(heavy.image, result.image, rtol=1e-5, equal_nan=True)


def test_weight_map_and_nan_border(tiles_and_plan):
    tiles, plan = tiles_and_plan
    weight = np.full(tiles[0].shape, 0.5, dtype=np.float32)
    weighted = [tiles[0].__class__(tiles[0].data, tiles[0].wcs, tiles[0].path, weight, 1.0)]
    result = coadd_pass(CpuBackend(), weighted + list(tiles[1:]), plan, combine=MEAN)
    base = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    box = plan.bboxes[0]
    diff = base.coverage[0][box.slices] - result.coverage[0][box.slices]
    # Where tile 0 contributed, coverage dropped by exactly its lost half weight.
    assert set(np.unique(np.round(diff, 6))) <= {0.0, 0.5}
    assert np.count_nonzero(diff == 0.5) > 0.8 * tiles[0].shape[0] * tiles[0].shape[1]


def test_batch_size_never_changes_the_result(tiles_and_plan):
    tiles, plan = tiles_and_plan
    results = [coadd_pass(CpuBackend(), tiles, plan, combine=MEAN, batch_size=b) for b in (0, 1, 3)]
    for other in results[1:]:
        assert np.array_equal(results[0].coverage, other.coverage)
        np.testing.assert_array_equal(results[0].image, other.image)


def test_row_chunks_give_the_same_result(tiles_and_plan):
    tiles, plan = tiles_and_plan
    full = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    tight = coadd_pass(CpuBackend(memory_budget=64 * 1024), tiles, plan, combine=MEAN)
    assert np.array_equal(full.coverage, tight.coverage)
    np.testing.assert_allclose(tight.image, full.image, rtol=1e-6, equal_nan=True)


def test_inputs_are_not_modified(tiles_and_plan):
    tiles, plan = tiles_and_plan
    before = [t.data.copy() for t in tiles]
    coadd_pass(CpuBackend(), tiles, plan, combine=MEAN, gains=np.full(len(tiles), 1.1))
    for t, b in zip(tiles, before, strict=True):
        np.testing.assert_array_equal(t.data, b)
