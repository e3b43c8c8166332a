"""Tests of photometric matching (:mod:`zemosaic_core.photometry.matching`).

The sky is built here: a smooth background with a gradient, a few soft nebulae and a
few hundred gaussian stars, evaluated analytically in one tangent plane so that any
two tiles agree on the same sky position up to noise. Tiles hold
``gain * sky + pedestal + noise`` with planted gains and per-channel pedestals.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from astropy.wcs.utils import pixel_to_pixel
from reproject import reproject_interp

from zemosaic_core.geometry.planning import plan_mosaic
from zemosaic_core.photometry import matching
from zemosaic_core.photometry.matching import MatchResult, block_median, coarse_factor, match_tiles
from zemosaic_core.tile import Tile

CENTER = (210.0, 35.0)
SCALE = 1.0 / 3600  # 1 arcsec per pixel
NOISE = 3.0
LEVEL = (100.0, 90.0, 80.0)  # sky background per channel
ROTATIONS = (0.0, 2.0, -1.5, 1.0, -2.5, 3.0, -0.5, 1.5, -1.0)
GAINS = (1.06, 0.93, 1.0, 1.09, 0.95, 0.91, 1.03, 0.97, 1.08)
PEDESTALS = (
    (3.0, 5.0, 2.0),
    (6.0, 2.0, 4.0),
    (-2.0, 1.0, 3.0),
    (4.0, 7.0, 5.0),
    (0.0, -3.0, 2.5),
    (8.0, 4.0, 6.0),
    (1.0, 2.0, -1.0),
    (5.0, 3.0, 7.0),
    (2.0, 6.0, 1.0),
)


def tan_wcs(center: tuple[float, float], shape: tuple[int, int], rotation_deg: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(center)
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    t = np.radians(rotation_deg)
    wcs.wcs.cd = SCALE * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    return wcs


SKY_WCS = tan_wcs(CENTER, (1, 1), 0.0)  # the tangent plane the sky is defined in


class Sky:
    """An analytic RGB sky on the tangent plane of `SKY_WCS` (units: arcsec = px)."""

    def __init__(self, seed: int = 1, n_stars: int = 400, extent: float = 500.0) -> None:
        rng = np.random.default_rng(seed)
        # Soft nebulae on a jittered grid over the field, so that every overlap sees
        # some structure (gains are measured from it, not from the stars).
        self.blobs = []
        for bu in np.linspace(-extent * 0.6, extent * 0.6, 5):
            for bv in np.linspace(-extent * 0.4, extent * 0.4, 3):
                self.blobs.append(
                    (
                        bu + rng.uniform(-40, 40),
                        bv + rng.uniform(-40, 40),
                        rng.uniform(35.0, 80.0),
                        rng.uniform(30.0, 120.0),
                        tuple(rng.uniform(0.3, 1.0, 3)),
                    )
                )
        self.stars_u = rng.uniform(-extent, extent, n_stars)
        self.stars_v = rng.uniform(-extent / 1.5, extent / 1.5, n_stars)
        self.stars_amp = np.exp(rng.uniform(np.log(20.0), np.log(3000.0), n_stars))
        self.stars_col = rng.uniform(0.6, 1.2, (n_stars, 3))
        self.star_sigma = 1.3

    def render(self, wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
        """The noise-free sky at every pixel of ``wcs``: float64 ``(3, H, W)``."""
        yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
        u, v = pixel_to_pixel(wcs, SKY_WCS, xx, yy)
        out = np.empty((3,) + shape)
        for c in range(3):
            out[c] = LEVEL[c] + 0.06 * u - 0.04 * v
        for bu, bv, s, amp, col in self.blobs:
            g = amp * np.exp(-((u - bu) ** 2 + (v - bv) ** 2) / (2 * s * s))
            for c in range(3):
                out[c] += col[c] * g
        umin, umax, vmin, vmax = u.min() - 8, u.max() + 8, v.min() - 8, v.max() + 8
        for su, sv, amp, col in zip(
            self.stars_u, self.stars_v, self.stars_amp, self.stars_col, strict=True
        ):
            if not (umin < su < umax and vmin < sv < vmax):
                continue
            r2 = (u - su) ** 2 + (v - sv) ** 2
            near = r2 < 64.0
            g = amp * np.exp(-r2[near] / (2 * self.star_sigma**2))
            for c in range(3):
                out[c][near] += col[c] * g
        return out


def make_tiles(
    grid: tuple[int, int] = (3, 2),
    size: int = 180,
    overlap: float = 0.2,
    *,
    gains: tuple[float, ...] = GAINS,
    pedestals: tuple[tuple[float, float, float], ...] = PEDESTALS,
    noise: float = NOISE,
    seed: int = 7,
    sky: Sky | None = None,
) -> tuple[list[Tile], Sky]:
    """Tiles on a ``grid`` (columns, rows): ``gain * sky + pedestal + noise``."""
    sky = sky or Sky()
    rng = np.random.default_rng(seed)
    step = size * (1 - overlap) * SCALE
    tiles = []
    nx, ny = grid
    for row in range(ny):
        for col in range(nx):
            k = row * nx + col
            center = (
                CENTER[0] + (col - (nx - 1) / 2) * step / np.cos(np.radians(CENTER[1])),
                CENTER[1] + (row - (ny - 1) / 2) * step,
            )
            wcs = tan_wcs(center, (size, size), ROTATIONS[k % len(ROTATIONS)])
            truth = sky.render(wcs, (size, size))
            ped = np.asarray(pedestals[k % len(pedestals)])[:, None, None]
            data = gains[k % len(gains)] * truth + ped + rng.normal(0, noise, truth.shape)
            tiles.append(Tile(data=data.astype(np.float32), wcs=wcs, path=Path(f"t{k}.fits")))
    return tiles, sky


@pytest.fixture(scope="module")
def mosaic():
    tiles, sky = make_tiles()
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == len(tiles)
    return tiles, plan


@pytest.fixture(scope="module")
def matched(mosaic) -> MatchResult:
    tiles, plan = mosaic
    return match_tiles(tiles, plan)


def expected(result: MatchResult, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The planted truth in the result's own gauge: gains (N,), offsets (N, 3).

    Matched tiles are ``g_i (G_i sky + P_i) + o_i = alpha sky + beta``: the scale
    ``alpha`` and level ``beta`` of the mosaic are the solver's choice (its median
    gauge), taken here as the medians over tiles of ``g_i G_i`` and ``o_i + g_i P_i``.
    """
    g_true = np.array([GAINS[k] for k in range(n)])
    p_true = np.array([PEDESTALS[k] for k in range(n)])
    alpha = np.median(result.gains[:n] * g_true)
    beta = np.median(result.offsets[:n] + result.gains[:n, None] * p_true, axis=0)
    gains = alpha / g_true
    offsets = beta[None, :] - gains[:, None] * p_true
    return gains, offsets


