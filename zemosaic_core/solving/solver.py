"""Plate solving with astrometry.net (the ``astrometry`` package), under a time limit.

One frame: read it, detect stars (`detect`), read the header's hints (`hints`), then
ask astrometry.net in a child process (``multiprocessing`` with ``spawn``: portable,
and a solve that runs past its time limit or is cancelled is simply terminated, so a
hang never blocks a build). Attempts, in order, while time remains: position and scale
hints (the usual case: seconds); scale only (a wrong or missing position); nothing
(a blind solve). A solution is astrometry.net's own verified match (log-odds >= 21).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..config import SolveSpec
from ..runtime.cancel import CancelToken, check_cancel
from .detect import DetectionError, StarList, detect_stars, read_frame_for_solving
from .hints import Hints, read_hints
from .index_files import find_index_files, missing_index_message

__all__ = [
    "Solution",
    "SolveFailure",
    "SolverUnavailable",
    "solution_from_header",
    "solve_file",
    "solver_status",
]

logger = logging.getLogger(__name__)

#: Polynomial distortion fitted with the solution (order 2: a few dozen stars cannot
#: constrain more, and higher orders flail in the corners).
SIP_ORDER = 2
#: Scale range of a solve without a scale hint, arcseconds per pixel.
BLIND_SCALE_RANGE = (0.5, 60.0)
#: How often the parent checks the child, the clock and the cancel token, seconds.
_POLL_S = 0.1
#: A catalogue star this close to a detected star counts as matched, pixels.
_MATCH_RADIUS_PX = 2.0


class SolveFailure(Exception):
    """A frame could not be solved; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SolverUnavailable(SolveFailure):
    """No solver (the ``astrometry`` package) or no index files on this machine."""


@dataclass(frozen=True)
class Solution:
    """A plate solution.

    Attributes
    ----------
    header : astropy.io.fits.Header
        The WCS cards (TAN, SIP when fitted), as astrometry.net writes a ``.wcs`` file.
    width, height : int
        The image size the solution applies to.
    seconds : float
        Time spent solving (0 for a cached or sidecar solution).
    matched_stars : int
        Catalogue stars of the solution that land within 2 px of a detected star (0 when
        not measured: cached or sidecar solutions).
    residual_px : float
        Median distance between those catalogue stars and their detected stars, pixels
        (an independent check of the solution's accuracy; NaN when not measured).
    source : str
        ``"solved"``, ``"cache"`` or ``"sidecar"``.
    detail : str
        How it was found (``"hints RA/DEC, FOCALLEN/XPIXSZ; 62 stars"``).
    """

    header: fits.Header
    width: int
    height: int
    seconds: float = 0.0
    source: str = "solved"
    detail: str = ""
    matched_stars: int = 0
    residual_px: float = float("nan")

    def wcs(self) -> WCS:
        """The solution as a 2-D celestial astropy WCS (SIP included)."""
        wcs = WCS(self.header, relax=True)
        wcs.pixel_shape = (self.width, self.height)
        return wcs

    def summary(self) -> tuple[float, float, float, float]:
        """Centre RA, Dec (degrees), scale (arcsec/px) and rotation (degrees E of N of the
        image's +y axis)."""
        wcs = self.wcs()
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        sky = wcs.pixel_to_world(np.array([cx, cx, cx + 1.0]), np.array([cy, cy + 1.0, cy]))
        centre = sky[0]
        scale = float(centre.separation(sky[2]).arcsec)
        rotation = float(centre.position_angle(sky[1]).deg) % 360.0
        return float(centre.ra.deg), float(centre.dec.deg), scale, rotation

    def describe(self) -> str:
        """One line: centre, scale, rotation and time."""
        ra, dec, scale, rotation = self.summary()
        return (
            f'RA {ra:.5f} Dec {dec:+.5f}, {scale:.3f}"/px, rotation {rotation:.1f} deg, '
            f"{self.seconds:.1f} s"
        )


def solution_from_header(header: fits.Header, width: int, height: int, **kwargs) -> Solution:
    """A `Solution` from WCS cards (a ``.wcs`` sidecar, a cache entry)."""
    return Solution(header=header, width=width, height=height, **kwargs)


def solver_status(index_dir: str | Path | None = None) -> tuple[bool, str]:
    """Whether frames can be solved here, and why not.

    Returns
    -------
    (bool, str)
        ``(True, "N index files in DIR")`` or ``(False, reason)``; the reason says what
        to install (the solver is a Linux/macOS wheel: on Windows it points to ASTAP or
        astrometry.net ``.wcs`` sidecar files, which the app reads).
    """
    try:
        import astrometry  # noqa: F401
        import sep  # noqa: F401
    except ImportError as exc:
        return False, (
            f"plate solving unavailable ({exc.name or exc} is not installed; the 'astrometry' "
            "package exists for Linux and macOS only). Solve the frames with ASTAP or "
            "astrometry.net: a <name>.wcs file next to a frame is used"
        )
    files = find_index_files(index_dir)
    if not files:
        return False, missing_index_message(index_dir)
    return True, f"{len(files)} index files in {files[0].parent}"


