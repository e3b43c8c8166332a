"""The ``zemosaic`` command line (DESIGN §7): the same pipeline as the GUI, headless.

Exit codes: 0 success, 2 bad usage or no usable input, 1 failure (130 on Ctrl-C).
Errors are one clear line; the traceback only with ``--log-level DEBUG``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import BACKENDS, COMBINES, MATCH_MODES, BuildConfig, CombineSpec, TwoPassSpec
from .errors import BuildCancelled, NoUsableInputError, UsageError, ZeMosaicError
from .runtime.cancel import CancelToken
from .runtime.logsetup import LOG_LEVELS, PRODUCT_LOGGERS, set_log_level
from .runtime.memory import parse_size
from .runtime.progress import EtaEstimator, format_duration

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to options whose default is a value worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        if isinstance(default, (tuple, list)):
            default = " ".join(str(v) for v in default)
        elif default is True:
            default = "on"
        return f"{text} (default: {default})"


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .display.stretch import STRETCH_LABELS, STRETCH_MODES

    parser = argparse.ArgumentParser(
        prog="zemosaic", description="Colour mosaics from plate-solved FITS images."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="build a mosaic from FITS files or folders",
        description="Build a mosaic from FITS files or folders (searched recursively).",
        formatter_class=_HelpFormatter,
    )
    build.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="FITS files or folders (searched recursively)"
    )
    build.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output FITS (default: <first input's name>_mosaic.fits in the current folder)",
    )
    build.add_argument(
        "--overwrite", action="store_true", help="replace output files that already exist"
    )
    build.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="auto: the GPU when usable, else CPU"
    )
    build.add_argument(
        "--combine", choices=COMBINES, default="mean", help="how overlapping tiles are combined"
    )
    build.add_argument(
        "--kappa", type=_positive_float, default=3.0, help="kappa-sigma: rejection threshold"
    )
    build.add_argument("--iterations", type=int, default=3, help="kappa-sigma: clipping rounds")
    build.add_argument(
        "--winsor-limits",
        nargs=2,
        type=float,
        default=(0.1, 0.1),
        metavar=("LO", "HI"),
        help="winsorized: fractions clipped at the low and high end",
    )
    build.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="affine",
        help="photometric matching of the tiles from their overlaps",
    )
    build.add_argument(
        "--two-pass",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="two-pass coverage renormalization",
    )
    build.add_argument(
        "--two-pass-sigma",
        type=_positive_float,
        default=50.0,
        metavar="PX",
        help="two-pass: blur of the coverage map, in output pixels",
    )
    build.add_argument(
        "--two-pass-gain-clip",
        nargs=2,
        type=float,
        default=(0.85, 1.18),
        metavar=("LO", "HI"),
        help="two-pass: limits of the per-tile gain",
    )
    build.add_argument(
        "--batch-size",
        type=int,
        default=0,
        metavar="N",
        help="tiles held in memory at once (0 = automatic from the memory budget)",
    )
    build.add_argument(
        "--max-memory",
        type=_size,
        default=None,
        metavar="SIZE",
        help="memory budget, e.g. 4G (default: half of the RAM)",
    )
    build.add_argument(
        "--scratch",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for temporary scratch files (default: beside the output)",
    )
    build.add_argument(
        "--max-size", type=int, default=40000, metavar="PX", help="largest canvas side accepted"
    )
    build.add_argument(
        "--keep-isolated",
        action="store_true",
        help="keep tiles that overlap no other and would blow the canvas up",
    )
    build.add_argument(
        "--north-up",
        action="store_true",
        help="a north-up canvas instead of the minimum-area rotated one",
    )
    build.add_argument(
        "--colour-calibration",
        "--color-calibration",
        action="store_true",
        help="neutralise the background and white-balance on the stars (recorded in the FITS)",
    )
    build.add_argument("--no-crop", action="store_true", help="keep the full planned canvas")
    build.add_argument(
        "--preview", type=Path, default=None, metavar="OUT.png", help="write a stretched 8-bit PNG"
    )
    build.add_argument(
        "--stretch",
        choices=STRETCH_MODES,
        default="auto",
        help="stretch of the PNG: "
        + ", ".join(f"{m} = {STRETCH_LABELS[m]}" for m in STRETCH_MODES),
    )
    build.add_argument(
        "--tiff", type=Path, default=None, metavar="OUT.tif", help="write a 16-bit linear TIFF"
    )
    build.add_argument(
        "--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper, help="log detail"
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo-data",
        help="write the synthetic demo tiles",
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("directory", type=Path, help="folder to write the tiles into")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic sky")

    gui = sub.add_parser("gui", help="open the desktop app")
    gui.add_argument("inputs", nargs="*", metavar="INPUT", help="FITS files or folders to list")

    run_demo = sub.add_parser(
        "run-demo",
        help="open the app on the demo tiles (make run)",
        formatter_class=_HelpFormatter,
    )
    run_demo.add_argument(
        "--demo-dir", type=Path, default=Path("demo_tiles"), help="where the demo tiles live"
    )
    run_demo.add_argument(
        "--output-dir", type=Path, default=Path("demo_output"), help="where outputs go"
    )
    run_demo.add_argument("--headless", action="store_true", help="build without a window")
    return parser


def default_output(inputs: Sequence[str | Path]) -> Path:
    """``<name of the first input>_mosaic.fits`` in the current folder.

    ``zemosaic build FOLDER`` then just works, never writing into the input folder.
    """
    first = Path(inputs[0])
    name = first.name if first.is_dir() else first.name.split(".")[0]
    return Path(f"{name or 'zemosaic'}_mosaic.fits")


def _refuse_overwrite(config: BuildConfig) -> None:
    existing = [p for p in (config.output, config.preview, config.tiff) if p and Path(p).exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(f"{names} already exists; use --overwrite to replace it")


def _configure_logging(level: str) -> tuple[_BarAwareHandler, dict[str, tuple[int, bool]]]:
    """Attach a stderr handler to the product's loggers; returns what to restore."""
    handler = _BarAwareHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-7s %(message)s"))
    previous = {}
    for name in PRODUCT_LOGGERS:
        product = logging.getLogger(name)
        previous[name] = (product.level, product.propagate)
        product.addHandler(handler)
        product.propagate = False
    set_log_level(level, handler)
    return handler, previous


