"""GPU detection, backend selection and the simulation switches (docs/architecture.md §4)."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from zemosaic_core.engine.backends import (
    CpuBackend,
    DeviceInfo,
    GpuBackend,
    create_backend,
    detect_gpu,
)
from zemosaic_core.engine.backends import device as device_module
from zemosaic_core.engine.backends.device import (
    FailSpec,
    parse_fail_spec,
    simulated_failure,
    simulation_enabled,
)
from zemosaic_core.errors import BackendError

DEVICE_LOGGER = "zemosaic_core.engine.backends.device"


@pytest.fixture
def no_simulation(monkeypatch):
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE", raising=False)
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL", raising=False)


@pytest.fixture
def without_cupy(monkeypatch, no_simulation):
    """Make ``import cupy`` fail, whether or not CuPy is installed here."""
    for name in ("cupy", "cupyx", "cupyx.scipy", "cupyx.scipy.ndimage"):
        monkeypatch.setitem(sys.modules, name, None)


def _fake_cupy(monkeypatch, device_count):
    """Install a fake CuPy whose runtime reports ``device_count`` (or raises it)."""

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=get_device_count)
    )
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.ndimage = types.ModuleType("cupyx.scipy.ndimage")
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.ndimage", cupyx.scipy.ndimage)


def _info_records(caplog):
    return [r for r in caplog.records if r.name == DEVICE_LOGGER and r.levelno == logging.INFO]


# --- environment parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("", False), ("off", False)],
)
def test_simulation_switch(value, expected):
    assert simulation_enabled({"ZEMOSAIC_GPU_SIMULATE": value}) is expected


def test_simulation_switch_unset_and_garbage(caplog):
    assert simulation_enabled({}) is False
    with caplog.at_level(logging.WARNING, logger=DEVICE_LOGGER):
        assert simulation_enabled({"ZEMOSAIC_GPU_SIMULATE": "maybe"}) is False
    assert "not understood" in caplog.text


def test_fail_spec_parsing():
    assert parse_fail_spec("") is None
    assert parse_fail_spec("1") == FailSpec(channel=1)
    assert parse_fail_spec(" 2 : 0 ") == FailSpec(channel=0, pass_index=2)
    for bad in ("x", "1:2:3", "-1", "0:1", "a:1"):
        with pytest.raises(ValueError, match="ZEMOSAIC_GPU_SIMULATE_FAIL"):
            parse_fail_spec(bad)


def test_fail_spec_matching():
    every = FailSpec(channel=1)
    assert every.matches(1, 1) and every.matches(2, 1) and not every.matches(1, 0)
    second = FailSpec(channel=1, pass_index=2)
    assert second.matches(2, 1) and not second.matches(1, 1) and not second.matches(2, 2)


def test_bad_fail_spec_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger=DEVICE_LOGGER):
        assert simulated_failure({"ZEMOSAIC_GPU_SIMULATE_FAIL": "red"}) is None
    assert "ZEMOSAIC_GPU_SIMULATE_FAIL" in caplog.text


# --- detection -------------------------------------------------------------------------


def test_detect_without_cupy(without_cupy):
    info = detect_gpu()
    assert info == DeviceInfo(False, "CuPy is not installed", simulated=False)


def test_detect_with_simulation(monkeypatch, without_cupy):
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    info = detect_gpu()
    assert info.available and info.simulated
    assert "simulated" in info.description


def test_detect_never_crashes_on_a_broken_cuda(monkeypatch, no_simulation):
    _fake_cupy(monkeypatch, RuntimeError("CUDA driver version is insufficient"))
    info = detect_gpu()
    assert not info.available and not info.simulated
    assert "CUDA driver version is insufficient" in info.description


def test_detect_without_device(monkeypatch, no_simulation):
    _fake_cupy(monkeypatch, 0)
    info = detect_gpu()
    assert info == DeviceInfo(False, "no CUDA device found")


def test_detect_when_the_probe_itself_breaks(monkeypatch, no_simulation):
    def boom():
        raise OSError("environment unreadable")

    monkeypatch.setattr(device_module, "simulation_enabled", boom)
    info = detect_gpu()
    assert not info.available and "environment unreadable" in info.description


# --- backend selection -----------------------------------------------------------------


def test_auto_without_cupy_is_cpu_with_one_info_line(without_cupy, caplog):
    with caplog.at_level(logging.DEBUG, logger="zemosaic_core"):
        backend = create_backend("auto")
    assert isinstance(backend, CpuBackend) and backend.name == "cpu"
    records = _info_records(caplog)
    assert len(records) == 1
    assert records[0].getMessage() == "Backend auto -> cpu: CuPy is not installed"


def test_auto_without_device_is_cpu(monkeypatch, no_simulation, caplog):
    _fake_cupy(monkeypatch, 0)
    with caplog.at_level(logging.INFO, logger=DEVICE_LOGGER):
        backend = create_backend("auto", memory_budget=1234)
    assert backend.name == "cpu" and backend.memory_budget() == 1234
    records = _info_records(caplog)
    assert [r.getMessage() for r in records] == ["Backend auto -> cpu: no CUDA device found"]


def test_auto_with_simulation_is_gpu(monkeypatch, without_cupy, caplog):
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    with caplog.at_level(logging.INFO, logger=DEVICE_LOGGER):
        backend = create_backend("auto", memory_budget=4096)
    assert isinstance(backend, GpuBackend)
    assert backend.name == "gpu" and backend.simulated and backend.xp is np
    assert backend.memory_budget() == 4096
    records = _info_records(caplog)
    assert len(records) == 1 and records[0].getMessage().startswith("Backend auto -> gpu:")


def test_gpu_without_device_raises(without_cupy):
    with pytest.raises(BackendError, match="CuPy is not installed"):
        create_backend("gpu")
    with pytest.raises(BackendError, match="CuPy is not installed"):
        GpuBackend(simulate=False)


def test_gpu_with_simulation(monkeypatch, without_cupy):
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "yes")
    backend = create_backend("gpu")
    assert isinstance(backend, GpuBackend) and backend.simulated
    assert GpuBackend().simulated  # the default reads the environment too


def test_cpu_and_unknown_names(no_simulation):
    assert isinstance(create_backend("cpu"), CpuBackend)
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tpu")
