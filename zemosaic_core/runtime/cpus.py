"""How many CPU cores a build may use: one rule for every thread pool of the core."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """CPU cores this process may run on (>= 1).

    The process's affinity where the platform exposes it (Linux: a container or
    ``taskset`` may allow fewer cores than the machine has), else
    ``os.process_cpu_count`` (Python >= 3.13), else ``os.cpu_count()``.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return max(1, count or 1)
