"""Tests of the synthetic demo tiles (zemosaic_core.datasets.demo)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import proj_plane_pixel_scales
from reproject import reproject_interp
from scipy import ndimage

from zemosaic_core.datasets import demo
from zemosaic_core.datasets.demo import (
    DEMO_CENTER,
    SKY_LEVEL,
    SyntheticSky,
    demo_tile_truth,
    write_demo_tiles,
)

SMALL = 200


# --------------------------------------------------------------------------- helpers


def _read(path: Path) -> tuple[np.ndarray, WCS, fits.Header]:
    with fits.open(path) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul[0].data, dtype=np.float32)
    # An RGB cube with SIP needs the celestial axes selected explicitly (astropy refuses
    # SIP on a 3-axis WCS).
    return data, WCS(header, naxis=2), header


def _undo(data: np.ndarray, path: Path) -> np.ndarray:
    truth = demo_tile_truth(path)
    return (data - truth["pedestal"]) / truth["gain"]


def _noise_sigma(level: np.ndarray, header: fits.Header) -> np.ndarray:
    return np.sqrt(np.maximum(level, 0.0) / header["ZMEGAIN"] + header["ZMRDNOIS"] ** 2)


def _neighbour_pairs(paths: list[Path]) -> list[tuple[Path, Path]]:
    """Pairs of tiles sharing an edge in the grid."""
    pos = {}
    for p in paths:
        t = demo_tile_truth(p)
        pos[(t["row"], t["col"])] = p
    pairs = []
    for (row, col), p in sorted(pos.items()):
        for other in ((row, col + 1), (row + 1, col)):
            if other in pos:
                pairs.append((p, pos[other]))
    return pairs


def _overlap_fraction(wcs_a: WCS, shape_a, wcs_b: WCS, shape_b, step: int = 2) -> float:
    """Fraction of tile A's area whose pixels land inside tile B's pixel domain."""
    yy, xx = np.mgrid[0 : shape_a[0] : step, 0 : shape_a[1] : step].astype(float)
    ra, dec = wcs_a.all_pix2world(xx, yy, 0)
    bx, by = wcs_b.all_world2pix(ra, dec, 0)
    inside = (bx >= -0.5) & (bx <= shape_b[1] - 0.5) & (by >= -0.5) & (by <= shape_b[0] - 0.5)
    return float(inside.mean())


def _shifted(wcs: WCS, x0: int, y0: int) -> WCS:
    """``wcs`` of the cut-out starting at pixel ``(x0, y0)`` (SIP kept)."""
    out = wcs.deepcopy()
    out.wcs.crpix = np.asarray(wcs.wcs.crpix) - [x0, y0]
    if out.sip is not None:
        out.sip = Sip(out.sip.a, out.sip.b, out.sip.ap, out.sip.bp, out.wcs.crpix)
    return out


@pytest.fixture(scope="module")
def default_tiles(tmp_path_factory) -> tuple[list[Path], float]:
    """The demo tiles at their default size, and the seconds it took to write them."""
    directory = tmp_path_factory.mktemp("demo_default")
    t0 = time.perf_counter()
    paths = write_demo_tiles(directory)
    return paths, time.perf_counter() - t0


@pytest.fixture(scope="module")
def truth_of(default_tiles):
    """``truth_of(path)``: the true sky rendered at a default tile's WCS (cached)."""
    paths, _ = default_tiles
    sky = SyntheticSky.from_demo_tile(paths[0])
    cache: dict[Path, np.ndarray] = {}

    def render(path: Path) -> np.ndarray:
        if path not in cache:
            with fits.open(path) as hdul:
                header = hdul[0].header
                shape = (header["NAXIS2"], header["NAXIS1"])
                cache[path] = sky.render(WCS(header, naxis=2), shape)
        return cache[path]

    return render


@pytest.fixture(scope="module")
def small_tiles(tmp_path_factory) -> list[Path]:
    return write_demo_tiles(tmp_path_factory.mktemp("demo_small"), tile_size=SMALL)


# --------------------------------------------------------------------------- format


