"""Display neutrality and colour calibration on skies with a colour cast (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from zemosaic_core.display.colour import (
    MIN_STARS,
    apply_colour_calibration,
    measure_colour_calibration,
)
from zemosaic_core.display.stretch import compute_params, display_histogram, render_rgb

CAST_GAINS = np.array([0.8, 1.6, 0.5])  # a green one-shot-colour sensor's balance
CAST_BACKGROUND = np.array([120.0, 260.0, 60.0])


def cast_sky(seed: int, n_stars: int = 150, size: int = 300, nebula: bool = False):
    """White stars and a grey (or faintly nebulous) sky, seen through a colour cast."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sky = np.zeros((size, size), np.float32)
    for _ in range(n_stars):
        y, x = rng.uniform(8, size - 8, 2)
        flux = rng.uniform(200, 3000)
        sky += flux / (2 * np.pi * 1.5**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2))
    if nebula:
        sky += 15.0 * np.exp(-((yy - size / 3) ** 2 + (xx - size / 2) ** 2) / (2 * 40.0**2))
    image = np.empty((3, size, size), np.float32)
    for c in range(3):
        image[c] = CAST_BACKGROUND[c] + CAST_GAINS[c] * (sky + rng.normal(0, 3, sky.shape))
    image[:, :20, :40] = np.nan  # an uncovered corner
    return image


@pytest.mark.parametrize("seed, nebula", [(0, False), (1, True), (2, False)])
def test_default_stretch_gives_a_neutral_background_on_a_cast_sky(seed, nebula):
    image = cast_sky(seed, nebula=nebula)
    rgb = render_rgb(image, compute_params(image, "auto"))
    background = np.median(rgb[rgb.any(axis=2)].reshape(-1, 3), axis=0)
    assert np.ptp(background) <= 2, background
    linked = render_rgb(image, compute_params(image, "linked"))
    linked_bg = np.median(linked[linked.any(axis=2)].reshape(-1, 3), axis=0)
    assert linked_bg[1] > linked_bg[2] + 20  # linked keeps the cast, as documented
    asinh = render_rgb(image, compute_params(image, "asinh"))
    asinh_bg = np.median(asinh[asinh.any(axis=2)].reshape(-1, 3), axis=0)
    assert np.ptp(asinh_bg) <= 3, asinh_bg


def test_levels_move_the_picture_and_the_histogram_is_per_channel():
    image = cast_sky(3)
    params = compute_params(image)
    base = render_rgb(image, params)
    darker = render_rgb(image, params.with_levels(0.2, 0.5, 1.0))
    assert np.median(darker[..., 1]) < np.median(base[..., 1]) - 20
    hist = display_histogram(image, params)
    assert hist.shape == (3, 256) and hist.sum() > 0
    assert np.argmax(hist[1]) == pytest.approx(0.25 * 255, abs=12)  # the sky at 0.25


@pytest.mark.parametrize("seed", [4, 5])
def test_calibration_neutralises_background_and_whitens_stars(seed):
    image = cast_sky(seed, nebula=seed == 5)
    original = image.copy()
    calibration = measure_colour_calibration(image)
    np.testing.assert_array_equal(image, original)  # never modifies its input
    assert calibration.n_stars >= MIN_STARS
    out = apply_colour_calibration(image, calibration)
    np.testing.assert_array_equal(image, original)
    # Background equal in every channel, at the mean of the measured backgrounds.
    backgrounds = np.nanmedian(out.reshape(3, -1), axis=1)
    assert np.ptp(backgrounds) < 1.0
    # White stars come out white: the cast's gains are undone to within 3 %.
    gains = np.array(calibration.white_balance) * CAST_GAINS
    np.testing.assert_allclose(gains / gains.mean(), 1.0, atol=0.03)
    assert np.isnan(out[:, :20, :40]).all()


def test_calibration_without_stars_only_neutralises_and_skips_mono():
    rng = np.random.default_rng(6)
    image = (CAST_BACKGROUND[:, None, None] + rng.normal(0, 3, (3, 120, 120))).astype(np.float32)
    calibration = measure_colour_calibration(image)
    assert calibration.white_balance == (1.0, 1.0, 1.0) and calibration.n_stars == 0
    out = apply_colour_calibration(image, calibration)
    assert np.ptp(np.median(out.reshape(3, -1), axis=1)) < 1.0
    assert measure_colour_calibration(image[:1]) is None


def test_build_records_the_calibration_and_both_backends_agree(
    tmp_path, gui_demo_tiles, monkeypatch
):
    from astropy.io import fits

    from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic

    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    results = {}
    for backend in ("cpu", "gpu"):
        config = BuildConfig(
            backend=backend,
            output=tmp_path / f"{backend}.fits",
            colour_calibration=True,
            two_pass=TwoPassSpec(enabled=False),
        )
        results[backend] = build_mosaic(gui_demo_tiles[:3], config)
    cpu, gpu = results["cpu"].colour_calibration, results["gpu"].colour_calibration
    assert cpu is not None and gpu is not None
    np.testing.assert_allclose(cpu.white_balance, gpu.white_balance, rtol=1e-3)
    np.testing.assert_allclose(cpu.background, gpu.background, rtol=1e-3)
    with fits.open(tmp_path / "cpu.fits") as hdul:
        header = hdul[0].header
        assert header["COLCAL"] is True
        assert header["CALWB2"] == pytest.approx(cpu.white_balance[1])
    plain = build_mosaic(
        gui_demo_tiles[:3], BuildConfig(backend="cpu", output=tmp_path / "plain.fits")
    )
    assert plain.colour_calibration is None
    with fits.open(tmp_path / "plain.fits") as hdul:
        assert hdul[0].header["COLCAL"] is False
