"""Reading FITS inputs: layouts, scaling, compression, WCS, Bayer frames, real files."""

from __future__ import annotations

import gzip
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from badfits import rgb_data, sha256_files, tan_header, write_good_rgb
from hypothesis import given, settings
from hypothesis import strategies as st

from zemosaic_core.errors import InputError
from zemosaic_core.io.debayer import (
    BAYER_PATTERNS,
    array_pattern,
    bayer_masks,
    debayer_bilinear,
    mosaic,
    normalize_pattern,
    shift_pattern,
)
from zemosaic_core.io.loading import (
    FITS_PATTERNS,
    discover_inputs,
    is_fits_name,
    load_tile,
    load_tiles,
    probe_input,
)

CORE = "zemosaic_core"


def world_of(wcs: WCS, x, y) -> np.ndarray:
    return np.asarray(wcs.all_pix2world(np.asarray(x, float), np.asarray(y, float), 0))


def assert_fresh_float32(data: np.ndarray) -> None:
    """float32 native, C-contiguous, writeable, and no memmap anywhere in its base chain."""
    assert data.dtype == np.dtype(np.float32)
    assert data.flags.c_contiguous and data.flags.writeable
    base = data
    while base is not None:
        assert not isinstance(base, np.memmap)
        assert isinstance(base, np.ndarray)
        base = base.base


# --------------------------------------------------------------------------- layouts


def test_rgb_planes_first(tmp_path, file_hashes):
    data = rgb_data(1)
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(data, tan_header()).writeto(path)
    before = file_hashes([path])
    tile = load_tile(path)
    assert tile.data.shape == (3, 64, 64) and tile.n_channels == 3
    np.testing.assert_array_equal(tile.data, data)
    assert_fresh_float32(tile.data)
    assert tile.wcs.naxis == 2 and tile.wcs.pixel_shape == (64, 64)
    assert tile.path == path and tile.tile_weight == 1.0 and tile.weight_map is None
    tile.data[:] = 0.0  # the tile's array is its own: the file cannot change
    assert file_hashes([path]) == before


def test_rgb_planes_last_detected(tmp_path):
    """(H, W, 3) stored with NAXIS1 = 3: celestial axes are FITS axes 2 and 3."""
    cube = rgb_data(2)[:, :48, :]  # (3, H=48, W=64): non-square to catch axis mix-ups
    hwc = np.ascontiguousarray(np.moveaxis(cube, 0, -1))  # (48, 64, 3)
    header = tan_header(axes=(2, 3))
    header["CRPIX3"] = 20.0
    path = tmp_path / "hwc.fits"
    fits.PrimaryHDU(hwc, header).writeto(path)
    tile = load_tile(path)
    assert tile.data.shape == (3, 48, 64)
    np.testing.assert_array_equal(tile.data, cube)
    assert_fresh_float32(tile.data)
    reference = WCS(tan_header())
    reference.wcs.crpix = [32.5, 20.0]
    xs, ys = np.array([0.0, 63.0, 10.0]), np.array([0.0, 47.0, 30.0])
    np.testing.assert_allclose(world_of(tile.wcs, xs, ys), world_of(reference, xs, ys), atol=1e-10)
    assert tile.wcs.pixel_shape == (64, 48)


@pytest.mark.parametrize("shape", [(64, 64), (1, 64, 64), (64, 64, 1)])
def test_mono_layouts(tmp_path, shape):
    plane = rgb_data(3)[0]
    data = plane.reshape(shape)
    header = tan_header(axes=(2, 3)) if shape[-1] == 1 else tan_header()
    path = tmp_path / "mono.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    tile = load_tile(path)
    assert tile.data.shape == (1, 64, 64)
    np.testing.assert_array_equal(tile.data[0], plane)
    assert_fresh_float32(tile.data)


def test_uint16_bzero_comes_out_unsigned(tmp_path):
    raw = np.array([[0, 1, 2, 32767], [32768, 40000, 65534, 65535]], dtype=np.uint16)
    raw = np.tile(raw, (8, 8))
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(raw, tan_header(size=32)).writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768 and fits.getheader(path)["BITPIX"] == 16
    tile = load_tile(path)
    assert tile.data.min() == 0.0 and tile.data.max() == 65535.0
    np.testing.assert_array_equal(tile.data[0], raw.astype(np.float32))


