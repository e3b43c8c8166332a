"""The whole pipeline: load, plan, match, coadd, two-pass, finish (docs/architecture.md §1)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from .config import BuildConfig
from .display.colour import apply_colour_calibration, measure_colour_calibration
from .engine.passes import BackendSession
from .errors import NoUsableInputError, UsageError, printable_path
from .geometry.planning import plan_mosaic
from .io.loading import discover_inputs, load_tiles
from .io.outputs import (
    check_writable_folder,
    crop_to_coverage,
    write_fits,
    write_preview_png,
    write_tiff,
)
from .photometry.matching import match_tiles
from .photometry.quality import apply_quality
from .result import BuildResult
from .runtime.cancel import CancelToken, check_cancel
from .runtime.memory import default_budget, split_budget
from .runtime.progress import BuildProgress, PhaseWork, ProgressCallback, report
from .runtime.scratch import ScratchSpace, remove_stale_leftovers
from .solving.provider import SolveStatusCallback, WcsProvider

logger = logging.getLogger(__name__)


def _outputs(config: BuildConfig) -> list[Path]:
    return [Path(p) for p in (config.output, config.preview, config.tiff) if p is not None]


def _check_outputs(config: BuildConfig) -> None:
    targets = _outputs(config)
    for target in targets:
        check_writable_folder(target)
    if config.scratch is not None:
        if not Path(config.scratch).is_dir():
            raise UsageError(f"scratch folder does not exist: {printable_path(config.scratch)}")
        check_writable_folder(Path(config.scratch) / "scratch-check")
    if len({t.resolve() for t in targets}) != len(targets):
        raise UsageError("two outputs point to the same file")


def _check_backend(config: BuildConfig) -> None:
    """An explicit GPU request with no usable GPU is bad usage, said in one line."""
    if config.backend != "gpu":
        return
    from .engine.backends import detect_gpu

    info = detect_gpu()
    if not info.available:
        raise UsageError(
            f"the gpu backend was requested but no GPU is usable here: {info.description} "
            "(choose the auto or cpu backend)"
        )


def _scratch_folder(config: BuildConfig) -> Path:
    """Where this build spills work arrays: the scratch setting, else beside the output,
    else the system's temporary folder."""
    if config.scratch is not None:
        return Path(config.scratch)
    if config.output is not None:
        return config.output.parent
    return Path(tempfile.gettempdir())


def _work_folders(config: BuildConfig) -> set[Path]:
    """The folders this build writes temporary files into (outputs and scratch)."""
    folders = {t.parent if str(t.parent) else Path(".") for t in _outputs(config)}
    folders.add(_scratch_folder(config))
    return folders


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_previous_mosaic(path: Path) -> bool:
    """True when ``path`` is a science FITS written by ZeMosaic (not an input tile)."""
    from astropy.io import fits

    try:
        header = fits.getheader(path, 0)
        return header.get("CREATOR") == "ZeMosaic" and "NTILES" in header
    except Exception:
        return False


def _without_outputs(
    paths: list[Path], config: BuildConfig, named: Iterable[str | Path]
) -> list[Path]:
    """Leave this build's previous outputs out of its inputs; refuse to overwrite an input.

    A previous mosaic found in an input folder (a rebuild into the same folder) is not
    read back as a tile. Any other input that an output would replace (a tile, a file
    named as an input, hard links and symbolic links included) is refused before any
    work: outputs never overwrite inputs.
    """
    named_files = [Path(p).expanduser() for p in named]
    existing = [t for t in _outputs(config) if t.exists()]
    kept = []
    for path in paths:
        target = next((t for t in existing if _same_file(path, t)), None)
        if target is None:
            kept.append(path)
            continue
        explicit = any(_same_file(path, n) for n in named_files if n.is_file())
        if explicit or not _is_previous_mosaic(path):
            raise UsageError(
                f"the output {printable_path(target)} is one of this build's inputs "
                f"({printable_path(path)}); inputs are never overwritten: choose another "
                "output name"
            )
        logger.info("%s: skipped: it is this build's output, not an input", printable_path(path))
    return kept


def check_request(inputs: Iterable[str | Path], config: BuildConfig) -> list[Path]:
    """The checks a build makes before any work; the input files it would read.

    Parameters
    ----------
    inputs : iterable of path-like
        Files and folders, as given to `build_mosaic`.
    config : BuildConfig

    Returns
    -------
    list of Path
        The FITS files found, this build's previous outputs left out.

    Raises
    ------
    UsageError
        An output folder is missing or not writable, an output would replace an input
        or a non-regular file, or the gpu backend was asked for and no GPU is usable.
    NoUsableInputError
        No FITS file was found.
    """
    inputs = list(inputs)
    _check_outputs(config)
    _check_backend(config)
    paths = _without_outputs(discover_inputs(inputs), config, inputs)
    if not paths:
        raise NoUsableInputError("no FITS files found in the given inputs")
    return paths


