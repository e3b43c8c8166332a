"""Speed and memory of ZeMosaic's backends against astropy reproject, side by side.

Variants, each run in a fresh subprocess (so peak RSS is its own), interleaved
A B C A B C ... and summarised by the median of the repeats:

- ``baseline``: ``reproject_and_coadd`` once per colour channel, default settings
  (what earlier tools do): the WCS transform runs per channel, with round-trip checks.
- ``cpu``: ``build_mosaic`` on the cpu backend, defaults (matching and two-pass on).
- ``cpu-plain``: the cpu backend with matching and two-pass off (same coadd as baseline).
- ``gpu``: the gpu backend, defaults (CuPy with CUDA; simulated on NumPy without it).

Printed per variant: wall time, ratio to the baseline, peak RSS (and peak VRAM on a
real GPU), input channel-megapixels per second, and the max relative difference of
its image from ``cpu-plain`` inside the covered area. One JSON line per run is
appended to the history file.

Usage::

    python benchmarks/bench_coadd.py                        # 9 RGB tiles of 1000 px
    python benchmarks/bench_coadd.py --tiles 36 --size 2000 --variants cpu,gpu
    python benchmarks/bench_coadd.py --tiles 64 --size 1400 --variants cpu --max-memory 1G
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import write_case  # noqa: E402

VARIANTS = ("baseline", "cpu", "cpu-plain", "gpu")


# --------------------------------------------------------------------------- worker


def _vram_sampler(stop: threading.Event, peak: list[int]) -> None:
    try:
        import cupy

        total = cupy.cuda.runtime.memGetInfo()[1]
        base = total - cupy.cuda.runtime.memGetInfo()[0]
        while not stop.is_set():
            free, _ = cupy.cuda.runtime.memGetInfo()
            peak[0] = max(peak[0], total - free - base)
            time.sleep(0.02)
    except Exception:  # no CUDA: nothing to sample
        return


def _run_baseline(files: list[Path]) -> np.ndarray:
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject import reproject_interp
    from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd

    cubes, wcses = [], []
    for path in files:
        with fits.open(path) as hdul:
            cubes.append(hdul[0].data.astype(np.float32))
            wcses.append(WCS(hdul[0].header, naxis=2))
    wcs_out, shape = find_optimal_celestial_wcs(
        [(c.shape[1:], w) for c, w in zip(cubes, wcses, strict=True)]
    )
    planes = []
    for channel in range(cubes[0].shape[0]):
        array, _ = reproject_and_coadd(
            [(c[channel], w) for c, w in zip(cubes, wcses, strict=True)],
            wcs_out,
            shape_out=shape,
            reproject_function=reproject_interp,
            combine_function="mean",
        )
        planes.append(array.astype(np.float32))
    return np.stack(planes)


def _run_ours(files: list[Path], variant: str, max_memory: int | None) -> np.ndarray:
    from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic

    plain = variant == "cpu-plain"
    config = BuildConfig(
        output=None,
        backend="gpu" if variant == "gpu" else "cpu",
        match="none" if plain else "affine",
        two_pass=TwoPassSpec(enabled=not plain),
        crop=False,
        max_memory=max_memory,
    )
    result = build_mosaic(files, config)
    if variant == "gpu" and result.backend != "gpu":
        raise SystemExit("the gpu variant fell back to the cpu")
    return result.image


def worker(variant: str, case: Path, out: Path, max_memory: int | None) -> None:
    files = sorted(case.glob("*.fits"))
    if variant == "gpu":
        try:
            import cupy  # noqa: F401
        except ImportError:
            os.environ["ZEMOSAIC_GPU_SIMULATE"] = "1"
    # Import everything first: import time is not what we measure.
    import reproject.mosaicking  # noqa: F401

    import zemosaic_core.pipeline  # noqa: F401

    peak_vram = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=_vram_sampler, args=(stop, peak_vram), daemon=True)
    if variant == "gpu":
        sampler.start()
    start = time.perf_counter()
    image = _run_baseline(files) if variant == "baseline" else _run_ours(files, variant, max_memory)
    wall = time.perf_counter() - start
    stop.set()
    np.save(out, image)
    print(json.dumps({"wall_s": wall, "peak_vram_mb": peak_vram[0] / 2**20}))


# --------------------------------------------------------------------------- driver


def _run_worker(variant: str, case: Path, out: Path, max_memory: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--case", str(case), "--out", str(out)]
    if max_memory:
        cmd += ["--max-memory", str(max_memory)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout = proc.stdout.read() if proc.stdout else ""
    stderr = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{variant} failed:\n{stderr[-3000:]}")
    record = json.loads(stdout.strip().splitlines()[-1])
    record["peak_rss_mb"] = usage.ru_maxrss / 1024  # kB on Linux
    return record


def _max_rel_diff(image: np.ndarray, reference: np.ndarray) -> float:
    covered = np.isfinite(reference) & np.isfinite(image) & (reference != 0)
    if not covered.any():
        return float("nan")
    return float(np.max(np.abs(image[covered] - reference[covered]) / np.abs(reference[covered])))


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        return f"{platform.node()} {cpu} {os.cpu_count()} cores, GPU {name}"
    except Exception:
        return f"{platform.node()} {cpu} {os.cpu_count()} cores, no CUDA GPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=9)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--mono", action="store_true", help="1 channel instead of RGB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="baseline,cpu,cpu-plain,gpu")
    parser.add_argument("--max-memory", type=int, default=None, help="bytes, for our variants")
    parser.add_argument("--history", type=Path, default=HERE / "history.jsonl")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--case", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        worker(args.worker, args.case, args.out, args.max_memory)
        return 0

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    channels = 1 if args.mono else 3
    with tempfile.TemporaryDirectory(prefix="zemosaic-bench-") as tmp:
        case = Path(tmp) / "case"
        t0 = time.perf_counter()
        write_case(case, n_tiles=args.tiles, size=args.size, n_channels=channels)
        print(f"case: {args.tiles} tiles of {args.size} px, {channels} channel(s), "
              f"written in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        input_mpix = args.tiles * args.size * args.size * channels / 1e6
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        images: dict[str, np.ndarray] = {}
        for repeat in range(args.repeats):
            for variant in variants:  # interleaved: A B C A B C ...
                out = Path(tmp) / f"{variant}.npy"
                record = _run_worker(variant, case, out, args.max_memory)
                runs[variant].append(record)
                if repeat == 0:
                    images[variant] = np.load(out)
                print(f"  run {repeat + 1} {variant:9s} {record['wall_s']:7.2f} s "
                      f"{record['peak_rss_mb']:7.0f} MB")  # fmt: skip

    reference = images.get("cpu-plain", images.get("cpu"))
    base_wall = (
        statistics.median(r["wall_s"] for r in runs["baseline"]) if "baseline" in runs else None
    )
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = _machine()
    print(f"\nmachine: {machine}")
    print(f"{'variant':10s} {'wall s':>8s} {'vs base':>8s} {'RSS MB':>8s} {'VRAM MB':>8s} "
          f"{'chMpx/s':>8s} {'max rel diff':>13s}")  # fmt: skip
    args.history.parent.mkdir(parents=True, exist_ok=True)
    with args.history.open("a") as history:
        for variant in variants:
            wall = statistics.median(r["wall_s"] for r in runs[variant])
            rss = max(r["peak_rss_mb"] for r in runs[variant])
            vram = max(r["peak_vram_mb"] for r in runs[variant])
            ratio = base_wall / wall if base_wall else float("nan")
            diff = _max_rel_diff(images[variant], reference) if reference is not None else None
            print(f"{variant:10s} {wall:8.2f} {ratio:7.2f}x {rss:8.0f} {vram:8.0f} "
                  f"{input_mpix / wall:8.1f} {diff if diff is not None else float('nan'):13.2e}")  # fmt: skip
            history.write(
                json.dumps(
                    {
                        "date": stamp,
                        "machine": machine,
                        "variant": variant,
                        "tiles": args.tiles,
                        "size": args.size,
                        "channels": channels,
                        "repeats": args.repeats,
                        "wall_s_median": round(wall, 3),
                        "speedup_vs_baseline": round(ratio, 3),
                        "peak_rss_mb": round(rss, 1),
                        "peak_vram_mb": round(vram, 1),
                        "input_channel_mpix_per_s": round(input_mpix / wall, 2),
                        "max_rel_diff_vs_cpu_plain": diff,
                        "simulated_gpu": variant == "gpu" and "no CUDA" in machine,
                    }
                )
                + "\n"
            )
    print(f"\nhistory: {args.history}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