def test_int16_bscale_bzero_and_blank(tmp_path):
    raw = np.arange(-50, 50, dtype=np.int16).reshape(10, 10)
    hdu = fits.PrimaryHDU(raw, tan_header(size=10), do_not_scale_image_data=True)
    hdu.header["BSCALE"] = 2.5
    hdu.header["BZERO"] = 100.0
    hdu.header["BLANK"] = -50
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        np.testing.assert_array_equal(hdul[0].data, raw)  # stored as given
    tile = load_tile(path)
    expected = (raw.astype(np.float64) * 2.5 + 100.0).astype(np.float32)
    expected[0, 0] = np.nan  # -50 is BLANK
    np.testing.assert_array_equal(tile.data[0], expected)
    assert np.isnan(tile.data).sum() == 1


def test_uint16_blank_is_nan(tmp_path):
    """BLANK in a pseudo-unsigned file (astropy keeps uint16 and does not mask it)."""
    raw = np.full((16, 16), 1000, dtype=np.uint16)
    raw[8, 8] = 1500  # a star: a constant image would be refused
    raw[3, 4] = 0  # stored as -32768, the BLANK value
    hdu = fits.PrimaryHDU(raw, tan_header(size=16))
    hdu.header["BLANK"] = -32768
    path = tmp_path / "u16blank.fits"
    hdu.writeto(path)
    tile = load_tile(path)
    assert np.isnan(tile.data[0, 3, 4]) and np.isnan(tile.data).sum() == 1
    assert np.nanmin(tile.data) == 1000.0


def test_big_endian_float64(tmp_path):
    data = (rgb_data(5)[0].astype(np.float64) * 1e-6).astype(">f8")
    path = tmp_path / "f64.fits"
    fits.PrimaryHDU(data, tan_header()).writeto(path)
    tile = load_tile(path)
    assert tile.data.dtype == np.dtype(np.float32) and tile.data.dtype.isnative
    np.testing.assert_array_equal(tile.data[0], data.astype(np.float32))


def test_nan_holes_are_kept(tmp_path):
    data = rgb_data(6)
    data[:, :10, :10] = np.nan
    path = tmp_path / "holes.fits"
    fits.PrimaryHDU(data, tan_header()).writeto(path)
    tile = load_tile(path)
    assert np.isnan(tile.data[:, :10, :10]).all()
    assert np.isfinite(tile.data[:, 10:, 10:]).all()


# --------------------------------------------------------------------------- HDUs, compression


def test_image_in_extension_after_table(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="E", array=np.ones(3))])
    data = rgb_data(7)
    hdul = fits.HDUList([fits.PrimaryHDU(), table, fits.ImageHDU(data, tan_header())])
    path = tmp_path / "ext.fits"
    hdul.writeto(path)
    tile = load_tile(path)
    np.testing.assert_array_equal(tile.data, data)


def test_first_hdu_with_celestial_wcs_wins(tmp_path):
    """An unsolved image in the primary, the solved one in an extension."""
    solved = rgb_data(8)
    hdul = fits.HDUList(
        [fits.PrimaryHDU(rgb_data(9)), fits.ImageHDU(solved, tan_header(12.0, 21.0))]
    )
    path = tmp_path / "two.fits"
    hdul.writeto(path)
    tile = load_tile(path)
    np.testing.assert_array_equal(tile.data, solved)
    np.testing.assert_allclose(tile.wcs.wcs.crval, [12.0, 21.0])


def test_gzip_file(tmp_path, file_hashes):
    plain = write_good_rgb(tmp_path, "plain.fits", seed=3)
    gz = tmp_path / "plain.fits.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    before = file_hashes([gz])
    tile = load_tile(gz)
    np.testing.assert_array_equal(tile.data, load_tile(plain).data)
    assert probe_input(gz).shape == (3, 64, 64)
    assert file_hashes([gz]) == before


def test_tile_compressed_fz_with_sip(tmp_path):
    raw = (rgb_data(10)[1] * 10).astype(np.uint16)
    header = tan_header()
    header["CTYPE1"] = "RA---TAN-SIP"
    header["CTYPE2"] = "DEC--TAN-SIP"
    header["A_ORDER"] = 2
    header["B_ORDER"] = 2
    header["A_2_0"] = 2e-5
    header["B_0_2"] = -1e-5
    path = tmp_path / "comp.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(raw, header)]).writeto(path)
    tile = load_tile(path)
    assert tile.data.shape == (1, 64, 64)
    np.testing.assert_array_equal(tile.data[0], raw.astype(np.float32))
    assert tile.wcs.sip is not None
    assert tile.wcs.sip.a[2, 0] == pytest.approx(2e-5)


