"""Sub quality: measurements, noise weighting and rejection of the night's poor subs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from synthetic import CENTER, make_wcs

from zemosaic_core.config import BuildConfig, QualitySpec
from zemosaic_core.photometry.quality import apply_quality, measure_sub
from zemosaic_core.tile import Tile

SIZE = 256
STARS = np.random.default_rng(11).uniform(12, SIZE - 12, (120, 2))
FLUX = np.random.default_rng(12).uniform(300, 3000, 120)


def _sub(k: int, *, fwhm: float = 3.0, noise: float = 5.0, gain: float = 1.0) -> Tile:
    """A field of Gaussian stars on a sky of 100 ADU; the same stars in every sub."""
    rng = np.random.default_rng(100 + k)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    sigma = fwhm / 2.3548
    image = 100.0 + 60.0 * xx / SIZE  # a sky gradient: something for matching to fit
    for (y, x), f in zip(STARS, FLUX, strict=True):
        near = (np.abs(yy - y) < 5 * sigma + 2) & (np.abs(xx - x) < 5 * sigma + 2)
        image[near] += (
            f
            / (2 * np.pi * sigma**2)
            * np.exp(-((yy[near] - y) ** 2 + (xx[near] - x) ** 2) / (2 * sigma**2))
        )
    image = gain * image + rng.normal(0, noise, image.shape)
    data = np.repeat(image[None].astype(np.float32), 3, axis=0)
    return Tile(data=data, wcs=make_wcs(CENTER, (SIZE, SIZE)), path=Path(f"sub_{k:02d}.fits"))


@pytest.fixture(scope="module")
def night():
    subs = [_sub(k) for k in range(12)]
    subs[3] = _sub(3, fwhm=6.5)  # wind or bad focus
    subs[7] = _sub(7, gain=0.25)  # a thick cloud: the faint stars are lost
    subs[9] = _sub(9, noise=12.0)  # dawn, or a hot camera
    return subs


def test_measurements_follow_the_sky():
    sharp, soft = measure_sub(_sub(0)), measure_sub(_sub(0, fwhm=6.0))
    assert sharp.fwhm == pytest.approx(3.0, rel=0.25)
    assert soft.fwhm > 1.6 * sharp.fwhm
    assert sharp.noise == pytest.approx(5.0, rel=0.15)
    assert 60 <= sharp.stars <= 130
    assert sharp.background == pytest.approx(130.0, abs=3.0)  # the median of the gradient


def test_the_poor_subs_are_rejected_by_name_with_their_reason(night, caplog):
    caplog.set_level(logging.INFO, logger="zemosaic_core")
    kept, rejected = apply_quality(night, QualitySpec(reject_sigma=3.0))
    reasons = {e.path.name: e.reason for e in rejected}
    assert set(reasons) == {"sub_03.fits", "sub_07.fits", "sub_09.fits"}
    assert "FWHM" in reasons["sub_03.fits"]
    assert "stars" in reasons["sub_07.fits"]
    assert "noise" in reasons["sub_09.fits"]
    assert len(kept) == 9
    assert "Sub quality over 12 inputs" in caplog.text
    assert sum("skipped: poor sub" in r.getMessage() for r in caplog.records) == 3


def test_a_night_of_equal_subs_loses_none():
    subs = [_sub(k) for k in range(10)]
    kept, rejected = apply_quality(subs, QualitySpec(reject_sigma=3.0, weight=True))
    assert rejected == [] and len(kept) == 10
    weights = np.array([t.tile_weight for t in kept])
    np.testing.assert_allclose(weights, 1.0, atol=0.1)


def test_weighting_by_inverse_noise_variance(night):
    kept, _ = apply_quality(night, QualitySpec(weight=True))
    weights = {t.name: t.tile_weight for t in kept}
    assert weights["sub_09.fits"] == pytest.approx((5.0 / 12.0) ** 2, rel=0.25)
    assert weights["sub_00.fits"] == pytest.approx(1.0, abs=0.1)
    assert all(t.tile_weight == 1.0 for t in night)  # the inputs are untouched


def test_bad_settings_are_refused():
    for bad in (float("nan"), -1.0, 0.5):
        with pytest.raises(ValueError):
            QualitySpec(reject_sigma=bad)
    with pytest.raises(ValueError):
        QualitySpec(measure=False, weight=True)


def test_build_drops_the_poor_sub_and_says_so(night, tmp_path, capsys):
    from zemosaic_core.cli import main

    folder = tmp_path / "subs"
    folder.mkdir()
    for tile in night:
        header = tile.wcs.to_header()
        fits.PrimaryHDU(tile.data, header=header).writeto(folder / tile.name)
    out = tmp_path / "m.fits"
    code = main(["build", str(folder), "-o", str(out), "--reject-subs", "3", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0 and out.exists()
    assert "sub_03.fits: skipped: poor sub: FWHM" in err
    with fits.open(out) as hdul:
        assert hdul[0].header["NTILES"] == 9
    assert BuildConfig().quality.reject_sigma == 0.0  # off unless asked for


def test_longer_exposures_are_judged_on_the_matched_scale(tmp_path, capsys):
    """Three longer subs among short ones hold 1.6x the signal and sqrt(1.6)x the noise
    in ADU: once matched they are the best subs, so none is dropped as 'noisy'."""
    from zemosaic_core.cli import main

    subs = [_sub(k) for k in range(9)]
    subs += [_sub(k, gain=1.6, noise=5.0 * np.sqrt(1.6)) for k in range(9, 12)]
    folder = tmp_path / "subs"
    folder.mkdir()
    for tile in subs:
        fits.PrimaryHDU(tile.data, header=tile.wcs.to_header()).writeto(folder / tile.name)
    out = tmp_path / "m.fits"
    args = ["build", str(folder), "-o", str(out), "--reject-subs", "3", "--sub-weighting"]
    assert main([*args, "--no-progress"]) == 0
    assert "poor sub" not in capsys.readouterr().err
    with fits.open(out) as hdul:
        assert hdul[0].header["NTILES"] == 12
