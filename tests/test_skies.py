"""The photometry validation corpus (:mod:`zemosaic_core.datasets.skies`), end to end."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from zemosaic_core.config import BuildConfig, TwoPassSpec
from zemosaic_core.datasets.skies import SKIES, render_sky, truth_on_grid, write_sky_case
from zemosaic_core.pipeline import build_mosaic


def test_skies_are_deterministic_and_different():
    a = render_sky("bright_nebula", (96, 96), seed=3)
    b = render_sky("bright_nebula", (96, 96), seed=3)
    assert a.dtype == np.float32 and a.shape == (3, 96, 96)
    np.testing.assert_array_equal(a, b)
    contrasts = {sky: float(np.std(render_sky(sky, (200, 200)))) for sky in SKIES}
    assert len(set(contrasts.values())) == len(SKIES)
    with pytest.raises(ValueError, match="sky"):
        render_sky("moon", (8, 8))


def test_consistent_tiles_are_the_truth_plus_noise(tmp_path):
    case = write_sky_case(tmp_path, "sparse_gradient", "consistent", tile_size=96)
    assert len(case.tile_paths) == 9 and all(g == 1.0 for g in case.gains)
    with fits.open(case.truth_path) as hdul:
        truth, truth_wcs = hdul[0].data, WCS(hdul[0].header, naxis=2)
    with fits.open(case.tile_paths[0]) as hdul:
        data, wcs = hdul[0].data, WCS(hdul[0].header, naxis=2)
    want = truth_on_grid(truth, truth_wcs, wcs, data.shape[1:])
    resid = (data - want)[np.isfinite(data)]
    assert abs(float(np.mean(resid))) < 1.0 and 8.0 < float(np.std(resid)) < 12.0
    with fits.open(case.tile_paths[4]) as hdul:
        assert "SIP" in hdul[0].header["CTYPE1"]
    with fits.open(case.tile_paths[6]) as hdul:
        assert np.isnan(hdul[0].data).any()


def test_planted_gains_are_recovered_through_a_build(tmp_path):
    """A planted case built from its FITS files: the matching gains undo the planted
    ones (up to the mosaic's common scale) to 0.5 %, and are reported by the build."""
    case = write_sky_case(tmp_path, "bright_nebula", "planted", tile_size=128)
    config = BuildConfig(output=None, backend="cpu", two_pass=TwoPassSpec(enabled=False))
    result = build_mosaic([str(p) for p in case.tile_paths], config)
    order = [case.tile_paths.index(p) for p in map(type(case.tile_paths[0]), result.tile_paths)]
    planted = np.array(case.gains)[order]
    effective = planted * result.match_gains
    assert np.ptp(planted) > 0.1  # the check can fail: the planted gains differ
    np.testing.assert_allclose(effective / np.median(effective), 1.0, atol=0.005)
    assert result.match_offsets.shape == (9, 3)