def test_cube_with_sip_keeps_sip(tmp_path):
    """A 3-D file with SIP: the WCS must be read as 2-D (astropy refuses SIP in 3-D)."""
    header = tan_header()
    header["CTYPE1"] = "RA---TAN-SIP"
    header["CTYPE2"] = "DEC--TAN-SIP"
    header["A_ORDER"] = 2
    header["B_ORDER"] = 2
    header["A_1_1"] = 3e-5
    header["B_2_0"] = 1e-5
    path = tmp_path / "sipcube.fits"
    fits.PrimaryHDU(rgb_data(11), header).writeto(path)
    tile = load_tile(path)
    assert tile.data.shape == (3, 64, 64)
    assert tile.wcs.naxis == 2 and tile.wcs.sip is not None
    assert tile.wcs.sip.a[1, 1] == pytest.approx(3e-5)
    # The distortion is applied: the corner moves against the plain TAN solution.
    plain = WCS(tan_header())
    moved = world_of(tile.wcs, 63.0, 63.0) - world_of(plain, 63.0, 63.0)
    assert np.abs(moved).max() > 1e-5  # 3e-5 * 31.5**2 px ~ 0.03 px ~ 3e-5 deg


def test_mirrored_rotated_cd_is_accepted(tmp_path):
    header = tan_header(200.0, -45.0)
    for axis in (1, 2):
        del header[f"CDELT{axis}"]
    angle = np.deg2rad(33.0)
    scale = 2e-4
    header["CD1_1"] = scale * np.cos(angle)  # det > 0: mirrored parity, like the Seestar
    header["CD1_2"] = -scale * np.sin(angle)
    header["CD2_1"] = scale * np.sin(angle)
    header["CD2_2"] = scale * np.cos(angle)
    path = tmp_path / "cd.fits"
    fits.PrimaryHDU(rgb_data(12), header).writeto(path)
    tile = load_tile(path)
    assert np.linalg.det(tile.wcs.pixel_scale_matrix) > 0


def test_read_only_input(tmp_path):
    path = write_good_rgb(tmp_path, "ro.fits")
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        assert load_tile(path).data.shape == (3, 64, 64)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_fits_patterns():
    assert set(FITS_PATTERNS) == {
        f"{b}{c}" for b in (".fit", ".fits", ".fts") for c in ("", ".fz", ".gz")
    }
    assert is_fits_name("A.FITS.GZ") and is_fits_name("x y.Fit") and is_fits_name("a.fts.fz")
    assert not is_fits_name("a.fz") and not is_fits_name("a.fits.bak")
    assert not is_fits_name("fits")


# --------------------------------------------------------------------------- debayer


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_bayer_masks_partition(pattern):
    masks = bayer_masks(pattern, (5, 7))
    assert (masks.sum(axis=0) == 1).all()
    assert masks[1].sum() > masks[0].sum()
    letters = {"R": 0, "G": 1, "B": 2}
    assert masks[letters[pattern[0]], 0, 0] and masks[letters[pattern[3]], 1, 1]


def test_shift_and_flip_patterns():
    assert shift_pattern("RGGB", 1, 0) == "GRBG"
    assert shift_pattern("RGGB", 0, 1) == "GBRG"
    assert shift_pattern("RGGB", 1, 1) == "BGGR"
    assert shift_pattern("grbg", 2, 4) == "GRBG"
    assert array_pattern("GRBG", 1920) == "GRBG"
    assert array_pattern("GRBG", 1920, bottom_up=True) == "BGGR"
    assert array_pattern("GRBG", 1081, bottom_up=True) == "GRBG"
    assert array_pattern("RGGB", 100, x_offset=1) == "GRBG"
    assert array_pattern("RGGB", 100, y_offset=1, bottom_up=True) == "RGGB"
    with pytest.raises(ValueError, match="Bayer pattern"):
        normalize_pattern("RGBG")