# --------------------------------------------------------------------------- child side


def _child_solve(
    connection, index_paths, xs, ys, attempts, sip_order
) -> None:  # pragma: no cover - runs in the child
    """Run the attempts in order; send ``("ok", attempt, fields)`` or ``("none", ...)``."""
    try:
        import astrometry

        logging.getLogger("astrometry").setLevel(logging.WARNING)
        stars = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
        with astrometry.Solver([Path(p) for p in index_paths]) as solver:
            for number, (scale_range, position) in enumerate(attempts):
                size_hint = (
                    astrometry.SizeHint(
                        lower_arcsec_per_pixel=scale_range[0],
                        upper_arcsec_per_pixel=scale_range[1],
                    )
                    if scale_range
                    else None
                )
                position_hint = (
                    astrometry.PositionHint(
                        ra_deg=position[0], dec_deg=position[1], radius_deg=position[2]
                    )
                    if position
                    else None
                )
                solution = solver.solve(
                    stars=stars,
                    size_hint=size_hint,
                    position_hint=position_hint,
                    solution_parameters=astrometry.SolutionParameters(
                        sip_order=sip_order,
                        logodds_callback=lambda logodds: astrometry.Action.STOP,
                    ),
                )
                if solution.has_match():
                    match = solution.best_match()
                    fields = {k: (v[0], v[1]) for k, v in match.wcs_fields.items()}
                    sky = [(star.ra_deg, star.dec_deg) for star in match.stars]
                    connection.send(("ok", number, (fields, sky), float(match.logodds)))
                    return
                connection.send(("next", number, None, 0.0))
        connection.send(("none", len(attempts), None, 0.0))
    except BaseException as exc:  # report anything: the parent turns it into a reason
        connection.send(("error", -1, f"{type(exc).__name__}: {exc}", 0.0))
    finally:
        connection.close()


# --------------------------------------------------------------------------- parent side


_Attempt = tuple[tuple[float, float], tuple[float, float, float] | None]


def _attempts(hints: Hints, spec: SolveSpec) -> list[_Attempt]:
    """(scale range, position) per attempt, most constrained first."""
    scale: tuple[float, float] | None = None
    if hints.scale_arcsec is not None:
        scale = (
            hints.scale_arcsec * (1.0 - spec.scale_tolerance),
            hints.scale_arcsec * (1.0 + spec.scale_tolerance),
        )
    position: tuple[float, float, float] | None = None
    if hints.ra_deg is not None and hints.dec_deg is not None:
        position = (hints.ra_deg, hints.dec_deg, spec.radius_deg)
    blind_scale = scale or BLIND_SCALE_RANGE
    attempts: list[_Attempt] = []
    if position is not None:
        attempts.append((blind_scale, position))
    attempts.append((blind_scale, None))
    if scale is not None:
        attempts.append((BLIND_SCALE_RANGE, None))  # the scale hint itself may be wrong
    return attempts


def _describe_attempt(attempt: _Attempt) -> str:
    scale, position = attempt
    parts = []
    if position:
        parts.append(f"within {position[2]:g} deg of RA {position[0]:.3f} Dec {position[1]:+.3f}")
    if scale:
        parts.append(f'at {scale[0]:.2f}-{scale[1]:.2f}"/px')
    return " ".join(parts) or "blind"


def _residuals(wcs: WCS, sky: list, stars: StarList) -> tuple[int, float]:
    """Catalogue stars within `_MATCH_RADIUS_PX` of a detected star, and their median
    distance, in pixels."""
    if not sky or len(stars) == 0:
        return 0, float("nan")
    world = np.asarray(sky, dtype=np.float64)
    pixels = wcs.all_world2pix(world, 0)
    detected = np.column_stack([stars.x, stars.y])
    distance = np.hypot(
        pixels[:, None, 0] - detected[None, :, 0], pixels[:, None, 1] - detected[None, :, 1]
    ).min(axis=1)
    close = distance[np.isfinite(distance) & (distance < _MATCH_RADIUS_PX)]
    return int(close.size), float(np.median(close)) if close.size else float("nan")


def _header_from_fields(fields: dict, width: int, height: int) -> fits.Header:
    header = fits.Header()
    for key, (value, comment) in fields.items():
        header[key] = (value, comment)
    header["IMAGEW"] = (width, "image width the solution applies to")
    header["IMAGEH"] = (height, "image height the solution applies to")
    return header