class _ProgressBar:
    """One tqdm bar for the whole build, on a terminal only; the phase is its label."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None
        self.eta = EtaEstimator()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=100,
                unit="%",
                leave=False,
                file=sys.stderr,
                bar_format="{desc:<16} {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
            )
        self.eta.update(done / total)
        eta = self.eta.eta()
        self.bar.set_description_str(phase, refresh=False)
        self.bar.set_postfix_str(
            f"ETA {format_duration(eta)}" if eta is not None else "", refresh=False
        )
        self.bar.n = min(100, int(100 * done / total))
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _BarAwareHandler(logging.StreamHandler):
    """Writes log lines above a running tqdm bar, each on its own line."""

    def __init__(self, progress: _ProgressBar | None = None) -> None:
        super().__init__(sys.stderr)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        bar = self.progress.bar if self.progress is not None else None
        if bar is None:
            super().emit(record)
            return
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _build_config(args: argparse.Namespace) -> BuildConfig:
    try:
        return BuildConfig(
            output=args.output if args.output is not None else default_output(args.inputs),
            preview=args.preview,
            preview_stretch=args.stretch,
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
            north_up=args.north_up,
            colour_calibration=args.colour_calibration,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cmd_build(args: argparse.Namespace, handler: _BarAwareHandler) -> int:
    from .pipeline import build_mosaic

    config = _build_config(args)
    if not args.overwrite:
        _refuse_overwrite(config)
    bar = _ProgressBar(enabled=not args.no_progress and sys.stderr.isatty())
    handler.progress = bar
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
    parser = _parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", "INFO")
    handler, previous = _configure_logging(level)
    commands = {
        "build": lambda a: _cmd_build(a, handler),
        "demo-data": _cmd_demo_data,
        "gui": _cmd_gui,
        "run-demo": _cmd_run_demo,
    }
    try:
        return commands[args.command](args)
    except (UsageError, NoUsableInputError) as exc:
        logger.debug("details", exc_info=True)
        print(f"zemosaic: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BuildCancelled:
        print("zemosaic: cancelled; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("zemosaic: interrupted; finished outputs are complete, others were not written",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
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
