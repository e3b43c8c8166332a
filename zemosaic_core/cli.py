"""The ``zemosaic`` command line (DESIGN §7): the same pipeline as the GUI, headless.

Exit codes: 0 success, 2 bad usage or no usable input, 1 failure; 130 on Ctrl-C and
128 + the signal number on SIGTERM/SIGHUP (both unwind like Ctrl-C: no leftovers).
Errors are one clear line; the traceback only with ``--log-level DEBUG``. Python
warnings raised by the libraries (numpy overflow and the like) go to the DEBUG log.

This module imports only light modules at import time, so that Ctrl-C during
start-up is answered by `main`, not by an import traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import BACKENDS, COMBINES, MATCH_MODES, BuildConfig, CombineSpec, TwoPassSpec
from .errors import BuildCancelled, NoUsableInputError, UsageError, ZeMosaicError
from .runtime.cancel import CancelToken, interrupt_on_signals
from .runtime.logsetup import (
    LOG_LEVELS,
    PRODUCT_LOGGERS,
    library_loggers,
    set_log_level,
    warnings_to_debug_log,
)
from .runtime.memory import parse_size

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zemosaic", description="Colour mosaics from plate-solved FITS images."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="build a mosaic from FITS files or folders")
    build.add_argument("inputs", nargs="+", metavar="INPUT", help="FITS files or folders")
    build.add_argument("-o", "--output", required=True, type=Path, help="output FITS")
    build.add_argument("--backend", choices=BACKENDS, default="auto")
    build.add_argument("--combine", choices=COMBINES, default="mean")
    build.add_argument("--kappa", type=_positive_float, default=3.0, help="kappa-sigma threshold")
    build.add_argument("--iterations", type=int, default=3, help="kappa-sigma iterations")
    build.add_argument(
        "--winsor-limits", nargs=2, type=_finite_float, default=(0.1, 0.1), metavar=("LO", "HI")
    )
    build.add_argument("--match", choices=MATCH_MODES, default="affine")
    build.add_argument(
        "--two-pass", action=argparse.BooleanOptionalAction, default=True, help="(default: on)"
    )
    build.add_argument("--two-pass-sigma", type=_positive_float, default=50.0, metavar="PX")
    build.add_argument(
        "--two-pass-gain-clip",
        nargs=2,
        type=_finite_float,
        default=(0.85, 1.18),
        metavar=("LO", "HI"),
    )
    build.add_argument("--batch-size", type=int, default=0, metavar="N", help="0 = automatic")
    build.add_argument("--max-memory", type=_size, default=None, metavar="SIZE")
    build.add_argument("--scratch", type=Path, default=None, metavar="DIR")
    build.add_argument("--max-size", type=int, default=40000, metavar="PX")
    build.add_argument("--keep-isolated", action="store_true")
    build.add_argument("--no-crop", action="store_true", help="keep the full planned canvas")
    build.add_argument("--preview", type=Path, default=None, metavar="OUT.png")
    build.add_argument("--tiff", type=Path, default=None, metavar="OUT.tif")
    build.add_argument("--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper)
    build.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo-data", help="write the synthetic demo tiles")
    demo.add_argument("directory", type=Path)
    demo.add_argument("--seed", type=int, default=0)

    gui = sub.add_parser("gui", help="open the desktop app")
    gui.add_argument("inputs", nargs="*", metavar="INPUT")

    run_demo = sub.add_parser("run-demo", help="open the app on the demo tiles (make run)")
    run_demo.add_argument("--demo-dir", type=Path, default=Path("demo_tiles"))
    run_demo.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    run_demo.add_argument("--headless", action="store_true", help="build without a window")
    return parser


def _configure_logging(level: str) -> tuple[logging.Handler, dict[str, tuple[int, bool]]]:
    """Attach a stderr handler to the product's loggers; returns what to restore."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    previous = {}
    for name in PRODUCT_LOGGERS:
        product = logging.getLogger(name)
        previous[name] = (product.level, product.propagate)
        product.addHandler(handler)
        product.propagate = False
    for library in library_loggers():
        previous[library.name] = (library.level, library.propagate)
    set_log_level(level, handler)
    return handler, previous


