"""The ``zemosaic`` command line (docs/architecture.md §7): the same pipeline as the GUI, headless.

It is the product's only command line for builds: the desktop app's headless fallback
(no display) runs it too. Exit codes (`zemosaic_core.errors`): 0 success, 2 bad usage or
no usable input, 1 failure; 130 on Ctrl-C and 128 + the signal number on SIGTERM/SIGHUP
(both unwind like Ctrl-C: no scratch or temporary file is left). Errors are one clear
line; the traceback only with ``--log-level DEBUG``. Python warnings raised by the
libraries (numpy overflow and the like) go to the DEBUG log. Every default and choice
comes from `zemosaic_core.config` and `zemosaic_core.runtime.logsetup`.

This module imports only light modules at import time, so that Ctrl-C during start-up
is answered by `main`, not by an import traceback.

``zemosaic gui`` starts the desktop app through its installed ``zemosaic-gui`` entry
point: the core never imports the GUI package.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import (
    BACKENDS,
    BAYER_PATTERNS,
    COMBINES,
    MATCH_MODES,
    SETTING_LABELS,
    BuildConfig,
    CombineSpec,
    QualitySpec,
    SolveSpec,
    TwoPassSpec,
)
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BuildCancelled,
    UsageError,
    ZeMosaicError,
    exit_status,
)
from .runtime.cancel import CancelToken, interrupt_on_signals
from .runtime.logsetup import (
    DEFAULT_LOG_LEVEL,
    LOG_LEVELS,
    PRODUCT_LOGGERS,
    library_loggers,
    set_log_level,
    warnings_to_debug_log,
)
from .runtime.memory import parse_size
from .runtime.progress import EtaEstimator, format_duration

__all__ = ["GUI_ENTRY_POINT", "main"]

logger = logging.getLogger(__name__)

#: The desktop app's script (``[project.gui-scripts]``); ``zemosaic gui`` starts it.
GUI_ENTRY_POINT = "zemosaic-gui"
#: The entry-point group that script is registered in.
GUI_ENTRY_POINT_GROUP = "gui_scripts"


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


def default_output(inputs: Sequence[str | Path]) -> Path:
    """``<name of the first input>_mosaic.fits`` in the current folder.

    ``zemosaic build FOLDER`` then just works, and never writes into the input folder.
    """
    first = Path(inputs[0])
    name = first.name if first.is_dir() else first.name.split(".")[0]
    return Path(f"{name or 'zemosaic'}_mosaic.fits")


def _refuse_overwrite(config: BuildConfig) -> None:
    existing = [p for p in (config.output, config.preview, config.tiff) if p and Path(p).exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise UsageError(f"{names} already exists; use --overwrite to replace it")


def _label(key: str, text: str = "") -> str:
    """Help text that names the setting as the GUI and the core's messages do."""
    label = SETTING_LABELS[key]
    return f"{label} setting: {text}" if text else f"{label} setting"


