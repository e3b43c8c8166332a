"""Build settings shared by the CLI, the GUI and the library API.

This module is the one home of every build setting's default and choices: the CLI's
flags and the GUI's widgets read them from the dataclasses and tuples here, and
`SETTING_LABELS` names each setting the way messages and both front ends show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BackendName = Literal["auto", "cpu", "gpu"]
CombineName = Literal["mean", "median", "kappa-sigma", "winsorized"]
MatchMode = Literal["affine", "offset", "none"]
StretchName = Literal["auto", "linked", "asinh", "linear"]

BACKENDS: tuple[str, ...] = ("auto", "cpu", "gpu")
COMBINES: tuple[str, ...] = ("mean", "median", "kappa-sigma", "winsorized")
MATCH_MODES: tuple[str, ...] = ("affine", "offset", "none")
#: Bayer patterns of raw frames, as written in BAYERPAT (``io.debayer`` reads them).
BAYER_PATTERNS: tuple[str, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")
#: Display stretches (``zemosaic_core.display.stretch``); the first is the default.
STRETCH_MODES: tuple[str, ...] = ("auto", "linked", "asinh", "linear")

#: Largest canvas side accepted by default, in pixels (docs/architecture.md §2).
DEFAULT_MAX_SIZE_PX = 40000

#: What users call each setting (``BuildConfig`` field, or ``"<spec>.<field>"``): the GUI's
#: label and the name core messages use, so a message never names a CLI flag a GUI user
#: cannot see. The CLI's help shows the same names next to its flags.
SETTING_LABELS: dict[str, str] = {
    "backend": "Backend",
    "combine": "Combine",
    "combine.kappa": "Kappa",
    "combine.iterations": "Iterations",
    "combine.limits": "Winsorized limits",
    "match": "Match",
    "two_pass": "Two-pass coverage renormalization",
    "two_pass.sigma": "Two-pass sigma",
    "two_pass.gain_clip": "Gain clip",
    "batch_size": "Batch size",
    "max_memory": "Memory budget",
    "scratch": "Scratch folder",
    "max_size": "Maximum canvas size",
    "keep_isolated": "Keep isolated tiles",
    "crop": "Crop to coverage",
    "north_up": "North up",
    "colour_calibration": "Colour calibration",
    "preview_stretch": "Preview stretch",
    "bayer_pattern": "Bayer pattern of undeclared raw frames",
    "solve": "Plate-solve frames without a WCS",
    "quality.weight": "Weight subs by their noise",
    "quality.reject_sigma": "Reject poor subs beyond",
    "solve.index_dir": "Index folder",
    "solve.time_limit": "Solve time limit",
}


def setting_name(key: str) -> str:
    """The setting ``key`` as messages name it: ``"the 'Keep isolated tiles' setting"``.

    Parameters
    ----------
    key : str
        A key of `SETTING_LABELS`.

    Returns
    -------
    str
    """
    return f"the '{SETTING_LABELS[key]}' setting"


@dataclass(frozen=True)
class CombineSpec:
    """How tiles are combined at each output pixel.

    Attributes
    ----------
    method : {"mean", "median", "kappa-sigma", "winsorized"}
    kappa : float
        Rejection threshold in sigmas for ``kappa-sigma``.
    iterations : int
        Clipping iterations for ``kappa-sigma``.
    limits : (float, float)
        Fractions clipped at the low and high end for ``winsorized``.
    """

    method: CombineName = "mean"
    kappa: float = 3.0
    iterations: int = 3
    limits: tuple[float, float] = (0.1, 0.1)

    def __post_init__(self) -> None:
        if self.method not in COMBINES:
            raise ValueError(f"unknown combine {self.method!r}; choose one of {COMBINES}")
        if not (math.isfinite(self.kappa) and self.kappa > 0) or self.iterations < 1:
            raise ValueError("kappa must be a finite number > 0 and iterations >= 1")
        lo, hi = self.limits
        if not (0 <= lo < 0.5 and 0 <= hi < 0.5):
            raise ValueError("winsorized limits must each lie in [0, 0.5)")


@dataclass(frozen=True)
class TwoPassSpec:
    """Parameters of the two-pass coverage renormalization (docs/architecture.md §5)."""

    enabled: bool = True
    sigma: float = 50.0
    gain_clip: tuple[float, float] = (0.85, 1.18)
    tau: float = 2.0
    min_valid_pixels: int = 64
    min_valid_fraction: float = 1e-3

    def __post_init__(self) -> None:
        lo, hi = self.gain_clip
        if not (0 < lo <= 1 <= hi and math.isfinite(hi)):
            raise ValueError("gain clip must satisfy 0 < low <= 1 <= high (finite)")
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError("two-pass sigma must be a finite number > 0")
        if not (math.isfinite(self.tau) and self.tau > 0):
            raise ValueError("two-pass tau must be a finite number > 0")


@dataclass(frozen=True)
class QualitySpec:
    """Per-sub quality: measurements, weighting, rejection (`photometry.quality`).

    Attributes
    ----------
    measure : bool
        Measure background, noise, star count and FWHM of every input (DEBUG lines and
        an INFO summary); the two actions below need it.
    weight : bool
        Multiply each input's weight by its inverse sky-noise variance relative to the
        median input.
    reject_sigma : float
        Drop the inputs whose FWHM, star count (fewer) or noise lie more than this many
        robust sigmas from the night's median, by name; 0 keeps every input.
    """

    measure: bool = True
    weight: bool = False
    reject_sigma: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reject_sigma) and self.reject_sigma >= 0):
            raise ValueError("poor-sub rejection must be a finite number of sigmas >= 0")
        if 0 < self.reject_sigma < 1:
            raise ValueError("poor-sub rejection below 1 sigma would drop ordinary subs")
        if (self.weight or self.reject_sigma) and not self.measure:
            raise ValueError("sub weighting and rejection need the sub measurements")


@dataclass(frozen=True)
class SolveSpec:
    """Plate solving of frames that arrive without a celestial WCS (docs/architecture.md §1, load).

    Attributes
    ----------
    enabled : bool
        Solve frames without a WCS when a solver and index files are available (a
        ``<stem>.wcs`` sidecar next to a frame is used either way).
    index_dir : Path, optional
        Folder of astrometry.net index files; ``None`` = ``$ZEMOSAIC_INDEX_DIR`` or the
        per-user default (`zemosaic_core.solving.index_files.default_index_dir`).
    cache_dir : Path, optional
        Folder of cached solutions; ``None`` = ``$ZEMOSAIC_SOLVE_CACHE`` or the per-user
        cache folder.
    time_limit : float
        Seconds one frame may take, all attempts together (hinted, then blind).
    radius_deg : float
        Search radius around the header's position hint, in degrees.
    scale_tolerance : float
        Relative tolerance on the header's pixel scale (0.1 = ±10 %).
    """

    enabled: bool = True
    index_dir: Path | None = None
    cache_dir: Path | None = None
    time_limit: float = 60.0
    radius_deg: float = 3.0
    scale_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not self.time_limit > 0:
            raise ValueError("solve time limit must be > 0 seconds")
        if not 0 < self.radius_deg <= 180:
            raise ValueError("solve search radius must lie in (0, 180] degrees")
        if not 0 < self.scale_tolerance < 1:
            raise ValueError("solve scale tolerance must lie in (0, 1)")


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs besides its inputs.

    Attributes
    ----------
    output : Path, optional
        The science FITS to write (its folder must exist and be writable); ``None``
        builds in memory only (the GUI saves on request).
    preview : Path, optional
        8-bit PNG preview (the default display stretch: neutral background).
    preview_stretch : {"auto", "linked", "asinh", "linear"}
        Display stretch of the PNG preview.
    tiff : Path, optional
        16-bit linear TIFF export.
    backend : {"auto", "cpu", "gpu"}
    combine : CombineSpec
    match : {"affine", "offset", "none"}
    two_pass : TwoPassSpec
    batch_size : int
        Tiles held in memory at once; 0 = automatic from the memory budget.
    max_memory : int, optional
        Memory budget in bytes (default: `runtime.memory.default_budget`, a quarter of
        the RAM and at most half of the free memory).
    scratch : Path, optional
        Folder for memory-mapped scratch files (default: beside the output).
    max_size : int
        Largest canvas side accepted, in pixels.
    keep_isolated : bool
        Keep tiles that overlap nothing and would blow the canvas up.
    crop : bool
        Auto-crop the result to its covered pixels.
    north_up : bool
        A north-up canvas instead of the minimum-area rotated one (the default).
    bayer_pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}, optional
        Bayer pattern of raw frames whose headers declare none (no ``BAYERPAT``);
        ``None`` reads them as mono.
    colour_calibration : bool
        Neutralise the background and white-balance the finished mosaic on its stars'
        average colour (recorded in the FITS header). Off by default: the science
        FITS stays as coadded.
    solve : SolveSpec
        Plate solving of frames without a WCS.
    quality : QualitySpec
        Per-sub measurements, optional noise weighting and poor-sub rejection.
    """

    output: Path | None = None
    preview: Path | None = None
    preview_stretch: StretchName = "auto"
    tiff: Path | None = None
    backend: BackendName = "auto"
    combine: CombineSpec = field(default_factory=CombineSpec)
    match: MatchMode = "affine"
    two_pass: TwoPassSpec = field(default_factory=TwoPassSpec)
    batch_size: int = 0
    max_memory: int | None = None
    scratch: Path | None = None
    max_size: int = DEFAULT_MAX_SIZE_PX
    keep_isolated: bool = False
    crop: bool = True
    north_up: bool = False
    colour_calibration: bool = False
    bayer_pattern: str | None = None
    solve: SolveSpec = field(default_factory=SolveSpec)
    quality: QualitySpec = field(default_factory=QualitySpec)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        if self.match not in MATCH_MODES:
            raise ValueError(f"unknown match mode {self.match!r}; choose one of {MATCH_MODES}")
        if self.preview_stretch not in STRETCH_MODES:
            raise ValueError(
                f"unknown stretch {self.preview_stretch!r}; choose one of {STRETCH_MODES}"
            )
        if self.bayer_pattern is not None and self.bayer_pattern not in BAYER_PATTERNS:
            raise ValueError(
                f"unknown Bayer pattern {self.bayer_pattern!r}; choose one of {BAYER_PATTERNS}"
            )
        if self.batch_size < 0:
            raise ValueError("batch size must be >= 0 (0 = automatic)")
        if self.max_size < 1:
            raise ValueError("max size must be >= 1 px")