def overlap_medians(tiles: list[Tile], plan) -> list[np.ndarray]:
    """Per overlapping pair, the per-channel median difference on the output grid."""
    projected = []
    for tile, box in zip(tiles, plan.bboxes, strict=True):
        sub = plan.sub_wcs(box)
        arr = np.stack(
            [
                reproject_interp((tile.data[c], tile.wcs), sub, box.shape, return_footprint=False)
                for c in range(tile.n_channels)
            ]
        )
        projected.append((box, arr))
    out = []
    for i in range(len(tiles)):
        for j in range(i + 1, len(tiles)):
            bi, ai = projected[i]
            bj, aj = projected[j]
            inter = bi.intersect(bj)
            if inter.is_empty:
                continue
            a = ai[(slice(None),) + inter.relative_to(bi)]
            b = aj[(slice(None),) + inter.relative_to(bj)]
            ok = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
            if ok.sum() < 200:
                continue
            out.append(np.median(a[:, ok] - b[:, ok], axis=1))
    return out


# --------------------------------------------------------------------------- recovery


def test_recovers_planted_gains_and_offsets(mosaic, matched):
    tiles, plan = mosaic
    gains, offsets = expected(matched, len(tiles))
    # Planted gains of 0.91..1.09 on a structured sky: every gain is proven.
    assert matched.gain_fitted.all()
    # The level is the tiles' median one: the median log gain is 0.
    assert abs(np.median(np.log(matched.gains))) < 1e-12
    assert matched.gains.shape == (len(tiles),)
    assert matched.offsets.shape == (len(tiles), 3)
    np.testing.assert_allclose(matched.gains, gains, rtol=0.01)
    np.testing.assert_allclose(matched.offsets, offsets, atol=0.5 * NOISE)


def test_corrected_data_is_gain_times_data_plus_offset(mosaic, matched):
    tiles, _ = mosaic
    for t, m, g, o in zip(tiles, matched.tiles, matched.gains, matched.offsets, strict=True):
        assert m.data.dtype == np.float32 and m.data.shape == t.data.shape
        assert m.wcs is t.wcs and m.path == t.path
        want = g * t.data.astype(np.float64) + o[:, None, None]
        np.testing.assert_allclose(m.data, want, rtol=1e-5, atol=1e-3)


def test_consistent_noise_free_tiles_are_left_alone():
    """Tiles that already agree: gains 1 and offsets 0 (to rounding), no false sources."""
    tiles, _ = make_tiles(gains=(1.0,), pedestals=((0.0, 0.0, 0.0),), noise=0.0, sky=Sky(n_stars=0))
    plan, _ = plan_mosaic(tiles)
    result = match_tiles(tiles, plan)
    np.testing.assert_allclose(result.gains, 1.0, atol=1e-3)
    np.testing.assert_allclose(result.offsets, 0.0, atol=0.05)


def test_overlap_of_pure_noise_gives_no_gain(caplog):
    """Flat tiles: nothing to measure a gain on, so gains stay 1; offsets still match."""
    rng = np.random.default_rng(5)
    tiles = []
    for k, (dx, level) in enumerate([(-0.5, 100.0), (0.5, 130.0)]):
        center = (CENTER[0] + dx * 150 * SCALE / np.cos(np.radians(CENTER[1])), CENTER[1])
        data = level + rng.normal(0, NOISE, (3, 180, 180))
        wcs = tan_wcs(center, (180, 180), 0.0)
        tiles.append(Tile(data=data.astype(np.float32), wcs=wcs, path=Path(f"flat{k}.fits")))
    plan, _ = plan_mosaic(tiles)
    with caplog.at_level(logging.WARNING, logger="zemosaic_core.photometry.matching"):
        result = match_tiles(tiles, plan)
    assert not caplog.records
    assert np.all(result.gains == 1.0)
    # Anchored on the median level: each tile moves half way.
    np.testing.assert_allclose(result.offsets[0], 15.0, atol=0.2 * NOISE)
    np.testing.assert_allclose(result.offsets[1], -15.0, atol=0.2 * NOISE)