@settings(max_examples=40, deadline=None)
@given(
    pattern=st.sampled_from(BAYER_PATTERNS),
    height=st.integers(2, 12),
    width=st.integers(2, 12),
    colour=st.tuples(*[st.floats(0.0, 70000.0, allow_nan=False, width=32)] * 3),
)
def test_debayer_constant_colour_is_exact(pattern, height, width, colour):
    rgb = np.empty((3, height, width), dtype=np.float32)
    for channel in range(3):
        rgb[channel] = colour[channel]
    out = debayer_bilinear(mosaic(rgb, pattern), pattern)
    assert out.shape == (3, height, width) and out.dtype == np.float32
    np.testing.assert_allclose(out, rgb, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_debayer_linear_gradient_and_own_sites(pattern):
    yy, xx = np.mgrid[0:20, 0:24].astype(np.float64)
    rgb = np.stack([10 + 2 * xx + yy, 50 + xx - 3 * yy + 100, 7 + 0.5 * xx + 0.25 * yy])
    rgb = rgb.astype(np.float32)
    raw = mosaic(rgb, pattern)
    out = debayer_bilinear(raw, pattern)
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], rgb[:, 1:-1, 1:-1], rtol=1e-6)
    masks = bayer_masks(pattern, raw.shape)
    for channel in range(3):
        np.testing.assert_array_equal(out[channel][masks[channel]], raw[masks[channel]])


def test_debayer_wrong_pattern_swaps_colours():
    """Guards the tests above: a wrong pattern must give visibly wrong colours."""
    rgb = np.stack([np.full((8, 8), v, np.float32) for v in (100.0, 200.0, 50.0)])
    out = debayer_bilinear(mosaic(rgb, "RGGB"), "BGGR")
    assert out[0].mean() == pytest.approx(50.0) and out[2].mean() == pytest.approx(100.0)


def test_debayer_is_nan_aware():
    rgb = np.stack([np.full((10, 10), v, np.float32) for v in (1.0, 2.0, 3.0)])
    raw = mosaic(rgb, "RGGB")
    raw[4, 4] = np.nan  # an R site (even row, even column)
    raw[7, 4] = np.inf  # a G site (odd row, even column)
    out = debayer_bilinear(raw, "RGGB")
    # Within one pixel of a site, the only sample of its own colour is itself: that colour
    # is unknown there, the other two are interpolated, and nothing else is lost.
    assert np.isnan(out[0, 4, 4]) and np.isfinite(out[1:, 4, 4]).all()
    assert np.isnan(out[1, 7, 4]) and np.isfinite(out[[0, 2], 7, 4]).all()
    assert int(np.isnan(out).sum()) == 2
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], np.broadcast_to(rgb, out.shape)[finite])
    assert np.isnan(debayer_bilinear(np.full((4, 4), np.nan), "RGGB")).all()


def write_bayer(path: Path, rgb: np.ndarray, header_pattern: str, **cards) -> Path:
    """Mosaic ``rgb`` through what the header's cards mean, store as uint16 + BZERO."""
    height = rgb.shape[1]
    effective = array_pattern(
        header_pattern,
        height,
        x_offset=cards.get("XBAYROFF", 0),
        y_offset=cards.get("YBAYROFF", 0),
        bottom_up=cards.get("ROWORDER") == "BOTTOM-UP",
    )
    raw = mosaic(rgb, effective).astype(np.uint16)
    header = tan_header(size=rgb.shape[2])
    header["BAYERPAT"] = header_pattern
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(raw, header).writeto(path)
    return path


@pytest.mark.parametrize(
    "pattern, cards",
    [
        ("RGGB", {}),
        ("BGGR", {}),
        ("GRBG", {"ROWORDER": "TOP-DOWN"}),
        ("GBRG", {"ROWORDER": "BOTTOM-UP"}),
        ("RGGB", {"XBAYROFF": 1}),
        ("GRBG", {"XBAYROFF": 1, "YBAYROFF": 1, "ROWORDER": "BOTTOM-UP"}),
    ],
)
def test_load_bayer_frame(tmp_path, pattern, cards):
    rgb = np.stack([np.full((32, 40), v, np.float32) for v in (1000.0, 30000.0, 65535.0)])
    path = write_bayer(tmp_path / "raw.fits", rgb, pattern, **cards)
    tile = load_tile(path)
    assert tile.data.shape == (3, 32, 40) and tile.n_channels == 3
    assert_fresh_float32(tile.data)
    np.testing.assert_array_equal(tile.data, rgb)
    np.testing.assert_allclose(tile.wcs.wcs.crval, [10.0, 20.0])
    assert tile.wcs.pixel_shape == (40, 32)
    assert probe_input(path).shape == (3, 32, 40)