#: Relative cost per input pixel of each phase (per channel for the coadd passes),
#: for the weights of the build's one progress bar. Ratios of the steps' own costs
#: (reading, matching statistics, resampling, writing); a rough split is enough, the
#: time left is measured, not predicted.
_COST_LOAD = 0.6
_COST_PLAN = 0.2
_COST_MATCH = 0.5
_COST_RESAMPLE = 1.5
_COST_FINISH = 0.3
#: The CPU backend keeps pass 1's resampled tiles: its pass 2 only rescales them.
_CACHED_PASS_SHARE = 0.1


def _after_pass_one(config: BuildConfig, pixels: float, channels: int, backend: str):
    """The phases after pass 1, now that its backend is known."""
    phases = [p for p in _phase_work(config, pixels, channels) if p.phase in _LATE_PHASES]
    if backend == "cpu":
        phases = [
            PhaseWork(p.phase, p.work * _CACHED_PASS_SHARE) if p.phase == "coadd pass 2" else p
            for p in phases
        ]
    return phases


_LATE_PHASES = ("two-pass gains", "coadd pass 2", "colour calibration", "finish")


def _phase_work(config: BuildConfig, pixels: float, channels: int) -> list[PhaseWork]:
    """The phases after loading and their work, from the tiles' pixel count."""
    coadd = pixels * _COST_RESAMPLE * (1 + channels)
    phases = [
        PhaseWork("plan", pixels * _COST_PLAN),
        PhaseWork("match", pixels * _COST_MATCH if config.match != "none" else 0.0),
        PhaseWork("coadd pass 1", coadd),
    ]
    if config.two_pass.enabled:
        phases += [
            # Luminance only, but no cache to reuse: measured between 0.1x and 1x pass 1.
            PhaseWork("two-pass gains", coadd * 0.4),
            PhaseWork("coadd pass 2", coadd),
        ]
    outputs = sum(p is not None for p in (config.output, config.preview, config.tiff))
    if config.colour_calibration:
        phases.append(PhaseWork("colour calibration", pixels * channels * 0.05))
    phases.append(PhaseWork("finish", pixels * channels * _COST_FINISH * outputs))
    return phases


def _file_pixels(paths: Sequence[Path]) -> float:
    """A rough pixel count before reading: 2 bytes a pixel (most frames are 16-bit)."""
    total = 0.0
    for path in paths:
        try:
            total += path.stat().st_size / 2
        except OSError:
            continue
    return max(total, 1.0)


