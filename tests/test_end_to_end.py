"""End to end on the demo tiles: geometry, coverage, preview, and seamless photometry."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image
from reproject import reproject_interp
from scipy import ndimage

from zemosaic_core import BuildConfig, build_mosaic
from zemosaic_core.datasets.demo import write_demo_tiles
from zemosaic_core.io.loading import load_tiles


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    write_demo_tiles(folder)
    return folder


@pytest.fixture(scope="module")
def demo_build(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_out")
    config = BuildConfig(output=out / "m.fits", preview=out / "m.png", backend="cpu")
    return build_mosaic([demo_dir], config), out


def test_demo_mosaic_geometry_coverage_and_preview(demo_dir, demo_build):
    result, out = demo_build
    assert result.image.shape[0] == 3 and len(result.tile_paths) == 6
    with fits.open(out / "m.fits") as hdul:
        image = hdul[0].data
        coverage = hdul["COVERAGE"].data
        wcs = WCS(hdul[0].header)
        assert hdul[0].header["NTILES"] == 6 and hdul[0].header["TWOPASS"] is True
    assert image.shape[1:] == coverage.shape
    # Coverage counts tiles: 4 where four panels of a 3x2 grid meet, integer-valued.
    assert coverage.max() == 4.0
    assert np.array_equal(coverage, np.round(coverage))
    assert np.array_equal(np.isnan(image[0]), coverage == 0)
    # Cropped to the covered area: every edge row/column holds covered pixels.
    covered = coverage > 0
    assert covered[0].any() and covered[-1].any() and covered[:, 0].any() and covered[:, -1].any()
    # The WCS points at the demo field (RA 83.8, Dec -5.4) at 2"/px.
    ra, dec = wcs.celestial.pixel_to_world_values(image.shape[2] / 2, image.shape[1] / 2)
    assert abs(ra - 83.8) < 0.2 and abs(dec + 5.4) < 0.2
    assert (
        abs(abs(wcs.celestial.wcs.cdelt[0] * 3600) - 2.0) < 0.05
        or abs(np.sqrt(abs(np.linalg.det(wcs.celestial.pixel_scale_matrix))) * 3600 - 2.0) < 0.05
    )
    rgb = np.asarray(Image.open(out / "m.png"))
    assert rgb.shape == (*image.shape[1:], 3)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 5000


def _sky_noise(tile_data: np.ndarray) -> float:
    """Per-pixel noise of a tile from pixel-to-pixel differences (robust to stars)."""
    plane = tile_data[1]
    diff = np.diff(plane, axis=1)
    diff = diff[np.isfinite(diff)]
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2))


def seam_steps(image: np.ndarray, tiles, wcs: WCS, band: int = 4) -> list[float]:
    """Median step of the mosaic across each tile's edge, where others continue it."""
    luminance = np.mean(image, axis=0)  # NaN where uncovered (channels share coverage)
    steps = []
    for tile in tiles:
        finite = np.all(np.isfinite(tile.data), axis=0).astype(np.float32)
        footprint, _ = reproject_interp(
            (finite, tile.wcs), wcs, shape_out=luminance.shape, order="nearest-neighbor"
        )
        inside = np.nan_to_num(footprint) > 0.5
        ring_in = inside & ~ndimage.binary_erosion(inside, iterations=band)
        ring_out = ndimage.binary_dilation(inside, iterations=band) & ~inside
        ok = np.isfinite(luminance)
        # Only stretches of the edge where the mosaic goes on beyond the tile.
        near_out = ndimage.binary_dilation(ring_out & ok, iterations=band)
        a = luminance[ring_in & ok & near_out]
        b = luminance[ring_out & ok]
        if a.size > 200 and b.size > 200:
            steps.append(abs(float(np.median(a) - np.median(b))))
    return steps


def _steps_over_noise(demo_dir, result) -> float:
    tiles = load_tiles(sorted(demo_dir.glob("*.fits"))).tiles
    noise = np.median([_sky_noise(t.data) for t in tiles])
    steps = seam_steps(result.image, tiles, result.wcs)
    assert len(steps) == len(tiles)
    return max(steps) / noise


def test_seams_are_below_the_noise_with_matching(demo_dir, demo_build):
    result, _ = demo_build  # defaults: affine matching and two-pass
    assert _steps_over_noise(demo_dir, result) < 0.5


def test_seams_show_without_matching(demo_dir, tmp_path):
    from zemosaic_core.config import TwoPassSpec

    # The same criterion fails on the raw tiles (planted gains and pedestals).
    config = BuildConfig(
        output=None, backend="cpu", match="none", two_pass=TwoPassSpec(enabled=False)
    )
    assert _steps_over_noise(demo_dir, build_mosaic([demo_dir], config)) > 0.5