def test_bayer_frames_count_as_rgb_in_load_tiles(tmp_path):
    rgb = np.stack([np.full((64, 64), v, np.float32) for v in (10.0, 20.0, 30.0)])
    raw = write_bayer(tmp_path / "raw.fits", rgb, "RGGB")
    cube = write_good_rgb(tmp_path, "cube.fits")
    result = load_tiles([raw, cube])
    assert len(result.tiles) == 2 and not result.skipped


# --------------------------------------------------------------------------- real files


def real_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        pytest.skip(f"real data file missing: {path}")
    return path


SEESTAR = "seestar_ngc7023"


@pytest.fixture(scope="module")
def seestar_tiles(real_data):
    """The 4 Seestar subs (discovered from their folder), loaded once for the module."""
    folder = real_data / SEESTAR
    if not folder.is_dir():
        pytest.skip(f"real data folder missing: {folder}")
    paths = discover_inputs([folder])
    before = sha256_files(paths)
    tiles = [load_tile(p) for p in paths]
    assert sha256_files(paths) == before  # read-only: not a byte changed
    return paths, tiles


def test_real_seestar_raw_bayer_loads_as_rgb(seestar_tiles):
    paths, tiles = seestar_tiles
    assert len(paths) == 4 and all(" " in p.name for p in paths)
    for path, tile in zip(paths, tiles, strict=True):
        header = fits.getheader(path)
        assert header["BAYERPAT"].strip() == "GRBG" and header["BZERO"] == 32768
        assert "ROWORDER" not in header
        assert tile.data.shape == (3, 1920, 1080)  # NAXIS1 = 1080 wide, NAXIS2 = 1920 high
        assert_fresh_float32(tile.data)
        assert np.nanmin(tile.data) >= 0.0 and np.nanmax(tile.data) <= 65535.0
        medians = [float(np.nanmedian(c[::3, ::3])) for c in tile.data]
        assert len({round(m) for m in medians}) == 3  # the channels differ
        assert max(medians) / min(medians) < 3.0
        assert medians[1] == max(medians)  # green leads a raw sky background
        assert tile.wcs.pixel_shape == (1080, 1920)
        assert np.linalg.det(tile.wcs.pixel_scale_matrix) > 0  # mirrored parity kept


def test_real_seestar_bayer_orientation(seestar_tiles):
    """GRBG applies to the rows as stored: the two green sites are the most alike.

    Green is sampled twice per 2x2 cell; its two sub-lattices see the same sky and have
    nearly equal statistics, while R and B differ. A flipped row order (BGGR as stored)
    would put green on the other diagonal.
    """
    paths, tiles = seestar_tiles
    for path, tile in zip(paths, tiles, strict=True):
        raw = fits.getdata(path).astype(np.float64)
        cells = {(dy, dx): float(np.median(raw[dy::2, dx::2])) for dy in (0, 1) for dx in (0, 1)}
        pattern = array_pattern("GRBG", raw.shape[0])
        greens = [divmod(i, 2) for i, letter in enumerate(pattern) if letter == "G"]
        others = [cell for cell in cells if cell not in greens]
        green_gap = abs(cells[greens[0]] - cells[greens[1]])
        other_gap = abs(cells[others[0]] - cells[others[1]])
        assert green_gap < 0.2 * other_gap, cells
        # The debayered green equals the raw samples at the green sites.
        masks = bayer_masks(pattern, raw.shape)
        np.testing.assert_array_equal(tile.data[1][masks[1]], raw[masks[1]].astype(np.float32))
        np.testing.assert_array_equal(tile.data[0][masks[0]], raw[masks[0]].astype(np.float32))


def test_real_galactic_centre(real_data):
    j = real_file(real_data, "galactic_center/gc_2mass_j.fits")
    msx = real_file(real_data, "galactic_center/gc_msx_e.fits")
    bolocam = real_file(real_data, "galactic_center/gc_bolocam_gps.fits")
    tile_j = load_tile(j)
    assert tile_j.data.shape == (1, 720, 721)
    assert tile_j.wcs.wcs.ctype[0].startswith("RA--")
    np.testing.assert_array_equal(tile_j.data[0], fits.getdata(j).astype(np.float32))

    tile_msx = load_tile(msx)
    stored = fits.getdata(msx)
    assert stored.dtype.byteorder == ">" and stored.dtype.itemsize == 8
    assert tile_msx.data.shape == (1, 149, 149)
    assert tile_msx.data.dtype == np.dtype(np.float32) and tile_msx.data.dtype.isnative
    assert tile_msx.wcs.wcs.ctype[0].startswith("GLON")
    np.testing.assert_array_equal(tile_msx.data[0], stored.astype(np.float32))

    tile_b = load_tile(bolocam)
    nan_fraction = float(np.isnan(tile_b.data).mean())
    assert 0.01 < nan_fraction < 0.2