def test_default_size_requirements(default_tiles):
    paths, seconds = default_tiles
    assert seconds < 20.0  # the target is < 10 s; this is a sanity bound, not a benchmark
    assert len(paths) >= 6
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    total = sum(p.stat().st_size for p in paths)
    assert total < 40 * 1024 * 1024
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [p.name for p in paths]
    for path in paths:
        data, wcs, header = _read(path)
        assert data.ndim == 3 and data.shape[0] == 3
        assert data.shape[1] >= 600 and data.shape[2] >= 600
        assert header["BITPIX"] == -32
        assert header["NAXIS"] == 3 and header["NAXIS3"] == 3
        assert header["OBJECT"] == "ZeMosaic demo"
        assert header["BUNIT"]
        assert header["CTYPE1"].startswith("RA---TAN")
        assert header["CTYPE2"].startswith("DEC--TAN")
        assert wcs.has_celestial and wcs.naxis == 2
        scale = proj_plane_pixel_scales(wcs) * 3600.0
        np.testing.assert_allclose(scale, 2.0, rtol=0.01)
        ra, dec = wcs.wcs.crval
        assert abs(ra - DEMO_CENTER[0]) < 1.0 and abs(dec - DEMO_CENTER[1]) < 1.0
        assert np.isfinite(data).mean() > 0.85


def test_rotations_small_and_different(default_tiles):
    paths, _ = default_tiles
    angles = []
    for path in paths:
        _, wcs, header = _read(path)
        m = wcs.pixel_scale_matrix
        # Angle of the pixel y axis against north (RA axis flipped, as usual).
        angle = np.degrees(np.arctan2(m[0, 1], m[1, 1]))
        assert 0.3 < abs(angle) < 2.5
        assert angle == pytest.approx(header["ZMROTATE"], abs=0.05)
        angles.append(angle)
    assert len({round(a, 3) for a in angles}) == len(angles)


def test_deterministic_bytes(tmp_path):
    first = write_demo_tiles(tmp_path / "a", seed=7, tile_size=SMALL)
    second = write_demo_tiles(tmp_path / "b", seed=7, tile_size=SMALL)
    other = write_demo_tiles(tmp_path / "c", seed=8, tile_size=SMALL)
    assert [p.name for p in first] == [p.name for p in second]
    for a, b, c in zip(first, second, other, strict=True):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


def test_mono_tiles(tmp_path):
    paths = write_demo_tiles(tmp_path, tile_size=SMALL, rgb=False, photometric_variation=False)
    rgb_paths = write_demo_tiles(tmp_path / "rgb", tile_size=SMALL, photometric_variation=False)
    sky = SyntheticSky.from_demo_tile(paths[0])
    assert sky.n_channels == 1
    for path, rgb_path in zip(paths, rgb_paths, strict=True):
        data, wcs, header = _read(path)
        assert data.shape == (SMALL, SMALL) and header["NAXIS"] == 2
        assert wcs.sip is None or demo_tile_truth(path)["sip"]
        # Same sky as the RGB tiles: the mono truth is the mean of the RGB truth.
        rgb_truth = SyntheticSky.from_demo_tile(rgb_path).render(wcs, data.shape)
        np.testing.assert_allclose(
            sky.render(wcs, data.shape)[0], rgb_truth.mean(axis=0), rtol=1e-5
        )


def test_no_partial_file_on_error(tmp_path, monkeypatch):
    def broken_writeto(self, name, *args, **kwargs):
        Path(name).write_bytes(b"SIMPLE  = partial")
        raise OSError("disk full")

    monkeypatch.setattr(fits.PrimaryHDU, "writeto", broken_writeto)
    with pytest.raises(OSError, match="disk full"):
        write_demo_tiles(tmp_path / "out", tile_size=64)
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_arguments_rejected(tmp_path):
    with pytest.raises(ValueError):
        write_demo_tiles(tmp_path, grid=(0, 2))
    with pytest.raises(ValueError):
        write_demo_tiles(tmp_path, overlap=0.7)
    with pytest.raises(ValueError):
        write_demo_tiles(tmp_path, tile_size=8)


# --------------------------------------------------------------------------- geometry


