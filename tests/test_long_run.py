"""A long run: hundreds of small tiles with flat memory during the coadd."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import SCALE, make_wcs, sky, write_tile

from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic
from zemosaic_core.tile import Tile

N_TILES = 300
SIZE = 96


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def many_tiles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(3)
    for k in range(N_TILES):
        # Dithered pointings over a fixed field: the canvas does not grow with N.
        dx, dy = rng.uniform(-2.5, 2.5, 2) * SIZE * SCALE
        wcs = make_wcs((150.0 + dx / np.cos(np.radians(20.0)), 20.0 + dy), (SIZE, SIZE))
        data = sky(wcs, (SIZE, SIZE)) + rng.normal(0, 0.5, (3, SIZE, SIZE)).astype(np.float32)
        write_tile(folder / f"t{k:03d}.fits", Tile(data=data, wcs=wcs, path=Path("x")))
    return folder


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_is_flat_over_hundreds_of_tiles(many_tiles):
    samples: list[tuple[str, int, int]] = []

    def sample(phase: str, done: int, total: int) -> None:
        if phase.startswith("coadd"):
            samples.append((phase, done, _rss_bytes()))

    budget = 16 * 1024 * 1024
    config = BuildConfig(
        output=None, backend="cpu", match="none", two_pass=TwoPassSpec(sigma=10.0),
        max_memory=budget,
    )  # fmt: skip
    result = build_mosaic([many_tiles], config, progress=sample)
    assert len(result.tile_paths) == N_TILES
    assert result.coverage.max() > 20  # hundreds of tiles really stacked
    first = [rss for phase, done, rss in samples if phase == "coadd pass 1"]
    assert len(first) > 10
    # After the first tenth of the tiles, memory may only grow by what the budget lets
    # the backend keep (its scratch share, 3/8 of it) plus allocator noise; with every resampled
    # tile kept it would grow by ~N x 3 x 96^2 x 4 B, about 30 MB here.
    early = first[len(first) // 10]
    growth = max(first) - early
    assert growth < budget // 2 + 8 * 1024 * 1024, f"grew {growth / 2**20:.1f} MB"
