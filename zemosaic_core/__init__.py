"""ZeMosaic core: colour mosaics from plate-solved FITS images, headless (no Qt here).

The public face: build a mosaic with :func:`build_mosaic` and a :class:`BuildConfig`;
lower-level steps live in subpackages by domain (``io``, ``geometry``, ``photometry``,
``engine``, ``display``, ``datasets``, ``runtime``); ``docs/architecture.md`` §8 maps them.
"""

from typing import TYPE_CHECKING

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
from .runtime.cancel import CancelToken

if TYPE_CHECKING:
    from .pipeline import build_mosaic
    from .result import BuildResult, CoaddResult
    from .tile import Tile

__version__ = "0.1.0"

# Names whose modules pull in NumPy, astropy or reproject: imported on first use, so
# that `import zemosaic_core.<module>` stays light, the CLI starts fast, and Ctrl-C
# during start-up lands in the CLI's own handler instead of an import traceback.
_LAZY = {
    "build_mosaic": ".pipeline",
    "BuildResult": ".result",
    "CoaddResult": ".result",
    "Tile": ".tile",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


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
