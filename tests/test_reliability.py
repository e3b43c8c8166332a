"""Nothing lost: kills, full disks and cancels never leave a broken or partial output."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import grid_tiles, write_tile

from zemosaic_core import BuildCancelled, BuildConfig, CancelToken, build_mosaic
from zemosaic_core.io.outputs import TEMP_PREFIX
from zemosaic_core.runtime.scratch import SCRATCH_PREFIX

ZEMOSAIC = str(Path(sys.executable).with_name("zemosaic"))


@pytest.fixture(scope="module")
def tile_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rel_tiles")
    for tile in grid_tiles(3, 2, size=150, noise=0.5):
        write_tile(folder / tile.path.name, tile)
    return folder


def _leftovers(folder: Path) -> list[str]:
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith((TEMP_PREFIX, SCRATCH_PREFIX))
    )


@pytest.mark.parametrize("delay", [0.3, 1.2, 2.5, 4.0])
def test_sigkill_keeps_the_previous_output(tile_dir, tmp_path, delay, file_hashes):
    inputs_before = file_hashes(sorted(tile_dir.iterdir()))
    out = tmp_path / "mosaic.fits"
    out.write_bytes(b"previous mosaic, must survive")
    proc = subprocess.Popen(
        [ZEMOSAIC, "build", str(tile_dir), "-o", str(out), "--backend", "cpu",
         "--preview", str(tmp_path / "mosaic.png")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    data = out.read_bytes()
    # Either the previous file, untouched, or a complete new mosaic: never a torn one.
    if data != b"previous mosaic, must survive":
        from astropy.io import fits

        with fits.open(out) as hdul:
            assert hdul[0].header["NTILES"] == 6 and "COVERAGE" in hdul
    finished = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert set(finished) <= {"mosaic.fits", "mosaic.png"}
    assert file_hashes(sorted(tile_dir.iterdir())) == inputs_before


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_full_disk_gives_a_clear_error_and_no_partial_output(tile_dir, tmp_path):
    out = tmp_path / "mosaic.fits"
    proc = subprocess.run(
        [ZEMOSAIC, "build", str(tile_dir), "-o", str(out), "--backend", "cpu"],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "could not write" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cancel_tiles")
    for tile in grid_tiles(2, 2, size=80, noise=0.5):
        write_tile(folder / tile.path.name, tile)
    return folder


class _CancelAfter:
    """A progress callback that cancels the build at its n-th call."""

    def __init__(self, token: CancelToken, calls: int) -> None:
        self.token, self.calls, self.seen = token, calls, 0

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.seen += 1
        if self.seen >= self.calls:
            self.token.cancel()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=st.integers(min_value=1, max_value=40), combine=st.sampled_from(["mean", "median"]))
def test_cancel_at_any_point_leaves_nothing_behind(small_dir, tmp_path_factory, calls, combine):
    from zemosaic_core.config import CombineSpec

    out_dir = tmp_path_factory.mktemp("cancel_out")
    config = BuildConfig(
        output=out_dir / "m.fits",
        preview=out_dir / "m.png",
        combine=CombineSpec(combine),
        backend="cpu",
        max_memory=64 * 1024,  # tiny budget: chunks and scratch files are in play
    )
    token = CancelToken()
    progress = _CancelAfter(token, calls)
    try:
        build_mosaic([small_dir], config, progress=progress, cancel=token)
    except BuildCancelled:
        assert list(out_dir.iterdir()) == []
    else:  # the cancel came after the last check point: a complete build
        assert (out_dir / "m.fits").exists() and (out_dir / "m.png").exists()
    assert _leftovers(out_dir) == []
    # The API is still usable afterwards.
    result = build_mosaic([small_dir], BuildConfig(output=None, backend="cpu"))
    assert np.isfinite(result.image).any()


def test_tiny_memory_budget_spills_to_scratch_and_cleans_up(small_dir, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    seen: list[list[str]] = []

    def watch(phase, done, total):
        seen.append(sorted(p.name for p in scratch.iterdir()))

    spilled = build_mosaic(
        [small_dir],
        BuildConfig(output=None, backend="cpu", max_memory=64 * 1024, scratch=scratch),
        progress=watch,
    )
    assert any(names and names[0].startswith(SCRATCH_PREFIX) for names in seen)
    assert list(scratch.iterdir()) == []
    reference = build_mosaic([small_dir], BuildConfig(output=None, backend="cpu"))
    np.testing.assert_allclose(spilled.image, reference.image, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(spilled.coverage, reference.coverage)


def test_full_scratch_disk_is_a_clear_error_not_a_crash(tile_dir, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "mosaic.fits"
    proc = subprocess.run(
        [ZEMOSAIC, "build", str(tile_dir), "-o", str(out), "--backend", "cpu",
         "--max-memory", "256K", "--scratch", str(scratch)],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "scratch folder" in proc.stderr and "no room" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and list(scratch.iterdir()) == []
