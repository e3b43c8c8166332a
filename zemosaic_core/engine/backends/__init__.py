"""Backends: ``cpu`` (astropy reproject) and ``gpu`` (CuPy, or NumPy when simulated).

Importing this package never imports CuPy; :func:`detect_gpu` and
:func:`create_backend` probe it lazily and never crash without it.
"""

from .base import Backend, PreparedTile
from .cpu import CpuBackend
from .device import DeviceInfo, create_backend, detect_gpu
from .gpu import GpuBackend

__all__ = [
    "Backend",
    "CpuBackend",
    "DeviceInfo",
    "GpuBackend",
    "PreparedTile",
    "create_backend",
    "detect_gpu",
]
