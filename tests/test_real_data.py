"""Real observations through the whole pipeline (../shared/data/real, see its README)."""

from __future__ import annotations

import logging

import numpy as np
from astropy.io import fits

from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic
from zemosaic_core.config import SolveSpec


def test_seestar_raw_bayer_subs_stack_to_rgb(real_data, tmp_path, file_hashes):
    folder = real_data / "seestar_ngc7023"
    before = file_hashes(sorted(folder.iterdir()))
    out = tmp_path / "seestar.fits"
    result = build_mosaic([folder], BuildConfig(output=out, backend="cpu"))
    assert result.image.shape[0] == 3 and len(result.tile_paths) == 4
    assert result.coverage.max() == 4.0
    with fits.open(out) as hdul:
        assert hdul[0].data.shape[0] == 3 and hdul["COVERAGE"].data.max() == 4.0
    covered = result.coverage[0] == 4
    medians = [float(np.median(result.image[c][covered])) for c in range(3)]
    assert all(m > 0 for m in medians) and max(medians) / min(medians) < 3
    assert file_hashes(sorted(folder.iterdir())) == before


def test_equatorial_and_galactic_surveys_mosaic_together(real_data, tmp_path):
    gc = real_data / "galactic_center"
    inputs = [gc / "gc_2mass_j.fits", gc / "gc_msx_e.fits"]
    config = BuildConfig(output=tmp_path / "gc.fits", backend="cpu", match="none")
    result = build_mosaic(inputs, config)
    assert result.image.shape[0] == 1 and len(result.tile_paths) == 2
    assert result.coverage.max() == 2.0  # the MSX map overlaps the 2MASS field
    with fits.open(tmp_path / "gc.fits") as hdul:
        assert hdul[0].data.ndim == 2 and hdul[0].header["NTILES"] == 2


def test_compressed_sip_tile_and_unsolved_neighbour(real_data, tmp_path, caplog):
    """With plate solving off, the frame without a WCS is skipped with the reason
    (tests/test_solving.py solves it)."""
    folder = real_data / "panoptes_sip"
    config = BuildConfig(output=tmp_path / "p.fits", backend="cpu", solve=SolveSpec(enabled=False))
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        result = build_mosaic([folder], config)
    assert [p.name for p in result.tile_paths] == ["solved.fits.fz"]
    assert [e.path.name for e in result.skipped] == ["unsolved.fits"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unsolved.fits" in warnings[0] and "WCS" in warnings[0]
    assert np.isfinite(result.image).sum() > 0.9 * 700 * 700


def test_isgri_images_in_extension_hdus_mosaic(real_data, tmp_path):
    folder = real_data / "isgri_integral"
    inputs = sorted(folder.glob("isgri_sky_ima_*.fits.gz"))
    config = BuildConfig(
        output=tmp_path / "isgri.fits", backend="cpu", two_pass=TwoPassSpec(enabled=False)
    )
    result = build_mosaic(inputs, config)
    assert len(result.tile_paths) == 2 and result.coverage.max() == 2.0