def test_neighbour_overlaps_in_range(default_tiles):
    paths, _ = default_tiles
    pairs = _neighbour_pairs(paths)
    assert len(pairs) == 7  # 3x2 grid: 4 horizontal + 3 vertical neighbours
    for a, b in pairs:
        da, wa, _ = _read(a)
        db, wb, _ = _read(b)
        for (w1, s1), (w2, s2) in (
            ((wa, da.shape[1:]), (wb, db.shape[1:])),
            ((wb, db.shape[1:]), (wa, da.shape[1:])),
        ):
            fraction = _overlap_fraction(w1, s1, w2, s2)
            assert 0.15 <= fraction <= 0.25, (a.name, b.name, fraction)
    # Diagonal neighbours only touch at a corner.
    by_pos = {(demo_tile_truth(p)["row"], demo_tile_truth(p)["col"]): p for p in paths}
    da, wa, _ = _read(by_pos[(0, 0)])
    db, wb, _ = _read(by_pos[(1, 1)])
    assert _overlap_fraction(wa, da.shape[1:], wb, db.shape[1:]) < 0.1


def test_one_tile_has_sip(default_tiles):
    paths, _ = default_tiles
    sip_paths = []
    for path in paths:
        data, wcs, header = _read(path)
        if wcs.sip is not None:
            sip_paths.append(path)
            assert header["CTYPE1"] == "RA---TAN-SIP"
            assert header["A_ORDER"] == 2 and header["B_ORDER"] == 2
            assert header["ZMSIP"] is True
            # Small but real: up to a few pixels of distortion at the corners.
            h, w = data.shape[1:]
            corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
            sky = wcs.all_pix2world(corners, 0)
            linear = wcs.wcs_world2pix(sky, 0)
            shift = np.hypot(*(linear - corners).T)
            assert 0.2 < shift.max() < 5.0
            # The inverse (AP, BP) is consistent with the forward polynomial.
            back = wcs.sip_foc2pix(wcs.sip_pix2foc(corners, 0), 0)
            np.testing.assert_allclose(back, corners, atol=0.01)
        else:
            assert not header["ZMSIP"]
    assert len(sip_paths) == 1


def test_one_tile_has_nan_border(default_tiles):
    paths, _ = default_tiles
    nan_tiles = [p for p in paths if np.isnan(_read(p)[0]).any()]
    assert len(nan_tiles) == 1
    data, _, header = _read(nan_tiles[0])
    assert header["ZMNANBRD"] is True
    assert demo_tile_truth(nan_tiles[0])["nan_border"]
    mask = np.isnan(data[0])
    assert all(np.array_equal(np.isnan(c), mask) for c in data)  # same in every channel
    # Left edge (x = 0) and top edge (y = H - 1): 15-40 px deep, irregular.
    left = mask[:, :60].sum(axis=1)[60:-60]
    top = mask[::-1, :][:60].sum(axis=0)[60:-60]
    for depth in (left, top):
        assert depth.min() >= 15 and depth.max() <= 40
        assert len(np.unique(depth)) > 3
    # The rest of the tile is data.
    assert np.isfinite(data[:, 50:-50, 50:-50]).all()
    assert not mask[:-50, -1].any() and not mask[0, 50:].any()


def test_planted_photometry_recorded(default_tiles, tmp_path):
    paths, _ = default_tiles
    sky_mean = float(np.mean(SKY_LEVEL))
    gains, pedestals = [], []
    for path in paths:
        header = fits.getheader(path)
        truth = demo_tile_truth(path)
        assert truth["gain"] == header["ZMGAIN"]
        assert truth["pedestal"] == header["ZMPEDST"]
        assert 0.9 <= truth["gain"] <= 1.1
        assert 0.01 * sky_mean <= abs(truth["pedestal"]) <= 0.05 * sky_mean
        gains.append(truth["gain"])
        pedestals.append(truth["pedestal"])
    assert np.ptp(gains) > 0.02 and np.ptp(pedestals) > 10.0
    flat = write_demo_tiles(tmp_path, tile_size=SMALL, photometric_variation=False)
    for path in flat:
        truth = demo_tile_truth(path)
        assert truth["gain"] == 1.0 and truth["pedestal"] == 0.0


# --------------------------------------------------------------------------- content