def test_real_noise_dominated_overlap_gives_no_wild_gain(real_data):
    """Two INTEGRAL/ISGRI sky images (noise and a few sources): gains stay 1."""
    from zemosaic_core.io.loading import load_tiles

    paths = sorted((real_data / "isgri_integral").glob("isgri_sky_ima_*.fits.gz"))
    tiles = load_tiles(paths).tiles
    plan, kept = plan_mosaic(tiles)
    result = match_tiles(kept, plan)
    assert len(kept) == 2
    np.testing.assert_allclose(result.gains, 1.0, atol=0.05)


def test_offset_mode_keeps_unit_gains(mosaic):
    tiles, plan = mosaic
    ones = tuple(1.0 for _ in GAINS)
    tiles, _ = make_tiles(gains=ones)
    result = match_tiles(tiles, plan, mode="offset")
    assert np.all(result.gains == 1.0)
    p_true = np.array([PEDESTALS[k] for k in range(len(tiles))])
    level = np.median(result.offsets + p_true, axis=0)
    np.testing.assert_allclose(result.offsets, level - p_true, atol=0.3 * NOISE)


def test_coarse_path_recovers_gains(monkeypatch):
    """With a coarse grid (k = 4 here), block medians feed the same solve."""
    monkeypatch.setattr(matching, "COARSE_TARGET", 128)
    tiles, _ = make_tiles(size=240)
    plan, _ = plan_mosaic(tiles)
    assert coarse_factor(plan.shape) >= 4
    result = match_tiles(tiles, plan)
    gains, offsets = expected(result, len(tiles))
    np.testing.assert_allclose(result.gains, gains, rtol=0.01)
    np.testing.assert_allclose(result.offsets, offsets, atol=0.5 * NOISE)


# --------------------------------------------------------------------------- robustness


def test_trail_and_nan_border_barely_move_gains(mosaic, matched):
    tiles, plan = mosaic
    spoiled = list(tiles)
    # A bright satellite trail across tile 1, through its overlaps with tiles 0 and 2 ...
    data = tiles[1].data.copy()
    h, w = tiles[1].shape
    yy, xx = np.mgrid[0:h, 0:w]
    line = np.abs(0.35 * xx - yy + 40) < 1.5
    data[:, line] += 800.0
    spoiled[1] = tiles[1].with_data(data)
    # ... and a ragged NaN border on tile 3.
    data = tiles[3].data.copy()
    data[:, :, :25] = np.nan
    data[:, :12, :] = np.nan
    data[:, 100:140, 160:] = np.nan
    spoiled[3] = tiles[3].with_data(data)
    result = match_tiles(spoiled, plan)
    np.testing.assert_allclose(result.gains, matched.gains, rtol=0.005)


def test_extended_glow_in_an_overlap_is_rejected(mosaic, matched):
    """A 60 x 30 px glow (+13 sigma) in tile 0's overlap with tile 1.

    Too large for the source mask; the pair fit clips it. Gains and offsets barely move.
    """
    tiles, plan = mosaic
    spoiled = list(tiles)
    data = tiles[0].data.copy()
    data[:, 60:120, 3:33] += 40.0
    spoiled[0] = tiles[0].with_data(data)
    result = match_tiles(spoiled, plan)
    np.testing.assert_allclose(result.gains, matched.gains, rtol=0.005)
    np.testing.assert_allclose(result.offsets, matched.offsets, atol=0.2 * NOISE)


def test_stars_do_not_sway_gains():
    """The same sky and noise without stars and with twice as many: gains within 0.5 %."""
    tiles, _ = make_tiles(sky=Sky(n_stars=0))
    crowded, _ = make_tiles(sky=Sky(n_stars=800))
    plan, _ = plan_mosaic(tiles)
    a = match_tiles(tiles, plan)
    b = match_tiles(crowded, plan)
    np.testing.assert_allclose(b.gains, a.gains, rtol=0.005)


def test_none_mode_returns_input_unchanged(mosaic):
    tiles, plan = mosaic
    result = match_tiles(tiles, plan, mode="none")
    assert all(a is b for a, b in zip(result.tiles, tiles, strict=True))
    assert np.all(result.gains == 1.0)
    assert result.offsets.shape == (len(tiles), 3) and np.all(result.offsets == 0.0)


def test_input_arrays_are_never_modified(mosaic):
    tiles, plan = mosaic
    copies = [t.data.copy() for t in tiles]
    for mode in ("affine", "none"):
        result = match_tiles(tiles, plan, mode=mode)
        for t, c in zip(tiles, copies, strict=True):
            np.testing.assert_array_equal(t.data, c)
        for t, m in zip(tiles, result.tiles, strict=True):
            if m is not t:
                assert not np.shares_memory(m.data, t.data)


def test_single_tile_is_identity(mosaic):
    tiles, _ = mosaic
    plan, _ = plan_mosaic(tiles[:1])
    result = match_tiles(tiles[:1], plan)
    assert result.tiles[0] is tiles[0]
    assert result.gains.tolist() == [1.0]
    assert np.all(result.offsets == 0.0)


