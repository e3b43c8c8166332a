"""Tests of the per-pixel stack combines (:mod:`zemosaic_core.engine.rejection`)."""

from __future__ import annotations

import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zemosaic_core.config import CombineSpec
from zemosaic_core.engine.rejection import STACK_METHODS, combine_stack

METHODS = STACK_METHODS  # ("median", "kappa-sigma", "winsorized"); the mean is streamed

# Overflow or NaN arithmetic inside a combine is a bug even when the result survives.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def stack(samples, weights=None):
    """A (N, 1, 1) float32 stack and its weights (unit weights by default)."""
    v = np.asarray(samples, dtype=np.float32).reshape(-1, 1, 1)
    w = np.ones_like(v) if weights is None else np.asarray(weights, np.float32).reshape(v.shape)
    return v, w


def combine1(samples, weights=None, **spec):
    """Combine one pixel; returns (value, coverage) as Python floats."""
    v, w = stack(samples, weights)
    image, coverage = combine_stack(np, v, w, CombineSpec(**spec))
    assert image.shape == (1, 1) and coverage.shape == (1, 1)
    assert image.dtype == np.float32 and coverage.dtype == np.float32
    return float(image[0, 0]), float(coverage[0, 0])


# --- hand-computed small stacks -------------------------------------------------------


def test_the_mean_is_not_a_stack_combine():
    """The driver streams the mean as two sums; a stack path for it would be dead code."""
    v, w = stack([1, 2, 3, 100])
    with pytest.raises(ValueError, match="not a stack combine"):
        combine_stack(np, v, w, CombineSpec(method="mean"))


def test_median_even_and_odd():
    assert combine1([1, 2, 3, 100], method="median") == (2.5, 4.0)
    assert combine1([100, 3, 1], method="median") == (3.0, 3.0)
    assert combine1([7], method="median") == (7.0, 1.0)


def test_weighted_median():
    # Weight 3 on the value 10 outweighs the three others (total 6, half 3).
    assert combine1([1, 2, 10, 3], [1, 1, 3, 1], method="median") == (pytest.approx(6.5), 6.0)
    # A dominant weight wins outright.
    assert combine1([1, 2, 10, 3], [1, 1, 4, 1], method="median")[0] == 10.0
    # Weights that split the total exactly in half: the midpoint of the two values.
    assert combine1([0, 4], [2, 2], method="median")[0] == 2.0
    assert combine1([0, 4, 8], [1, 0.5, 0.5], method="median")[0] == 2.0


@pytest.mark.parametrize("kappa", [2.0, 2.5])
def test_kappa_sigma_rejects_outlier(kappa):
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 100.0]
    value, cov = combine1(samples, method="kappa-sigma", kappa=kappa, iterations=3)
    assert value == pytest.approx(np.mean(samples[:-1]), rel=1e-6)
    assert cov == 7.0


def test_kappa_sigma_keeps_clean_stack():
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1]
    value, cov = combine1(samples, method="kappa-sigma", kappa=3.0)
    assert value == pytest.approx(np.mean(samples), rel=1e-6)
    assert cov == 6.0


def test_kappa_sigma_removes_masking_outliers_in_one_iteration():
    # The classic clip needed a second iteration for 30 once 1000 was gone; the robust
    # first cut removes both before the first iteration.
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.3, 30.0, 1000.0]
    one, cov1 = combine1(samples, method="kappa-sigma", kappa=2.0, iterations=1)
    three, cov3 = combine1(samples, method="kappa-sigma", kappa=2.0, iterations=3)
    assert cov1 == cov3 == 8.0
    assert one == three == pytest.approx(np.mean(samples[:8]), rel=1e-6)


def test_winsorized_rejects_outlier_at_default_kappa():
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 100.0]
    value, cov = combine1(samples, method="winsorized", kappa=3.0)
    assert value == pytest.approx(np.mean(samples[:-1]), rel=1e-6)
    assert cov == 5.0


