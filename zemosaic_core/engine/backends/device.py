"""GPU detection, array-module selection and the simulation switches (docs/architecture.md §4).

Nothing here imports CuPy at module import: CuPy is imported lazily, and every probe of
the CUDA stack is guarded so that detection never crashes (no CuPy, no driver, no
device -> "not available", with the reason in words).

Environment variables
---------------------
``ZEMOSAIC_GPU_SIMULATE=1``
    Run the ``gpu`` backend's engine on NumPy + ``scipy.ndimage`` as a simulated device
    (CI and machines without CUDA). It is reported as the ``gpu`` backend.
``ZEMOSAIC_GPU_SIMULATE_FAIL=<channel>`` or ``<pass>:<channel>``
    The simulated device raises an out-of-memory error while processing ``channel`` in
    every pass, or only in pass ``pass`` (1 = first coadd, 2 = two-pass).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ...errors import BackendError
from .base import Backend

logger = logging.getLogger(__name__)

SIMULATE_ENV = "ZEMOSAIC_GPU_SIMULATE"
SIMULATE_FAIL_ENV = "ZEMOSAIC_GPU_SIMULATE_FAIL"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}

# (variable, value) pairs already warned about: a bad value is said once per process,
# not at every detection and every pass that reads it.
_WARNED: set[tuple[str, str]] = set()


def _warn_once(variable: str, value: str, message: str) -> None:
    if (variable, value) in _WARNED:
        logger.debug("%s", message)
        return
    _WARNED.add((variable, value))
    logger.warning("%s", message)


@dataclass(frozen=True)
class DeviceInfo:
    """What :func:`detect_gpu` found.

    Attributes
    ----------
    available : bool
        True when the ``gpu`` backend can run (a usable CUDA device, or simulation).
    description : str
        The device in words when available, else why not (for logs and messages).
    simulated : bool
        True when the device is the NumPy simulation (``ZEMOSAIC_GPU_SIMULATE=1``).
    """

    available: bool
    description: str
    simulated: bool = False


@dataclass(frozen=True)
class FailSpec:
    """Where the simulated device fails (``ZEMOSAIC_GPU_SIMULATE_FAIL``).

    Attributes
    ----------
    channel : int
        The channel whose processing raises.
    pass_index : int or None
        The pass in which it raises; ``None`` = every pass.
    """

    channel: int
    pass_index: int | None = None

    def matches(self, pass_index: int, channel: int) -> bool:
        """True when processing ``channel`` in pass ``pass_index`` must fail."""
        return channel == self.channel and (self.pass_index in (None, pass_index))


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def simulation_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``ZEMOSAIC_GPU_SIMULATE`` asks for the simulated device.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default: ``os.environ``).

    Returns
    -------
    bool
        True for ``1``, ``true``, ``yes`` or ``on`` (any case); False when unset, empty,
        ``0``, ``false``, ``no`` or ``off``. Any other value is ignored with a WARNING.
    """
    text = _environ(environ).get(SIMULATE_ENV, "").strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        _warn_once(
            SIMULATE_ENV,
            text,
            f"{SIMULATE_ENV}={text!r} is not understood (use 1 or 0); ignoring it",
        )
    return False


def parse_fail_spec(text: str) -> FailSpec | None:
    """Parse a ``ZEMOSAIC_GPU_SIMULATE_FAIL`` value.

    Parameters
    ----------
    text : str
        ``"<channel>"`` or ``"<pass>:<channel>"``; empty means no failure.

    Returns
    -------
    FailSpec or None
        ``None`` for an empty value.

    Raises
    ------
    ValueError
        When ``text`` is neither form, or a number is negative (channel) or < 1 (pass).
    """
    text = text.strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(":")]
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) == 1 and numbers[0] >= 0:
        return FailSpec(channel=numbers[0])
    if len(numbers) == 2 and numbers[0] >= 1 and numbers[1] >= 0:
        return FailSpec(channel=numbers[1], pass_index=numbers[0])
    raise ValueError(
        f"{SIMULATE_FAIL_ENV}={text!r}: expected <channel> or <pass>:<channel> "
        "(pass >= 1, channel >= 0)"
    )


def simulated_failure(environ: Mapping[str, str] | None = None) -> FailSpec | None:
    """The failure the simulated device must inject, from ``ZEMOSAIC_GPU_SIMULATE_FAIL``.

    An unparsable value is ignored with a WARNING, once per value (fault injection is a
    test aid; it must not break a build by itself).
    """
    text = _environ(environ).get(SIMULATE_FAIL_ENV, "")
    try:
        return parse_fail_spec(text)
    except ValueError as exc:
        _warn_once(SIMULATE_FAIL_ENV, text, f"{exc}; ignoring it")
        return None


