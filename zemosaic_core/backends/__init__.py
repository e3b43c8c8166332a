"""Backends: ``cpu`` (astropy reproject) and ``gpu`` (CuPy, or NumPy when simulated)."""

from .base import Backend, PreparedTile
from .cpu import CpuBackend

__all__ = ["Backend", "CpuBackend", "PreparedTile"]
