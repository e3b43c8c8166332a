"""The coverage contract (docs/architecture.md §3), in one place for both backends.

coverage C(p) = sum_i f_i(p) * W_i(p): the *sum of weights*, never normalised by the
number of inputs and never clipped to 1; mean M(p) = sum_i f_i W_i v_i / C(p) where
C(p) > 0, NaN elsewhere. Coverage is returned finite (NaN/inf -> 0), float32, >= 0.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def sanitize_coverage(coverage: Any, xp: ModuleType = np, *, in_place: bool = False) -> Any:
    """Coverage as finite float32 >= 0 (NaN/inf -> 0, negatives from rounding -> 0).

    ``in_place=True`` reuses ``coverage`` when it already is float32 (an accumulator
    the caller owns), which saves two full-size temporaries on large mosaics.
    """
    cov = xp.asarray(coverage, dtype=xp.float32)
    if not in_place and cov is coverage:
        cov = cov.copy()
    if not bool(xp.isfinite(cov).all()):  # sums of finite weights: rare, so check first
        xp.nan_to_num(cov, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    xp.maximum(cov, xp.float32(0), out=cov)
    return cov


def mean_from_sums(
    weighted_sum: Any, coverage: Any, xp: ModuleType = np, *, in_place: bool = False
) -> Any:
    """``weighted_sum / coverage`` as float32, NaN where ``coverage <= 0``.

    ``in_place=True`` divides inside ``weighted_sum`` (an accumulator the caller owns).
    """
    covered = coverage > 0
    image = xp.asarray(weighted_sum, dtype=xp.float32)
    if not in_place and image is weighted_sum:
        image = image.copy()
    if xp is np:  # in place, without a full-size temporary
        np.divide(image, coverage, out=image, where=covered)
    else:  # CuPy ufuncs take no ``where``
        image /= xp.where(covered, coverage, xp.float32(1))
    covered = xp.logical_not(covered, out=covered)
    image[covered] = xp.float32(np.nan)
    return image


def masked_samples(values: Any, valid: Any, weight: Any, xp: ModuleType = np) -> tuple[Any, Any]:
    """Apply the f_i rule: values (0 where invalid) and weights ``f * W`` as float32."""
    weights = xp.where(valid, weight, xp.float32(0)).astype(xp.float32, copy=False)
    values = xp.where(valid, values, xp.float32(0)).astype(xp.float32, copy=False)
    return values, weights


def coverage_range(coverage: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of a coverage plane (0, 0 when empty)."""
    if coverage.size == 0:
        return 0.0, 0.0
    return float(np.min(coverage)), float(np.max(coverage))


def format_cov_stats(coverage: np.ndarray) -> str:
    """The ``cov_stats(min=..., max=...)`` fragment of the docs/architecture.md §6 log lines."""
    lo, hi = coverage_range(coverage)
    return f"cov_stats(min={lo:.3f}, max={hi:.3f})"


def is_compact(coverage: np.ndarray) -> bool:
    """True for a compact coverage: a ``(C, H, W)`` view of one plane shared by all
    channels (what :func:`compact_coverage` returns when the channels agree)."""
    return coverage.ndim == 3 and coverage.shape[0] > 1 and coverage.strides[0] == 0


def shared_plane(coverage: np.ndarray) -> np.ndarray | None:
    """The ``(H, W)`` plane every channel's coverage equals, or ``None`` when they differ.

    A view of ``coverage`` (no copy); the one rule for "channels share their coverage",
    used to keep one plane in memory and to write one ``COVERAGE`` plane.
    """
    if coverage.ndim == 2:
        return coverage
    if is_compact(coverage) or all(
        np.array_equal(coverage[0], coverage[c]) for c in range(1, coverage.shape[0])
    ):
        return coverage[0]
    return None


def compact_coverage(coverage: np.ndarray) -> np.ndarray:
    """Keep one plane when every channel's coverage is the same (the usual case).

    Returns a read-only ``(C, H, W)`` broadcast view of a single ``(H, W)`` plane, so
    callers index it as before, or ``coverage`` itself when the channels differ (or
    there is only one).
    """
    if coverage.shape[0] < 2 or is_compact(coverage):
        return coverage
    plane = shared_plane(coverage)
    if plane is None:
        return coverage
    return np.broadcast_to(np.array(plane), coverage.shape)


def covered_mask(coverage: np.ndarray) -> np.ndarray:
    """``(H, W)`` mask of pixels covered in any channel."""
    if is_compact(coverage):
        return coverage[0] > 0
    return np.any(coverage > 0, axis=0)