def _run_child(
    index_paths: list[Path],
    stars: StarList,
    attempts: list,
    time_limit: float,
    cancel: CancelToken | None,
) -> tuple[dict | None, int, str]:
    """Run the attempts in a child process; returns (wcs fields or None, attempt, note)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    # astrometry.net takes FITS pixel coordinates: the first pixel's centre is (1, 1).
    xs = (stars.x + 1.0).tolist()
    ys = (stars.y + 1.0).tolist()
    process = context.Process(
        target=_child_solve,
        args=(sender, [str(p) for p in index_paths], xs, ys, attempts, SIP_ORDER),
        daemon=True,
        name="zemosaic-solve",
    )
    process.start()
    sender.close()
    deadline = time.monotonic() + time_limit
    tried = -1
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                check_cancel(cancel)
            if time.monotonic() > deadline:
                note = f"no solution within the time limit ({time_limit:.0f} s left after star detection)"
                if tried + 1 < len(attempts):
                    note += f" (stopped while trying {_describe_attempt(attempts[tried + 1])})"
                return None, tried, note
            try:
                ready = receiver.poll(_POLL_S)
            except (EOFError, OSError):
                ready = True
            if not ready:
                continue
            try:
                status, number, payload, _logodds = receiver.recv()
            except (EOFError, OSError):
                return (
                    None,
                    tried,
                    f"the solver process ended unexpectedly (exit code {process.exitcode})",
                )
            if status == "ok":
                return payload, number, ""
            if status == "next":
                tried = number
                logger.debug("no match %s", _describe_attempt(attempts[number]))
                continue
            if status == "none":
                return (
                    None,
                    tried,
                    "no solution found (" + "; ".join(_describe_attempt(a) for a in attempts) + ")",
                )
            return None, tried, f"solver error: {payload}"
    finally:
        receiver.close()
        if process.is_alive():
            process.terminate()
            process.join(2.0)
            if process.is_alive():
                process.kill()
        process.join(2.0)


def solve_file(
    path: str | Path,
    spec: SolveSpec | None = None,
    *,
    cancel: CancelToken | None = None,
    index_files: list[Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Solution:
    """Plate-solve one FITS file (the file is only read).

    Parameters
    ----------
    path : path-like
    spec : SolveSpec, optional
        Index folder, time limit, hint tolerances (defaults when omitted).
    cancel : CancelToken, optional
        Polled while the solver runs; the child process is terminated on cancel.
    index_files : list of Path, optional
        The index files (found from ``spec.index_dir`` when omitted).
    progress : callable, optional
        Called with a short text at each stage (for a status line).

    Returns
    -------
    Solution

    Raises
    ------
    SolverUnavailable
        No solver package or no index files (the reason says what to install).
    SolveFailure
        The frame could not be solved (too few stars, blank, no match, time limit).
    BuildCancelled
        ``cancel`` was set.
    """
    spec = spec or SolveSpec()
    started = time.perf_counter()
    ok, why = solver_status(spec.index_dir) if index_files is None else (True, "")
    if not ok:
        raise SolverUnavailable(why)
    index_paths = index_files if index_files is not None else find_index_files(spec.index_dir)
    try:
        frame = read_frame_for_solving(path)
    except DetectionError as exc:
        raise SolveFailure(str(exc)) from None
    except Exception as exc:
        raise SolveFailure(f"cannot read the frame ({type(exc).__name__}: {exc})") from None
    if progress:
        progress("detecting stars")
    try:
        stars = detect_stars(frame)
    except DetectionError as exc:
        raise SolveFailure(str(exc)) from None
    hints = read_hints(frame.header)
    for note in hints.notes:
        logger.info("%s: header hint not used: %s", path, note)
    attempts = _attempts(hints, spec)
    check_cancel(cancel)
    if progress:
        progress(f"solving ({len(stars)} stars)")
    remaining = max(spec.time_limit - (time.perf_counter() - started), 1.0)
    payload, number, note = _run_child(index_paths, stars, attempts, remaining, cancel)
    seconds = time.perf_counter() - started
    if payload is None:
        raise SolveFailure(f"{note}; {len(stars)} stars detected")
    fields, sky = payload
    header = _header_from_fields(fields, frame.width, frame.height)
    hint_text = (
        f"hints {hints.source}"
        if number == 0 and hints.source
        else _describe_attempt(attempts[number])
    )
    solution = Solution(header=header, width=frame.width, height=frame.height, seconds=seconds)
    matched, residual = _residuals(solution.wcs(), sky, stars)
    return Solution(
        header=header,
        width=frame.width,
        height=frame.height,
        seconds=seconds,
        source="solved",
        detail=f"{hint_text}; {len(stars)} stars, {matched} matched to the catalogue "
        f"within {residual:.2f} px (median)",
        matched_stars=matched,
        residual_px=residual,
    )
