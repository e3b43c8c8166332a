"""ZeMosaic's desktop application (PySide6).

The window lives in :mod:`zemosaic_gui.main_window`; :func:`zemosaic_gui.app.main` starts
it (``zemosaic-gui``, ``zemosaic gui``).
"""

from __future__ import annotations

from .main_window import MainWindow

__all__ = ["MainWindow"]
