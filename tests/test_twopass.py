"""Two-pass coverage renormalization (docs/architecture.md §5) on the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import grid_tiles

from zemosaic_core.config import CombineSpec, TwoPassSpec
from zemosaic_core.engine.backends.cpu import CpuBackend
from zemosaic_core.engine.coadd import coadd_pass
from zemosaic_core.geometry.planning import plan_mosaic
from zemosaic_core.photometry.twopass import compute_gains, well_covered_mask

MEAN = CombineSpec("mean")
SPEC = TwoPassSpec(sigma=20.0)


@pytest.fixture(scope="module")
def clean():
    tiles = grid_tiles(3, 2, size=120, overlap=0.3, noise=0.5)
    plan, tiles = plan_mosaic(tiles)
    first = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    return tiles, plan, first


def _gains(tiles, plan, first, spec=SPEC):
    return compute_gains(CpuBackend(), tiles, plan, first.coverage[0], spec)


def test_consistent_tiles_give_unit_gains_and_identity(clean):
    tiles, plan, first = clean
    gains = _gains(tiles, plan, first)
    assert np.all(np.abs(gains - 1) < 1e-3)
    second = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN, pass_index=2, gains=gains)
    covered = first.coverage[0] > 0
    rel = np.abs(second.image[:, covered] - first.image[:, covered]) / first.image[:, covered]
    assert rel.max() < 1e-3


def test_planted_gain_is_recovered(clean):
    tiles, plan, _ = clean
    planted = 1.12
    scaled = list(tiles)
    scaled[4] = tiles[4].with_data(tiles[4].data * np.float32(planted))
    first = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    gains = _gains(scaled, plan, first)
    assert abs(gains[4] * planted - 1) < 0.01
    others = np.delete(gains, 4)
    assert np.all(np.abs(others - 1) < 0.01)


def test_gains_are_clipped(clean):
    tiles, plan, _ = clean
    scaled = list(tiles)
    scaled[0] = tiles[0].with_data(tiles[0].data * np.float32(1.6))
    first = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    gains = _gains(scaled, plan, first)
    assert gains[0] == pytest.approx(SPEC.gain_clip[0])


def test_satellite_trail_does_not_move_the_gain(clean):
    tiles, plan, first = clean
    base = _gains(tiles, plan, first)
    trailed = list(tiles)
    data = tiles[1].data.copy()
    idx = np.arange(120)
    data[:, idx, np.clip(idx // 2 + 30, 0, 119)] += 400.0  # a bright diagonal trail
    data[:, 50:53, :] += 300.0
    trailed[1] = tiles[1].with_data(data)
    first_t = coadd_pass(CpuBackend(), trailed, plan, combine=MEAN)
    gains = _gains(trailed, plan, first_t)
    assert abs(gains[1] / base[1] - 1) < 0.005


def test_channel_ratios_barely_move(clean):
    tiles, plan, _ = clean
    scaled = [
        t.with_data(t.data * np.float32(g))
        for t, g in zip(tiles, (1, 1.05, 0.95, 1.03, 1, 0.97), strict=True)
    ]
    first = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    gains = _gains(scaled, plan, first)
    second = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN, pass_index=2, gains=gains)
    covered = first.coverage[0] > 0
    for c in (1, 2):
        r1 = np.sum(first.image[c][covered]) / np.sum(first.image[0][covered])
        r2 = np.sum(second.image[c][covered]) / np.sum(second.image[0][covered])
        assert abs(r2 / r1 - 1) < 0.005


def test_gate_needs_two_tiles():
    coverage = np.zeros((300, 300), dtype=np.float32)
    coverage[20:280, 20:200] = 1
    coverage[20:280, 60:280] += 1
    well = well_covered_mask(coverage, [1.0, 1.0], TwoPassSpec(sigma=10.0))
    # Single coverage never passes; the blurred gate trims the edges of the 2-tile area.
    assert not well[:, :60].any() and not well[:, 200:].any()
    assert well[150, 130] and not well[150, 62]
    # With coverage squeezed into [0, 1] (the old GPU bug) the gate never opens.
    assert not well_covered_mask(coverage / 2, [1.0, 1.0], TwoPassSpec(sigma=10.0)).any()


def test_gains_from_cpu_and_simulated_gpu_agree(clean):
    from zemosaic_core.engine.backends import GpuBackend

    tiles, plan, _ = clean
    scaled = list(tiles)
    scaled[2] = tiles[2].with_data(tiles[2].data * np.float32(1.07))
    gpu = GpuBackend(simulate=True)
    first_cpu = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    first_gpu = coadd_pass(gpu, scaled, plan, combine=MEAN)
    assert first_gpu.backend == "gpu"
    g_cpu = compute_gains(CpuBackend(), scaled, plan, first_cpu.coverage[0], SPEC)
    g_gpu = compute_gains(gpu, scaled, plan, first_gpu.coverage[0], SPEC)
    # Same coverage semantics, so the same gate and the same gains (to resampling noise).
    assert np.array_equal(
        well_covered_mask(first_cpu.coverage[0], [1] * 6, SPEC),
        well_covered_mask(first_gpu.coverage[0], [1] * 6, SPEC),
    )
    np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-5)
    assert abs(g_cpu[2] * 1.07 - 1) < 0.01


def test_gains_on_a_coarse_lattice_match_the_full_grid(clean, monkeypatch):
    from zemosaic_core.photometry import twopass

    tiles, plan, _ = clean
    scaled = list(tiles)
    scaled[4] = tiles[4].with_data(tiles[4].data * np.float32(1.1))
    first = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    full = _gains(scaled, plan, first)
    monkeypatch.setattr(twopass, "_MAX_SLOTS", 800)  # forces a stride of several px
    coarse = _gains(scaled, plan, first)
    assert abs(coarse[4] * 1.1 - 1) < 0.01
    np.testing.assert_allclose(coarse, full, atol=2e-3)


def test_clipped_fit_runs_once_per_tile(clean, monkeypatch):
    """Issue 10: the gain fit's medians ran in every round (270 calls, 26 s of a 35 s
    build); now each tile's clipped fit runs once, later rounds refit by dot products."""
    from zemosaic_core.photometry import twopass

    tiles, plan, _ = clean
    scaled = list(tiles)
    scaled[1] = tiles[1].with_data(tiles[1].data * np.float32(1.08))
    first = coadd_pass(CpuBackend(), scaled, plan, combine=MEAN)
    calls = []
    original = twopass._clipped_gain

    def counting(a, b):
        calls.append(a.size)
        return original(a, b)

    monkeypatch.setattr(twopass, "_clipped_gain", counting)
    gains = _gains(scaled, plan, first)
    assert len(calls) <= len(tiles)
    assert abs(gains[1] * 1.08 - 1) < 0.01


