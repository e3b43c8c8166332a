"""Outputs: atomic writes, FITS cards and coverage extension, crop, preview, TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image
from synthetic import make_wcs, sky

from zemosaic_core.display.stretch import stretch_rgb
from zemosaic_core.errors import UsageError, ZeMosaicError
from zemosaic_core.io.outputs import (
    TEMP_PREFIX,
    atomic_write,
    check_writable_folder,
    coverage_for_output,
    crop_to_coverage,
    write_fits,
    write_preview_png,
    write_tiff,
)
from zemosaic_core.result import BuildResult


def _result(n_channels: int = 3) -> BuildResult:
    wcs = make_wcs((150.0, 20.0), (60, 80))
    image = sky(wcs, (60, 80), n_channels)
    coverage = np.ones_like(image)
    coverage[:, :, :10] = 0
    image[:, :, :10] = np.nan
    return BuildResult(
        image=image,
        coverage=coverage,
        wcs=wcs,
        backend="cpu",
        gpu_all=False,
        two_pass=True,
        tile_paths=[Path("a.fits"), Path("b.fits")],
    )


def test_fits_layout_and_cards(tmp_path):
    result = _result()
    path = write_fits(tmp_path / "m.fits", result)
    with fits.open(path) as hdul:
        hdul.verify("exception")  # written band by band: still standard FITS
        assert hdul[0].data.dtype == np.dtype(">f4") and hdul[0].data.shape == (3, 60, 80)
        np.testing.assert_array_equal(hdul[0].data, result.image)
        np.testing.assert_array_equal(hdul["COVERAGE"].data, result.coverage[0])
        h = hdul[0].header
        assert h["BACKEND"] == "cpu" and h["TWOPASS"] is True and h["NTILES"] == 2
        assert h["CTYPE1"] == "RA---TAN"
        assert hdul["COVERAGE"].data.shape == (60, 80)  # identical channels -> (H, W)
        assert np.array_equal(np.isnan(hdul[0].data[0]), hdul["COVERAGE"].data == 0)
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))


def test_mono_fits_is_2d(tmp_path):
    path = write_fits(tmp_path / "mono.fits", _result(1))
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (60, 80)


def test_coverage_differs_per_channel_keeps_the_cube():
    cov = np.ones((3, 4, 5), dtype=np.float32)
    assert coverage_for_output(cov).shape == (4, 5)
    cov[1, 0, 0] = 0
    assert coverage_for_output(cov).shape == (3, 4, 5)


def test_failed_write_keeps_the_previous_output(tmp_path):
    target = tmp_path / "m.fits"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_unwritable_or_missing_folder_is_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_writable_folder(tmp_path / "missing" / "m.fits")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    import os

    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(UsageError, match="not writable"):
            check_writable_folder(locked / "m.fits")


def test_disk_errors_become_a_clear_error(tmp_path, monkeypatch):
    import os

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(ZeMosaicError, match="No space left"):
        write_fits(tmp_path / "m.fits", _result())
    assert list(tmp_path.iterdir()) == []


def test_crop_shifts_the_wcs():
    result = _result()
    image, coverage, wcs = crop_to_coverage(result.image, result.coverage, result.wcs)
    assert image.shape == (3, 60, 70) and coverage.shape == (3, 60, 70)
    ra0, dec0 = result.wcs.pixel_to_world_values(10, 5)
    ra1, dec1 = wcs.pixel_to_world_values(0, 5)
    assert ra0 == pytest.approx(ra1, abs=1e-10) and dec0 == pytest.approx(dec1, abs=1e-10)
    assert np.array_equal(image, result.image[:, :, 10:], equal_nan=True)


def test_preview_png_is_stretched_and_flipped(tmp_path):
    result = _result()
    path = write_preview_png(tmp_path / "p.png", result)
    rgb = np.asarray(Image.open(path))
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 100
    assert np.all(rgb[:, :10] == 0)  # uncovered is black
    np.testing.assert_array_equal(rgb, stretch_rgb(result.image)[::-1])


def test_tiff_is_16_bit_rgb(tmp_path):
    import tifffile

    path = write_tiff(tmp_path / "m.tif", _result())
    data = tifffile.imread(path)
    assert data.dtype == np.uint16 and data.shape == (60, 80, 3)
    assert data.max() == 65535


def test_linked_stretch_keeps_a_cast_and_auto_neutralises_it():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 2, (3, 100, 100)).astype(np.float32)
    image[0] *= 1.5  # a red cast must survive a linked stretch
    means = stretch_rgb(image, "linked").reshape(-1, 3).mean(axis=0)
    assert means[0] > means[1] + 20
    medians = np.median(stretch_rgb(image, "auto").reshape(-1, 3), axis=0)
    assert np.ptp(medians) <= 1  # the default: a neutral background
    for mode in ("linear", "asinh"):
        assert stretch_rgb(image, mode).shape == (100, 100, 3)
    with pytest.raises(ValueError):
        stretch_rgb(image, "bogus")


def test_accented_tile_names_and_usual_file_mode(tmp_path):
    import os

    result = _result()
    result.tile_paths = [Path("M31_nébuleuse.fits"), Path("ngc 7000 – north.fits")]
    path = write_fits(tmp_path / "m.fits", result)
    with fits.open(path) as hdul:
        history = " ".join(str(h) for h in hdul[0].header["HISTORY"])
    assert "M31_n\\xe9buleuse.fits" in history and "ngc 7000" in history
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


def test_tiff_rows_run_top_down_and_map_min_max_linearly(tmp_path):
    import tifffile

    result = _result()
    data = tifffile.imread(write_tiff(tmp_path / "a.tif", result))
    lo, hi = np.nanmin(result.image), np.nanmax(result.image)
    # FITS row 0 (bottom) is the TIFF's last row; values map linearly onto 0..65535.
    for c in range(3):
        expected = np.round((result.image[c, 0, 20] - lo) * 65535.0 / (hi - lo))
        assert abs(int(data[-1, 20, c]) - expected) <= 1
    assert np.all(data[:, :10] == 0)  # uncovered
    assert data.max() == 65535