def build_mosaic(
    inputs: Sequence[str | Path],
    config: BuildConfig,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    on_solve_status: SolveStatusCallback | None = None,
) -> BuildResult:
    """Build a mosaic from FITS files or folders and write the outputs ``config`` names.

    Parameters
    ----------
    inputs : sequence of path-like
        Files or folders (searched recursively).
    config : BuildConfig
    progress : callable, optional
        ``progress(phase, done, PROGRESS_UNITS)``, called from the thread running the
        build: one bar for the whole build (see `runtime.progress.BuildProgress`),
        ``phase`` naming the current step.
    cancel : CancelToken, optional
        Checked between files, tiles, chunks and channels.
    on_solve_status : callable, optional
        ``on_solve_status(path, state, detail)`` as frames without a WCS are solved.

    Returns
    -------
    BuildResult

    Raises
    ------
    UsageError
        Before any work: an output folder is missing or not writable, an output would
        replace an input or a non-regular file, or the gpu backend was asked for and
        no GPU is usable.
    NoUsableInputError
        No input could be used.
    BuildCancelled
        ``cancel`` was set; nothing was written.
    ZeMosaicError
        Any other failure, with a clear message.
    """
    started = time.perf_counter()
    paths = check_request(inputs, config)
    for folder in _work_folders(config):
        remove_stale_leftovers(folder)
    budget = split_budget(config.max_memory or default_budget())
    estimate = _file_pixels(paths)
    bar = BuildProgress(
        progress, [PhaseWork("load", estimate * _COST_LOAD), *_phase_work(config, estimate, 3)]
    )
    progress = bar  # every step reports into the one bar of the build
    provider = WcsProvider(config.solve, cancel=cancel, on_status=on_solve_status)
    loaded = load_tiles(
        paths,
        progress=progress,
        cancel=cancel,
        memory_budget=budget.tiles,
        read_budget=budget.read,
        bayer_fallback=config.bayer_pattern,
        wcs_provider=provider,
    )
    pixels = float(sum(t.shape[0] * t.shape[1] for t in loaded.tiles))
    channels = loaded.tiles[0].n_channels
    bar.plan(_phase_work(config, pixels, channels))

    check_cancel(cancel)
    report(progress, "plan", 0, 1)
    plan, tiles = plan_mosaic(
        loaded.tiles,
        max_size=config.max_size,
        keep_isolated=config.keep_isolated,
        north_up=config.north_up,
    )
    report(progress, "plan", 1, 1)

    check_cancel(cancel)
    skipped = [*loaded.skipped, *plan.excluded]
    del loaded  # the matched tiles replace the loaded ones: do not hold both
    matched = match_tiles(tiles, plan, mode=config.match, cancel=cancel, progress=progress)
    tiles, match_offsets = matched.tiles, matched.offsets
    match_gains = matched.gains if config.match != "none" else None
    del matched

    # Sub quality on the matched tiles: their noise is then on one photometric scale
    # (a 300 s sub is not "noisier" than a 60 s one for holding more ADU).
    check_cancel(cancel)
    measured, poor = apply_quality(tiles, config.quality, cancel=cancel)
    if poor:
        if not measured:
            raise NoUsableInputError("every input was rejected as a poor sub")
        dropped = {error.path for error in poor}
        keep = [i for i, tile in enumerate(tiles) if tile.path not in dropped]
        plan = replace(plan, bboxes=tuple(plan.bboxes[i] for i in keep))
        match_offsets = match_offsets[keep]
        match_gains = match_gains[keep] if match_gains is not None else None
        skipped.extend(poor)
    tiles = measured
    del measured

    scratch = ScratchSpace(_scratch_folder(config), ram_budget=budget.scratch)
    session = BackendSession(backend=config.backend, memory_budget=budget.chunks, scratch=scratch)
    try:
        result = session.run_pass(
            tiles,
            plan,
            combine=config.combine,
            pass_index=1,
            label="[Coadd]",
            batch_size=config.batch_size,
            cancel=cancel,
            progress=progress,
        )
        gains = None
        bar.plan(_after_pass_one(config, pixels, channels, result.backend))
        if config.two_pass.enabled:
            check_cancel(cancel)
            gains = session.compute_gains(
                tiles, plan, result, config.two_pass, cancel=cancel, progress=progress
            )
            del result  # pass 1 is not needed any more: free it before pass 2
            result = session.run_pass(
                tiles,
                plan,
                combine=config.combine,
                pass_index=2,
                label="[TwoPass]",
                gains=gains,
                batch_size=config.batch_size,
                cancel=cancel,
                progress=progress,
            )
            logger.info("[TwoPass] Two-pass reprojection backend: gpu_all=%s", session.gpu_all)
    finally:
        session.close()
        scratch.close()

    check_cancel(cancel)
    image, coverage, wcs = result.image, result.coverage, plan.wcs
    if config.crop:
        image, coverage, wcs = crop_to_coverage(image, coverage, wcs)
    calibration = None
    if config.colour_calibration:
        report(progress, "colour calibration", 0, 1)
        calibration = measure_colour_calibration(image)
        if calibration is None:
            logger.info("Colour calibration skipped: it needs an RGB mosaic with covered sky")
        else:
            # The mosaic is this build's own array: calibrated in place, band by band.
            image = apply_colour_calibration(image, calibration, out=image)
            logger.info(
                "Colour calibration: backgrounds %s -> %.4g, white balance %s from %d star(s)",
                ", ".join(f"{v:.4g}" for v in calibration.background),
                calibration.level,
                ", ".join(f"{v:.3f}" for v in calibration.white_balance),
                calibration.n_stars,
            )
        report(progress, "colour calibration", 1, 1)
    report(progress, "finish", 0, 1)
    build = BuildResult(
        image=image,
        coverage=coverage,
        wcs=wcs,
        backend=result.backend,
        gpu_all=session.gpu_all,
        two_pass=config.two_pass.enabled,
        tile_paths=[t.path for t in tiles],
        skipped=skipped,
        gains=gains,
        match_gains=match_gains,
        match_offsets=match_offsets,
        colour_calibration=calibration,
    )
    check_cancel(cancel)
    if config.output is not None:
        build.outputs["fits"] = write_fits(config.output, build)
    if config.preview is not None:
        build.outputs["preview"] = write_preview_png(config.preview, build, config.preview_stretch)
    if config.tiff is not None:
        build.outputs["tiff"] = write_tiff(config.tiff, build)
    bar.finish()
    logger.info(
        "Mosaic %d x %d px, %d channel(s), %d tile(s), backend=%s, in %.1f s",
        image.shape[2],
        image.shape[1],
        image.shape[0],
        len(tiles),
        result.backend,
        time.perf_counter() - started,
    )
    return build
