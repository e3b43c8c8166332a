"""Scratch space: arrays in RAM while a budget allows, memory-mapped files beyond it.

Files live in a private folder (``.zemosaic-scratch-*``) under the chosen directory
and are removed when the space is closed — on success, error, cancel and termination
signals alike. A build killed outright (SIGKILL, power loss) cannot clean up: its
leftovers carry the host and process id in their names (`owned_prefix`), and the next
build in that folder removes those whose process is gone (`remove_stale_leftovers`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import mmap
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np

from ..config import setting_name
from ..errors import ZeMosaicError

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = ".zemosaic-scratch-"
#: Prefix of the temporary output files (renamed over the target when complete).
TEMP_PREFIX = ".zemosaic-tmp-"


def _host_tag() -> str:
    """8 hex digits naming this machine (a folder may be shared over the network)."""
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return hashlib.sha1(name.encode("utf-8", "replace")).hexdigest()[:8]


def owned_prefix(prefix: str) -> str:
    """``prefix`` + ``<host>-<pid>-``: the name start of this process's own leftovers."""
    return f"{prefix}{_host_tag()}-{os.getpid()}-"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when it cannot be told).

    Never signals the process: on Windows ``os.kill`` would terminate it, so the
    process is opened and its exit code read instead.
    """
    if pid <= 0:
        return True
    if pid == os.getpid():
        return True
    if sys.platform.startswith("win"):
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or unknown: keep its files
    return True


def _windows_process_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:
        return True


_OWNED = re.compile(
    "^(" + re.escape(SCRATCH_PREFIX) + "|" + re.escape(TEMP_PREFIX) + r")([0-9a-f]{8})-(\d+)-"
)


def remove_stale_leftovers(folder: str | Path) -> int:
    """Remove what builds killed outright left in ``folder``; returns how many entries.

    Only entries provably a ZeMosaic build's own and stale are removed: a scratch
    folder or temporary output whose name carries this machine's tag and the id of a
    process that no longer runs. Anything else (another machine's files, a running
    build's, names without the tag) is left alone.
    """
    host = _host_tag()
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or match.group(2) != host or process_alive(int(match.group(3))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
        except OSError as exc:
            logger.debug("could not remove the leftover %s: %s", entry.path, exc)
            continue
        removed += 1
    if removed:
        logger.info("Removed %d leftover file(s) of an interrupted build from %s", removed, folder)
    return removed


class ScratchSpace:
    """Allocates work arrays within a RAM budget, spilling to ``np.memmap`` files.

    Parameters
    ----------
    directory : path-like, optional
        Where spilled arrays go (default: the system temporary folder).
    ram_budget : int
        Bytes that may be held in RAM by this space's arrays.
    """

    def __init__(self, directory: str | Path | None = None, ram_budget: int = 1 << 30) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.ram_budget = int(ram_budget)
        self.ram_used = 0
        self._folder: Path | None = None
        self._count = 0
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path | None:
        """The private folder of spilled files, once one was needed."""
        return self._folder

    def try_ram(
        self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32
    ) -> np.ndarray | None:
        """An uninitialised array in RAM if the budget still allows it, else ``None``."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with self._lock:
            if self.ram_used + nbytes > self.ram_budget:
                return None
            self.ram_used += nbytes
        array = np.empty(shape, dtype=dtype)
        # The budget comes back when the array is freed (pass 1's result, a dropped
        # cache entry), so later allocations are not pushed to disk for nothing.
        weakref.finalize(array, self._give_back, nbytes)
        return array

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self.ram_used = max(0, self.ram_used - nbytes)

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """An uninitialised array: in RAM while the budget allows, else a memmap file."""
        in_ram = self.try_ram(shape, dtype)
        if in_ram is not None:
            return in_ram
        if self._folder is None:
            parent = self.directory if self.directory is not None else None
            self._folder = Path(tempfile.mkdtemp(prefix=owned_prefix(SCRATCH_PREFIX), dir=parent))
            logger.info("Memory budget reached: spilling work arrays to %s", self._folder)
        self._count += 1
        path = self._folder / f"array-{self._count}.dat"
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        # Reserve the blocks now: a sparse file that cannot grow later kills the
        # process with SIGBUS in the middle of a pass, with no message and no cleanup.
        with open(path, "wb") as handle:
            reserve(handle, max(1, nbytes), self._folder)
        return np.memmap(path, dtype=dtype, mode="r+", shape=shape)

    def close(self) -> None:
        """Remove every spilled file (idempotent)."""
        if self._folder is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._folder)
            self._folder = None
        self.ram_used = 0

    def __enter__(self) -> ScratchSpace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_ZEROS = bytes(1 << 20)


def _no_room(folder: Path, nbytes: int, reason: str) -> ZeMosaicError:
    return ZeMosaicError(
        f"scratch folder {folder.parent} has no room for {nbytes / 2**20:.0f} MB of "
        f"work arrays ({reason}); free some space or choose another in "
        f"{setting_name('scratch')}"
    )


def reserve(handle: BinaryIO, nbytes: int, folder: Path) -> None:
    """Make the empty open file ``handle`` ``nbytes`` long, on real disk blocks.

    POSIX ``fallocate`` (Linux and most Unixes) reserves the blocks. Where it is
    missing (Windows, macOS) or the file system does not support it, the free space
    is checked and zeros are written: a sparse file would fail only later, inside the
    mapping (SIGBUS on POSIX), with no message and no cleanup.

    Raises
    ------
    ZeMosaicError
        The folder has no room for ``nbytes`` (a clear message, naming it).
    """
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(handle.fileno(), 0, nbytes)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise _no_room(folder, nbytes, exc.strerror or str(exc)) from None
    free = shutil.disk_usage(folder).free
    if free < nbytes:
        raise _no_room(folder, nbytes, f"{free / 2**20:.0f} MB free")
    try:
        remaining = nbytes
        while remaining > 0:
            remaining -= handle.write(_ZEROS[: min(remaining, len(_ZEROS))])
        handle.flush()
    except OSError as exc:
        raise _no_room(folder, nbytes, exc.strerror or str(exc)) from None


def release_pages(array: np.ndarray) -> None:
    """Let the OS drop the resident pages of a memory-mapped array (no-op otherwise).

    The data stay in the file (flushed first), and are read back on the next access;
    calling this after each chunk keeps a large memory-mapped result out of RSS.
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    with contextlib.suppress(OSError, ValueError):
        mapping.flush()
        mapping.madvise(mmap.MADV_DONTNEED)
