"""The loader's hook: a WCS for a frame that has none (sidecar, cache, then a solve)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits

from ..config import SolveSpec, setting_name
from ..errors import InputError
from ..runtime.cancel import CancelToken
from .cache import SolutionCache, file_digest, find_sidecar, read_wcs_header
from .solver import Solution, SolveFailure, SolverUnavailable, solve_file, solver_status

__all__ = ["SolveStatusCallback", "WcsProvider"]

logger = logging.getLogger(__name__)

#: ``callback(path, state, detail)`` with state ``"solving"``, ``"solved"`` or ``"failed"``.
SolveStatusCallback = Callable[[Path, str, str], None]


class WcsProvider:
    """Finds a WCS header for frames without one; the loader calls it per such frame.

    Order: a ``<stem>.wcs`` sidecar next to the frame (used even when solving is off),
    the solution cache (by content hash), then astrometry.net when ``spec.enabled`` and
    a solver with index files is available. Solutions found by solving are cached.

    Parameters
    ----------
    spec : SolveSpec
    cancel : CancelToken, optional
        Stops a running solve.
    on_status : callable, optional
        ``on_status(path, state, detail)`` for a per-file status display.
    """

    def __init__(
        self,
        spec: SolveSpec | None = None,
        *,
        cancel: CancelToken | None = None,
        on_status: SolveStatusCallback | None = None,
    ) -> None:
        self.spec = spec or SolveSpec()
        self.cancel = cancel
        self.on_status = on_status
        self.cache = SolutionCache(self.spec.cache_dir)
        self._available: tuple[bool, str] | None = None
        self._warned = False

    def _status(self, path: Path, state: str, detail: str) -> None:
        if self.on_status is not None:
            self.on_status(path, state, detail)

    def available(self) -> tuple[bool, str]:
        """Whether a solve can run (checked once per provider)."""
        if self._available is None:
            self._available = solver_status(self.spec.index_dir)
        return self._available

    def lookup(self, path: Path) -> Solution | None:
        """A solution without solving: sidecar, then cache; None when neither has one."""
        sidecar = find_sidecar(path)
        if sidecar is not None:
            try:
                header = read_wcs_header(sidecar)
            except Exception as exc:
                logger.warning("%s: sidecar %s unreadable (%s); ignored", path, sidecar.name, exc)
            else:
                logger.info("%s: WCS from the sidecar %s", path, sidecar.name)
                return Solution(header, 0, 0, source="sidecar", detail=sidecar.name)
        if not self.spec.enabled:
            return None
        header = self.cache.get(file_digest(path))
        if header is not None:
            logger.info("%s: plate solution from the cache", path)
            return Solution(header, 0, 0, source="cache", detail="cached")
        return None

    def solve(self, path: Path) -> Solution:
        """Solve one frame now and cache the result (raises SolveFailure)."""
        ok, why = self.available()
        if not ok:
            raise SolverUnavailable(why)
        digest = file_digest(path)
        self._status(path, "solving", "solving…")
        try:
            solution = solve_file(path, self.spec, cancel=self.cancel)
        except SolveFailure as exc:
            self._status(path, "failed", exc.reason)
            raise
        except BaseException:
            self._status(path, "failed", "cancelled")
            raise
        self.cache.put(digest, solution.header)
        logger.info("%s: solved: %s (%s)", path, solution.describe(), solution.detail)
        self._status(path, "solved", f"solved in {solution.seconds:.0f} s")
        return solution

    def __call__(self, path: Path) -> fits.Header:
        """The WCS header for ``path``.

        Raises
        ------
        InputError
            With the reason the frame has no WCS and could not get one.
        BuildCancelled
            When the cancel token is set during a solve.
        """
        path = Path(path)
        found = self.lookup(path)
        if found is not None:
            if found.source == "cache":
                self._status(path, "solved", "solved (cached)")
            return found.header
        base = "no celestial WCS (not plate-solved?)"
        if not self.spec.enabled:
            raise InputError(path, f"{base}; {setting_name('solve')} is off")
        try:
            return self.solve(path).header
        except SolverUnavailable as exc:
            if not self._warned:
                self._warned = True
                logger.warning("frames without a WCS cannot be solved: %s", exc.reason)
            raise InputError(path, f"{base}; plate solving unavailable (see above)") from None
        except SolveFailure as exc:
            raise InputError(
                path, f"no celestial WCS and plate solving failed: {exc.reason}"
            ) from None