def test_real_panoptes_sip_in_hdu1_and_unsolved(real_data, file_hashes):
    solved = real_file(real_data, "panoptes_sip/solved.fits.fz")
    unsolved = real_file(real_data, "panoptes_sip/unsolved.fits")
    before = file_hashes([solved, unsolved])
    tile = load_tile(solved)
    assert tile.wcs.sip is not None and tile.wcs.sip.a_order == 2
    with fits.open(solved) as hdul:
        assert hdul[0].data is None
        np.testing.assert_array_equal(tile.data[0], hdul[1].data.astype(np.float32))
    assert tile.data.shape == (1, 700, 700) and tile.data.min() > 0

    with pytest.raises(InputError) as info:
        load_tile(unsolved)
    assert "unsolved.fits" in str(info.value)
    assert "no celestial WCS" in str(info.value)
    assert file_hashes([solved, unsolved]) == before


def test_real_isgri_gzip_extensions(real_data):
    folder = real_data / "isgri_integral"
    if not folder.is_dir():
        pytest.skip(f"real data folder missing: {folder}")
    paths = discover_inputs([folder])
    assert len(paths) == 4 and all(p.name.endswith(".fits.gz") for p in paths)
    for path in paths:
        tile = load_tile(path)
        with fits.open(path) as hdul:
            assert hdul[0].data is None and not isinstance(hdul[1], fits.ImageHDU)
            np.testing.assert_array_equal(tile.data[0], hdul[2].data.astype(np.float32))
        assert tile.wcs.has_celestial


def test_real_files_end_to_end(real_data, caplog):
    """Folders and a file with spaces in its name, mixed channel counts, one unsolved."""
    seestar = sorted((real_data / SEESTAR).glob("*.fit"))
    if not seestar or not (real_data / "galactic_center").is_dir():
        pytest.skip("real data incomplete")
    inputs = [real_data / "galactic_center", real_data / "panoptes_sip", seestar[0]]
    paths = discover_inputs([*inputs, seestar[0]])  # the sub given twice counts once
    assert len(paths) == 8 and paths[-1] == seestar[0]
    before = sha256_files(paths)
    with caplog.at_level(logging.WARNING, logger=CORE):
        result = load_tiles(paths)
    # 6 mono (5 galactic centre, 1 PANOPTES) outvote the Seestar RGB frame.
    assert len(result.tiles) == 6 and all(t.n_channels == 1 for t in result.tiles)
    reasons = {e.path.name: e.reason for e in result.skipped}
    assert reasons == {
        "unsolved.fits": "no celestial WCS (not plate-solved?)",
        seestar[0].name: "3-channel image among mono tiles",
    }
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sorted(warned) == sorted(f"{e.path}: skipped: {e.reason}" for e in result.skipped)
    assert sha256_files(paths) == before


def test_reading_in_threads_leaves_the_warnings_machinery_alone(tmp_path):
    """Inputs are read two at a time; capturing astropy's warnings from two threads at
    once used to leave a dead recorder installed for the rest of the process."""
    import warnings

    from synthetic import CENTER, make_wcs, sky, write_tile

    from zemosaic_core.io import loading
    from zemosaic_core.tile import Tile

    rng = np.random.default_rng(0)
    paths = []
    for k in range(24):
        wcs = make_wcs(CENTER, (48, 48))
        data = sky(wcs, (48, 48)) + rng.normal(0, 1, (3, 48, 48)).astype(np.float32)
        paths.append(write_tile(tmp_path / f"s{k}.fits", Tile(data=data, wcs=wcs, path=None)))
    if loading._read_workers(paths, None) < 2:
        pytest.skip("one CPU: inputs are read one at a time")
    filters, show = list(warnings.filters), warnings._showwarnmsg_impl
    for _ in range(5):
        assert len(loading.load_tiles(paths).tiles) == 24
        assert warnings.filters == filters and warnings._showwarnmsg_impl is show