def test_kappa_sigma_rejects_outliers_that_mask_each_other():
    # One outlier among 6 lies ~2.45 classic sigmas from the median, so the classic
    # kappa 3 kept it; two among 10 (a hot pixel and a trail) inflate the standard
    # deviation the same way. The robust first cut (MAD sigma) removes them.
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 100.0]
    value, kept = combine1(samples, method="kappa-sigma", kappa=3.0)
    assert kept == 5.0 and value == pytest.approx(10.0)
    samples = [10.0, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.3, 400.0, 60.0]
    value, kept = combine1(samples, method="kappa-sigma", kappa=3.0)
    assert kept == 8.0 and value == pytest.approx(10.0375)


def test_kappa_sigma_keeps_clean_gaussian_stacks_nearly_whole():
    """The robust cut costs shallow stacks little data: measured on 20 000 pixels."""
    rng = np.random.default_rng(5)
    for n, most_lost in ((5, 0.05), (10, 0.015), (30, 0.01)):
        values = rng.normal(100.0, 3.0, (n, 100, 200)).astype(np.float32)
        _, coverage = combine_stack(np, values, np.ones_like(values), CombineSpec("kappa-sigma"))
        assert 1 - coverage.mean() / n < most_lost, (n, 1 - coverage.mean() / n)


def test_winsorized_hand_computed_sigma():
    # No clamping binds at the fixed point (1.5 sigma > 3), so sigma = 1.134 * std
    # (ddof=1) = 1.134 * sqrt(5) = 2.5357 around the mean 3: |0 - 3| = |6 - 3| = 3 is
    # rejected for kappa < 3 / 2.5357 = 1.183 only.
    samples = [0.0, 2.0, 3.0, 4.0, 6.0]
    assert combine1(samples, method="winsorized", kappa=1.15, iterations=1) == (3.0, 3.0)
    assert combine1(samples, method="winsorized", kappa=1.22, iterations=1) == (3.0, 5.0)


def test_winsorized_quantile_limits():
    # n = 10, limits 0.1: 0 and 9 are clamped to 1 and 8 -> std = sqrt(66.5 / 9), sigma
    # = 3.0825 and |0 - 4.5| = 4.5 > 1.4 sigma. Without limits sigma = 1.134 * std of
    # the raw samples = 3.4334 and 4.5 < 1.4 sigma: nothing is rejected.
    samples = [float(i) for i in range(10)]
    spec = dict(method="winsorized", kappa=1.4, iterations=1)
    assert combine1(samples, limits=(0.1, 0.1), **spec) == (4.5, 8.0)
    assert combine1(samples, limits=(0.0, 0.0), **spec) == (4.5, 10.0)


@pytest.mark.parametrize(
    "samples",
    [
        [99.78732, 99.787704, 100.86639],  # Siril's loop needs hundreds of rounds
        [96.97078, 99.69452, 100.51608, 100.751205, 100.9539, 100.9809, 602.2925],
        [97.34967, 99.525, 99.62247, 99.86187, 100.18959, 101.58914, 104.01938, 602.83386],
        [10.0, 10.5, 9.5, 10.2, 9.8, 100.0],
    ],
)
def test_winsorized_sigma_is_the_largest_huber_fixed_point(samples):
    from zemosaic_core.engine import rejection

    x = np.sort(np.asarray(samples, np.float32))[:, None]
    keep = np.ones(x.shape, bool)
    _, sigma = rejection._winsorized_centre_sigma(np, x, np.ones_like(x), keep, (0.0, 0.0))
    sigma = float(sigma[0])
    data = x[:, 0].astype(np.float64)
    med = float(np.median(data))

    def h(s):
        return 1.134 * np.clip(data, med - 1.5 * s, med + 1.5 * s).std(ddof=1)

    assert sigma > 0
    assert h(sigma) == pytest.approx(sigma, rel=1e-6)
    # No fixed point above it: Siril's loop, started from above, stops there.
    top = max(1.134 * data.std(ddof=1), np.abs(data - med).max() / 1.5)
    above = np.linspace(sigma * 1.001, top * 1.5, 2000)
    assert all(h(s) < s for s in above)