def _add_build_options(build: argparse.ArgumentParser) -> None:
    """The build flags; every default is `BuildConfig`'s."""
    config = BuildConfig()
    combine, two_pass = config.combine, config.two_pass
    from .display.stretch import STRETCH_LABELS, STRETCH_MODES

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
        "--backend", choices=BACKENDS, default=config.backend, help=_label("backend")
    )
    build.add_argument(
        "--combine", choices=COMBINES, default=combine.method, help=_label("combine")
    )
    build.add_argument(
        "--kappa",
        type=_positive_float,
        default=combine.kappa,
        help=_label("combine.kappa", "kappa-sigma threshold"),
    )
    build.add_argument(
        "--iterations",
        type=int,
        default=combine.iterations,
        help=_label("combine.iterations", "kappa-sigma iterations"),
    )
    build.add_argument(
        "--winsor-limits",
        nargs=2,
        type=_finite_float,
        default=combine.limits,
        metavar=("LO", "HI"),
        help=_label("combine.limits"),
    )
    build.add_argument("--match", choices=MATCH_MODES, default=config.match, help=_label("match"))
    build.add_argument(
        "--two-pass",
        action=argparse.BooleanOptionalAction,
        default=two_pass.enabled,
        help=_label("two_pass"),
    )
    build.add_argument(
        "--two-pass-sigma",
        type=_positive_float,
        default=two_pass.sigma,
        metavar="PX",
        help=_label("two_pass.sigma"),
    )
    build.add_argument(
        "--two-pass-gain-clip",
        nargs=2,
        type=_finite_float,
        default=two_pass.gain_clip,
        metavar=("LO", "HI"),
        help=_label("two_pass.gain_clip"),
    )
    build.add_argument(
        "--batch-size",
        type=int,
        default=config.batch_size,
        metavar="N",
        help=_label("batch_size", "0 = automatic"),
    )
    build.add_argument(
        "--max-memory",
        type=_size,
        default=config.max_memory,
        metavar="SIZE",
        help=_label("max_memory", "default a quarter of the RAM, at most half of the free memory"),
    )
    build.add_argument(
        "--scratch",
        type=Path,
        default=config.scratch,
        metavar="DIR",
        help=_label("scratch", "default beside the output"),
    )
    build.add_argument(
        "--max-size",
        type=int,
        default=config.max_size,
        metavar="PX",
        help=_label("max_size", "largest canvas side"),
    )
    build.add_argument(
        "--sub-weighting",
        action="store_true",
        default=config.quality.weight,
        help=_label("quality.weight", "inverse sky-noise variance, relative to the median sub"),
    )
    build.add_argument(
        "--reject-subs",
        type=_finite_float,
        default=config.quality.reject_sigma,
        metavar="SIGMA",
        help=_label(
            "quality.reject_sigma",
            "drop subs whose FWHM, star count or noise lie this many robust sigmas from "
            "the night's median (e.g. 3; 0 = keep all)",
        ),
    )
    build.add_argument(
        "--keep-isolated",
        action="store_true",
        default=config.keep_isolated,
        help=_label("keep_isolated"),
    )
    build.add_argument(
        "--no-crop",
        dest="crop",
        action="store_false",
        default=config.crop,
        help=_label("crop", "off: keep the full planned canvas"),
    )
    build.add_argument(
        "--north-up",
        action="store_true",
        default=config.north_up,
        help=_label("north_up", "a north-up canvas, not the minimum-area rotated one"),
    )
    build.add_argument(
        "--colour-calibration",
        "--color-calibration",
        action="store_true",
        default=config.colour_calibration,
        help=_label(
            "colour_calibration",
            "neutral background and white balance on the stars, recorded in the FITS",
        ),
    )
    build.add_argument(
        "--bayer-pattern",
        choices=BAYER_PATTERNS,
        type=str.upper,
        default=config.bayer_pattern,
        help=_label("bayer_pattern", "for raw frames whose header has no BAYERPAT"),
    )
    build.add_argument(
        "--preview",
        type=Path,
        default=config.preview,
        metavar="OUT.png",
        help="write the stretched 8-bit PNG preview",
    )
    build.add_argument(
        "--stretch",
        choices=STRETCH_MODES,
        default=config.preview_stretch,
        help=_label(
            "preview_stretch",
            "; ".join(f"{m} = {STRETCH_LABELS[m]}" for m in STRETCH_MODES),
        ),
    )
    build.add_argument(
        "--tiff",
        type=Path,
        default=config.tiff,
        metavar="OUT.tif",
        help="write a 16-bit linear TIFF (dark until stretched)",
    )
    build.add_argument(
        "--solve",
        action=argparse.BooleanOptionalAction,
        default=config.solve.enabled,
        help=_label(
            "solve",
            "when a solver and index files are available (a <stem>.wcs sidecar next to a "
            "frame is used either way)",
        ),
    )
    _add_solve_options(build)


def _add_solve_options(command: argparse.ArgumentParser) -> None:
    """Where the index files are and how long a frame may take; defaults from `SolveSpec`."""
    spec = SolveSpec()
    command.add_argument(
        "--index-dir",
        type=Path,
        default=spec.index_dir,
        metavar="DIR",
        help=_label("solve.index_dir", "default $ZEMOSAIC_INDEX_DIR or a per-user folder"),
    )
    command.add_argument(
        "--solve-time-limit",
        type=_positive_float,
        default=spec.time_limit,
        metavar="S",
        help=_label("solve.time_limit", "seconds per frame"),
    )