def test_isolated_tile_is_left_as_is_with_a_warning(mosaic, caplog):
    tiles, _ = mosaic
    far = tan_wcs((CENTER[0] + 0.3, CENTER[1] + 0.2), tiles[0].shape, 0.0)
    lonely = Tile(data=tiles[0].data * 1.2 + 10, wcs=far, path=Path("lonely.fits"))
    group = list(tiles) + [lonely]
    plan, kept = plan_mosaic(group, keep_isolated=True)
    assert len(kept) == len(group)
    with caplog.at_level(logging.WARNING, logger="zemosaic_core.photometry.matching"):
        result = match_tiles(group, plan)
    assert result.tiles[-1] is lonely
    assert result.gains[-1] == 1.0 and np.all(result.offsets[-1] == 0.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("lonely.fits" in r.getMessage() for r in warnings)
    # The others are still matched.
    gains, _ = expected(result, len(tiles))
    np.testing.assert_allclose(result.gains[:-1], gains, rtol=0.01)


def test_deterministic(mosaic, matched):
    tiles, plan = mosaic
    a = matched
    b = match_tiles(tiles, plan)
    np.testing.assert_array_equal(a.gains, b.gains)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for ta, tb in zip(a.tiles, b.tiles, strict=True):
        np.testing.assert_array_equal(ta.data, tb.data)


def test_logs_summary_and_per_tile_lines(mosaic, caplog):
    tiles, plan = mosaic
    with caplog.at_level(logging.DEBUG, logger="zemosaic_core.photometry.matching"):
        match_tiles(tiles, plan)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(info) == 1 and "gains" in info[0] and "offsets" in info[0]
    for t in tiles:
        assert any(m.startswith(f"{t.name}: gain=") and "offsets=[" in m for m in debug)


def test_unknown_mode_and_mismatched_plan_are_refused(mosaic):
    tiles, plan = mosaic
    with pytest.raises(ValueError, match="mode"):
        match_tiles(tiles, plan, mode="gain")
    with pytest.raises(ValueError, match="plan"):
        match_tiles(tiles[:3], plan)


# --------------------------------------------------------------------------- seams


def test_seams_vanish_after_matching(mosaic, matched):
    tiles, plan = mosaic
    before = overlap_medians(tiles, plan)
    after = overlap_medians(matched.tiles, plan)
    assert len(after) >= 7
    # The check can fail: unmatched tiles have seams of many sigma.
    assert max(np.abs(d).max() for d in before) > 2 * NOISE
    assert max(np.abs(d).max() for d in after) < 0.5 * NOISE


def sky_noise(tiles: list[Tile]) -> float:
    """Median over tiles of the pixel noise sigma (MAD of neighbour differences)."""
    sigmas = []
    for t in tiles:
        d = np.diff(t.data, axis=2)
        d = d[np.isfinite(d)]
        sigmas.append(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))
    return float(np.median(sigmas))


def test_demo_tiles_match_without_seams(tmp_path):
    demo = pytest.importorskip("zemosaic_core.datasets.demo")
    loading = pytest.importorskip("zemosaic_core.io.loading")
    paths = demo.write_demo_tiles(tmp_path, seed=0, tile_size=200)
    tiles = loading.load_tiles(paths).tiles
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == len(paths)
    result = match_tiles(kept, plan)
    sigma = sky_noise(kept)
    before = overlap_medians(kept, plan)
    after = overlap_medians(result.tiles, plan)
    assert len(after) == len(before) >= 7
    assert max(np.abs(d).max() for d in before) > 2 * sigma  # seams without matching
    assert max(np.abs(d).max() for d in after) < 0.5 * sigma
    planted = np.array([demo.demo_tile_truth(p)["gain"] for p in paths])
    want = planted[0] / planted
    np.testing.assert_allclose(result.gains / result.gains[0], want, rtol=0.02)


# --------------------------------------------------------------------------- plumbing


def test_weight_zero_pixels_count_as_no_data(mosaic, matched):
    tiles, plan = mosaic
    spoiled = list(tiles)
    data = tiles[4].data.copy()
    data[:, 60:150, :40] = 5000.0  # garbage, but with weight 0
    weights = np.ones(tiles[4].shape, dtype=np.float32)
    weights[60:150, :40] = 0.0
    spoiled[4] = Tile(data=data, wcs=tiles[4].wcs, path=tiles[4].path, weight_map=weights)
    result = match_tiles(spoiled, plan)
    np.testing.assert_allclose(result.gains, matched.gains, rtol=0.005)


def test_separate_groups_are_matched_within_themselves(caplog):
    tiles, _ = make_tiles(grid=(2, 1))
    far, _ = make_tiles(grid=(2, 1))
    shifted = []
    for k, t in enumerate(far):
        wcs = t.wcs.deepcopy()
        wcs.wcs.crval = [wcs.wcs.crval[0], wcs.wcs.crval[1] + 0.2]
        shifted.append(Tile(data=t.data, wcs=wcs, path=Path(f"far{k}.fits")))
    group = tiles + shifted
    plan, kept = plan_mosaic(group, keep_isolated=True)
    assert len(kept) == 4
    with caplog.at_level(logging.WARNING, logger="zemosaic_core.photometry.matching"):
        result = match_tiles(group, plan)
    # Two groups of two: the second (the first of equal sizes is the largest) is named.
    text = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert group[2].name in text and group[3].name in text
    # Each group is anchored on its own median: its log gains sum to 0.
    for first in (0, 2):
        assert np.log(result.gains[first] * result.gains[first + 1]) == pytest.approx(0, abs=1e-12)
    # One faint overlap per group: a looser tolerance (the solve is the same per group).
    ratio = GAINS[0] / GAINS[1]
    assert result.gains[1] / result.gains[0] == pytest.approx(ratio, rel=0.03)
    assert result.gains[3] / result.gains[2] == pytest.approx(ratio, rel=0.03)


