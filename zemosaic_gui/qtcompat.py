"""Checks that the installed Qt for Python release can run the app.

PySide6 6.12.0 drops a reference of ``True`` on every ``Signal.emit()`` and of ``None``
on every Python override or slot Qt calls. On Python < 3.12, where those objects are
not immortal, the interpreter aborts after a few hundred calls ("Fatal Python error:
bool_dealloc" / "none_dealloc"): the window would crash within seconds. The check
measures the leak instead of trusting version numbers, so a fixed build passes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from PySide6 import __version__ as PYSIDE_VERSION
from PySide6.QtCore import QObject, Signal

#: What to install instead of a broken release.
REMEDY = "pip install 'PySide6-Essentials>=6.6,<6.12'"


class _Probe(QObject):
    ping = Signal()


def binding_problem(trials: int = 8) -> str | None:
    """Describe a reference-counting bug of the running PySide6, or None when sound.

    Parameters
    ----------
    trials : int
        Emissions measured (each steals one reference when the bug is present).

    Returns
    -------
    str or None
        A one-paragraph explanation with the remedy.
    """
    probe = _Probe()
    before = sys.getrefcount(True)
    # Typed as returning a value on purpose: the faulty binding returns the bool it leaks.
    emit: Callable[[], object] = probe.ping.emit
    results = [emit() for _ in range(trials)]
    # Hold the results while measuring: only a reference the binding failed to take
    # shows up as a loss.
    lost = before - sys.getrefcount(True) + sum(1 for r in results if r is True)
    del results
    if lost < trials // 2:
        return None
    return (
        f"PySide6 {PYSIDE_VERSION} has a reference-counting bug on Python "
        f"{sys.version_info.major}.{sys.version_info.minor} that makes the app crash "
        f"('Fatal Python error: bool_dealloc'). Install a sound release: {REMEDY}"
    )


#: System packages the Qt xcb plugin needs that a desktop may lack (Debian/Ubuntu names).
XCB_HINT = (
    "on Debian/Ubuntu: sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 "
    "libxkbcommon-x11-0"
)


def platform_problem(timeout: float = 30.0) -> str | None:
    """Why Qt cannot open a window here, or ``None`` when it can.

    Qt aborts the whole process when its platform plugin cannot load (for example the
    xcb plugin without ``libxcb-cursor0``), so the check starts a throw-away Python
    process that creates a ``QApplication`` and reports what Qt said.
    """
    import subprocess

    code = "import sys\nfrom PySide6.QtWidgets import QApplication\nQApplication(sys.argv[:1])\n"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not check the Qt platform: {exc}"
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    said = next((line for line in lines if "qt.qpa" in line and "needed" in line), None)
    said = said or next((line for line in lines if "platform plugin" in line), None)
    said = said or (lines[-1] if lines else f"exit status {proc.returncode}")
    hint = f" ({XCB_HINT})" if "xcb" in proc.stderr else ""
    return f"Qt cannot open a window: {said}{hint}"
