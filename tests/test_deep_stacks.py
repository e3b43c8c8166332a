"""Rejection at depth: stacks deeper than REFERENCE_DEPTH are clipped in two streams.

Hot pixels (fixed on the sensor, so they wander on the sky with the dithers) and
satellite trails must vanish from a kappa-sigma or winsorized stack of many dithered
subs, while the memory a chunk holds does not grow with the number of subs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from synthetic import CENTER, make_wcs, sky

from zemosaic_core.config import CombineSpec
from zemosaic_core.engine import coadd
from zemosaic_core.engine.backends.cpu import CpuBackend
from zemosaic_core.engine.backends.gpu import GpuBackend
from zemosaic_core.engine.coadd import REFERENCE_DEPTH, coadd_pass
from zemosaic_core.engine.rejection import clip_limits, combine_stack
from zemosaic_core.geometry.planning import plan_mosaic
from zemosaic_core.tile import Tile

NOISE = 2.0  # sky noise of one sub, in ADU
SIZE = 72


def _subs(n: int, seed: int = 1) -> tuple[list[Tile], list[Tile]]:
    """``n`` dithered subs of one field with hot pixels and trails, and clean twins."""
    rng = np.random.default_rng(seed)
    hot_y = rng.integers(0, SIZE, 12)
    hot_x = rng.integers(0, SIZE, 12)
    dirty, clean = [], []
    for k in range(n):
        dx, dy = rng.uniform(-6, 6, 2) / 3600
        wcs = make_wcs((CENTER[0] + dx, CENTER[1] + dy), (SIZE, SIZE), rng.uniform(-1.5, 1.5))
        data = sky(wcs, (SIZE, SIZE)) + rng.normal(0, NOISE, (3, SIZE, SIZE)).astype(np.float32)
        clean.append(Tile(data=data, wcs=wcs, path=Path(f"sub_{k:03d}.fits")))
        bad = data.copy()
        bad[:, hot_y, hot_x] += 3000.0  # hot pixels: the same sensor pixels in every sub
        if k % 7 == 3:  # a satellite trail, 3 px wide, in one sub of seven
            yy, xx = np.mgrid[0:SIZE, 0:SIZE]
            slope, intercept = rng.uniform(-1, 1), rng.uniform(0, SIZE)
            line = np.abs(yy - (slope * xx + intercept)) / np.hypot(1, slope) < 1.5
            bad[:, line] += rng.uniform(40, 400)
        dirty.append(Tile(data=bad, wcs=wcs, path=Path(f"sub_{k:03d}.fits")))
    return dirty, clean


@pytest.fixture(scope="module")
def night():
    dirty, clean = _subs(3 * REFERENCE_DEPTH)
    plan, kept = plan_mosaic(dirty)
    assert len(kept) == len(dirty)
    reference = coadd_pass(CpuBackend(), clean, plan, combine=CombineSpec("mean"))
    return dirty, plan, reference


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_hot_pixels_and_trails_vanish_from_a_deep_stack(night, method):
    dirty, plan, reference = night
    result = coadd_pass(CpuBackend(), dirty, plan, combine=CombineSpec(method))
    deep = reference.coverage[0] >= 10
    assert deep.sum() > 0.5 * deep.size
    diff = np.abs(result.image[:, deep] - reference.image[:, deep]) / NOISE
    assert np.percentile(diff, 99.99) <= 1.5, np.percentile(diff, 99.99)
    # Away from a trail's or hot pixel's own samples the clip drops almost nothing:
    # the coverage stays that of the clean stack but for a few samples per pixel.
    lost = reference.coverage[:, deep] - result.coverage[:, deep]
    assert np.median(lost) <= 1.0
    # A plain mean of the same subs keeps the artefacts: the test can fail.
    mean = coadd_pass(CpuBackend(), dirty, plan, combine=CombineSpec("mean"))
    assert np.max(np.abs(mean.image[:, deep] - reference.image[:, deep])) / NOISE > 20


def test_streamed_clip_agrees_with_the_in_memory_stack(night, monkeypatch):
    """The two-stream clip and the exact stack keep and reject the same things."""
    dirty, plan, reference = night
    spec = CombineSpec("kappa-sigma")
    streamed = coadd_pass(CpuBackend(), dirty, plan, combine=spec)
    monkeypatch.setattr(coadd, "REFERENCE_DEPTH", 10_000)  # every layer in memory
    exact = coadd_pass(CpuBackend(), dirty, plan, combine=spec)
    deep = reference.coverage[0] >= 10
    diff = np.abs(streamed.image[:, deep] - exact.image[:, deep]) / NOISE
    assert np.percentile(diff, 99.9) < 0.5  # artefacts left would be > 20
    # Samples near the band's edge (a hot pixel's interpolated wings) may go either way;
    # overall both keep the same share of the data.
    kept = streamed.coverage[:, deep].sum() / exact.coverage[:, deep].sum()
    assert 0.98 < kept < 1.02, kept


def test_gpu_engine_streams_the_same_clip(night):
    dirty, plan, _ = night
    spec = CombineSpec("winsorized")
    cpu = coadd_pass(CpuBackend(), dirty, plan, combine=spec)
    gpu = coadd_pass(GpuBackend(simulate=True), dirty, plan, combine=spec)
    assert gpu.backend == "gpu"
    finite = np.isfinite(cpu.image) & np.isfinite(gpu.image)
    assert finite.sum() > 0.9 * np.isfinite(cpu.image).sum()
    rel = np.abs(gpu.image[finite] - cpu.image[finite]) / np.abs(cpu.image[finite])
    assert np.percentile(rel, 99.9) < 1e-4


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_chunk_memory_is_flat_in_the_number_of_subs(method):
    """Rows per chunk (hence memory) do not shrink as subs are added beyond the depth."""
    spec = CombineSpec(method)
    planes = [coadd._stack_planes(n, 3, spec) for n in (REFERENCE_DEPTH + 1, 60, 600, 3000)]
    assert len(set(planes)) == 1
    assert coadd._stack_planes(6, 3, spec) < planes[0]  # shallow stacks hold what they have


def test_clip_limits_band_matches_the_combine():
    """The band that `clip_limits` returns keeps exactly what `combine_stack` keeps."""
    rng = np.random.default_rng(3)
    values = rng.normal(100, 2, (12, 8, 9)).astype(np.float32)
    values[3, 2, 2] = 500.0
    weights = np.ones_like(values)
    spec = CombineSpec("kappa-sigma")
    centre, limit = clip_limits(np, values, weights, spec)
    inside = np.abs(values - centre) <= limit
    assert not inside[3, 2, 2] and inside.mean() > 0.97
    kept_mean = (values * inside).sum(0) / inside.sum(0)
    image, coverage = combine_stack(np, values, weights, spec)
    np.testing.assert_allclose(image, kept_mean, rtol=1e-5)
    np.testing.assert_array_equal(coverage, inside.sum(0))
    few = clip_limits(np, values[:2], weights[:2], spec)[1]
    assert np.all(np.isinf(few))  # two samples reject nothing
    with pytest.raises(ValueError, match="does not clip"):
        clip_limits(np, values, weights, replace(spec, method="median"))


def test_two_pass_samples_stay_bounded_as_subs_pile_up(night, monkeypatch):
    """The gain fit thins its lattice as tiles pile up: its memory is flat in N."""
    from zemosaic_core.config import TwoPassSpec
    from zemosaic_core.photometry import twopass

    dirty, plan, reference = night
    monkeypatch.setattr(twopass, "_MAX_SAMPLES", 40_000)
    spec = TwoPassSpec()
    well = twopass.well_covered_mask(reference.coverage[0], [1.0] * len(dirty), spec)
    samples = twopass._collect_samples(CpuBackend(), dirty, plan, well, spec, None, None)
    assert sum(s.index.size for s in samples) <= 40_000
    assert all(s.index.size > 0 for s in samples)  # every sub still has its say


def test_stack_combines_stop_at_cancel_between_blocks():
    """The combine of a chunk (seconds at depth) checks cancel between row blocks."""
    from zemosaic_core.errors import BuildCancelled
    from zemosaic_core.geometry.planning import BoundingBox
    from zemosaic_core.runtime.cancel import CancelToken

    chunk = BoundingBox(0, 8, 0, 8)
    token = CancelToken()
    token.cancel()
    stack = coadd._StackReducer(np, 4, 3, chunk, CombineSpec("kappa-sigma"))
    with pytest.raises(BuildCancelled):
        stack.result(token)
    streaming = coadd._StreamingClipReducer(np, 4, 3, chunk, CombineSpec("winsorized"))
    with pytest.raises(BuildCancelled):
        streaming.next_stream(token)
    image, coverage = coadd._StackReducer(np, 4, 3, chunk, CombineSpec("median")).result(None)
    assert image.shape == coverage.shape == (3, 8, 8)


def test_a_drift_over_the_night_stays_inside_the_band(monkeypatch):
    """A star's peak fading by 30 % over the night (seeing): the band is drawn from subs
    spread over the night, not from its first 16, so the streamed clip keeps the drift
    like the in-memory stack does."""
    n = 4 * REFERENCE_DEPTH
    wcs = make_wcs(CENTER, (24, 24))
    rng = np.random.default_rng(2)
    level = 1000.0 - 300.0 * np.arange(n) / (n - 1)
    tiles = [
        Tile(
            data=(level[k] + rng.normal(0, 2.0, (1, 24, 24))).astype(np.float32),
            wcs=wcs,
            path=Path(f"sub_{k:03d}.fits"),
        )
        for k in range(n)
    ]
    plan, tiles = plan_mosaic(tiles)
    for method in ("kappa-sigma", "winsorized"):
        streamed = coadd_pass(CpuBackend(), tiles, plan, combine=CombineSpec(method))
        assert np.median(streamed.coverage) >= 0.9 * n, method
        assert abs(np.nanmedian(streamed.image) - level.mean()) < 5.0, method