def test_tiles_are_truth_plus_noise(default_tiles, truth_of):
    """Every tile is gain * truth + pedestal + noise, with truth rendered via its full WCS."""
    paths, _ = default_tiles
    for path in paths:
        data, _, header = _read(path)
        truth = truth_of(path)
        assert truth.dtype == np.float32 and truth.shape == data.shape
        residual = _undo(data, path) - truth
        finite = np.isfinite(residual)
        g = demo_tile_truth(path)["gain"]
        sigma = _noise_sigma(g * truth + demo_tile_truth(path)["pedestal"], header) / g
        z = residual[finite] / sigma[finite]
        assert abs(np.median(residual[finite])) < 0.5
        assert 0.95 < np.std(z) < 1.05


def test_sip_tile_rendered_through_sip(default_tiles, truth_of):
    paths, _ = default_tiles
    path = next(p for p in paths if demo_tile_truth(p)["sip"])
    data, wcs, header = _read(path)
    sky = SyntheticSky.from_demo_tile(path)
    undone = _undo(data, path)[1]
    truth = truth_of(path)[1]
    no_sip = wcs.deepcopy()
    no_sip.sip = None
    no_sip.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    truth_no_sip = sky.render(no_sip, data.shape[1:])[1]
    stars = ndimage.maximum_filter(truth, size=5) == truth
    stars &= truth > np.median(truth) + 2000.0
    near_stars = ndimage.binary_dilation(stars, iterations=3)
    sigma = _noise_sigma(truth, header)
    chi_sip = np.mean(((undone - truth) / sigma)[near_stars] ** 2)
    chi_no_sip = np.mean(((undone - truth_no_sip) / sigma)[near_stars] ** 2)
    assert near_stars.sum() > 100
    assert chi_sip < 1.5
    assert chi_no_sip > 5.0 * chi_sip


def test_sky_has_many_stars(default_tiles):
    paths, _ = default_tiles
    data, wcs, header = _read(paths[0])
    sky = SyntheticSky.from_demo_tile(paths[0])
    assert sky.n_stars > 1000
    g = data[1]
    coarse = ndimage.median_filter(g[::4, ::4], size=5)
    background = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[: g.shape[0], : g.shape[1]]
    sigma = 1.4826 * np.median(np.abs(g - background))
    peaks = (ndimage.maximum_filter(g, size=5) == g) & (g > background + 5.0 * sigma)
    assert peaks.sum() > 100
    # Many faint, few bright: a power-law of fluxes.
    heights = (g - background)[peaks]
    assert (heights > 50 * sigma).sum() < (heights < 10 * sigma).sum()
    assert heights.max() > 500 * sigma


def test_star_colours_differ(default_tiles, truth_of):
    paths, _ = default_tiles
    ratios = []
    for path in paths[:3]:
        truth = truth_of(path)
        g = truth[1]
        peaks = (ndimage.maximum_filter(g, size=9) == g) & (g > np.median(g) + 500.0)
        ys, xs = np.nonzero(peaks)
        h, w = g.shape
        yy, xx = np.mgrid[-12:13, -12:13]
        annulus = (np.hypot(yy, xx) > 8) & (np.hypot(yy, xx) <= 12)
        for y, x in zip(ys, xs, strict=True):
            if not (12 <= y < h - 12 and 12 <= x < w - 12):
                continue
            cut = truth[:, y - 12 : y + 13, x - 12 : x + 13]
            amp = truth[:, y, x] - np.median(cut[:, annulus], axis=1)
            if amp[1] > 300.0:
                ratios.append((amp[0] / amp[1], amp[2] / amp[1]))
    ratios = np.array(ratios)
    assert len(ratios) > 20
    red_over_blue = ratios[:, 0] / ratios[:, 1]
    assert np.std(np.log(red_over_blue)) > 0.15
    assert red_over_blue.min() < 0.9 and red_over_blue.max() > 1.3


def test_extended_emission_is_coloured(default_tiles, truth_of):
    paths, _ = default_tiles
    truth = truth_of(paths[1])
    smooth = ndimage.median_filter(truth[:, ::4, ::4], size=(1, 9, 9))
    red_over_blue = smooth[0] / smooth[2]
    assert np.ptp(red_over_blue) > 0.1
    # A tilted background: the sky level changes across the tile.
    assert np.ptp(smooth[1]) > 0.02 * SKY_LEVEL[1]


