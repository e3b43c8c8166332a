"""The ``gpu`` engine (simulated on NumPy) against the ``cpu`` backend (astropy reproject).

docs/architecture.md §3: with unit weights the coverages are equal everywhere except pixels whose
mapped position lies within 1e-3 px of an input edge (the "edge band", computed here
from the exact astropy transform), and images agree to 1e-4 relative inside coverage.
Tests marked ``gpu`` run the same checks on a real CUDA device and skip without one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from parity import edge_band
from scipy import ndimage

from zemosaic_core.config import CombineSpec
from zemosaic_core.engine.backends import CpuBackend, GpuBackend, detect_gpu
from zemosaic_core.engine.backends.gpu import SimulatedOutOfMemory, _window
from zemosaic_core.engine.backends.mapping import (
    DEFAULT_STEP,
    MAP_TOLERANCE,
    choose_step,
    coordinate_map,
    exact_positions,
)
from zemosaic_core.engine.coadd import coadd_pass
from zemosaic_core.errors import BackendError
from zemosaic_core.geometry.planning import BoundingBox, MosaicPlan, plan_mosaic
from zemosaic_core.tile import Tile

MEAN = CombineSpec("mean")
CENTER = (150.0, 20.0)
SCALE = 1.0 / 3600  # deg/px

#: SIP coefficients of a plausible (strong) plate solution, in pixels.
SIP_A = {"A_2_0": 2.0e-5, "A_1_1": -1.3e-5, "A_0_2": 0.8e-5}
SIP_B = {"B_2_0": -0.6e-5, "B_1_1": 1.5e-5, "B_0_2": 1.1e-5}


@pytest.fixture(autouse=True)
def _no_injected_failure(monkeypatch):
    """Fault injection only where a test asks for it."""
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL", raising=False)


# --- synthetic tiles -------------------------------------------------------------------


def _header(center, shape, rotation_deg, sip=False) -> fits.Header:
    theta = np.radians(rotation_deg)
    cd = SCALE * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    suffix = "-SIP" if sip else ""
    header = fits.Header()
    header["NAXIS"] = 2
    header["NAXIS1"] = shape[1]
    header["NAXIS2"] = shape[0]
    header["CTYPE1"] = "RA---TAN" + suffix
    header["CTYPE2"] = "DEC--TAN" + suffix
    header["CRVAL1"], header["CRVAL2"] = center
    header["CRPIX1"] = (shape[1] + 1) / 2 + 3.7
    header["CRPIX2"] = (shape[0] + 1) / 2 - 2.2
    header["CD1_1"], header["CD1_2"] = cd[0]
    header["CD2_1"], header["CD2_2"] = cd[1]
    if sip:
        header["A_ORDER"] = 2
        header["B_ORDER"] = 2
        header.update(SIP_A)
        header.update(SIP_B)
    return header


def make_wcs(center, shape, rotation_deg=0.0, sip=False) -> WCS:
    """A TAN (or TAN-SIP) WCS built from a FITS header, as a plate solver writes it."""
    wcs = WCS(_header(center, shape, rotation_deg, sip))
    assert (wcs.sip is not None) == sip
    return wcs


def smooth_data(shape, n_channels, rng) -> np.ndarray:
    """Random smooth structure on a pedestal, plus noise (float32, values ~100-200)."""
    planes = []
    for _ in range(n_channels):
        field = ndimage.gaussian_filter(rng.normal(0, 1, shape), 6.0)
        field = field / np.abs(field).max()
        planes.append(150 + 40 * field + rng.normal(0, 1.0, shape))
    return np.stack(planes).astype(np.float32)


def _offset(dx_px, dy_px):
    return (
        CENTER[0] + dx_px * SCALE / np.cos(np.radians(CENTER[1])),
        CENTER[1] + dy_px * SCALE,
    )


def make_tiles(n_channels=3, seed=1) -> list[Tile]:
    """Four overlapping tiles (2x2, all four overlap in the middle).

    Tile 0: TAN with a NaN border and a few NaN pixels; tile 1: rotated TAN; tile 2:
    rotated TAN-SIP; tile 3: non-square, rotated TAN.
    """
    rng = np.random.default_rng(seed)
    specs = [
        ((-50, -45), (150, 160), 0.0, False),
        ((55, -40), (140, 170), 7.0, False),
        ((-45, 50), (160, 150), -11.0, True),
        ((52, 48), (130, 190), 23.0, False),
    ]
    tiles = []
    for k, (offset, shape, rot, sip) in enumerate(specs):
        wcs = make_wcs(_offset(*offset), shape, rot, sip)
        data = smooth_data(shape, n_channels, rng)
        if k == 0:
            data[:, :, :7] = np.nan  # a NaN border, like a cropped stack
            data[:, :4, :] = np.nan
            data[:, 80, 90] = np.nan  # and a few dead pixels
            data[:, 30:32, 120] = np.nan
        tiles.append(Tile(data=data, wcs=wcs, path=Path(f"gpu_tile_{k}.fits")))
    return tiles


@pytest.fixture(scope="module")
def mosaic():
    tiles = make_tiles()
    plan, kept = plan_mosaic(tiles)
    assert len(kept) == 4
    return kept, plan


@pytest.fixture(scope="module")
def weighted_mosaic(mosaic):
    tiles, plan = mosaic
    rng = np.random.default_rng(7)
    h, w = tiles[1].shape
    yy, xx = np.mgrid[0:h, 0:w]
    wmap = (0.5 + 0.5 * np.sin(xx / 17.0) * np.cos(yy / 23.0) ** 2).astype(np.float32)
    wmap[:10, :10] = 0.0
    wmap[50, 60] = np.nan  # "no weight" (-> 0, as in reproject_and_coadd)
    wmap += rng.uniform(0, 0.05, wmap.shape).astype(np.float32)
    weighted = list(tiles)
    weighted[0] = replace(tiles[0], tile_weight=0.5)
    weighted[1] = replace(tiles[1], weight_map=wmap, tile_weight=1.5)
    weighted[3] = replace(tiles[3], tile_weight=2.5)
    return weighted, plan


@pytest.fixture(scope="module")
def band(mosaic):
    tiles, plan = mosaic
    return edge_band(tiles, plan)


def _assert_parity(gpu, cpu, band, *, unit_weights=True):
    """docs/architecture.md §3 parity; returns (edge-band pixels that differ, max relative image diff)."""
    outside = ~band
    if unit_weights:
        assert np.array_equal(gpu.coverage[:, outside], cpu.coverage[:, outside])
    else:
        np.testing.assert_allclose(
            gpu.coverage[:, outside], cpu.coverage[:, outside], rtol=1e-5, atol=1e-6
        )
    covered = (gpu.coverage > 0) & (cpu.coverage > 0) & outside
    assert np.array_equal(np.isnan(gpu.image[:, outside]), cpu.coverage[:, outside] == 0)
    rel = np.abs(gpu.image[covered] - cpu.image[covered]) / np.abs(cpu.image[covered])
    assert rel.max() <= 1e-4
    differ = np.any(gpu.coverage != cpu.coverage, axis=0) & band
    return int(differ.sum()), float(rel.max())


# --- parity with the cpu backend -------------------------------------------------------


def test_band_is_tiny(mosaic, band):
    tiles, plan = mosaic
    # Positions near edges exist (the band is not vacuous by construction) but are rare.
    assert band.sum() < 1e-3 * band.size


def test_mean_parity_with_cpu(mosaic, band):
    tiles, plan = mosaic
    gpu = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    assert gpu.backend == "gpu" and cpu.backend == "cpu"
    assert gpu.image.dtype == np.float32 and gpu.coverage.dtype == np.float32
    # Coverage counts overlapping inputs: four in the middle, never squeezed to <= 1.
    assert gpu.coverage.max() == 4.0 == cpu.coverage.max()
    differ, rel = _assert_parity(gpu, cpu, band)
    assert differ <= band.sum()


def test_weighted_parity_with_cpu(weighted_mosaic, band):
    tiles, plan = weighted_mosaic
    gpu = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    _assert_parity(gpu, cpu, band, unit_weights=False)
    # Coverage is the sum of the weights: tile 3 alone (weight 2.5) shows as 2.5.
    assert np.isclose(gpu.coverage, 2.5).any()
    assert gpu.coverage.max() > 3.0


def test_gains_are_applied(mosaic, band):
    tiles, plan = mosaic
    gains = np.array([1.0, 1.05, 0.97, 1.1])
    gpu = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN, gains=gains)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN, gains=gains)
    _assert_parity(gpu, cpu, band)


def test_row_chunks_and_batches_give_the_same_mosaic(mosaic):
    tiles, plan = mosaic
    full = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN)
    # A tight budget: many row chunks, each tile uploaded only for the rows it touches.
    tight = coadd_pass(GpuBackend(64 * 1024, simulate=True), tiles, plan, combine=MEAN)
    np.testing.assert_array_equal(tight.coverage, full.coverage)
    np.testing.assert_array_equal(tight.image, full.image)
    results = [
        coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN, batch_size=b)
        for b in (0, 1, 3)
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(other.coverage, results[0].coverage)
        np.testing.assert_allclose(other.image, results[0].image, rtol=1e-6, equal_nan=True)


def _has_rejection() -> bool:
    try:
        from zemosaic_core.engine import rejection  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_rejection(), reason="zemosaic_core.engine.rejection not there yet")
@pytest.mark.parametrize("method", ["median", "kappa-sigma"])
def test_stack_combines_parity_with_cpu(mosaic, band, method):
    tiles, plan = mosaic
    # An outlier region in one tile, so that kappa-sigma rejects something.
    hot = tiles[1].data.copy()
    hot[:, 60:70, 20:30] += 500
    tiles = [tiles[0], tiles[1].with_data(hot), *tiles[2:]]
    spec = CombineSpec(method, kappa=2.0, iterations=3)
    gpu = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=spec)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=spec)
    _assert_parity(gpu, cpu, band)


# --- the coordinate map ----------------------------------------------------------------


def _exact_map(out_wcs, tile_wcs, shape):
    gy, gx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return exact_positions(out_wcs, tile_wcs, gx, gy)


def test_coordinate_map_on_a_sip_tile(mosaic):
    tiles, plan = mosaic
    tile, box = tiles[2], plan.bboxes[2]
    assert tile.wcs.sip is not None
    out_wcs = plan.sub_wcs(box)
    ex, ey = _exact_map(out_wcs, tile.wcs, box.shape)
    # The distortion is real: without SIP the positions move by a good fraction of a pixel.
    plain = tile.wcs.deepcopy()
    plain.sip = None
    px, py = _exact_map(out_wcs, plain, box.shape)
    assert np.nanmax(np.hypot(px - ex, py - ey)) > 0.3

    # The default: adaptive step, well under the 0.01 px the contract (docs/architecture.md) asks for.
    step, estimate = choose_step(out_wcs, tile.wcs, box.shape)
    cmap = coordinate_map(out_wcs, tile.wcs, box.shape, step=step)
    error = np.hypot(cmap.x - ex, cmap.y - ey)
    assert 1 < cmap.step <= DEFAULT_STEP
    assert error.max() < 0.01
    assert error.max() < 1.5 * MAP_TOLERANCE
    assert error.max() == pytest.approx(estimate, rel=0.2)
    # A 16 px grid alone holds 0.01 px too.
    coarse = coordinate_map(out_wcs, tile.wcs, box.shape, step=16)
    assert coarse.step == 16
    assert np.hypot(coarse.x - ex, coarse.y - ey).max() < 0.01
    # A row chunk of the box sees the same nodes: its map is the box's map, bit for bit.
    chunk = coordinate_map(out_wcs, tile.wcs, (37, box.shape[1]), step=cmap.step, origin=(50, 0))
    np.testing.assert_array_equal(chunk.x, cmap.x[50:87])
    np.testing.assert_array_equal(chunk.y, cmap.y[50:87])
    # Bounds enclose every position (the upload window is cut from them).
    xmin, xmax, ymin, ymax = cmap.bounds
    assert xmin <= cmap.x.min() and cmap.x.max() <= xmax
    assert ymin <= cmap.y.min() and cmap.y.max() <= ymax


def test_coordinate_map_can_fail(mosaic):
    """The accuracy test above can fail: a map from the wrong WCS is far off."""
    tiles, plan = mosaic
    tile, box = tiles[2], plan.bboxes[2]
    cmap = coordinate_map(plan.sub_wcs(box), tiles[1].wcs, box.shape)
    ex, ey = _exact_map(plan.sub_wcs(box), tile.wcs, box.shape)
    assert np.hypot(cmap.x - ex, cmap.y - ey).max() > 0.01


def test_coordinate_map_falls_back_to_exact_where_nodes_are_undefined():
    # A tile seen from a plate carree grid spanning 180 deg: far nodes have no TAN position.
    tile_wcs = make_wcs((10.0, 0.0), (100, 100))
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    out.wcs.crval = [10.0, 0.0]
    out.wcs.crpix = [40.5, 30.5]
    out.wcs.cdelt = [-3.0, 3.0]
    shape = (60, 80)
    cmap = coordinate_map(out, tile_wcs, shape)
    ex, ey = _exact_map(out, tile_wcs, shape)
    assert cmap.exact
    assert not np.isfinite(ex).all()
    np.testing.assert_array_equal(cmap.x, ex)
    np.testing.assert_array_equal(cmap.y, ey)


# --- the edge rule ---------------------------------------------------------------------


def test_identity_mapping_is_reproduced_exactly():
    rng = np.random.default_rng(3)
    shape = (150, 120)
    wcs = make_wcs(CENTER, shape, 17.0)
    tile = Tile(data=smooth_data(shape, 3, rng), wcs=wcs, path=Path("identity.fits"))
    plan = MosaicPlan(wcs=wcs, shape=shape, bboxes=(BoundingBox(0, 150, 0, 120),))
    result = coadd_pass(GpuBackend(simulate=True), [tile], plan, combine=MEAN)
    np.testing.assert_array_equal(result.coverage, 1.0)
    np.testing.assert_array_equal(result.image, tile.data)


@pytest.mark.parametrize("weighted", [False, True])
def test_grid_aligned_tile_with_nan_pixels_matches_cpu_exactly(weighted):
    """A tile on the output grid (shifted by whole pixels) is copied by both backends.

    Regression: the GPU resampled it through a coordinate map carrying ~1e-10 px of
    jitter, and a bilinear sample a hair off an integer position next to a NaN pixel is
    NaN, so the GPU dropped valid pixels beside every NaN that the CPU kept.
    """
    rng = np.random.default_rng(11)
    shape = (150, 120)
    wcs = make_wcs(CENTER, shape, 17.0)
    data = smooth_data(shape, 3, rng)
    data[:, rng.integers(0, shape[0], 40), rng.integers(0, shape[1], 40)] = np.nan
    data[1, 60:64, 30:33] = np.nan  # a hole in one channel only
    weight_map = None
    if weighted:
        weight_map = rng.uniform(0.2, 1.0, shape).astype(np.float32)
        weight_map[10:12, 50:55] = np.nan
    tile = Tile(data, wcs, Path("aligned.fits"), weight_map, 1.5 if weighted else 1.0)
    out = wcs.deepcopy()
    out.wcs.crpix = [wcs.wcs.crpix[0] + 7, wcs.wcs.crpix[1] + 5]
    out.pixel_shape = (140, 170)  # (nx, ny): slicing the plan's WCS clips to it
    plan = MosaicPlan(wcs=out, shape=(170, 140), bboxes=(BoundingBox(5, 155, 7, 127),))
    gpu = coadd_pass(GpuBackend(simulate=True), [tile], plan, combine=MEAN)
    cpu = coadd_pass(CpuBackend(), [tile], plan, combine=MEAN)
    np.testing.assert_array_equal(gpu.coverage, cpu.coverage)
    np.testing.assert_array_equal(gpu.image, cpu.image)
    if not weighted:  # the tile itself, NaN pixels and all, shifted by (5, 7)
        np.testing.assert_array_equal(gpu.image[:, 5:155, 7:127], data)
    assert np.isnan(gpu.image[:, :5]).all() and (gpu.coverage[:, :, :7] == 0).all()
    # A row chunk of the box is copied too (every chunk sees the same shift).
    tight = coadd_pass(GpuBackend(16 * 1024, simulate=True), [tile], plan, combine=MEAN)
    np.testing.assert_array_equal(tight.image, cpu.image)


def test_half_pixel_edges_sample_the_edge_pixel():
    """Positions in [-0.5, 0) and [n-1, n-0.5) sample the edge pixel; beyond, f = 0."""
    rng = np.random.default_rng(4)
    shape = (40, 50)
    wcs = make_wcs(CENTER, shape, 0.0)
    out = wcs.deepcopy()
    # Output pixel (x, y) sits at tile pixel (x - 1.3, y - 0.7).
    out.wcs.crpix = [wcs.wcs.crpix[0] + 1.3, wcs.wcs.crpix[1] + 0.7]
    out_shape = (shape[0] + 2, shape[1] + 2)
    tile = Tile(data=smooth_data(shape, 1, rng), wcs=wcs, path=Path("edge.fits"))
    plan = MosaicPlan(wcs=out, shape=out_shape, bboxes=(BoundingBox(0, 42, 0, 52),))
    gpu = coadd_pass(GpuBackend(simulate=True), [tile], plan, combine=MEAN)
    cpu = coadd_pass(CpuBackend(), [tile], plan, combine=MEAN)
    np.testing.assert_array_equal(gpu.coverage, cpu.coverage)
    # x: -1.3 (out), -0.3 (edge pixel 0) ... 48.7 (clamped to 49), 49.7 (out).
    # y: -0.7 (out), 0.3 ... 39.3, 40.3 (out).
    expected = np.zeros(out_shape, dtype=np.float32)
    expected[1:41, 1:51] = 1.0
    np.testing.assert_array_equal(gpu.coverage[0], expected)
    covered = expected > 0
    np.testing.assert_allclose(gpu.image[0][covered], cpu.image[0][covered], rtol=1e-5)
    # Column 1 of the output samples tile column 0 exactly (x clamped from -0.3 to 0).
    column = ndimage.map_coordinates(
        tile.data[0], [np.arange(40) + 0.3, np.zeros(40)], order=1, mode="nearest"
    )
    np.testing.assert_allclose(gpu.image[0, 1:41, 1], column, rtol=1e-6)


def test_upload_is_cut_to_the_rows_a_region_touches(mosaic):
    tiles, plan = mosaic
    backend = GpuBackend(simulate=True)
    backend.begin_pass(1)
    box = plan.bboxes[3]
    top = BoundingBox(box.y0, box.y0 + 20, box.x0, box.x1)
    prepared = backend.prepare(tiles[3], 3, top, plan)
    cube = prepared.state.cube
    assert cube.shape[0] == 3 and cube.shape[1] < 0.6 * tiles[3].shape[0]
    values, weights = backend.sample(prepared, 2)
    assert values.shape == weights.shape == top.shape
    assert values.dtype == weights.dtype == np.float32
    backend.release(prepared)
    assert prepared.state is None


@pytest.mark.parametrize(
    ("lo", "hi", "n", "expected"),
    [
        (3.2, 7.9, 20, (2, 10)),  # stencil rows 3..8, plus one row each side
        (3.0, 8.0, 20, (2, 11)),  # an integer hi still needs row 9 (weight 0, must be finite)
        (-0.4, 4.5, 20, (0, 7)),  # clamped at the tile's first row
        (-40.0, 60.0, 20, (0, 20)),  # the whole tile
        (18.7, 19.3, 20, (17, 20)),  # clamped at the last row
    ],
)
def test_upload_window_holds_the_bilinear_stencil(lo, hi, n, expected):
    assert _window(lo, hi, n) == expected


def test_region_beside_the_tile_samples_nothing(mosaic):
    tiles, plan = mosaic
    backend = GpuBackend(simulate=True)
    backend.begin_pass(1)
    # Tile 0 sits in the lower left; the top right corner of the canvas is far from it.
    h, w = plan.shape
    corner = BoundingBox(h - 10, h, w - 10, w)
    prepared = backend.prepare(tiles[0], 0, corner, plan)
    values, weights = backend.sample(prepared, 0)
    assert not weights.any() and not values.any()


# --- simulated failures ----------------------------------------------------------------


@pytest.fixture
def small(mosaic):
    tiles, plan = mosaic
    return tiles[:2], MosaicPlan(plan.wcs, plan.shape, plan.bboxes[:2])


def test_simulated_oom_on_a_channel_in_every_pass(monkeypatch, small):
    tiles, plan = small
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", "1")
    backend = GpuBackend(simulate=True)
    for pass_index in (1, 2):
        with pytest.raises(BackendError, match="out of memory.*channel 1") as info:
            coadd_pass(backend, tiles, plan, combine=MEAN, pass_index=pass_index)
        assert isinstance(info.value.__cause__, SimulatedOutOfMemory)


def test_simulated_oom_in_one_pass_only(monkeypatch, small):
    tiles, plan = small
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", "2:1")
    backend = GpuBackend(simulate=True)
    first = coadd_pass(backend, tiles, plan, combine=MEAN, pass_index=1)
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL")
    clean = coadd_pass(GpuBackend(simulate=True), tiles, plan, combine=MEAN, pass_index=1)
    np.testing.assert_array_equal(first.coverage, clean.coverage)
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", "2:1")
    with pytest.raises(BackendError, match="pass 2"):
        coadd_pass(backend, tiles, plan, combine=MEAN, pass_index=2)


def test_simulated_failure_spares_other_channels(monkeypatch, small):
    tiles, plan = small
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE_FAIL", "1")
    mono = [t.with_data(t.data[:1].copy()) for t in tiles]
    result = coadd_pass(GpuBackend(simulate=True), mono, plan, combine=MEAN)
    assert result.coverage.max() == 2.0


class CUDARuntimeError(RuntimeError):
    """Stands for CuPy's error of that name: what makes it a device error is the package
    it comes from, not its name."""


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"


def test_device_errors_become_backend_errors(monkeypatch, small):
    tiles, plan = small
    backend = GpuBackend(simulate=True)

    def broken(*args, **kwargs):
        raise CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access")

    monkeypatch.setattr(backend.ndimage, "map_coordinates", broken)
    with pytest.raises(BackendError, match="CUDA error.*illegal memory access"):
        coadd_pass(backend, tiles, plan, combine=MEAN)


@pytest.mark.parametrize("where", ["resampling", "driver"])
def test_a_bug_in_the_gpu_engine_is_not_a_device_failure(monkeypatch, small, where):
    """A TypeError inside the GPU engine propagates as the bug it is: wrapped into a
    BackendError it would become a silent CPU fallback on every machine with a GPU."""
    tiles, plan = small
    backend = GpuBackend(simulate=True)

    def buggy(*args, **kwargs):
        raise TypeError("map_coordinates() got an unexpected keyword argument")

    if where == "resampling":  # inside the backend's own methods
        monkeypatch.setattr(backend.ndimage, "map_coordinates", buggy)
    else:  # in the driver's device work on backend.xp (under backend.device_errors)
        monkeypatch.setattr(backend, "sample", buggy)
    with pytest.raises(TypeError, match="unexpected keyword"):
        coadd_pass(backend, tiles, plan, combine=MEAN)


def test_simulated_backend_basics():
    backend = GpuBackend(memory_budget=123456, simulate=True)
    assert backend.name == "gpu" and backend.simulated
    assert backend.xp is np
    assert backend.memory_budget() == 123456
    assert GpuBackend(simulate=True).memory_budget() > 0
    assert isinstance(backend.to_host(np.ones(3, np.float32)), np.ndarray)
    backend.end_build()  # no-op when simulated


# --- real CUDA (skipped without CuPy and a device) ----------------------------------------


@pytest.fixture
def real_gpu(monkeypatch):
    pytest.importorskip("cupy")
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE", raising=False)
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL", raising=False)
    info = detect_gpu()
    if not info.available:
        pytest.skip(f"no usable CUDA device: {info.description}")
    backend = GpuBackend(simulate=False)
    yield backend
    backend.end_build()


@pytest.mark.gpu
def test_real_gpu_parity_with_cpu(real_gpu, mosaic, band):
    tiles, plan = mosaic
    assert not real_gpu.simulated and real_gpu.memory_budget() > 0
    gpu = coadd_pass(real_gpu, tiles, plan, combine=MEAN)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    assert gpu.backend == "gpu"
    assert gpu.coverage.max() == 4.0
    _assert_parity(gpu, cpu, band)


@pytest.mark.gpu
def test_real_gpu_weights_and_identity(real_gpu, weighted_mosaic, band):
    tiles, plan = weighted_mosaic
    gpu = coadd_pass(real_gpu, tiles, plan, combine=MEAN, batch_size=1)
    cpu = coadd_pass(CpuBackend(), tiles, plan, combine=MEAN)
    _assert_parity(gpu, cpu, band, unit_weights=False)
    shape = (64, 48)
    wcs = make_wcs(CENTER, shape, 5.0)
    data = smooth_data(shape, 3, np.random.default_rng(5))
    tile = Tile(data=data, wcs=wcs, path=Path("identity.fits"))
    plan1 = MosaicPlan(wcs=wcs, shape=shape, bboxes=(BoundingBox(0, 64, 0, 48),))
    result = coadd_pass(real_gpu, [tile], plan1, combine=MEAN)
    np.testing.assert_array_equal(result.coverage, 1.0)
    np.testing.assert_allclose(result.image, data, rtol=1e-6)


def test_device_failures_in_the_driver_surface_as_backend_errors():
    """Out of memory while the *driver* allocates accumulators on the device must reach
    the orchestrator as BackendError (so it falls back), not as a bare MemoryError."""
    import types

    from synthetic import grid_tiles

    from zemosaic_core.config import CombineSpec
    from zemosaic_core.engine.backends import CpuBackend, GpuBackend
    from zemosaic_core.engine.coadd import coadd_pass
    from zemosaic_core.errors import BackendError
    from zemosaic_core.geometry.planning import plan_mosaic

    tiles = grid_tiles(2, 1, size=40)
    plan, tiles = plan_mosaic(tiles)

    def no_memory(*args, **kwargs):
        raise MemoryError("device full")

    broken = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    broken.zeros = no_memory
    gpu = GpuBackend(simulate=True)
    gpu.xp = broken
    with pytest.raises(BackendError, match="out of memory"):
        coadd_pass(gpu, tiles, plan, combine=CombineSpec())
    cpu = CpuBackend()
    cpu.xp = broken  # on the CPU a MemoryError is not a GPU failure: it stays what it is
    with pytest.raises(MemoryError):
        coadd_pass(cpu, tiles, plan, combine=CombineSpec())