class _ProgressBar:
    """A tqdm bar per phase, on a terminal only."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.phase: str | None = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=phase, unit="step", leave=False, file=sys.stderr)
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _build_config(args: argparse.Namespace) -> BuildConfig:
    try:
        return BuildConfig(
            output=args.output,
            preview=args.preview,
            tiff=args.tiff,
            backend=args.backend,
            combine=CombineSpec(
                args.combine,
                kappa=args.kappa,
                iterations=args.iterations,
                limits=tuple(args.winsor_limits),
            ),
            match=args.match,
            two_pass=TwoPassSpec(
                enabled=args.two_pass,
                sigma=args.two_pass_sigma,
                gain_clip=tuple(args.two_pass_gain_clip),
            ),
            batch_size=args.batch_size,
            max_memory=args.max_memory,
            scratch=args.scratch,
            max_size=args.max_size,
            keep_isolated=args.keep_isolated,
            crop=not args.no_crop,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_build(args: argparse.Namespace) -> int:
    from .pipeline import build_mosaic

    config = _build_config(args)
    bar = _ProgressBar(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        result = build_mosaic(args.inputs, config, progress=bar, cancel=CancelToken())
    finally:
        bar.close()
    for kind, path in result.outputs.items():
        print(f"{kind}: {path}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} input(s); see the warnings above", file=sys.stderr)
    return EXIT_OK


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .datasets.demo import write_demo_tiles

    paths = write_demo_tiles(args.directory, seed=args.seed)
    print(f"wrote {len(paths)} demo tiles to {args.directory}")
    return EXIT_OK


def _gui_main():
    """The desktop app's entry point (imported on demand: the core never needs Qt)."""
    try:
        from zemosaic_gui.app import main as gui_main
    except ImportError as exc:
        raise ZeMosaicError(f"the desktop app is not available: {exc}") from None
    return gui_main


def _cmd_run_demo(args: argparse.Namespace) -> int:
    # The app owns the launch rules (display detection, the Qt platform check, demo
    # tiles on first run, the headless fallback): one place for them.
    argv = ["--demo", str(args.demo_dir), "--output-dir", str(args.output_dir)]
    return int(_gui_main()([*argv, "--headless"] if args.headless else argv) or 0)


def _cmd_gui(args: argparse.Namespace) -> int:
    return int(_gui_main()(list(args.inputs)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zemosaic`` console script."""
    try:
        with interrupt_on_signals():
            return _main(argv)
    except KeyboardInterrupt as exc:  # Ctrl-C (or SIGTERM/SIGHUP) before the build ran
        return _interrupted(exc)


def _interrupted(exc: KeyboardInterrupt) -> int:
    signum = getattr(exc, "signum", None)
    what = "interrupted" if signum is None else f"terminated by signal {signum}"
    print(
        f"zemosaic: {what}; finished outputs are complete, others were not written",
        file=sys.stderr,
    )
    return EXIT_INTERRUPTED if signum is None else 128 + int(signum)


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "INFO")
    handler, previous = _configure_logging(level)
    commands = {
        "build": _cmd_build,
        "demo-data": _cmd_demo_data,
        "gui": _cmd_gui,
        "run-demo": _cmd_run_demo,
    }
    try:
        with warnings_to_debug_log():
            return commands[args.command](args)
    except (UsageError, NoUsableInputError) as exc:
        logger.debug("details", exc_info=True)
        print(f"zemosaic: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BuildCancelled:
        print("zemosaic: cancelled; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except ZeMosaicError as exc:
        logger.debug("details", exc_info=True)
        print(f"zemosaic: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a bug: one line, the traceback at DEBUG
        logger.debug("unexpected failure", exc_info=True)
        print(f"zemosaic: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:  # leave logging as we found it (main() may run in-process, e.g. in tests)
        for name, (old_level, old_propagate) in previous.items():
            product = logging.getLogger(name)
            product.removeHandler(handler)
            product.setLevel(old_level)
            product.propagate = old_propagate


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
