"""Scratch space: arrays in RAM while a budget allows, memory-mapped files beyond it.

Files live in a private folder (``.zemosaic-scratch-*``) under the chosen directory
and are removed when the space is closed — on success, error and cancel alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from types import TracebackType

import numpy as np

from ..config import setting_name
from ..errors import ZeMosaicError

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = ".zemosaic-scratch-"


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
            self._folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent))
            logger.info("Memory budget reached: spilling work arrays to %s", self._folder)
        self._count += 1
        path = self._folder / f"array-{self._count}.dat"
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        # Reserve the blocks now: a sparse file that cannot grow later kills the
        # process with SIGBUS in the middle of a pass, with no message and no cleanup.
        with open(path, "wb") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, max(1, nbytes))
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise ZeMosaicError(
                        f"scratch folder {self._folder.parent} has no room for "
                        f"{nbytes / 2**20:.0f} MB of work arrays ({exc.strerror}); "
                        f"free some space or choose another in {setting_name('scratch')}"
                    ) from None
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
