"""ZeMosaic core: colour mosaics from plate-solved FITS images, headless (no Qt here).

The public face: build a mosaic with :func:`build_mosaic` and a :class:`BuildConfig`;
lower-level steps live in subpackages by domain (``io``, ``geometry``, ``photometry``,
``engine``, ``display``, ``datasets``, ``runtime``); ``docs/architecture.md`` §8 maps them.
"""

from .config import BuildConfig, CombineSpec, TwoPassSpec
from .errors import (
    BackendError,
    BuildCancelled,
    InputError,
    NoUsableInputError,
    PlanningError,
    UsageError,
    ZeMosaicError,
)
from .result import BuildResult, CoaddResult
from .runtime.cancel import CancelToken
from .tile import Tile

__version__ = "0.1.0"


def __getattr__(name: str):
    # The pipeline pulls in reproject and every step; import it on first use so that
    # `import zemosaic_core.<module>` stays light (and the CLI starts fast).
    if name == "build_mosaic":
        from .pipeline import build_mosaic

        return build_mosaic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendError",
    "BuildCancelled",
    "BuildConfig",
    "BuildResult",
    "CancelToken",
    "CoaddResult",
    "CombineSpec",
    "InputError",
    "NoUsableInputError",
    "PlanningError",
    "Tile",
    "TwoPassSpec",
    "UsageError",
    "ZeMosaicError",
    "__version__",
    "build_mosaic",
]
