"""False-colour rendering of the coverage map (display only)."""

from __future__ import annotations

import numpy as np

__all__ = ["coverage_lut", "coverage_map", "render_coverage_rgba"]

# Anchors of a perceptually ordered dark-to-bright map (close to "inferno").
_COVERAGE_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def coverage_map(coverage: np.ndarray) -> np.ndarray:
    """Collapse a coverage cube to one plane: the maximum over channels.

    Parameters
    ----------
    coverage : ndarray, (C, H, W) or (H, W)

    Returns
    -------
    ndarray, float32, (H, W)
        Finite (NaN and inf become 0).
    """
    cov = np.asarray(coverage, dtype=np.float32)
    if cov.ndim == 3:
        cov = cov[0] if cov.shape[0] == 1 else cov.max(axis=0)
    return np.nan_to_num(cov, nan=0.0, posinf=0.0, neginf=0.0)


def coverage_lut() -> np.ndarray:
    """The 256-entry colour table of the coverage view, uint8 (256, 3)."""
    positions = np.linspace(0.0, 1.0, len(_COVERAGE_ANCHORS))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, positions, _COVERAGE_ANCHORS[:, k]) for k in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


def render_coverage_rgba(coverage: np.ndarray, step: int = 1) -> tuple[np.ndarray, float]:
    """False-colour a coverage map (dark = thin, bright = deep), top row first.

    Parameters
    ----------
    coverage : ndarray, (C, H, W) or (H, W)
    step : int
        Keep every ``step``-th pixel.

    Returns
    -------
    rgba : ndarray, uint8, (h, w, 4)
        Alpha 0 where the coverage is 0.
    vmax : float
        The coverage mapped to the brightest colour.
    """
    cov = coverage[..., ::step, ::step] if step > 1 else coverage
    cov = coverage_map(cov)
    vmax = float(cov.max()) if cov.size else 0.0
    scale = vmax if vmax > 0 else 1.0
    index = np.clip(cov / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgba = np.empty((*cov.shape, 4), dtype=np.uint8)
    rgba[..., :3] = coverage_lut()[index]
    rgba[..., 3] = np.where(cov > 0, 255, 0).astype(np.uint8)
    return np.ascontiguousarray(rgba[::-1]), vmax