@pytest.mark.parametrize("limits", [(0.1, 0.1), (0.0, 0.0)])
@pytest.mark.parametrize("n", [4, 6, 20])
def test_winsorized_false_rejections_are_rare(n, limits):
    # Clean Gaussian stacks lose few samples; planted +50 (and +60) sigma outliers go.
    rng = np.random.default_rng(n)
    v = rng.normal(100.0, 1.0, (n, 40, 50)).astype(np.float32)
    w = np.ones_like(v)
    spec = CombineSpec(method="winsorized", kappa=3.0, limits=limits)
    _, clean = combine_stack(np, v, w, spec)
    assert 1 - clean.mean() / n < 0.03
    v[0] += 50.0
    n_out = 1
    if n >= 20:
        v[1] += 60.0
        n_out = 2
    image, cov = combine_stack(np, v, w, spec)
    assert np.all(cov <= n - n_out)
    assert 1 - cov.mean() / (n - n_out) < 0.03
    assert np.abs(image - 100.0).max() < 4.0


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_two_samples_are_always_kept(method):
    assert combine1([1.0, 1000.0], method=method, kappa=0.1) == (500.5, 2.0)
    # A third sample with weight 0 does not count.
    assert combine1([1.0, 1000.0, 5.0], [1, 1, 0], method=method, kappa=0.1) == (500.5, 2.0)
    # Unequal weights put the centre near the heavy sample: the light one would be
    # rejected if two samples were clipped.
    assert combine1([1.0, 1000.0], [1, 3], method=method, kappa=0.5) == (750.25, 4.0)


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_never_rejects_everything(method):
    # Two tight clusters: every sample is far from the centre for a tiny kappa.
    value, cov = combine1([0.0, 0.0, 10.0, 10.0], method=method, kappa=0.01)
    assert cov > 0 and np.isfinite(value)


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_sigma_floor_keeps_nearly_identical_values(method):
    # Values that differ by float32 rounding only must not reject each other.
    base = np.float32(1234.5678)
    samples = [base, base, base, np.nextafter(base, np.float32(2000)), base]
    value, cov = combine1(samples, method=method, kappa=1.0)
    assert cov == 5.0
    assert value == pytest.approx(float(base), rel=1e-6)


# --- weights, coverage, NaN -------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_zero_weight_samples_are_ignored(method):
    # The weight-0 entries carry NaN, inf and a huge value: none may leak in.
    samples = [5.0, np.nan, 5.0, np.inf, 5.0, 1e30]
    weights = [1.0, 0.0, 2.0, 0.0, 0.5, 0.0]
    value, cov = combine1(samples, weights, method=method)
    assert value == 5.0
    assert cov == 3.5


@pytest.mark.parametrize("method", ["kappa-sigma", "winsorized"])
def test_excluded_samples_do_not_disturb_rejection(method):
    # Weight-0 entries far from the data (and NaN) must not break the statistics.
    samples = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0, 10.02, 200.0, -3e30, np.nan, 3e30]
    weights = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    value, cov = combine1(samples, weights, method=method, kappa=2.0)
    assert cov == 7.0
    assert value == pytest.approx(np.mean(samples[:7]), rel=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_large_values_beside_excluded_samples(method):
    # Excluded samples are zeroed internally: their distance to 1e20 must not overflow.
    value, cov = combine1([1e20, 1e20, 7.0, 1e20], [1, 1, 0, 1], method=method)
    assert (value, cov) == (np.float32(1e20), 3.0)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_samples_with_weight_are_invalid(method):
    value, cov = combine1([2.0, np.nan, np.inf, 2.0], method=method)
    assert (value, cov) == (2.0, 2.0)


@pytest.mark.parametrize("method", METHODS)
def test_nan_where_no_weight(method):
    v = np.zeros((3, 2, 2), np.float32)
    w = np.ones_like(v)
    w[:, 0, 1] = 0
    w[:, 1, 0] = 0
    v[:, 1, 0] = np.nan
    image, coverage = combine_stack(np, v, w, CombineSpec(method=method))
    assert np.isnan(image[0, 1]) and np.isnan(image[1, 0])
    assert coverage[0, 1] == 0 and coverage[1, 0] == 0
    assert image[0, 0] == 0 and image[1, 1] == 0
    assert coverage[0, 0] == 3 and coverage[1, 1] == 3
    assert np.all(np.isfinite(coverage))


@pytest.mark.parametrize(
    ("method", "expected"),
    [("median", 4.0), ("kappa-sigma", 3.0), ("winsorized", 3.0)],
)
def test_coverage_is_sum_of_kept_weights(method, expected):
    # 3 of 4 unit weights kept -> 3.0 for the rejecting combines; never clipped to 1.
    samples = [10.0, 10.1, 9.9, 100.0]
    _, cov = combine1(samples, method=method, kappa=1.4)
    assert cov == expected


def test_coverage_sums_non_unit_weights():
    samples = [10.0, 10.1, 9.9, 10.05, 9.95, 500.0]
    weights = [0.5, 2.0, 1.5, 1.0, 3.0, 1.0]
    for method in ("kappa-sigma", "winsorized"):
        value, cov = combine1(samples, weights, method=method, kappa=2.0)
        assert cov == pytest.approx(8.0)
        assert value == pytest.approx(np.average(samples[:5], weights=weights[:5]), rel=1e-6)


def test_empty_stack():
    v = np.zeros((0, 2, 3), np.float32)
    for method in METHODS:
        image, coverage = combine_stack(np, v, v.copy(), CombineSpec(method=method))
        assert image.shape == (2, 3) and np.all(np.isnan(image))
        assert np.all(coverage == 0)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        combine_stack(np, np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), CombineSpec("median"))
    with pytest.raises(ValueError):
        combine_stack(np, np.zeros((3, 3)), np.zeros((3, 3)), CombineSpec("median"))


