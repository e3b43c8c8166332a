"""Memory budgets: how much a build may hold at once."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

#: Assumed physical memory when no way of reading it works.
_FALLBACK_MEMORY = 4 * 1024**3


def total_memory() -> int:
    """Physical memory in bytes, on every platform.

    From psutil (Windows, macOS, Linux...); without it, from POSIX ``sysconf`` where
    the platform has it; 4 GiB (with a DEBUG line) when neither works.
    """
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # not installed, or no reading on this platform: try the next way
        logger.debug("psutil cannot read the physical memory", exc_info=True)
    sysconf = getattr(os, "sysconf", None)
    if sysconf is not None:
        try:
            return int(sysconf("SC_PAGE_SIZE") * sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError):
            pass
    logger.debug("physical memory unknown: assuming %d GiB", _FALLBACK_MEMORY // 1024**3)
    return _FALLBACK_MEMORY


#: The default budget never goes below this (bytes), even on a machine short of free
#: memory: under it, builds of ordinary frames would spill everything to disk.
MIN_DEFAULT_BUDGET = 512 * 1024**2


def available_memory() -> int | None:
    """Memory the system could give now without swapping (bytes), or None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no reading on this platform
        logger.debug("psutil cannot read the available memory", exc_info=True)
        return None


def default_budget(total: int | None = None, available: int | None = None) -> int:
    """The memory budget of a build when the user sets none (``--max-memory``).

    A quarter of the physical memory, and no more than half of what is available when
    the build starts, but at least `MIN_DEFAULT_BUDGET`. Why: our users build on
    laptops (8-16 GB) while a browser, a planetarium and the capture software run; a
    quarter leaves them their share (16 GB: a 4 GB budget, the build peaking near it),
    and half of the available memory keeps a build from pushing the rest into swap when
    the machine is already busy. The budget bounds the work, not the output: a build's
    cost beyond it is time (tiles read again, scratch files), never a crash.

    Parameters
    ----------
    total, available : int, optional
        Physical and available memory in bytes; read from the system when omitted.
    """
    total = total_memory() if total is None else total
    available = available_memory() if available is None else available
    budget = total // 4
    if available is not None:
        budget = min(budget, available // 2)
    return max(budget, MIN_DEFAULT_BUDGET)


def parse_size(text: str) -> int:
    """Parse ``"512M"``, ``"4G"``, ``"1.5GB"`` or a plain byte count into bytes.

    Raises
    ------
    ValueError
        When ``text`` is not a size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGTkmgt]?)(?:i?[Bb])?\s*", text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 4G)")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return int(value)


@dataclass(frozen=True)
class BudgetSplit:
    """How a build's memory budget is shared out (bytes).

    Attributes
    ----------
    tiles : int
        Input pixels held in memory; tiles beyond it are read from disk when needed.
    scratch : int
        Resampled tiles kept for the two-pass and full-size results held in RAM;
        results beyond it go to memory-mapped scratch files.
    chunks : int
        Accumulators and stacks of one output chunk (sets the chunk height).
    read : int
        What reading one input file may take at its peak: the whole budget, but never
        less than `MIN_READ_BUDGET` (a file announcing more is refused unread).

    The remaining quarter is headroom for the libraries' temporaries.
    """

    tiles: int
    scratch: int
    chunks: int
    read: int


#: Reading one file is always allowed this much (bytes), whatever the budget: a budget
#: below one ordinary frame is a knob to force spilling (tiny machines, tests), not a
#: reason to refuse every input. A decompression bomb announcing gigabytes is still
#: refused under any budget below its size.
MIN_READ_BUDGET = 64 * 1024**2


def split_budget(total: int) -> BudgetSplit:
    """Share ``total`` bytes out as 1/8 tiles, 3/8 scratch, 1/4 chunks, 1/4 headroom.

    Reading one file (``read``) may use the whole of ``total`` (at least
    `MIN_READ_BUDGET`): it happens before the other shares fill up.
    """
    return BudgetSplit(
        tiles=total // 8,
        scratch=3 * total // 8,
        chunks=total // 4,
        read=max(total, MIN_READ_BUDGET),
    )
