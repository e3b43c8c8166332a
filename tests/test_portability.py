"""The core runs where the POSIX calls it prefers are missing (Windows, macOS).

Each fallback is exercised here on this machine by removing the POSIX call inside the
test, and a scan of the core keeps new unguarded POSIX-only calls out.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from zemosaic_core.errors import ZeMosaicError
from zemosaic_core.runtime import memory
from zemosaic_core.runtime.cpus import available_cpus
from zemosaic_core.runtime.scratch import ScratchSpace

CORE = Path(__file__).resolve().parents[1] / "zemosaic_core"

#: Calls that exist only on some platforms; a line using one must guard it (getattr /
#: hasattr) or say why it is safe (``# portable``).
POSIX_ONLY = re.compile(r"posix_fallocate|os\.sysconf|resource\.|signal\.SIGHUP|sched_getaffinity")
GUARDS = ("getattr", "hasattr", "# portable")


def test_core_has_no_unguarded_posix_only_call():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if POSIX_ONLY.search(line) and not any(guard in line for guard in GUARDS):
                offenders.append(f"{path.relative_to(CORE.parent)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_scan_finds_an_unguarded_call(tmp_path):
    """The scan above can fail: it flags an unguarded call and accepts a guarded one."""
    assert POSIX_ONLY.search("    os.posix_fallocate(fd, 0, n)")
    assert not any(g in "    os.posix_fallocate(fd, 0, n)" for g in GUARDS)
    assert any(g in 'fallocate = getattr(os, "posix_fallocate", None)' for g in GUARDS)


@pytest.mark.parametrize("has_fallocate", [True, False], ids=["posix", "no-posix_fallocate"])
def test_scratch_spills_with_and_without_posix_fallocate(tmp_path, monkeypatch, has_fallocate):
    if not has_fallocate:
        monkeypatch.delattr(os, "posix_fallocate", raising=False)
    elif not hasattr(os, "posix_fallocate"):
        pytest.skip("this platform has no posix_fallocate")
    with ScratchSpace(tmp_path, ram_budget=0) as scratch:
        array = scratch.allocate((3, 40, 50), np.float32)
        assert isinstance(array, np.memmap)
        files = list(scratch.folder.iterdir())
        assert len(files) == 1 and files[0].stat().st_size == 3 * 40 * 50 * 4
        array[:] = 7.0
        array.flush()
        assert np.all(np.fromfile(files[0], dtype=np.float32) == 7.0)
        del array
    assert not any(tmp_path.iterdir())


def test_scratch_without_posix_fallocate_refuses_a_full_disk(tmp_path, monkeypatch):
    """Without posix_fallocate a sparse file could be created on a full disk and fail
    later (SIGBUS on POSIX); the free-space check makes it a clear error up front."""
    import shutil

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    real_usage = shutil.disk_usage

    def nearly_full(path):
        usage = real_usage(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    with (
        ScratchSpace(tmp_path, ram_budget=0) as scratch,
        pytest.raises(ZeMosaicError, match=r"has no room for .* MB of work arrays"),
    ):
        scratch.allocate((1000, 1000), np.float32)


def test_scratch_maps_a_posix_fallocate_failure_to_a_clear_error(tmp_path, monkeypatch):
    import errno

    def disk_full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", disk_full, raising=False)
    with (
        ScratchSpace(tmp_path, ram_budget=0) as scratch,
        pytest.raises(ZeMosaicError, match="No space left on device"),
    ):
        scratch.allocate((10, 10), np.float32)


def test_scratch_falls_back_where_the_file_system_cannot_fallocate(tmp_path, monkeypatch):
    import errno

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    with ScratchSpace(tmp_path, ram_budget=0) as scratch:
        array = scratch.allocate((20, 30), np.float32)
        assert array.shape == (20, 30)
        assert next(scratch.folder.iterdir()).stat().st_size == 20 * 30 * 4


def test_total_memory_is_read_without_sysconf(monkeypatch):
    """Windows has no os.sysconf: the physical memory comes from psutil, not a guess."""
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert memory.total_memory() == psutil.virtual_memory().total


def test_total_memory_without_psutil_uses_sysconf_then_a_fallback(monkeypatch):
    physical = psutil.virtual_memory().total
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    if hasattr(os, "sysconf"):
        assert memory.total_memory() == physical
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert memory.total_memory() == 4 * 1024**3


def test_available_cpus_without_sched_getaffinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    expected = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    assert available_cpus() == expected >= 1


def test_available_cpus_follows_the_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert available_cpus() == 1


def test_default_budget_leaves_a_laptop_usable():
    """A quarter of the RAM, at most half of what is free, never below the floor."""
    gib = 1024**3
    assert memory.default_budget(total=16 * gib, available=12 * gib) == 4 * gib
    assert memory.default_budget(total=16 * gib, available=3 * gib) == 3 * gib // 2
    assert memory.default_budget(total=16 * gib, available=None) == 4 * gib
    tiny = memory.default_budget(total=1 * gib, available=256 * 1024**2)
    assert tiny == memory.MIN_DEFAULT_BUDGET
    assert memory.default_budget() <= max(memory.total_memory() // 4, memory.MIN_DEFAULT_BUDGET)
