"""A night of smart-telescope subs: speed, memory and outlier rejection, side by side.

The case (``cases.write_subs``, seeded): ``--subs`` raw Seestar-S50-like frames
(uint16 stored as int16 + BZERO 32768, ``BAYERPAT = 'GRBG'``, TAN WCS at 2.4"/px for a
1080 px wide frame, scaled with ``--size``) over ``--panels`` pointings overlapping
30 %, dithered by a few px, field rotation drifting -8 -> +8 degrees over the night.
The sky is one RGB truth scene (nebulae, galaxies, stars) sampled through each sub's
WCS into the Bayer pattern, plus a sky level and Gaussian noise of sigma
``SUB_NOISE_ADU``. Artefacts: hot pixels (1e-4, the same sensor pixels all night),
satellite trails (~10 % of subs), clouds (gain 0.7, ~5 % of subs). A clean twin of
every sub (same noise, clouds, no hot pixels, no trails) goes to a second folder.

Variants, each in a fresh subprocess (peak RSS = max of the polled RSS of the process
tree and ``ru_maxrss``; wall time includes interpreter start and imports for all):

- ``baseline``: astropy ``reproject_and_coadd`` (mean), once per channel, on subs
  debayered by ``zemosaic_core.io.loading.load_tile``, onto the output WCS of ``mean``.
- ``mean``: ``zemosaic build`` defaults; ``kappa-sigma``, ``winsorized``: ``--combine``.
- ``clean-mean``: ``zemosaic build`` (mean) on the clean twins: the reference.
- ``master-tiles``: one ``--combine kappa-sigma`` build per panel, then a default build
  of the panel masters (summed wall time, max peak RSS).

Rejection metric, on pixels whose clean-mean coverage counts >= 10 subs: |variant -
clean-mean| after a per-channel least-squares fit ``variant ~ a * clean + b`` (printed;
matching and two-pass gains move levels a little), in units of the noise sigma of ONE
raw sub and of the stack noise sigma / sqrt(coverage). The output is in the subs' ADU
(debayering, resampling and matching keep the scale: a ~ 1), so sigma converts 1:1 in
ADU. Worst channel shown; ``p99.99`` is the 99.99th percentile.

Usage::

    .venv/bin/python benchmarks/bench_subs.py --subs 60 --panels 2
    .venv/bin/python benchmarks/bench_subs.py --subs 600 --size 270x480   # memory flatness
    .venv/bin/python benchmarks/bench_subs.py --subs 24 --size 270x480 --variants mean,clean-mean
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

from cases import SUB_NOISE_ADU, write_subs  # noqa: E402

ORDER = ("mean", "kappa-sigma", "winsorized", "clean-mean", "master-tiles", "baseline")
MIN_COVERAGE = 10
ZEMOSAIC = [
    sys.executable,
    "-c",
    "import sys; from zemosaic_core.cli import main; sys.exit(main())",
]


# --------------------------------------------------------------------------- measuring


def _tree_rss(proc) -> int:
    try:
        return proc.memory_info().rss + sum(
            c.memory_info().rss for c in proc.children(recursive=True)
        )
    except Exception:  # the process ended between the calls
        return 0


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; wall seconds and peak RSS (MB) of its process tree."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, stop = [0], threading.Event()

    def poll() -> None:
        ps = psutil.Process(proc.pid)
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(ps))
            time.sleep(0.05)

    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": max(peak[0] / 2**20, usage.ru_maxrss / 1024)}


def build(inputs: list[Path], out: Path, extra: list[str]) -> dict:
    cmd = [*ZEMOSAIC, "build", *map(str, inputs), "-o", str(out), "--overwrite"]
    return measure([*cmd, "--no-progress", "--log-level", "WARNING", *extra])


# --------------------------------------------------------------------------- baseline worker


def baseline_worker(subs: Path, ref: Path, out: Path) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    from zemosaic_core.io.loading import load_tile

    header = fits.getheader(ref)
    wcs_out = WCS(header, naxis=2)
    shape = (header["NAXIS2"], header["NAXIS1"])
    tiles = [load_tile(p) for p in sorted(subs.glob("*.fits"))]  # debayered (3, H, W)
    planes = []
    for channel in range(3):
        plane, coverage = reproject_and_coadd(
            [(t.data[channel], t.wcs) for t in tiles],
            wcs_out,
            shape_out=shape,
            reproject_function=reproject_interp,
            combine_function="mean",
        )
        planes.append(plane.astype(np.float32))
    hdus = [fits.PrimaryHDU(np.stack(planes), header=wcs_out.to_header())]
    hdus.append(fits.ImageHDU(coverage.astype(np.float32), name="COVERAGE"))
    fits.HDUList(hdus).writeto(out, overwrite=True)


# --------------------------------------------------------------------------- metrics


def read_output(path: Path, like: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image (C, H, W) and coverage (H, W); resampled onto ``like``'s grid if it differs."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(path) as hdul:
        image = hdul[0].data.astype(np.float32)
        coverage = hdul["COVERAGE"].data.astype(np.float32)
        wcs = WCS(hdul[0].header, naxis=2)
    coverage = coverage if coverage.ndim == 2 else coverage.min(axis=0)
    if like is None:
        return image, coverage
    with fits.open(like) as hdul:
        ref_wcs, ref_shape = WCS(hdul[0].header, naxis=2), hdul[0].data.shape[1:]
    same = image.shape[1:] == ref_shape and np.allclose(
        wcs.wcs_pix2world([[0, 0], list(ref_shape[::-1])], 0),
        ref_wcs.wcs_pix2world([[0, 0], list(ref_shape[::-1])], 0),
        atol=1e-9,
    )
    if same:
        return image, coverage
    from reproject import reproject_interp

    planes = [reproject_interp((p, wcs), ref_wcs, ref_shape, return_footprint=False) for p in image]
    return np.stack(planes).astype(np.float32), np.full(ref_shape, np.nan, np.float32)


def rejection_metric(image: np.ndarray, clean: np.ndarray, coverage: np.ndarray) -> dict:
    """Worst channel's p99.99 and max of |image - fit(clean)| in sub and stack sigmas."""
    mask = coverage >= MIN_COVERAGE
    stack_sigma = SUB_NOISE_ADU / np.sqrt(np.maximum(coverage, 1))
    best = {"p_sub": -1.0, "max_sub": -1.0, "p_stack": -1.0, "max_stack": -1.0, "fits": []}
    if not mask.any():
        return best
    for c in range(image.shape[0]):
        v, r = image[c][mask].astype(np.float64), clean[c][mask].astype(np.float64)
        ok = np.isfinite(v) & np.isfinite(r)
        keep = ok.copy()
        for _ in range(2):  # least squares, then again without the artefacts
            a, b = np.polyfit(r[keep], v[keep], 1)
            resid = v - (a * r + b)
            mad = np.median(np.abs(resid[ok])) * 1.4826
            keep = ok & (np.abs(resid) < 5 * mad)
        diff = np.abs(resid[ok])
        in_stack = diff / stack_sigma[mask][ok]
        best["fits"].append((round(float(a), 5), round(float(b), 2)))
        worst = int(np.argmax(in_stack))
        if in_stack[worst] > best["max_stack"]:
            ys, xs = np.nonzero(mask)
            best["where"] = (
                int(xs[ok][worst]),
                int(ys[ok][worst]),
                c,
                float(coverage[mask][ok][worst]),
            )
        for key, values in (("sub", diff / SUB_NOISE_ADU), ("stack", in_stack)):
            best[f"p_{key}"] = max(best[f"p_{key}"], float(np.percentile(values, 99.99)))
            best[f"max_{key}"] = max(best[f"max_{key}"], float(values.max()))
    return best


