"""What a build returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.wcs import WCS

from .errors import InputError


@dataclass
class CoaddResult:
    """One pass's result: every channel from one backend.

    Attributes
    ----------
    image : ndarray, float32, (C, H, W)
        Combined values, NaN where coverage is 0.
    coverage : ndarray, float32, (C, H, W)
        Sum of the weights kept at each pixel (docs/architecture.md §3); finite, >= 0.
    backend : {"cpu", "gpu"}
        The one backend that produced all channels.
    """

    image: np.ndarray
    coverage: np.ndarray
    backend: str


@dataclass
class BuildResult:
    """A finished mosaic and what went into it.

    Attributes
    ----------
    image : ndarray, float32, (C, H, W)
        The mosaic (cropped when the build crops), NaN where uncovered.
    coverage : ndarray, float32, (C, H, W)
    wcs : WCS
        Celestial WCS of ``image``.
    backend : {"cpu", "gpu"}
        Backend of the final pass.
    gpu_all : bool
        True when every pass ran all its channels on the GPU.
    two_pass : bool
        Whether the two-pass renormalization was applied.
    tile_paths : list of Path
        The tiles that went into the mosaic.
    skipped : list of InputError
        Inputs left out, each with its reason.
    gains : ndarray or None
        Two-pass gains per tile (None without two-pass).
    match_gains : ndarray or None
        Photometric matching gains per tile, in ``tile_paths`` order (None when the
        build did not report them).
    match_offsets : ndarray or None
        Matching offsets per tile and channel, (N, C).
    colour_calibration : ColourCalibration or None
        The colour calibration applied to ``image`` (None when not applied).
    outputs : dict of str to Path
        Files written: keys among "fits", "preview", "tiff".
    """

    image: np.ndarray
    coverage: np.ndarray
    wcs: WCS
    backend: str
    gpu_all: bool
    two_pass: bool
    tile_paths: list[Path]
    skipped: list[InputError] = field(default_factory=list)
    gains: np.ndarray | None = None
    match_gains: np.ndarray | None = None
    match_offsets: np.ndarray | None = None
    colour_calibration: Any = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.image.shape[0])