def _solve_spec(args: argparse.Namespace, *, enabled: bool = True) -> SolveSpec:
    try:
        return SolveSpec(
            enabled=enabled, index_dir=args.index_dir, time_limit=args.solve_time_limit
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _add_run_options(command: argparse.ArgumentParser) -> None:
    """Log level and progress bar: the options of every command that builds."""
    command.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=DEFAULT_LOG_LEVEL,
        type=str.upper,
        help="detail of the log lines",
    )
    command.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .datasets.demo import DEFAULT_DEMO_DIR, DEFAULT_DEMO_OUTPUT_DIR

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
    _add_build_options(build)
    _add_run_options(build)

    demo = sub.add_parser(
        "demo-data", help="write the synthetic demo tiles", formatter_class=_HelpFormatter
    )
    demo.add_argument("directory", type=Path, help="folder to write the tiles into")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic sky")

    solve = sub.add_parser(
        "solve", help="plate-solve frames into DIR/<stem>.wcs", formatter_class=_HelpFormatter
    )
    solve.add_argument("inputs", nargs="+", metavar="FILE", help="FITS files or folders")
    solve.add_argument(
        "--out-dir", required=True, type=Path, metavar="DIR", help="where <stem>.wcs files go"
    )
    _add_solve_options(solve)
    solve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=DEFAULT_LOG_LEVEL,
        type=str.upper,
        help="least severe log messages shown",
    )

    sub.add_parser(
        "gui",
        help="open the desktop app (any further arguments go to zemosaic-gui)",
        usage="zemosaic gui [INPUT...] [zemosaic-gui options]",
        add_help=False,
    )

    run_demo = sub.add_parser(
        "run-demo",
        help="open the app on the demo tiles (make run)",
        formatter_class=_HelpFormatter,
    )
    run_demo.add_argument(
        "--demo-dir", type=Path, default=DEFAULT_DEMO_DIR, help="where the demo tiles are"
    )
    run_demo.add_argument(
        "--output-dir", type=Path, default=DEFAULT_DEMO_OUTPUT_DIR, help="where outputs go"
    )
    run_demo.add_argument("--headless", action="store_true", help="build without a window")
    run_demo.add_argument("--backend", choices=BACKENDS, default=None, help=_label("backend"))
    _add_run_options(run_demo)
    return parser


