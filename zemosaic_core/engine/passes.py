"""The orchestrator of coadd passes: one backend per pass, for all channels (docs/architecture.md §4).

A pass asks one backend for the whole (C, H, W) result through
:func:`~zemosaic_core.engine.coadd.coadd_pass`. If the GPU fails on any channel, its partial
result is dropped as a whole and every channel is rerun on the CPU; once that happened,
the later passes of the build run on the CPU directly. A result is therefore always
the output of exactly one ``coadd_pass`` call on exactly one backend: channels from
two backends cannot be assembled, by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..config import BackendName, CombineSpec, TwoPassSpec
from ..errors import BackendError
from ..geometry.planning import MosaicPlan
from ..photometry.twopass import compute_gains
from ..result import CoaddResult
from ..runtime.cancel import CancelToken
from ..runtime.progress import ProgressCallback
from ..runtime.scratch import ScratchSpace
from ..tile import TileLike
from .backends import CpuBackend, create_backend
from .backends.base import Backend
from .coadd import coadd_pass
from .coverage import format_cov_stats

logger = logging.getLogger(__name__)

FALLBACK_WARNING = (
    "{label} GPU reprojection failed on one or more channels; "
    "rerunning all channels on CPU to avoid mixed backend"
)


@dataclass
class BackendSession:
    """The backends of one build and what happened to them.

    Parameters
    ----------
    backend : {"auto", "cpu", "gpu"}
        What the user asked for.
    memory_budget : int, optional
        Bytes a backend may use for one chunk.
    """

    backend: BackendName = "auto"
    memory_budget: int | None = None
    scratch: ScratchSpace | None = None
    gpu_failed: bool = False
    pass_backends: list[str] = field(default_factory=list)
    _gpu: Backend | None = field(default=None, init=False, repr=False)
    _cpu: CpuBackend | None = field(default=None, init=False, repr=False)
    _wants_gpu: bool | None = field(default=None, init=False, repr=False)

    @property
    def cpu(self) -> CpuBackend:
        if self._cpu is None:
            self._cpu = CpuBackend(self.memory_budget, scratch=self.scratch)
        return self._cpu

    def _gpu_backend(self) -> Backend | None:
        """The GPU backend when this build should try it; raises BackendError if it cannot start."""
        if self._wants_gpu is None:
            if self.backend == "cpu":
                self._wants_gpu = False
            elif self.backend == "gpu":
                self._wants_gpu = True
            else:
                chosen = create_backend("auto", self.memory_budget)
                self._wants_gpu = chosen.name == "gpu"
                if self._wants_gpu:
                    self._gpu = chosen
        if not self._wants_gpu:
            return None
        if self._gpu is None:
            self._gpu = create_backend("gpu", self.memory_budget)
        return self._gpu

    @property
    def gpu_all(self) -> bool:
        """True when every pass so far ran all its channels on the GPU."""
        return bool(self.pass_backends) and all(b == "gpu" for b in self.pass_backends)

    def run_pass(
        self,
        tiles: Sequence[TileLike],
        plan: MosaicPlan,
        *,
        combine: CombineSpec,
        pass_index: int,
        label: str,
        gains: np.ndarray | None = None,
        batch_size: int = 0,
        cancel: CancelToken | None = None,
        progress: ProgressCallback | None = None,
    ) -> CoaddResult:
        """Run one pass with one backend for all channels, falling back as a whole.

        Parameters
        ----------
        label : str
            Log prefix of the pass: ``"[Coadd]"`` or ``"[TwoPass]"``.

        Other parameters are those of :func:`~zemosaic_core.engine.coadd.coadd_pass`.
        """
        allocate = self.scratch.allocate if self.scratch is not None else None

        def run_on(backend: Backend) -> CoaddResult:
            return coadd_pass(
                backend, tiles, plan, combine=combine, pass_index=pass_index, gains=gains,
                batch_size=batch_size, cancel=cancel, progress=progress, allocate=allocate,
            )  # fmt: skip

        result: CoaddResult | None = None
        if self.gpu_failed:
            logger.info(
                "%s GPU failed earlier in this build: pass %d runs on CPU", label, pass_index
            )
        else:
            try:
                gpu = self._gpu_backend()
                if gpu is not None:
                    result = run_on(gpu)
            except BackendError as exc:
                result = None
                self._gpu_failed_in(label, exc)
        if result is None:
            result = run_on(self.cpu)
        self.pass_backends.append(result.backend)
        self._log_channels(result, label, pass_index)
        return result

    def compute_gains(
        self,
        tiles: Sequence[TileLike],
        plan: MosaicPlan,
        first: CoaddResult,
        spec: TwoPassSpec,
        *,
        cancel: CancelToken | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Two-pass gains, resampled by pass 1's backend; a GPU failure here counts as
        the two-pass's failure (one WARNING), and the CPU takes over."""

        def gains_on(backend: Backend) -> np.ndarray:
            return compute_gains(
                backend, tiles, plan, first.coverage[0], spec,
                cancel=cancel, progress=progress,
            )  # fmt: skip

        if first.backend == "gpu" and not self.gpu_failed and self._gpu is not None:
            try:
                return gains_on(self._gpu)
            except BackendError as exc:
                self._gpu_failed_in("[TwoPass]", exc)
        return gains_on(self.cpu)

    def _gpu_failed_in(self, label: str, exc: BackendError) -> None:
        self.gpu_failed = True
        logger.warning(FALLBACK_WARNING.format(label=label))
        logger.info("%s GPU failure: %s", label, exc)
        logger.debug("%s GPU failure details", label, exc_info=True)
        self.release_gpu()

    @staticmethod
    def _log_channels(result: CoaddResult, label: str, pass_index: int) -> None:
        if not logger.isEnabledFor(logging.DEBUG):
            return  # min/max over every channel is not free on a large mosaic
        gpu = result.backend == "gpu"
        for channel in range(result.coverage.shape[0]):
            stats = format_cov_stats(result.coverage[channel])
            if label == "[Coadd]":
                logger.debug(
                    "[Coadd] pass=%d channel=%d gpu=%s %s", pass_index, channel, gpu, stats
                )
            else:
                logger.debug("%s channel=%d gpu=%s %s", label, channel, gpu, stats)

    def release_gpu(self) -> None:
        """Free the GPU's pools (after a failure or at the end of a build)."""
        if self._gpu is not None:
            try:
                self._gpu.end_build()
            except Exception:  # freeing must never mask the real outcome of a build
                logger.debug("freeing GPU memory failed", exc_info=True)

    def close(self) -> None:
        """End of build: free every backend's memory."""
        self.release_gpu()
        if self._cpu is not None:
            self._cpu.end_build()