@pytest.mark.parametrize("method", METHODS)
def test_inputs_are_not_modified(method):
    rng = np.random.default_rng(1)
    v = rng.normal(100, 5, (7, 6, 5)).astype(np.float32)
    v[2, 1, 1] = 1e4
    v[0, 0, :] = np.nan
    w = rng.uniform(0, 2, v.shape).astype(np.float32)
    w[0, 0, :] = 0
    w[:, 3, 3] = 0
    v0, w0 = v.copy(), w.copy()
    combine_stack(np, v, w, CombineSpec(method=method, kappa=2.0))
    np.testing.assert_array_equal(v, v0)
    np.testing.assert_array_equal(w, w0)


@pytest.mark.parametrize("method", METHODS)
def test_float64_inputs_give_float32_outputs(method):
    v = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    image, coverage = combine_stack(np, v, np.ones_like(v), CombineSpec(method=method))
    assert image.dtype == np.float32 and coverage.dtype == np.float32


# --- against numpy ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_median_matches_numpy_median(n):
    rng = np.random.default_rng(n)
    v = rng.normal(0, 10, (n, 16, 16)).astype(np.float32)
    image, coverage = combine_stack(np, v, np.ones_like(v), CombineSpec(method="median"))
    np.testing.assert_allclose(image, np.median(v, axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(coverage, np.full((16, 16), n, np.float32))


def test_median_with_partial_coverage_matches_numpy():
    rng = np.random.default_rng(11)
    v = rng.normal(0, 10, (6, 20, 20)).astype(np.float32)
    w = (rng.uniform(size=v.shape) > 0.4).astype(np.float32)
    w[:, 0, 0] = 0  # one uncovered pixel
    image, coverage = combine_stack(np, v, w, CombineSpec(method="median"))
    covered = w.sum(axis=0) > 0
    masked = np.where(w > 0, v, np.nan)[:, covered]
    expected = np.array([np.median(col[np.isfinite(col)]) for col in masked.T])
    np.testing.assert_allclose(image[covered], expected, rtol=1e-6, atol=1e-6)
    assert np.all(np.isnan(image[~covered]))
    np.testing.assert_array_equal(coverage, w.sum(axis=0))


# --- planted outliers on an image -----------------------------------------------------


def planted_stack():
    """6 noisy sky planes (100 +/- 1) with a +500 trail in one and +1000 hot pixels."""
    rng = np.random.default_rng(2024)
    n, h, w = 6, 48, 64
    v = rng.normal(100.0, 1.0, (n, h, w)).astype(np.float32)
    trail = np.zeros((h, w), bool)
    cols = np.arange(w)
    rows = np.clip((0.6 * cols + 5).astype(int), 0, h - 1)
    trail[rows, cols] = True
    v[2][trail] += 500.0
    hot = np.zeros((h, w), bool)
    hot[rng.integers(0, h, 25), rng.integers(0, w, 25)] = True
    hot &= ~trail
    v[4][hot] += 1000.0
    return v, np.ones_like(v), trail, hot


@pytest.mark.parametrize(
    "spec",
    [
        CombineSpec(method="kappa-sigma", kappa=2.0, iterations=3),
        CombineSpec(method="winsorized", kappa=3.0, iterations=3),
        CombineSpec(method="winsorized", kappa=2.5, iterations=5, limits=(0.0, 0.0)),
    ],
    ids=str,
)
def test_planted_outliers_are_removed(spec):
    v, w, trail, hot = planted_stack()
    image, coverage = combine_stack(np, v, w, spec)
    tolerance = 4 * 1.0 / np.sqrt(5)
    for mask in (trail, hot):
        assert np.all(np.abs(image[mask] - 100.0) < tolerance)
        assert np.all(coverage[mask] <= 5.0)
    assert np.all(np.abs(image - 100.0) < tolerance)
    # Clean sky keeps most samples.
    clean = ~(trail | hot)
    assert coverage[clean].mean() > 5.0


def test_planted_outliers_move_the_median_little():
    v, w, trail, hot = planted_stack()
    median, cov = combine_stack(np, v, w, CombineSpec(method="median"))
    np.testing.assert_array_equal(cov, 6.0)
    assert np.all(np.abs(median[trail | hot] - 100.0) < 3.0)


# --- properties ----------------------------------------------------------------------

finite_f32 = st.floats(
    min_value=-(2.0**100), max_value=2.0**100, allow_nan=False, allow_infinity=False, width=32
)
weight_f32 = st.one_of(st.just(0.0), st.floats(min_value=2**-10, max_value=1024.0, width=32))


@settings(max_examples=60, deadline=None)
@given(
    value=finite_f32,
    weights=st.lists(weight_f32, min_size=1, max_size=9).filter(lambda ws: any(ws)),
    method=st.sampled_from(METHODS),
    kappa=st.floats(min_value=0.1, max_value=5.0),
)
def test_identical_values_give_that_value(value, weights, method, kappa):
    n = len(weights)
    v = np.full((n, 2, 3), value, np.float32)
    w = np.broadcast_to(np.asarray(weights, np.float32)[:, None, None], v.shape).copy()
    image, coverage = combine_stack(np, v, w, CombineSpec(method=method, kappa=kappa))
    np.testing.assert_array_equal(image, np.float32(value))
    np.testing.assert_allclose(coverage, np.float32(sum(weights)), rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.floats(min_value=-1024.0, max_value=1024.0, width=32),
            st.floats(min_value=2**-7, max_value=16.0, width=32),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_weighted_median_minimises_absolute_deviation(data):
    x = np.array([d[0] for d in data], np.float64)
    wt = np.array([d[1] for d in data], np.float64)
    value, cov = combine1(x, wt, method="median")
    cost = lambda m: float(np.sum(wt * np.abs(x - m)))  # noqa: E731
    best = min(cost(m) for m in x)
    assert cost(value) <= best * (1 + 1e-5) + 1e-3
    assert cov == pytest.approx(wt.sum(), rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    samples=st.lists(
        st.floats(min_value=-16384.0, max_value=16384.0, width=32), min_size=1, max_size=9
    ),
    method=st.sampled_from(["kappa-sigma", "winsorized"]),
    kappa=st.floats(min_value=0.05, max_value=5.0),
    iterations=st.integers(min_value=1, max_value=6),
)
def test_rejecting_combines_stay_within_data(samples, method, kappa, iterations):
    spec = dict(method=method, kappa=kappa, iterations=iterations)
    value, cov = combine1(samples, **spec)
    lo, hi = min(samples), max(samples)
    span = 1e-6 * max(abs(lo), abs(hi), 1.0)
    assert lo - span <= value <= hi + span
    assert 1 <= cov <= len(samples)
    if len(samples) <= 2:
        assert cov == len(samples)


def random_stack(seed, n=7, shape=(12, 14)):
    """Noisy stacks with outliers, partial coverage, NaN and huge excluded values."""
    rng = np.random.default_rng(seed)
    v = rng.normal(100.0, rng.uniform(0.5, 5.0, shape), (n, *shape)).astype(np.float32)
    v[rng.uniform(size=v.shape) < 0.08] += rng.choice([-300.0, 500.0, 5e4])
    w = rng.choice([0.0, 0.5, 1.0, 1.0, 2.0], size=v.shape).astype(np.float32)
    w[:, :2, :2] = 0  # uncovered corner
    v[(w == 0) & (rng.uniform(size=v.shape) < 0.5)] = np.nan
    v[(w == 0) & (rng.uniform(size=v.shape) < 0.2)] = -1e30
    return v, w


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", [0, 1])
def test_pixels_are_independent_and_invariants_hold(method, seed):
    """Each pixel of a chunk gets what it gets alone; coverage and range invariants."""
    v, w = random_stack(seed)
    spec = CombineSpec(method=method, kappa=2.0, iterations=4)
    image, coverage = combine_stack(np, v, w, spec)
    valid = np.isfinite(v) & (w > 0)
    total = np.where(valid, w, 0).sum(axis=0)
    covered = total > 0
    assert np.all(np.isnan(image[~covered])) and np.all(coverage[~covered] == 0)
    assert np.all(np.isfinite(image[covered])) and np.all(coverage[covered] > 0)
    assert np.all(coverage <= total * (1 + 1e-6))
    lo = np.where(valid, v, np.inf).min(axis=0)
    hi = np.where(valid, v, -np.inf).max(axis=0)
    assert np.all(image[covered] >= lo[covered] - 1e-3)
    assert np.all(image[covered] <= hi[covered] + 1e-3)
    if method == "median":
        np.testing.assert_allclose(coverage, total, rtol=1e-6)
    for y, x in [(0, 0), (3, 4), (5, 9), (11, 13), (7, 2), (9, 10)]:
        alone = combine_stack(np, v[:, y : y + 1, x : x + 1], w[:, y : y + 1, x : x + 1], spec)
        np.testing.assert_allclose(alone[0][0, 0], image[y, x], rtol=1e-6)
        np.testing.assert_allclose(alone[1][0, 0], coverage[y, x], rtol=1e-6)


# --- the array-module contract -----------------------------------------------------------

# Functions available with the same semantics in NumPy and CuPy (no nan-reductions).
_PORTABLE = [
    "float32",
    "float64",
    "int64",
    "asarray",
    "zeros",
    "zeros_like",
    "full",
    "where",
    "isfinite",
    "abs",
    "sqrt",
    "floor",
    "minimum",
    "maximum",
    "sum",
    "cumsum",
    "any",
    "sort",
    "argsort",
    "arange",
    "take_along_axis",
]


def test_runs_against_a_restricted_array_module():
    """The same code path runs with only portable functions of the array module."""
    xp = types.SimpleNamespace(**{name: getattr(np, name) for name in _PORTABLE})
    v, w, trail, _ = planted_stack()
    for method in METHODS:
        spec = CombineSpec(method=method, kappa=2.0)
        got = combine_stack(xp, v, w, spec)
        ref = combine_stack(np, v, w, spec)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])


def test_numpy_module_passed_as_xp():
    v, w = stack([3.0, 1.0, 2.0])
    image, coverage = combine_stack(np, v, w, CombineSpec(method="median"))
    assert isinstance(image, np.ndarray) and isinstance(coverage, np.ndarray)
    assert (float(image[0, 0]), float(coverage[0, 0])) == (2.0, 3.0)


def test_kappa_sigma_on_quantised_data_with_a_zero_mad():
    # More than half the samples on one value: the MAD is 0 and says nothing about the
    # spread of the others, so the robust cut leaves them to the classic iterations.
    samples = [100.0] * 6 + [101.0, 102.0, 101.0, 103.0]
    value, kept = combine1(samples, method="kappa-sigma", kappa=3.0)
    assert kept == 10.0 and value == pytest.approx(100.7, rel=1e-6)
