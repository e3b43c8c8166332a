"""Plate solving of frames that arrive without a celestial WCS (astrometry.net, offline).

``detect`` finds stars (``sep``), ``hints`` reads the header's pointing and scale,
``index_files`` finds (and fetches) the index files, ``solver`` runs astrometry.net in a
child process under a time limit, ``cache`` keeps solutions by file content hash and
reads ``.wcs`` sidecars, and ``provider`` is the loader's hook tying them together.
"""

from .cache import SolutionCache, default_cache_dir, file_digest, find_sidecar, write_wcs_header
from .hints import Hints, read_hints
from .index_files import default_index_dir, find_index_files, missing_index_message
from .provider import SolveStatusCallback, WcsProvider
from .solver import Solution, SolveFailure, SolverUnavailable, solve_file, solver_status

__all__ = [
    "Hints",
    "Solution",
    "SolutionCache",
    "SolveFailure",
    "SolveStatusCallback",
    "SolverUnavailable",
    "WcsProvider",
    "default_cache_dir",
    "default_index_dir",
    "file_digest",
    "find_index_files",
    "find_sidecar",
    "missing_index_message",
    "read_hints",
    "solve_file",
    "solver_status",
    "write_wcs_header",
]