# --------------------------------------------------------------------------- driver


def run_variant(variant: str, work: Path, subs: list[dict], extra: list[str]) -> dict:
    raw, clean, out = work / "subs", work / "clean", work / "out"
    target = out / f"{variant}.fits"
    if variant == "baseline":
        cmd = [sys.executable, __file__, "--worker", str(raw), str(out / "mean.fits"), str(target)]
        return measure(cmd)
    if variant in ("mean", "clean-mean"):
        return build([clean if variant == "clean-mean" else raw], target, extra)
    if variant in ("kappa-sigma", "winsorized"):
        return build([raw], target, ["--combine", variant, *extra])
    masters, records = work / "masters", []  # master-tiles
    masters.mkdir(exist_ok=True)
    for panel in sorted({s["panel"] for s in subs}):
        files = [raw / s["name"] for s in subs if s["panel"] == panel]
        master = masters / f"master_p{panel}.fits"
        records.append(build(files, master, ["--combine", "kappa-sigma", *extra]))
    records.append(build(sorted(masters.glob("master_*.fits")), target, extra))
    return {
        "wall_s": sum(r["wall_s"] for r in records),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in records),
    }


def _machine() -> str:
    return f"{platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} cores"


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or value < 0 or not np.isfinite(value) else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subs", type=int, default=60)
    parser.add_argument("--size", default="540x960", help="WIDTHxHEIGHT of a sub (S50: 1080x1920)")
    parser.add_argument("--panels", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variants", default=",".join(ORDER))
    parser.add_argument("--max-memory", default=None, help="--max-memory for zemosaic builds")
    parser.add_argument("--backend", default=None, help="--backend for zemosaic builds")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the case and outputs here"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, default=HERE / "history.jsonl")
    parser.add_argument("--worker", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        baseline_worker(*args.worker)
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(ORDER)
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    variants = [v for v in ORDER if v in variants]  # baseline needs mean's output grid
    width, height = (int(v) for v in args.size.lower().split("x"))
    extra = []
    if args.max_memory:
        extra += ["--max-memory", args.max_memory]
    if args.backend:
        extra += ["--backend", args.backend]

    with tempfile.TemporaryDirectory(prefix="zemosaic-subs-") as tmp:
        work = args.work_dir or Path(tmp)
        (work / "out").mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        subs = write_subs(work / "subs", work / "clean", n_subs=args.subs, width=width,
                          height=height, panels=args.panels, seed=args.seed)  # fmt: skip
        n_trail, n_cloud = sum(s["trail"] for s in subs), sum(s["cloud"] for s in subs)
        print(f"case: {args.subs} subs {width}x{height} GRBG, {args.panels} panels, "
              f"{n_trail} with trails, {n_cloud} clouded, sigma {SUB_NOISE_ADU} ADU, "
              f"written in {time.perf_counter() - t0:.1f} s to {work}")  # fmt: skip
        if "baseline" in variants and "mean" not in variants:
            build([work / "subs"], work / "out" / "mean.fits", extra)  # untimed: the grid
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for repeat in range(args.repeats):
            for variant in variants:
                record = run_variant(variant, work, subs, extra)
                runs[variant].append(record)
                print(f"  run {repeat + 1} {variant:13s} {record['wall_s']:8.2f} s "
                      f"{record['peak_rss_mb']:7.0f} MB", flush=True)  # fmt: skip
        metrics: dict[str, dict] = {}
        clean_path = work / "out" / "clean-mean.fits"
        if "clean-mean" in variants:
            clean, coverage = read_output(clean_path)
            print(f"clean-mean: {int((coverage >= MIN_COVERAGE).sum())} px with coverage "
                  f">= {MIN_COVERAGE}, max coverage {coverage.max():.0f}")  # fmt: skip
            for variant in variants:
                if variant != "clean-mean":
                    image, _ = read_output(work / "out" / f"{variant}.fits", like=clean_path)
                    if image.shape != clean.shape:
                        continue
                    metrics[variant] = rejection_metric(image, clean, coverage)

    base = statistics.median(r["wall_s"] for r in runs["baseline"]) if "baseline" in runs else None
    machine, stamp = _machine(), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    print(f"\nmachine: {machine}; metric: |variant - fit(clean-mean)| where coverage >= "
          f"{MIN_COVERAGE}, worst channel; sigma_1 = {SUB_NOISE_ADU} ADU (one sub), "
          "sigma_stack = sigma_1 / sqrt(coverage)\n")  # fmt: skip
    print("| variant | wall s | vs baseline | peak RSS MB | p99.99/σ₁ | max/σ₁ "
          "| p99.99/σ_stack | max/σ_stack | worst at (x, y, ch, cov) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    with args.history.open("a") as history:
        for variant in variants:
            wall = statistics.median(r["wall_s"] for r in runs[variant])
            rss = max(r["peak_rss_mb"] for r in runs[variant])
            ratio = base / wall if base else float("nan")
            m = metrics.get(variant, {})
            print(f"| {variant} | {wall:.2f} | {_fmt(ratio, '.2f')}x | {rss:.0f} "
                  f"| {_fmt(m.get('p_sub'), '.2f')} | {_fmt(m.get('max_sub'), '.1f')} "
                  f"| {_fmt(m.get('p_stack'), '.2f')} | {_fmt(m.get('max_stack'), '.1f')} "
                  f"| {m.get('where', '')} |")  # fmt: skip
            record = {"date": stamp, "machine": machine, "bench": "subs", "variant": variant,
                      "subs": args.subs, "size": f"{width}x{height}", "panels": args.panels,
                      "repeats": args.repeats, "wall_s_median": round(wall, 3),
                      "speedup_vs_baseline": round(ratio, 3), "peak_rss_mb": round(rss, 1)}  # fmt: skip
            for key in ("p_sub", "max_sub", "p_stack", "max_stack"):
                if key in m:
                    record[f"rej_{key}"] = round(m[key], 3)
            history.write(json.dumps(record) + "\n")
    for variant, m in metrics.items():
        print(f"fit {variant}: per channel (a, b) = {m['fits']}")
    print(f"\nhistory: {args.history}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