def import_cupy() -> tuple[ModuleType, ModuleType]:
    """Import CuPy and ``cupyx.scipy.ndimage`` lazily.

    Returns
    -------
    cupy, ndimage : module
        The array module and its ndimage.

    Raises
    ------
    ImportError
        CuPy is not installed, or it fails to import (broken install, missing CUDA
        libraries).
    """
    import cupy
    import cupyx.scipy.ndimage as cupy_ndimage

    return cupy, cupy_ndimage


def array_modules(simulate: bool) -> tuple[ModuleType, ModuleType]:
    """The array module and ndimage the ``gpu`` engine runs on.

    Parameters
    ----------
    simulate : bool
        True -> NumPy + ``scipy.ndimage`` (simulated device); False -> CuPy +
        ``cupyx.scipy.ndimage``.

    Raises
    ------
    BackendError
        ``simulate`` is False and CuPy cannot be imported.
    """
    if simulate:
        import numpy
        import scipy.ndimage

        return numpy, scipy.ndimage
    try:
        return import_cupy()
    except Exception as exc:  # ImportError, or a CUDA library failing at import
        raise BackendError(f"the GPU backend needs CuPy: {_import_reason(exc)}") from exc


def _import_reason(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in (
        "cupy",
        "cupyx",
    ):
        return "CuPy is not installed"
    return f"CuPy failed to import ({type(exc).__name__}: {exc})"


def _probe_cuda(cupy: Any) -> DeviceInfo:
    """Check that CuPy sees a CUDA device and can run a kernel on it."""
    count = int(cupy.cuda.runtime.getDeviceCount())
    if count < 1:
        return DeviceInfo(False, "no CUDA device found")
    device = cupy.cuda.Device()
    with device:
        free, total = (int(v) for v in device.mem_info)
        probe = cupy.arange(8, dtype=cupy.float32)
        if float((probe * 2).sum()) != 56.0:
            return DeviceInfo(False, "the CUDA device returned a wrong result for a test kernel")
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
    name = props.get("name", b"CUDA device")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    return DeviceInfo(
        True,
        f"{name} (device {device.id}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free, "
        f"CuPy {getattr(cupy, '__version__', '?')})",
    )


def detect_gpu() -> DeviceInfo:
    """Find out whether the ``gpu`` backend can run here; never raises.

    Returns
    -------
    DeviceInfo
        ``simulated=True`` when ``ZEMOSAIC_GPU_SIMULATE`` is on (then no CUDA probe is
        made); otherwise ``available`` tells whether CuPy imports and a CUDA device runs
        a test kernel, and ``description`` names the device or gives the reason.
    """
    try:
        if simulation_enabled():
            return DeviceInfo(
                True, f"simulated GPU device (NumPy; {SIMULATE_ENV}=1)", simulated=True
            )
        try:
            cupy, _ = import_cupy()
        except Exception as exc:
            return DeviceInfo(False, _import_reason(exc))
        try:
            return _probe_cuda(cupy)
        except Exception as exc:  # no driver, driver too old, device busy or lost...
            return DeviceInfo(False, f"no usable CUDA device ({type(exc).__name__}: {exc})")
    except Exception as exc:  # detection must never crash a build
        return DeviceInfo(False, f"GPU detection failed ({type(exc).__name__}: {exc})")


def create_backend(name: str, memory_budget: int | None = None) -> Backend:
    """Create the backend a build asked for.

    Parameters
    ----------
    name : {"cpu", "gpu", "auto"}
        ``auto`` -> ``gpu`` when CuPy imports and a CUDA device is usable (or the
        simulation is on), else ``cpu``; one INFO line says which and why.
    memory_budget : int, optional
        Bytes a backend may use for one chunk (default: the backend's own rule).

    Returns
    -------
    Backend
        A :class:`~.cpu.CpuBackend` or a :class:`~.gpu.GpuBackend`.

    Raises
    ------
    BackendError
        ``gpu`` was asked for and no usable device (and no simulation) is there.
    ValueError
        ``name`` is not a backend.
    """
    from .cpu import CpuBackend
    from .gpu import GpuBackend

    if name == "cpu":
        return CpuBackend(memory_budget)
    if name not in ("gpu", "auto"):
        raise ValueError(f"unknown backend {name!r}; choose one of ('auto', 'cpu', 'gpu')")
    info = detect_gpu()
    if name == "auto":
        if not info.available:
            logger.info("Backend auto -> cpu: %s", info.description)
            return CpuBackend(memory_budget)
        try:
            backend = GpuBackend(memory_budget, simulate=info.simulated)
        except BackendError as exc:
            logger.info("Backend auto -> cpu: %s", exc)
            return CpuBackend(memory_budget)
        logger.info("Backend auto -> gpu: %s", info.description)
        return backend
    if not info.available:
        raise BackendError(f"GPU backend requested but not available: {info.description}")
    logger.info("Backend gpu: %s", info.description)
    return GpuBackend(memory_budget, simulate=info.simulated)