def test_identity_after_matching_consistent_tiles(clean):
    """Consistent tiles, matched first (as a default build does): two-pass stays the
    identity, it does not fight the matching."""
    from zemosaic_core.photometry.matching import match_tiles

    tiles, plan, _ = clean
    matched = match_tiles(tiles, plan).tiles
    first = coadd_pass(CpuBackend(), matched, plan, combine=MEAN)
    gains = _gains(matched, plan, first)
    assert np.all(np.abs(gains - 1) < 1e-3)


def test_gains_the_noise_cannot_support_are_held_at_one():
    """Overlaps of noise around a faint level (an X-ray or significance map): a fitted
    ratio is noise there, so two-pass stays an identity instead of scaling tiles."""
    tiles = grid_tiles(3, 2, size=120, overlap=0.3, noise=0.5)
    faint = [t.with_data(0.01 * (t.data - 100.0) + np.float32(0.05)) for t in tiles]
    noisy = [
        t.with_data(t.data + np.random.default_rng(k).normal(0, 1.0, t.data.shape).astype("f4"))
        for k, t in enumerate(faint)
    ]
    plan, noisy = plan_mosaic(noisy)
    first = coadd_pass(CpuBackend(), noisy, plan, combine=MEAN)
    gains = _gains(noisy, plan, first)
    np.testing.assert_array_equal(gains, 1.0)
