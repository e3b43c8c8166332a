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


# --------------------------------------------------------------------------- round 2


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.skipif(sys.platform.startswith("win"), reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_termination_signals_unwind_like_ctrl_c(tile_dir, tmp_path, signame, file_hashes):
    """SIGTERM/SIGHUP used to leave .zemosaic-scratch-* and .zemosaic-tmp-* behind."""
    inputs_before = file_hashes(sorted(tile_dir.iterdir()))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "mosaic.fits"
    out.write_bytes(b"previous mosaic, must survive")
    proc = subprocess.Popen(
        [ZEMOSAIC, "build", str(tile_dir), "-o", str(out), "--backend", "cpu",
         "--max-memory", "256K", "--scratch", str(scratch), "--combine", "median"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    spilled = _wait_for(lambda: _leftovers(scratch) or proc.poll() is not None, 120)
    if proc.poll() is not None or not spilled:
        proc.kill()
        proc.wait()
        pytest.skip("the build ended before it could be interrupted")
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert f"terminated by signal {getattr(signal, signame)}" in err
    assert "Traceback" not in err
    assert _leftovers(scratch) == [] and _leftovers(tmp_path) == []
    assert out.read_bytes() == b"previous mosaic, must survive"
    assert file_hashes(sorted(tile_dir.iterdir())) == inputs_before


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_killed_build_are_removed_by_the_next_build(small_dir, tmp_path):
    """Only entries provably a ZeMosaic build's own and stale go; nothing else is touched."""
    import os

    from zemosaic_core.runtime.scratch import _host_tag, owned_prefix

    host, dead = _host_tag(), _dead_pid()
    stale_tmp = tmp_path / f"{TEMP_PREFIX}{host}-{dead}-abc.fits"
    stale_tmp.write_bytes(b"half a mosaic")
    stale_scratch = tmp_path / f"{SCRATCH_PREFIX}{host}-{dead}-xyz"
    stale_scratch.mkdir()
    (stale_scratch / "array-1.dat").write_bytes(b"\0" * 1024)
    running = tmp_path / f"{owned_prefix(TEMP_PREFIX)}live.fits"  # this process: alive
    running.write_bytes(b"being written")
    other_host = tmp_path / f"{TEMP_PREFIX}{'0' * 8 if host != '0' * 8 else '1' * 8}-{dead}-n.fits"
    other_host.write_bytes(b"another machine's")
    legacy = tmp_path / f"{TEMP_PREFIX}q1w2e3.fits"
    legacy.write_bytes(b"no owner in the name")
    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine")

    build_mosaic([small_dir], BuildConfig(output=tmp_path / "m.fits", backend="cpu"))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert stale_tmp.name not in left and stale_scratch.name not in left
    for kept in (running, other_host, legacy, user_file):
        assert kept.name in left
    assert os.path.exists(tmp_path / "m.fits")


def test_sigkill_leftovers_are_cleaned_by_the_next_build(tile_dir, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "m.fits"
    args = [ZEMOSAIC, "build", str(tile_dir), "-o", str(out), "--backend", "cpu",
            "--max-memory", "256K", "--scratch", str(scratch), "--combine", "median"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spilled = _wait_for(lambda: _leftovers(scratch) or proc.poll() is not None, 120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    if not spilled or not _leftovers(scratch):
        pytest.skip("the build ended before it could be killed")
    finished = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert _leftovers(scratch) == [] and _leftovers(tmp_path) == []


def test_the_cli_module_imports_light_so_ctrl_c_at_start_up_is_handled():
    """Ctrl-C while NumPy/astropy were imported gave a traceback: nothing heavy may be
    imported before `main` runs its handler."""
    code = (
        "import sys, zemosaic_core.cli; "
        "heavy = [m for m in ('numpy', 'astropy', 'reproject', 'scipy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys):
    from zemosaic_core import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert cli.main(["build", "x", "-o", "y.fits"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("zemosaic: interrupted") and "Traceback" not in err


def test_library_notices_and_numpy_warnings_stay_off_stderr_at_error_level(tmp_path):
    """astropy's multi-line SIP notice and numpy overflow warnings ignored --log-level."""
    from astropy.io import fits

    folder = tmp_path / "tiles"
    folder.mkdir()
    for k, tile in enumerate(grid_tiles(2, 2, size=60, noise=0.5)):
        header = tile.wcs.to_header(relax=True)
        data = tile.data.copy()
        if k == 0:  # SIP coefficients without the -SIP suffix
            header["A_ORDER"], header["B_ORDER"] = 2, 2
            header["A_2_0"], header["B_0_2"] = 1e-7, 1e-7
        if k == 3:  # a few hot pixels near the float32 limit
            data[:, 10:12, 10:12] = 3e38
        fits.PrimaryHDU(data, header).writeto(folder / f"t{k}.fits")
    proc = subprocess.run(
        [ZEMOSAIC, "build", str(folder), "-o", str(tmp_path / "m.fits"), "--backend", "cpu",
         "--log-level", "ERROR", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_an_invalid_fault_injection_value_is_warned_about_once(small_dir, monkeypatch, caplog):
    import logging
    import uuid

    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", f"red-{uuid.uuid4().hex[:6]}")
    with caplog.at_level(logging.WARNING, logger="zemosaic_core"):
        build_mosaic([small_dir], BuildConfig(output=None, backend="gpu"))
    named = [r for r in caplog.records if "ZEMOSAIC_GPU_SIMULATE_FAIL" in r.getMessage()]
    assert len(named) == 1


def test_a_two_pass_sigma_wider_than_the_mosaic_stays_small():
    """--two-pass-sigma 8e5 allocated 9.3 GiB for a 337 x 235 mosaic."""
    from zemosaic_core.config import TwoPassSpec
    from zemosaic_core.photometry.twopass import well_covered_mask

    coverage = np.zeros((30, 20), dtype=np.float32)
    coverage[5:25, 3:17] = 2.0
    mask = well_covered_mask(coverage, [1.0], TwoPassSpec(sigma=8e6))
    assert mask.shape == coverage.shape
    assert not mask[coverage == 0].any()
    assert mask[coverage > 0].all()


def test_max_memory_applies_to_reading_a_compressed_file(small_dir, tmp_path):
    """A small .fits.gz announcing 108 MB is refused by name under --max-memory 70M."""
    import gzip
    import shutil

    from astropy.io import fits

    folder = tmp_path / "tiles"
    shutil.copytree(small_dir, folder)
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 3
    header["NAXIS1"], header["NAXIS2"], header["NAXIS3"] = 3000, 3000, 3
    with fits.open(sorted(small_dir.iterdir())[0]) as hdul:
        for key in ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2"):
            header[key] = hdul[0].header[key]
        header["CDELT1"], header["CDELT2"] = -1 / 3600, 1 / 3600
    data_bytes = 3 * 3000 * 3000 * 4
    bomb = folder / "bomb.fits.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as gz:
        gz.write(header.tostring().encode("ascii"))
        zeros = b"\0" * (1 << 22)
        for _ in range(-(-(data_bytes + (-data_bytes % 2880)) // len(zeros))):
            gz.write(zeros)
    proc = subprocess.run(
        [ZEMOSAIC, "build", str(folder), "-o", str(tmp_path / "m.fits"), "--backend", "cpu",
         "--max-memory", "70M", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "bomb.fits.gz" in line]
    assert len(lines) == 1 and "above the memory budget of 70 MB" in lines[0]


def test_scratch_files_are_reserved_without_posix_fallocate(tmp_path, monkeypatch):
    """Windows and macOS have no os.posix_fallocate: spilling raised AttributeError."""
    import os

    from zemosaic_core.runtime.scratch import ScratchSpace

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    with ScratchSpace(tmp_path, ram_budget=0) as space:
        array = space.allocate((64, 80), np.float32)
        array[:] = 1.5
        assert isinstance(array, np.memmap) and float(array.sum()) == 1.5 * 64 * 80
        files = list(space.folder.iterdir())
        assert len(files) == 1 and files[0].stat().st_size == 64 * 80 * 4
    assert list(tmp_path.iterdir()) == []