def test_overlaps_agree_after_undoing_photometry(default_tiles):
    """Reprojecting a tile onto its neighbour matches it to within the noise."""
    paths, _ = default_tiles
    raw_offsets = []
    for a, b in _neighbour_pairs(paths):
        da, wa, ha = _read(a)
        db, wb, _ = _read(b)
        ua, ub = _undo(da, a), _undo(db, b)
        # Work on the part of A that B covers (bounding box of B's outline on A).
        h, w = db.shape[1:]
        outline = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]])
        corners = wa.all_world2pix(wb.all_pix2world(outline, 0), 0)
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, da.shape[:0:-1])
        sub_wcs = _shifted(wa, x0, y0)
        ua, da = ua[:, y0:y1, x0:x1], da[:, y0:y1, x0:x1]
        proj, footprint = reproject_interp((ub, wb), sub_wcs, shape_out=ua.shape[1:])
        assert proj.shape == ua.shape
        # Bilinear interpolation is linear: B's raw data reprojected, without undoing.
        truth_b = demo_tile_truth(b)
        proj_raw = truth_b["gain"] * proj + truth_b["pedestal"]
        covered = footprint > 0
        for channel in range(3):
            fp = covered if covered.ndim == 2 else covered[channel]
            ok = fp & np.isfinite(proj[channel]) & np.isfinite(ua[channel])
            assert ok.sum() > 0.1 * 640 * 640
            diff = (proj[channel] - ua[channel])[ok]
            sigma = float(np.median(_noise_sigma(ua[channel][ok], ha)))
            assert abs(np.median(diff)) < 0.05 * sigma, (a.name, b.name, channel)
            robust_std = 1.4826 * np.median(np.abs(diff - np.median(diff)))
            assert robust_std < 2.0 * sigma
            raw_offsets.append(abs(np.median((proj_raw[channel] - da[channel])[ok])))
    # The planted photometry is visible when it is not undone (the check can fail).
    assert np.median(raw_offsets) > 10.0


def test_render_adapts_to_pixel_scale(default_tiles):
    """Sky values depend on the sky position only: a 2x finer grid samples the same sky."""
    paths, _ = default_tiles
    path = next(p for p in paths if not demo_tile_truth(p)["sip"])
    _, wcs, _ = _read(path)
    sky = SyntheticSky.from_demo_tile(path)
    sub = _shifted(wcs, 200, 300)
    coarse = sky.render(sub, (150, 150))
    fine_wcs = sub.deepcopy()
    fine_wcs.wcs.cdelt = np.asarray(sub.wcs.cdelt) / 2.0
    fine_wcs.wcs.crpix = 2.0 * np.asarray(sub.wcs.crpix) - 1.0
    fine = sky.render(fine_wcs, (299, 299))
    np.testing.assert_allclose(fine[:, ::2, ::2], coarse, rtol=1e-4, atol=1e-2)


def test_small_tiles_geometry(small_tiles):
    """Any tile size keeps the layout: 6 tiles, neighbours overlapping by ~20 %."""
    assert len(small_tiles) == 6
    for a, b in _neighbour_pairs(small_tiles):
        da, wa, _ = _read(a)
        db, wb, _ = _read(b)
        fraction = _overlap_fraction(wa, da.shape[1:], wb, db.shape[1:], step=1)
        assert 0.15 <= fraction <= 0.25
    assert sum(demo_tile_truth(p)["sip"] for p in small_tiles) == 1
    assert sum(np.isnan(_read(p)[0]).any() for p in small_tiles) == 1


def test_module_has_no_qt_imports():
    source = Path(demo.__file__).read_text()
    assert "PySide" not in source and "Qt" not in source.replace("QtC", "")


def test_combinations_of_flags(tmp_path):
    for rgb, variation in itertools.product((True, False), repeat=2):
        out = tmp_path / f"{rgb}_{variation}"
        paths = write_demo_tiles(
            out, grid=(2, 1), tile_size=64, rgb=rgb, photometric_variation=variation
        )
        assert len(paths) == 2
        data, _, _ = _read(paths[0])
        assert data.ndim == (3 if rgb else 2)
