"""The single-backend invariant end to end, under GPU simulation (docs/architecture.md §4, §6)."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from astropy.io import fits
from synthetic import grid_tiles, write_tile

from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic

WARNING_TEXT = (
    "GPU reprojection failed on one or more channels; "
    "rerunning all channels on CPU to avoid mixed backend"
)


@pytest.fixture(scope="module")
def tile_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles")
    tiles = grid_tiles(3, 2, size=110, overlap=0.3, noise=0.5)
    for k, tile in enumerate(tiles):
        # Small planted gains so the two-pass has something to do.
        gain = np.float32(1 + 0.03 * ((k % 3) - 1))
        write_tile(folder / tile.path.name, tile.with_data(tile.data * gain))
    return folder


def _build(tile_dir, out, backend, caplog, monkeypatch, fail=None, simulate=True):
    if simulate:
        monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    else:
        monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE", raising=False)
    if fail is None:
        monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL", raising=False)
    else:
        monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", fail)
    config = BuildConfig(
        output=out, backend=backend, match="none", two_pass=TwoPassSpec(sigma=15.0)
    )
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="zemosaic_core"):
        result = build_mosaic([tile_dir], config)
    return result, [r for r in caplog.records if r.name.startswith("zemosaic_core")]


@pytest.fixture(scope="module")
def cpu_reference(tile_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "cpu.fits"
    config = BuildConfig(output=out, backend="cpu", match="none", two_pass=TwoPassSpec(sigma=15.0))
    return build_mosaic([tile_dir], config)


def _messages(records, level=None):
    return [r.getMessage() for r in records if level is None or r.levelno == level]


@pytest.mark.parametrize("fail", ["1:0", "1:1", "1:2", "2:0", "2:1", "2:2", "1"])
def test_a_gpu_failure_reruns_every_channel_on_the_cpu(
    fail, tile_dir, tmp_path, caplog, monkeypatch, cpu_reference
):
    out = tmp_path / "m.fits"
    result, records = _build(tile_dir, out, "gpu", caplog, monkeypatch, fail=fail)
    warnings = _messages(records, logging.WARNING)
    assert len(warnings) == 1, warnings
    label = "[Coadd]" if fail == "1" or fail.startswith("1:") else "[TwoPass]"
    assert warnings[0] == f"{label} {WARNING_TEXT}"
    infos = _messages(records, logging.INFO)
    assert "[TwoPass] Two-pass reprojection backend: gpu_all=False" in infos
    final = [m for m in _messages(records, logging.DEBUG) if m.startswith("[TwoPass] channel=")]
    assert len(final) == 3 and all("gpu=False" in m for m in final)
    assert all(re.search(r"cov_stats\(min=\d+\.\d{3}, max=\d+\.\d{3}\)", m) for m in final)
    assert result.backend == "cpu" and not result.gpu_all
    with fits.open(out) as hdul:
        assert hdul[0].header["BACKEND"] == "cpu"
    np.testing.assert_allclose(result.image, cpu_reference.image, rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(result.coverage, cpu_reference.coverage)


def test_no_failure_stays_on_the_gpu(tile_dir, tmp_path, caplog, monkeypatch, cpu_reference):
    result, records = _build(tile_dir, tmp_path / "m.fits", "gpu", caplog, monkeypatch)
    assert not _messages(records, logging.WARNING)
    assert "[TwoPass] Two-pass reprojection backend: gpu_all=True" in _messages(records)
    coadd = [m for m in _messages(records) if m.startswith("[Coadd] pass=1 channel=")]
    assert len(coadd) == 3 and all("gpu=True" in m for m in coadd)
    assert result.backend == "gpu" and result.gpu_all
    with fits.open(tmp_path / "m.fits") as hdul:
        assert hdul[0].header["BACKEND"] == "gpu"
    covered = cpu_reference.coverage > 0
    rel = np.abs(result.image[covered] - cpu_reference.image[covered]) / np.abs(
        cpu_reference.image[covered]
    )
    assert np.median(rel) < 1e-5


def test_cpu_backend_never_warns(tile_dir, tmp_path, caplog, monkeypatch):
    result, records = _build(tile_dir, tmp_path / "m.fits", "cpu", caplog, monkeypatch)
    assert not _messages(records, logging.WARNING)
    assert "[TwoPass] Two-pass reprojection backend: gpu_all=False" in _messages(records)
    assert result.backend == "cpu"


def test_gpu_without_a_device_is_refused_before_any_work(tile_dir, tmp_path, caplog, monkeypatch):
    """An explicit gpu request with no usable GPU is bad usage (one line), not a quiet
    CPU build behind a fallback WARNING and a traceback."""
    from zemosaic_core import UsageError
    from zemosaic_core.engine.backends import detect_gpu

    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE", raising=False)
    if detect_gpu().available:
        pytest.skip("a real GPU is present")
    out = tmp_path / "m.fits"
    with pytest.raises(UsageError, match="no GPU is usable here") as info:
        _build(tile_dir, out, "gpu", caplog, monkeypatch, simulate=False)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info]
    # auto keeps falling back quietly (one INFO line, no WARNING).
    result, records = _build(tile_dir, out, "auto", caplog, monkeypatch, simulate=False)
    assert result.backend == "cpu" and not _messages(records, logging.WARNING)


def test_a_bug_on_the_gpu_fails_the_build_instead_of_falling_back(
    tile_dir, tmp_path, caplog, monkeypatch
):
    """Only device failures fall back to the CPU: a TypeError raised inside the GPU
    engine is a bug, so it reaches the caller and no pass silently reruns on the CPU."""
    from zemosaic_core.engine.backends.gpu import GpuBackend

    def buggy(self, *args, **kwargs):
        raise TypeError("a bug in the GPU engine")

    monkeypatch.setattr(GpuBackend, "_resample", buggy)
    with pytest.raises(TypeError, match="a bug in the GPU engine"):
        _build(tile_dir, tmp_path / "bug.fits", "gpu", caplog, monkeypatch)
    assert not any(WARNING_TEXT in m for m in _messages(caplog.records))
    assert not (tmp_path / "bug.fits").exists()
