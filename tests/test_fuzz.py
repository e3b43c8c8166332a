"""Fuzzing real tiles: byte flips, truncations, WCS perturbations, corrupt compression.

Each case copies small demo tiles into a fresh folder, damages one of them (the
victim) and runs the whole CLI build in-process over the folder. For every case:

- no traceback and no "unexpected error" (a bug) on stderr, exit status 0, 1 or 2;
- at most one WARNING naming the victim;
- every input byte-identical afterwards;
- either a valid mosaic (FITS with NTILES and a COVERAGE extension) or, on failure,
  the previous output intact; no temporary or scratch file left behind.

``make test`` runs `DEFAULT_SEEDS` seeds (a few seconds each); set ``ZEMOSAIC_FUZZ_SEEDS``
to run more, e.g. ``ZEMOSAIC_FUZZ_SEEDS=500`` (``ZEMOSAIC_FUZZ_FIRST`` sets the first seed).
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from zemosaic_core.cli import main
from zemosaic_core.datasets.demo import write_demo_tiles
from zemosaic_core.runtime.scratch import SCRATCH_PREFIX, TEMP_PREFIX

DEFAULT_SEEDS = 12
SEEDS_ENV = "ZEMOSAIC_FUZZ_SEEDS"
FIRST_ENV = "ZEMOSAIC_FUZZ_FIRST"
PREVIOUS = b"previous mosaic: must survive a failed build"


def _seeds() -> list[int]:
    count = int(os.environ.get(SEEDS_ENV, DEFAULT_SEEDS))
    first = int(os.environ.get(FIRST_ENV, 0))
    return list(range(first, first + count))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> list[Path]:
    """Four small (48 px) RGB demo tiles, one with SIP and one with a NaN border."""
    folder = tmp_path_factory.mktemp("fuzz_src")
    return list(write_demo_tiles(folder, tile_size=48, grid=(2, 2), seed=3))


# --------------------------------------------------------------------------- mutations


def _header_end(raw: bytes) -> int:
    """Offset just past the END card of the first header."""
    for start in range(0, len(raw), 80):
        if raw[start : start + 8] == b"END     ":
            return start + 80
    return min(len(raw), 2880)


def header_flip(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    end = _header_end(raw)
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(end)] = rng.randrange(32, 127)
    return bytes(data)


def data_flip(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    start = -(-_header_end(raw) // 2880) * 2880
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(start, len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randrange(1, len(raw))]


def wcs_perturb(raw: bytes, rng: random.Random) -> bytes:
    """Rewrite one WCS value: far pointings, absurd scales, singular or odd matrices."""
    import io

    with fits.open(io.BytesIO(raw)) as hdul:
        data, header = hdul[0].data.copy(), hdul[0].header.copy()
    choice = rng.randrange(8)
    if choice == 0:
        header["CRVAL1"] = (header["CRVAL1"] + rng.uniform(-180, 180)) % 360
    elif choice == 1:
        header["CRVAL2"] = rng.uniform(-90, 90)
    elif choice == 2:
        factor = 10 ** rng.uniform(-4, 4)
        header["CDELT1"] *= factor
        header["CDELT2"] *= factor
    elif choice == 3:
        header["PC1_1"], header["PC1_2"] = header["PC2_1"], header["PC2_2"]  # singular
    elif choice == 4:
        header["CRPIX1"] += rng.choice([-1, 1]) * 10 ** rng.uniform(1, 7)
    elif choice == 5:
        header["CTYPE1"], header["CTYPE2"] = header["CTYPE2"], header["CTYPE1"]
    elif choice == 6:
        header["LONPOLE"] = rng.uniform(-720, 720)
    else:
        for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2"):
            header[key] = rng.uniform(-2, 2)
    buffer = io.BytesIO()
    fits.PrimaryHDU(data, header).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


def gzip_corrupt(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(gzip.compress(raw, compresslevel=6, mtime=0))
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(10, len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def gzip_truncate(raw: bytes, rng: random.Random) -> bytes:
    data = gzip.compress(raw, compresslevel=6, mtime=0)
    return data[: rng.randrange(10, len(data))]


MUTATIONS: dict[str, tuple[Callable[[bytes, random.Random], bytes], str]] = {
    "header_flip": (header_flip, ".fits"),
    "data_flip": (data_flip, ".fits"),
    "truncate": (truncate, ".fits"),
    "wcs_perturb": (wcs_perturb, ".fits"),
    "gzip_corrupt": (gzip_corrupt, ".fits.gz"),
    "gzip_truncate": (gzip_truncate, ".fits.gz"),
}


# --------------------------------------------------------------------------- the harness


def run_case(seed: int, pristine: list[Path], work: Path, capsys) -> dict[str, object]:
    """Damage one tile as ``seed`` says, build, check every promise; returns the outcome."""
    from badfits import sha256_files

    rng = random.Random(seed)
    kind = sorted(MUTATIONS)[seed % len(MUTATIONS)]
    mutate, suffix = MUTATIONS[kind]
    victim_source = pristine[rng.randrange(len(pristine))]
    folder = work / "tiles"
    folder.mkdir()
    for path in pristine:
        if path != victim_source:
            shutil.copy(path, folder / path.name)
    victim = folder / (victim_source.name.removesuffix(".fits") + "_fuzzed" + suffix)
    victim.write_bytes(mutate(victim_source.read_bytes(), rng))
    out_dir = work / "out"
    out_dir.mkdir()
    out = out_dir / "mosaic.fits"
    out.write_bytes(PREVIOUS)
    inputs = sorted(folder.iterdir())
    before = sha256_files(inputs)

    capsys.readouterr()
    code = main(
        ["build", str(folder), "-o", str(out), "--backend", "cpu", "--no-progress",
         "--log-level", "WARNING"]
    )  # fmt: skip
    err = capsys.readouterr().err
    context = f"seed={seed} kind={kind} victim={victim.name} exit={code}\n{err}"

    assert code in (0, 1, 2), context
    assert "Traceback" not in err and "unexpected error" not in err, context
    naming = [
        line for line in err.splitlines() if line.startswith("WARNING") and victim.name in line
    ]
    assert len(naming) <= 1, context
    assert sha256_files(inputs) == before, context
    if code == 0:
        with fits.open(out) as hdul:
            assert hdul[0].header["NTILES"] >= 1 and "COVERAGE" in hdul, context
            assert np.isfinite(hdul[0].data).any(), context
    else:
        assert out.read_bytes() == PREVIOUS, context
    leftovers = [
        p.name
        for d in (folder, out_dir)
        for p in d.iterdir()
        if p.name.startswith((TEMP_PREFIX, SCRATCH_PREFIX))
    ]
    assert leftovers == [], context
    skipped = re.search(re.escape(victim.name) + r": (skipped|excluded): (.*)", err)
    return {
        "seed": seed,
        "kind": kind,
        "exit": code,
        "victim": "used" if skipped is None and code == 0 else "refused",
    }


@pytest.mark.parametrize("seed", _seeds())
def test_fuzzed_tile(seed, pristine, tmp_path, capsys):
    outcome = run_case(seed, pristine, tmp_path, capsys)  # asserts every promise itself
    print(outcome)
    assert outcome["victim"] in ("used", "refused")
