"""ZeMosaic's desktop application (PySide6).

The window lives in :mod:`zemosaic_gui.main_window`; :func:`zemosaic_gui.app.main` starts
it (``zemosaic-gui``, ``zemosaic gui``). The application model, :mod:`zemosaic_gui.model`,
is plain Python: importing it (or this package) does not import Qt.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MainWindow"]


def __getattr__(name: str) -> Any:
    # Qt loads with the window, not with the package: the model stays importable (and
    # testable) without Qt.
    if name == "MainWindow":
        from .main_window import MainWindow

        return MainWindow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