class _StderrHandler(logging.StreamHandler):
    """The CLI's handler: recognised so that a nested run (the app's headless fallback
    started by ``zemosaic run-demo``) prints each line once. While a progress bar runs,
    each log line goes above it, on its own line."""

    progress: _ProgressBar | None = None

    def emit(self, record: logging.LogRecord) -> None:
        bar = self.progress.bar if self.progress is not None else None
        if bar is None:
            super().emit(record)
            return
        try:
            bar.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def _configure_logging(level: str) -> tuple[logging.Handler | None, dict[str, tuple[int, bool]]]:
    """Attach a stderr handler to the product's loggers; returns what to restore."""
    for existing in logging.getLogger(PRODUCT_LOGGERS[0]).handlers:
        if isinstance(existing, _StderrHandler):  # an outer run prints already
            set_log_level(level, existing)
            return None, {}
    handler = _StderrHandler(sys.stderr)
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
    """One tqdm bar for the whole build, on a terminal only; the phase is its label."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None  # a tqdm bar, created on the first report
        self.eta = EtaEstimator()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=100,
                leave=False,
                file=sys.stderr,
                bar_format="{desc:<18} {percentage:3.0f}%|{bar}| {elapsed}{postfix}",  # ", ETA m:ss"
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


def _build_config(args: argparse.Namespace) -> BuildConfig:
    try:
        return BuildConfig(
            output=args.output if args.output is not None else default_output(args.inputs),
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
            crop=args.crop,
            north_up=args.north_up,
            colour_calibration=args.colour_calibration,
            preview_stretch=args.stretch,
            bayer_pattern=args.bayer_pattern,
            solve=_solve_spec(args, enabled=args.solve),
            quality=QualitySpec(weight=args.sub_weighting, reject_sigma=args.reject_subs),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _run_build(inputs: Sequence[str | Path], config: BuildConfig, *, progress: bool) -> int:
    """Build, print where each output went, and return the exit status."""
    from .pipeline import build_mosaic

    bar = _ProgressBar(enabled=progress and sys.stderr.isatty())
    handlers = [
        h for h in logging.getLogger(PRODUCT_LOGGERS[0]).handlers if isinstance(h, _StderrHandler)
    ]
    for handler in handlers:
        handler.progress = bar
    try:
        result = build_mosaic(inputs, config, progress=bar, cancel=CancelToken())
    finally:
        bar.close()
        for handler in handlers:
            handler.progress = None
    print(f"Built the mosaic ({result.backend} backend, gpu_all={result.gpu_all}). Outputs:")
    for kind, path in result.outputs.items():
        print(f"{kind}: {Path(path).resolve()}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} input(s); see the warnings above", file=sys.stderr)
    return EXIT_OK


def _cmd_build(args: argparse.Namespace) -> int:
    config = _build_config(args)
    if not args.overwrite:
        from .pipeline import check_request

        # The build's own refusals first (an output that is an input, a FIFO...): they
        # say more than "already exists".
        check_request(args.inputs, config)
        _refuse_overwrite(config)
    return _run_build(args.inputs, config, progress=not args.no_progress)


def _cmd_solve(args: argparse.Namespace) -> int:
    """Solve each frame into ``DIR/<stem>.wcs``; one line per file; 1 when any failed."""
    from .io.loading import discover_inputs
    from .solving import SolveFailure, SolverUnavailable, WcsProvider, write_wcs_header
    from .solving.cache import wcs_stem

    spec = _solve_spec(args)
    files = discover_inputs(args.inputs)
    if not files:
        raise UsageError("no FITS files found in the given inputs")
    provider = WcsProvider(spec, cancel=CancelToken())
    ok, why = provider.available()
    if not ok:
        raise UsageError(f"cannot solve: {why}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in files:
        try:
            solution = provider.solve(path)
        except SolverUnavailable as exc:
            raise UsageError(f"cannot solve: {exc.reason}") from None
        except SolveFailure as exc:
            failed += 1
            print(f"{path}: failed: {exc.reason}")
            continue
        target = write_wcs_header(args.out_dir / f"{wcs_stem(path)}.wcs", solution.header)
        print(f"{path}: solved: {solution.describe()} -> {target}")
    return EXIT_FAILURE if failed else EXIT_OK


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .datasets.demo import write_demo_tiles

    paths = write_demo_tiles(args.directory, seed=args.seed)
    print(f"wrote {len(paths)} demo tiles to {args.directory}")
    return EXIT_OK


def _gui_main() -> Callable[[list[str]], int | None]:
    """The desktop app's ``main``, found through its installed ``zemosaic-gui`` entry point.

    The lookup keeps the dependency one way (the GUI depends on the core, never the
    reverse) and starts the same function as the ``zemosaic-gui`` script.
    """
    from importlib.metadata import entry_points

    for entry in entry_points(group=GUI_ENTRY_POINT_GROUP, name=GUI_ENTRY_POINT):
        try:
            return entry.load()
        except ImportError as exc:
            raise ZeMosaicError(f"the desktop app cannot start: {exc}") from None
    raise ZeMosaicError(
        f"the desktop app is not installed (no {GUI_ENTRY_POINT!r} entry point); "
        "install ZeMosaic with pip to get it"
    )


def _cmd_run_demo(args: argparse.Namespace) -> int:
    if args.headless:
        from .datasets.demo import ensure_demo_tiles

        tiles = ensure_demo_tiles(args.demo_dir)
        args.output_dir.mkdir(parents=True, exist_ok=True)
        stem = args.output_dir / "demo_mosaic"
        config = BuildConfig(
            output=stem.with_suffix(".fits"),
            preview=stem.with_suffix(".png"),
            tiff=stem.with_suffix(".tif"),
            backend=args.backend or BuildConfig().backend,
        )
        return _run_build(tiles, config, progress=not args.no_progress)
    # The app owns the launch rules (display detection, the Qt platform check, the
    # headless fallback, which comes back here): one place for them.
    argv = ["--demo", str(args.demo_dir), "--output-dir", str(args.output_dir)]
    if args.backend:
        argv += ["--backend", args.backend]
    return int(_gui_main()(argv) or 0)


def _cmd_gui(args: argparse.Namespace) -> int:
    return int(_gui_main()(list(args.app_args)) or 0)


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
    args, extra = parser.parse_known_args(argv)
    if args.command == "gui":
        args.app_args = extra  # zemosaic-gui parses its own inputs and options
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = getattr(args, "log_level", DEFAULT_LOG_LEVEL)
    handler, previous = _configure_logging(level)
    commands = {
        "build": _cmd_build,
        "solve": _cmd_solve,
        "demo-data": _cmd_demo_data,
        "gui": _cmd_gui,
        "run-demo": _cmd_run_demo,
    }
    try:
        with warnings_to_debug_log():
            return commands[args.command](args)
    except BuildCancelled:
        print("zemosaic: cancelled; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except ZeMosaicError as exc:
        logger.debug("details", exc_info=True)
        print(f"zemosaic: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    except Exception as exc:  # a bug: one line, the traceback at DEBUG
        logger.debug("unexpected failure", exc_info=True)
        print(f"zemosaic: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:  # leave logging as we found it (main() may run in-process, e.g. in tests)
        for name, (old_level, old_propagate) in previous.items():
            product = logging.getLogger(name)
            if handler is not None:
                product.removeHandler(handler)
            product.setLevel(old_level)
            product.propagate = old_propagate


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