def test_out_of_range_gain_is_clipped_with_a_warning(caplog):
    gains = (1.0, 0.3, 1.0, 1.0, 1.0, 1.0)  # tile 1 would need a gain of 3.3
    tiles, _ = make_tiles(gains=gains)
    plan, _ = plan_mosaic(tiles)
    with caplog.at_level(logging.WARNING, logger="zemosaic_core.photometry.matching"):
        result = match_tiles(tiles, plan)
    assert result.gains[1] == pytest.approx(matching.GAIN_LIMITS[1])
    assert np.all(result.gains > 0)
    assert any("t1.fits" in r.getMessage() and "clipped" in r.getMessage() for r in caplog.records)


def test_cancel_and_progress(mosaic):
    from zemosaic_core.errors import BuildCancelled
    from zemosaic_core.runtime.cancel import CancelToken

    tiles, plan = mosaic
    calls = []
    match_tiles(tiles, plan, progress=lambda *a: calls.append(a))
    assert calls and all(phase == "match" for phase, _, _ in calls)
    assert calls[-1][1] == calls[-1][2]
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
    token = CancelToken()
    token.cancel()
    with pytest.raises(BuildCancelled):
        match_tiles(tiles, plan, cancel=token)


def synthetic_pairs(corrupt: tuple[int, int] | None, seed: int = 0):
    """Pair fits of a 3 x 3 grid (with diagonals) for known gains and offsets."""
    rng = np.random.default_rng(seed)
    n, c = 9, 3
    gains = rng.uniform(0.9, 1.1, n)
    gains[0] = 1.0
    offsets = rng.normal(0, 5, (n, c))
    offsets[0] = 0.0
    pairs = []
    for i in range(n):
        for j in range(i + 1, n):
            (ri, ci), (rj, cj) = divmod(i, 3), divmod(j, 3)
            if max(abs(ri - rj), abs(ci - cj)) != 1:
                continue
            level = rng.uniform(100, 200, c)  # corrected sky level in the overlap
            mean_a = (level - offsets[i]) / gains[i] + rng.normal(0, 0.02, c)
            mean_b = (level - offsets[j]) / gains[j]
            log_r = np.log(gains[i] / gains[j]) + rng.normal(0, 0.001)
            if (i, j) == corrupt:
                mean_b = mean_b + 20.0
                log_r += 0.05
            side = ri == rj or ci == cj
            pairs.append(
                matching._Pair(
                    i=i,
                    j=j,
                    n=5000 if side else 1000,
                    log_r=float(log_r),
                    var_log_r=1e-6 if side else 5e-6,
                    mean_a=mean_a,
                    mean_b=mean_b,
                    scale=np.full(c, 3.0),
                )
            )
    return pairs, gains, offsets


