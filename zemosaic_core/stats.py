"""Robust statistics shared by every step: one home for the MAD scale.

:func:`astropy.stats.mad_std` is the robust sigma of a NumPy sample around its
median; `MAD_TO_SIGMA` is its scale factor, for code that takes the median of
absolute deviations itself (around zero, weighted, or on CuPy arrays).
"""

from __future__ import annotations

from astropy.stats import mad_std
from scipy.special import ndtri

__all__ = ["MAD_TO_SIGMA", "mad_std"]

#: Gaussian sigma per median absolute deviation: ``1 / Phi^-1(3/4)`` = 1.4826.
MAD_TO_SIGMA = float(1.0 / ndtri(0.75))
