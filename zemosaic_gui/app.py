"""Launching the desktop app: ``zemosaic-gui``, ``zemosaic gui [INPUT...]``, ``make run``.

``main(argv)`` opens the window on the given inputs. With ``--demo [DIR]`` it writes the
demo tiles into DIR on first run and loads them. Without a display (Linux with neither
``DISPLAY`` nor ``WAYLAND_DISPLAY``, and no off-screen Qt platform requested) it says so
and hands the build to the core's command line (``zemosaic build`` / ``zemosaic
run-demo --headless``): one command line, one set of exit codes and error messages.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from zemosaic_core.config import BACKENDS
from zemosaic_core.datasets.demo import (
    DEFAULT_DEMO_DIR,
    DEFAULT_DEMO_OUTPUT_DIR,
    ensure_demo_tiles,
)
from zemosaic_core.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from zemosaic_core.runtime.logsetup import LOG_LEVELS

log = logging.getLogger(__name__)

#: Qt platforms that need no display server.
HEADLESS_QT_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay")

#: Windows opened by `main` inside an application it does not own (kept alive here).
_OPEN_WINDOWS: list[object] = []


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``zemosaic-gui``."""
    parser = argparse.ArgumentParser(
        prog="zemosaic-gui",
        description="ZeMosaic desktop app: colour mosaics from plate-solved FITS tiles.",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="FITS files or folders to load")
    parser.add_argument(
        "--demo",
        nargs="?",
        const=str(DEFAULT_DEMO_DIR),
        default=None,
        metavar="DIR",
        help=f"load the demo tiles from DIR, writing them on first run (default {DEFAULT_DEMO_DIR})",
    )
    parser.add_argument(
        "--demo-dir", type=Path, default=None, metavar="DIR", help="same as --demo DIR"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where headless builds write and Save as starts (default {DEFAULT_DEMO_OUTPUT_DIR} for the demo)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default=None, help="backend to select")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        default=None,
        help="log level of the zemosaic loggers (default: the last one used)",
    )
    parser.add_argument(
        "--build", action="store_true", help="start the build as soon as the window opens"
    )
    parser.add_argument(
        "--headless", action="store_true", help="build without a window, even with a display"
    )
    return parser


def has_display(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a window can be shown.

    Parameters
    ----------
    environ : dict, optional
        Environment (default ``os.environ``).
    platform : str, optional
        ``sys.platform`` (default the running one).

    Returns
    -------
    bool
        False on Linux/BSD without ``DISPLAY`` and ``WAYLAND_DISPLAY`` unless
        ``QT_QPA_PLATFORM`` names a platform that needs no display server.
    """
    env = os.environ if environ is None else environ
    system = sys.platform if platform is None else platform
    if system.startswith(("win", "darwin", "cygwin")):
        return True
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in HEADLESS_QT_PLATFORMS:
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _demo_dir(args: argparse.Namespace) -> Path | None:
    if args.demo_dir is not None:
        return Path(args.demo_dir)
    if args.demo is not None:
        return Path(args.demo)
    return None


def run_headless(args: argparse.Namespace) -> int:
    """Build the demo (or the given inputs) without a window, through the core's CLI.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed `build_parser` arguments.

    Returns
    -------
    int
        The exit status of ``zemosaic`` (0 success, 2 nothing usable to build, 1 failure).
    """
    from zemosaic_core import cli

    options: list[str] = []
    if args.backend:
        options += ["--backend", args.backend]
    if args.log_level:
        options += ["--log-level", args.log_level]
    demo = _demo_dir(args)
    output_dir = Path(args.output_dir or DEFAULT_DEMO_OUTPUT_DIR)
    if args.inputs:
        inputs = [str(p) for p in args.inputs]
        if demo is not None:
            inputs += [str(p) for p in ensure_demo_tiles(demo)]
        output_dir.mkdir(parents=True, exist_ok=True)
        stem = output_dir / "mosaic"
        return cli.main(
            ["build", *inputs, "-o", str(stem.with_suffix(".fits")),
             "--preview", str(stem.with_suffix(".png")), "--tiff", str(stem.with_suffix(".tif")),
             *options]
        )  # fmt: skip
    if demo is not None:
        return cli.main(
            ["run-demo", "--headless", "--demo-dir", str(demo), "--output-dir", str(output_dir),
             *options]
        )  # fmt: skip
    print(
        "zemosaic-gui: no display and nothing to build: give FITS inputs or --demo.",
        file=sys.stderr,
    )
    return EXIT_USAGE


def open_window(args: argparse.Namespace, settings: object | None = None) -> object:
    """Create, fill and show the main window (a `QApplication` must exist).

    Parameters
    ----------
    args : argparse.Namespace
        Parsed `build_parser` arguments.
    settings : QSettings, optional
        Passed to `MainWindow` (tests point it to a temporary file).

    Returns
    -------
    MainWindow
    """
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow

    window = MainWindow(settings=settings)  # type: ignore[arg-type]
    if args.backend:
        window.settings_panel.set_backend(args.backend)
    if args.log_level:
        window.set_log_level(args.log_level)
    demo = _demo_dir(args)
    if demo is not None:
        tiles = ensure_demo_tiles(demo)
        window.add_inputs(tiles)
        output_dir = Path(args.output_dir or DEFAULT_DEMO_OUTPUT_DIR)
        output_dir.mkdir(parents=True, exist_ok=True)
        window.last_save_dir = str(output_dir.resolve())
        log.info("Demo tiles loaded from %s — click Build mosaic (Ctrl+B)", demo)
    elif args.output_dir:
        window.last_save_dir = str(Path(args.output_dir).resolve())
    if args.inputs:
        window.add_inputs(args.inputs)
    window.show()
    if args.build:
        QTimer.singleShot(0, window.start_build)
    return window


def main(argv: Sequence[str] | None = None) -> int:
    """Start the desktop app (or a headless build when there is no display).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.headless or not has_display():
        if not args.headless:
            print(
                "No display found (DISPLAY and WAYLAND_DISPLAY are unset): "
                "building the mosaic headless instead of opening the window."
            )
        return run_headless(args)

    from PySide6.QtWidgets import QApplication

    from .qtcompat import binding_problem, platform_problem
    from .theme import apply_theme

    problem = binding_problem()
    if problem:
        print(f"zemosaic-gui: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    if QApplication.instance() is None:
        # Qt aborts the process when its platform plugin cannot load: ask first.
        problem = platform_problem()
        if problem:
            print(f"zemosaic-gui: {problem}", file=sys.stderr)
            if _demo_dir(args) is None:
                return EXIT_FAILURE
            print("Building the demo mosaic headless instead.", flush=True)
            return run_headless(args)

    app = QApplication.instance()
    owns_app = app is None
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "zemosaic-gui"])
    app.setOrganizationName("ZeMosaic")
    app.setApplicationName("ZeMosaic")
    app.setApplicationDisplayName("ZeMosaic")
    apply_theme(app)  # type: ignore[arg-type]
    window = open_window(args)
    if not owns_app:  # an application already runs its loop (tests, an embedding host)
        _OPEN_WINDOWS.append(window)
        return EXIT_OK
    status = app.exec()
    del window
    return int(status)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