def test_global_solve_rejects_an_inconsistent_pair(caplog):
    names = [f"t{i}" for i in range(9)]
    pairs, gains, offsets = synthetic_pairs(corrupt=(4, 5))
    with caplog.at_level(logging.DEBUG, logger="zemosaic_core.photometry.matching"):
        _, got_gains, got_offsets, fitted = matching._solve_global(
            9, 3, pairs, np.zeros((9, 3)), True, names, None
        )
    assert any("t4 / t5 rejected" in r.getMessage() for r in caplog.records)
    assert fitted.sum() >= 7  # gains of 0.9..1.1 measured to 0.1 %: (nearly) all kept
    # The truth is in tile 0's gauge; the solve's is the median one.
    scale = got_gains[0]
    np.testing.assert_allclose(got_gains / scale, gains, rtol=0.003)
    np.testing.assert_allclose(got_offsets - got_offsets[0], scale * offsets, atol=0.6)
    # Clean pairs: nothing rejected, the same answer.
    caplog.clear()
    pairs, _, _ = synthetic_pairs(corrupt=None)
    with caplog.at_level(logging.DEBUG, logger="zemosaic_core.photometry.matching"):
        _, clean_gains, _, _ = matching._solve_global(
            9, 3, pairs, np.zeros((9, 3)), True, names, None
        )
    assert not any("rejected" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(clean_gains / clean_gains[0], gains, rtol=0.003)


def test_coarse_samples_sit_at_block_centres():
    """On a linear ramp, a coarse sample is exactly the ramp at its block's centre."""
    size, k = 64, 4
    wcs = tan_wcs(CENTER, (size, size), 0.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ramp = np.stack([xx + 100 * yy] * 3)
    tile = Tile(data=ramp, wcs=wcs, path=Path("ramp.fits"))
    plan, _ = plan_mosaic([tile])
    box = plan.bboxes[0]
    coarse_shape = (-(-plan.shape[0] // k), -(-plan.shape[1] // k))
    sample = matching._sample_tile(tile, plan, box, k, coarse_shape)
    rows = np.arange(sample.box.y0, sample.box.y1) * k + (k - 1) / 2
    cols = np.arange(sample.box.x0, sample.box.x1) * k + (k - 1) / 2
    xt, yt = pixel_to_pixel(plan.wcs, wcs, *np.meshgrid(cols, rows))
    want = xt + 100 * yt
    ok = np.isfinite(sample.values[0])
    assert ok.sum() > 100
    np.testing.assert_allclose(sample.values[0][ok], want[ok], atol=0.05)


# --------------------------------------------------------------------------- helpers


def test_coarse_factor_rule():
    assert coarse_factor((300, 450)) == 1
    assert coarse_factor((512, 512)) == 1
    assert coarse_factor((400, 513)) == 2
    for side in (513, 1000, 2600, 5000, 40000):
        k = coarse_factor((side // 2, side))
        assert 256 <= -(-side // k) <= 512


def test_block_median_ignores_nan_and_outliers():
    data = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    out = block_median(data, 4)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out, np.median(data.reshape(2, 2, 4, 2, 4), axis=(2, 4)))
    spiky = data.copy()
    spiky[:, 1, 1] = 1e6  # a star / hot pixel
    spiky[:, 2, 2] = np.nan  # a few NaN pixels: the block stays
    spiky[:, 4:, 4:5] = np.nan  # a quarter of the block: still >= 3/4 finite
    spiky[:, 4:6, 0:4] = np.nan  # half the block: NaN
    out = block_median(spiky, 4)
    block = spiky[0, :4, :4]
    assert out[0, 0, 0] == pytest.approx(np.nanmedian(block))
    assert out[0, 1, 1] == pytest.approx(np.nanmedian(spiky[0, 4:, 4:]))
    assert np.isnan(out[0, 1, 0])


def big_tiles(size: int = 1000, seed: int = 3) -> list[Tile]:
    """Nine unrotated RGB tiles of ``size``: a cheap smooth sky in mosaic pixel units."""
    rng = np.random.default_rng(seed)
    step = int(size * 0.8)
    tiles = []
    axis = np.arange(size, dtype=np.float32)
    for k in range(9):
        row, col = divmod(k, 3)
        center = (
            CENTER[0] - (col - 1) * step * SCALE / np.cos(np.radians(CENTER[1])),
            CENTER[1] + (row - 1) * step * SCALE,
        )
        x = axis[None, :] + col * step - 1.5 * size
        y = axis[:, None] + row * step - 1.5 * size
        base = 100 + 0.01 * x + 0.02 * y + 60 * np.exp(-(x * x + y * y) / (2 * 500.0**2))
        data = np.stack([base, 0.9 * base, 0.8 * base]) * np.float32(GAINS[k])
        data += rng.standard_normal(data.shape, dtype=np.float32) * np.float32(NOISE)
        tiles.append(Tile(data=data, wcs=tan_wcs(center, (size, size), 0.0), path=Path(f"b{k}")))
    return tiles


def test_nine_full_size_tiles_recover_their_gains():
    """Nine RGB tiles of 1000 x 1000 (the benchmark's size; its timing lives in
    benchmarks/, not here): planted gains come back to 1 %."""
    tiles = big_tiles()
    plan, _ = plan_mosaic(tiles)
    assert coarse_factor(plan.shape) == 6
    result = match_tiles(tiles, plan)
    g_true = np.array(GAINS)
    alpha = np.median(result.gains * g_true)
    np.testing.assert_allclose(result.gains, alpha / g_true, rtol=0.01)


# --------------------------------------------------------------------------- never harms


def cutouts(n: int = 20, size: int = 100, seed: int = 11) -> tuple[list[Tile], list[np.ndarray]]:
    """``n`` overlapping cut-outs of one image on its own pixel grid, tile i offset by +i.

    The overlaps agree exactly (same pixels, integer shifts), as in astropy reproject's
    own mosaicking test; returns the tiles and the true cut-outs.
    """
    rng = np.random.default_rng(seed)
    h, w = 260, 340
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    image = 100 + 0.05 * xx + 0.03 * yy + 40 * np.sin(xx / 23.0) * np.cos(yy / 17.0)
    image += rng.normal(0, 2.0, (h, w))
    base = tan_wcs(CENTER, (h, w), 0.0)
    tiles, truths = [], []
    for k in range(n):
        y0 = int(rng.integers(0, h - size))
        x0 = int(rng.integers(0, w - size))
        cut = (
            np.stack([image[y0 : y0 + size, x0 : x0 + size]] * 3)
            * np.array([1.0, 0.9, 0.8])[:, None, None]
        )
        wcs = base.deepcopy()
        wcs.wcs.crpix = [base.wcs.crpix[0] - x0, base.wcs.crpix[1] - y0]
        tiles.append(Tile(data=(cut + k).astype(np.float32), wcs=wcs, path=Path(f"cut{k}.fits")))
        truths.append(cut)
    return tiles, truths


@pytest.mark.parametrize("mode", ["offset", "affine"])
def test_exact_offsets_come_out_as_one_constant(mode):
    """Issue 10: tile i offset by +i, overlaps exact: the mosaic is one constant away
    from the truth (no ridge or prior biases exact data, no good pair rejected)."""
    tiles, truths = cutouts()
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == len(tiles)
    result = match_tiles(tiles, plan, mode=mode)
    shift = np.array(
        [np.median(m.data - t, axis=(1, 2)) for m, t in zip(result.tiles, truths, strict=True)]
    )
    assert np.all(result.gains == 1.0)
    level = float(np.median([t.mean() for t in truths]))
    step = np.abs(shift - np.median(shift, axis=0)).max()
    assert step < 1e-6 * level, step
    # Anchored on the median tile: the offsets are centred on its +i.
    assert abs(np.median(shift) - np.median(np.arange(len(tiles)))) < 1.0


def test_solver_has_no_ridge_for_weights_of_many_decades():
    """Exact differences with weights from 1e11 to 1e14 are solved exactly."""
    rng = np.random.default_rng(2)
    n = 20
    truth = np.arange(n, dtype=float)
    i, j = np.triu_indices(n, 1)
    y = truth[i] - truth[j]
    w = 10 ** rng.uniform(11, 14, i.size)
    x, z, _, _ = matching._robust_solve(n, i, j, y, w, np.zeros(n, dtype=bool))
    np.testing.assert_allclose(x - x[0], truth, atol=1e-9)
    assert np.median(x) == pytest.approx(0.0, abs=1e-12)


def test_consistent_tiles_keep_gains_of_exactly_one():
    """Same sky, same level, rotated tiles with noise: model selection refuses gains."""
    tiles, _ = make_tiles(gains=(1.0,), pedestals=((0.0, 0.0, 0.0),))
    plan, _ = plan_mosaic(tiles)
    result = match_tiles(tiles, plan)
    assert not result.gain_fitted.any()
    assert np.all(result.gains == 1.0)
    np.testing.assert_allclose(result.offsets, 0.0, atol=0.3 * NOISE)


def test_blank_tile_is_never_the_reference(caplog):
    """An all-zero tile with the largest overlap (the centre of a 3 x 3 grid) does not
    drag the mosaic to 0: the level stays the tiles' median level, with a WARNING."""
    ones = (1.0,) * 9
    zero = ((0.0, 0.0, 0.0),)
    tiles, _ = make_tiles(grid=(3, 3), size=120, gains=ones, pedestals=zero)
    tiles[4] = Tile(data=np.zeros_like(tiles[4].data), wcs=tiles[4].wcs, path=Path("blank.fits"))
    plan, _ = plan_mosaic(tiles)
    with caplog.at_level(logging.WARNING, logger="zemosaic_core.photometry.matching"):
        result = match_tiles(tiles, plan)
    assert any("blank.fits" in r.getMessage() for r in caplog.records)
    assert result.tiles[4] is tiles[4]
    for before, after in zip(tiles, result.tiles, strict=True):
        if before is tiles[4]:
            continue
        np.testing.assert_allclose(np.median(after.data), np.median(before.data), rtol=0.01)


def test_nearly_empty_tile_does_not_set_the_level():
    """A tile that is NaN but for a corner, far below the others, moves nothing else."""
    tiles, _ = make_tiles(gains=(1.0,), pedestals=((0.0, 0.0, 0.0),))
    data = np.full_like(tiles[1].data, np.nan)
    data[:, :40, :40] = tiles[1].data[:, :40, :40] - 80.0
    tiles[1] = tiles[1].with_data(data)
    plan, _ = plan_mosaic(tiles)
    result = match_tiles(tiles, plan)
    others = [k for k in range(len(tiles)) if k != 1]
    np.testing.assert_allclose(result.gains[others], 1.0, atol=1e-3)
    np.testing.assert_allclose(result.offsets[others], 0.0, atol=0.3 * NOISE)


def sub_stack(gains: tuple[float, ...], size: int = 120, seed: int = 4) -> list[Tile]:
    """Subs of one field with small dithers (over 90 % overlap), one gain per sub."""
    sky = Sky(seed=seed, extent=200.0)
    rng = np.random.default_rng(seed)
    tiles = []
    for k, g in enumerate(gains):
        dx, dy = rng.uniform(-6, 6, 2) * SCALE
        center = (CENTER[0] + dx / np.cos(np.radians(CENTER[1])), CENTER[1] + dy)
        wcs = tan_wcs(center, (size, size), float(rng.uniform(-1, 1)))
        truth = sky.render(wcs, (size, size))
        data = g * truth + rng.normal(0, NOISE, truth.shape)
        tiles.append(Tile(data=data.astype(np.float32), wcs=wcs, path=Path(f"sub{k}.fits")))
    return tiles


def test_a_cloud_on_a_few_subs_is_found():
    """Issue 11: a cloud (gain 0.7) on 2 of 12 subs is found; the clear subs stay at 1."""
    gains = (1.0,) * 5 + (0.7,) + (1.0,) * 4 + (0.7,) + (1.0,)
    tiles = sub_stack(gains)
    plan, _ = plan_mosaic(tiles)
    result = match_tiles(tiles, plan)
    cloudy = [5, 10]
    clear = [k for k in range(len(gains)) if k not in cloudy]
    assert result.gain_fitted[cloudy].all()
    np.testing.assert_allclose(result.gains[cloudy], 1 / 0.7, rtol=0.01)
    np.testing.assert_allclose(result.gains[clear], 1.0, atol=0.003)


def test_overlap_graph_is_linear_in_the_number_of_tiles():
    """1000 subs of one field and a 40 x 25 grid of strongly overlapping tiles: O(n)
    pairs (not n (n - 1) / 2), every tile connected, the largest overlaps kept."""
    from zemosaic_core.geometry.planning import BoundingBox

    rng = np.random.default_rng(0)
    subs = [
        BoundingBox(int(y), int(y) + 500, int(x), int(x) + 800)
        for y, x in rng.integers(0, 40, (1000, 2))
    ]
    grid = [
        BoundingBox(r * 30, r * 30 + 100, c * 30, c * 30 + 100)
        for r in range(25)
        for c in range(40)
    ]
    for boxes in (subs, grid):
        n = len(boxes)
        pairs = matching.overlap_graph(boxes)
        assert len(pairs) <= n * matching.NEIGHBOURS + n - 1
        assert len(set(matching._components(n, pairs))) == 1
    # On the grid, each tile keeps its 4 direct neighbours (the largest overlaps).
    pairs = set(matching.overlap_graph(grid))
    assert (0, 1) in pairs and (0, 40) in pairs and (0, 3) not in pairs


def test_overlap_graph_keeps_groups_connected_by_weak_links():
    """A chain whose links are each tile's smallest overlap still comes out connected."""
    from zemosaic_core.geometry.planning import BoundingBox

    # Two dense clusters of 12 tiles each, joined only by one thin overlap.
    boxes = [BoundingBox(0, 100, k, 100 + k) for k in range(12)]
    boxes += [BoundingBox(0, 100, 110 + k, 210 + k) for k in range(12)]
    pairs = matching.overlap_graph(boxes, neighbours=3)
    assert len(set(matching._components(len(boxes), pairs))) == 1


def test_matching_uses_a_bounded_number_of_pairs():
    """30 subs of one field: every pair overlaps (435 pairs), matching fits O(n)."""
    tiles = sub_stack((1.0,) * 30, size=64)
    plan, _ = plan_mosaic(tiles)
    result = match_tiles(tiles, plan)
    assert result.n_pairs <= 30 * matching.NEIGHBOURS + 29
    assert np.all(result.gains == 1.0)


def test_garbage_pair_does_not_divide_by_zero():
    """Issue 13: a tile of garbage values made the Deming slope round to 0 and
    `_fit_pair` divided by it (ZeroDivisionError)."""
    for seed in range(10):
        rng = np.random.default_rng(seed)
        a = rng.normal(0, 1e20, (3, 300))
        b = rng.normal(100, 1, (3, 300))
        pair = matching._fit_pair(0, 1, a, b, np.ones_like(a), np.ones_like(b), True)
        assert pair is None or not np.isfinite(pair.var_log_r)


def test_tile_with_random_bytes_does_not_kill_the_build():
    """25 % of a tile's pixels replaced by random bytes: matching completes, the good
    tiles still match each other."""
    tiles, _ = make_tiles()
    plan, _ = plan_mosaic(tiles)
    clean = match_tiles(tiles, plan)
    rng = np.random.default_rng(1)
    data = tiles[2].data.copy()
    hit = rng.random(data.shape[1:]) < 0.25
    junk = rng.integers(0, 256, (3, int(hit.sum()) * 4), dtype=np.uint8).view(np.float32)
    with np.errstate(all="ignore"):
        data[:, hit] = junk * np.float32(1e20)
    spoiled = list(tiles)
    spoiled[2] = tiles[2].with_data(data)
    result = match_tiles(spoiled, plan)
    good = [0, 1, 3, 4, 5]
    ratio = result.gains[good] / clean.gains[good]
    np.testing.assert_allclose(ratio / np.median(ratio), 1.0, rtol=0.01)


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_exact_offsets_build_to_one_constant_with_defaults(tmp_path, monkeypatch, backend):
    """Issue 10: the +i cut-outs built with the defaults (affine + two-pass), on both
    backends, differ from the true cut-outs built plainly by one constant."""
    from synthetic import write_tile

    from zemosaic_core.config import BuildConfig, TwoPassSpec
    from zemosaic_core.pipeline import build_mosaic

    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    tiles, truths = cutouts(n=12, size=90)
    (tmp_path / "shifted").mkdir()
    (tmp_path / "true").mkdir()
    for tile, truth in zip(tiles, truths, strict=True):
        write_tile(tmp_path / "shifted" / tile.path.name, tile)
        exact = Tile(data=truth.astype(np.float32), wcs=tile.wcs, path=tile.path)
        write_tile(tmp_path / "true" / tile.path.name, exact)
    built = build_mosaic([tmp_path / "shifted"], BuildConfig(output=None, backend=backend))
    plain = build_mosaic(
        [tmp_path / "true"],
        BuildConfig(output=None, backend="cpu", match="none", two_pass=TwoPassSpec(enabled=False)),
    )
    assert built.backend == backend
    diff = built.image - plain.image
    ok = np.isfinite(diff).all(axis=0)
    assert ok.mean() > 0.5
    level = float(np.nanmedian(plain.image))
    step = float(np.ptp(diff[:, ok] - np.median(diff[:, ok], axis=1)[:, None]))
    assert step < 1e-5 * level, step


def test_coarse_blocks_grow_with_depth_so_samples_stay_flat():
    """Hundreds of subs over one field are matched on coarser blocks: the coarse pixels
    held for all tiles together stay under the bound, whatever the number of subs."""
    from zemosaic_core.geometry.planning import BoundingBox
    from zemosaic_core.photometry.matching import MAX_COARSE_CELLS, depth_factor

    box = BoundingBox(0, 1000, 0, 1800)
    assert depth_factor([box] * 4) == 1  # a few tiles: the canvas rule decides
    factors = []
    for n in (60, 600, 3000):
        k = depth_factor([box] * n)
        cells = n * -(-1000 // k) * -(-1800 // k)
        assert cells <= 1.1 * MAX_COARSE_CELLS, (n, k, cells)
        factors.append(k)
    assert factors == sorted(factors) and factors[-1] > factors[0]
