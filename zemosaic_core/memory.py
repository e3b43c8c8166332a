"""Memory budgets: how much a build may hold at once."""

from __future__ import annotations

import os
import re

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def total_memory() -> int:
    """Physical memory in bytes (4 GiB when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


def default_budget() -> int:
    """Half of the physical memory, as DESIGN/CLI promise for ``--max-memory``."""
    return total_memory() // 2


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
