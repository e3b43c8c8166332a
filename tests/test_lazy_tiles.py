"""Tiles beyond the memory budget stay on disk and give the same mosaic."""

from __future__ import annotations

import numpy as np
from synthetic import grid_tiles, write_tile

from zemosaic_core import BuildConfig, build_mosaic
from zemosaic_core.io.loading import load_tiles
from zemosaic_core.tile import LazyTile, Tile


def test_tiles_beyond_the_budget_are_lazy_and_read_back_identically(tmp_path):
    tiles = grid_tiles(2, 2, size=64, noise=0.5)
    paths = [write_tile(tmp_path / t.path.name, t) for t in tiles]
    one_tile = tiles[0].data.nbytes
    result = load_tiles(paths, memory_budget=2 * one_tile)
    kinds = [type(t) for t in result.tiles]
    assert kinds == [Tile, Tile, LazyTile, LazyTile]
    lazy = result.tiles[2]
    np.testing.assert_array_equal(lazy.data, tiles[2].data)
    assert lazy.data is not lazy.data  # read afresh: nothing held
    assert lazy.shape == (64, 64) and lazy.n_channels == 3


def test_lazy_correction_composes_like_an_in_memory_one(tmp_path):
    tile = grid_tiles(1, 1, size=32)[0]
    path = write_tile(tmp_path / "t.fits", tile)
    lazy = load_tiles([path], memory_budget=0).tiles[0]
    assert isinstance(lazy, LazyTile)
    twice = lazy.corrected(1.1, [1.0, 2.0, 3.0]).corrected(0.9, [0.5, 0.5, 0.5])
    expected = tile.corrected(1.1, [1.0, 2.0, 3.0]).corrected(0.9, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(twice.data, expected.data, rtol=1e-6)
    np.testing.assert_array_equal(lazy.data, tile.data)  # the original is untouched


def test_a_build_with_lazy_tiles_equals_an_in_memory_build(tmp_path):
    for tile in grid_tiles(3, 2, size=90, noise=0.5):
        write_tile(tmp_path / tile.path.name, tile)
    in_memory = build_mosaic([tmp_path], BuildConfig(output=None, backend="cpu"))
    # A budget this small makes every tile lazy (a quarter of it is for pixels).
    lazy = build_mosaic([tmp_path], BuildConfig(output=None, backend="cpu", max_memory=4096))
    np.testing.assert_allclose(lazy.image, in_memory.image, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(lazy.coverage, in_memory.coverage)
