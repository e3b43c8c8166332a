"""Peer suite: astropy reproject's own mosaicking tests, ported to ZeMosaic's API.

Ported from ``reproject/mosaicking/tests/test_coadd.py`` and ``test_background.py``
(astropy/reproject, BSD-3-Clause): the same image (a 399 x 334 random array on a TAN
grid of 0.1 deg/px), the same cut-outs, the same checks. The engine-level cases run
through :func:`~zemosaic_core.engine.coadd.coadd_pass` on the image's own grid (as
reproject's tests pass its own WCS as output) for the ``cpu`` backend and the ``gpu``
engine simulated on NumPy; the background-matching cases run whole builds
(:func:`~zemosaic_core.build_mosaic` with ``match="offset"``).

Where ZeMosaic differs from reproject by design, the designed behaviour is asserted:

- float32 data and results (reproject: float64, ``ATOL = 1e-9``). Copies and
  medians of equal values are exact; a mean of n equal float32 values is exact to a
  few float32 ulps (``MEAN_ATOL``), weighted means to float32 rounding.
- NaN marks an uncovered output pixel (reproject writes 0 there): the image is finite
  exactly where coverage > 0.
- Coverage is the sum of the weights (docs/architecture.md §3), which is what reproject returns as
  footprint: compared with ``reproject_and_coadd``'s footprint itself. The ``gpu``
  coverage may differ from it only inside docs/architecture.md §3's 1e-3 px edge band.
- Combines: ZeMosaic offers mean, median, kappa-sigma and winsorized (docs/architecture.md §4);
  reproject's ``sum``, ``first``, ``last``, ``min`` and ``max`` have no counterpart, so
  their cases run with the combines ZeMosaic has.
- Background matching: reproject's ``match_background`` becomes ZeMosaic's photometric
  matching (``match="offset"``), solved from overlap statistics and anchored on the
  tiles' median level, on the output grid the build plans itself. "The result equals
  the original up to one constant" is checked against the build of the same tiles
  without planted offsets.
- Not ported: ``reproject_exact`` (not a ZeMosaic resampler), weight maps on a WCS of
  their own (a ZeMosaic weight map shares its tile's WCS), broadcasting extra axes,
  dask / memmap / output-array options (their ZeMosaic counterparts, row chunks and
  ``batch_size``, are exercised in the reassembly cases instead), the solar map (needs
  sunpy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from parity import edge_band
from reproject import reproject_interp
from reproject.mosaicking import reproject_and_coadd

from zemosaic_core import BuildConfig, TwoPassSpec, build_mosaic
from zemosaic_core.config import CombineSpec
from zemosaic_core.engine.backends import CpuBackend, GpuBackend
from zemosaic_core.engine.coadd import coadd_pass
from zemosaic_core.geometry.planning import MosaicPlan, tile_bounding_box
from zemosaic_core.tile import Tile

#: A mean of up to four equal float32 values in [0, 1): a few ulps of 1.
MEAN_ATOL = 5e-7
STACK_COMBINES = ("median", "kappa-sigma", "winsorized")
#: reproject's cut-out edges (``ie`` columns, ``je`` rows): 1-pixel strips included.
IE = (0, 122, 233, 245, 334)
JE = (0, 44, 45, 333, 335, 399)


@pytest.fixture(autouse=True)
def _no_injected_failure(monkeypatch):
    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE_FAIL", raising=False)


def reference_wcs() -> WCS:
    """reproject's test grid: TAN, CRPIX (322, 151), CRVAL (43, 23), 0.1 deg/px."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = "RA---TAN", "DEC--TAN"
    wcs.wcs.crpix = 322, 151
    wcs.wcs.crval = 43, 23
    wcs.wcs.cdelt = -0.1, 0.1
    wcs.wcs.equinox = 2000.0
    wcs.pixel_shape = (334, 399)  # (nx, ny): the grid's extent, for slicing
    return wcs


@pytest.fixture(scope="module")
def array() -> np.ndarray:
    """reproject's ``np.random.random((399, 334))``, seeded, as float32."""
    return np.random.default_rng(20240611).random((399, 334)).astype(np.float32)


def nonoverlapping_views() -> list[tuple[slice, slice]]:
    return [np.s_[JE[j] : JE[j + 1], IE[i] : IE[i + 1]] for i in range(4) for j in range(5)]


def overlapping_views() -> list[tuple[slice, slice]]:
    return [
        np.s_[JE[j] : JE[j + 1] + 10, IE[i] : IE[i + 1] + 10] for i in range(4) for j in range(5)
    ]


def cut_outs(array: np.ndarray, views, offsets=None, scale: float = 1.0) -> list[Tile]:
    """reproject's ``_get_tiles``: each view of the image with the WCS sliced to it,
    ``(array[view] + offsets[k]) * scale`` as a mono float32 tile."""
    wcs = reference_wcs()
    tiles = []
    for k, view in enumerate(views):
        data = array[view].astype(np.float64) + (0.0 if offsets is None else offsets[k])
        data = (data * scale).astype(np.float32)[None]
        tiles.append(Tile(data=data, wcs=wcs[view], path=Path(f"cutout_{k:02d}.fits")))
    return tiles


def plan_on(tiles, wcs: WCS, shape: tuple[int, int]) -> MosaicPlan:
    boxes = tuple(tile_bounding_box(t.wcs, t.shape, wcs, shape) for t in tiles)
    return MosaicPlan(wcs=wcs, shape=shape, bboxes=boxes)


BACKENDS = {
    "cpu": lambda budget=None: CpuBackend(budget),
    "gpu": lambda budget=None: GpuBackend(budget, simulate=True),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request) -> str:
    return request.param


def reproject_footprint(tiles, wcs, shape, weights=None) -> np.ndarray:
    _, footprint = reproject_and_coadd(
        [(t.data[0], t.wcs) for t in tiles],
        wcs,
        shape_out=shape,
        input_weights=weights,
        reproject_function=reproject_interp,
        combine_function="mean",
    )
    return footprint.astype(np.float32)


# --- test_coadd.py: cut-outs reassemble the original ------------------------------------


@pytest.mark.parametrize("combine", ["mean", "median"])
def test_coadd_no_overlap(array, backend_name, combine):
    """Exactly non-overlapping cut-outs (1-pixel strips among them) give the input back,
    bit for bit, with coverage 1 everywhere (``test_coadd_no_overlap``)."""
    tiles = cut_outs(array, nonoverlapping_views())
    plan = plan_on(tiles, reference_wcs(), array.shape)
    result = coadd_pass(BACKENDS[backend_name](), tiles, plan, combine=CombineSpec(combine))
    np.testing.assert_array_equal(result.image[0], array)
    np.testing.assert_array_equal(result.coverage[0], 1.0)


@pytest.mark.parametrize("combine", ["mean", *STACK_COMBINES])
def test_coadd_with_overlap(array, backend_name, combine):
    """Overlapping cut-outs (+10 px each way) average back to the input, and coverage
    counts the overlapping cut-outs as reproject's footprint does
    (``test_coadd_with_overlap``, ``test_coadd_numpy_median_memmap``)."""
    wcs = reference_wcs()
    tiles = cut_outs(array, overlapping_views())
    plan = plan_on(tiles, wcs, array.shape)
    result = coadd_pass(BACKENDS[backend_name](), tiles, plan, combine=CombineSpec(combine))
    if combine == "mean":
        np.testing.assert_allclose(result.image[0], array, rtol=0, atol=MEAN_ATOL)
    else:  # every sample of a pixel is the same value: the stack combines return it
        np.testing.assert_array_equal(result.image[0], array)
    footprint = reproject_footprint(tiles, wcs, array.shape)
    np.testing.assert_array_equal(result.coverage[0], footprint)
    assert footprint.max() >= 4.0  # the overlaps really overlap


def test_coadd_with_overlap_in_row_chunks_and_batches(array, backend_name):
    """The reassembly does not depend on how the output is cut into row chunks or on
    how many tiles are held at once (reproject's ``block_size`` / memmap variants)."""
    tiles = cut_outs(array, overlapping_views())
    plan = plan_on(tiles, reference_wcs(), array.shape)
    whole = coadd_pass(BACKENDS[backend_name](), tiles, plan, combine=CombineSpec())
    chunked = coadd_pass(
        BACKENDS[backend_name](64 * 1024), tiles, plan, combine=CombineSpec(), batch_size=1
    )
    np.testing.assert_array_equal(chunked.coverage, whole.coverage)
    np.testing.assert_allclose(chunked.image, whole.image, rtol=1e-6, atol=0)


def test_coadd_nan_masking(array, backend_name):
    """NaN pixels in one cut-out and NaN weights in another are masked out before the
    combination: the neighbours fill in, the result has no NaN and coverage drops by one
    there (``test_coadd_nan_masking_zarr``). A NaN weight means "no weight", as in
    reproject.

    Coverage is reproject's footprint except beside the NaN patches, where reproject's
    WCS round trip puts a grid-aligned pixel a hair (~1e-10 px) off its integer position
    and its bilinear sample then touches the NaN neighbour; ZeMosaic copies grid-aligned
    tiles on both backends and keeps those pixels. That is docs/architecture.md §3's 1e-3 px edge band,
    the one place where coverages may differ."""
    wcs = reference_wcs()
    tiles = cut_outs(array, overlapping_views())
    data = tiles[2].data.copy()
    data[0, :10, :10] = np.nan
    tiles[2] = tiles[2].with_data(data)
    weights = [np.ones(t.shape, dtype=np.float32) for t in tiles]
    weights[10][:10, :10] = np.nan
    weighted = [Tile(t.data, t.wcs, t.path, w) for t, w in zip(tiles, weights, strict=True)]
    plan = plan_on(weighted, wcs, array.shape)
    result = coadd_pass(BACKENDS[backend_name](), weighted, plan, combine=CombineSpec())
    assert not np.isnan(result.image).any()
    np.testing.assert_allclose(result.image[0], array, rtol=0, atol=MEAN_ATOL)
    footprint = reproject_footprint(weighted, wcs, array.shape, weights=weights)
    # The band around every edge of f, NaN weights counted as NaN data.
    blanked = [
        t.with_data(np.where(np.isnan(w), np.float32(np.nan), t.data))
        for t, w in zip(weighted, weights, strict=True)
    ]
    band = edge_band(blanked, plan)
    np.testing.assert_array_equal(result.coverage[0][~band], footprint[~band])
    # In the band ZeMosaic keeps the copied pixel: one input more than reproject at most.
    assert np.isin(result.coverage[0][band] - footprint[band], [0.0, 1.0]).all()
    assert band.sum() < 100  # the band is the rim of the two patches, nothing more
    # Exactly the masked pixels are lost: two 10 x 10 patches, one input each.
    clean_tiles = cut_outs(array, overlapping_views())
    clean = coadd_pass(BACKENDS[backend_name](), clean_tiles, plan, combine=CombineSpec())
    lost = clean.coverage[0] - result.coverage[0]
    assert np.isin(lost, [0.0, 1.0]).all() and lost.sum() == 200


@pytest.mark.parametrize("kind", ["weight maps", "tile weights"])
def test_coadd_with_weights(array, backend_name, kind):
    """Two copies of the image offset by +1 and -1 with opposite ramps of weight give
    ``array + 2 w1 / w1.max() - 1`` (``test_coadd_with_weights``); with scalar tile
    weights 3 and 1 the weighted mean is ``array + 0.5``."""
    wcs = reference_wcs()
    path = Path("weighted.fits")
    up, down = (array + 1)[None], (array - 1)[None]
    if kind == "weight maps":
        weight1 = (np.cumsum(np.ones(array.shape), axis=1) - 1).astype(np.float32)
        weight2 = weight1[:, ::-1].copy()
        tiles = [Tile(up, wcs, path, weight1), Tile(down, wcs, path, weight2)]
        expected = array + (2 * (weight1 / weight1.max()) - 1)
        coverage = weight1 + weight2
    else:
        tiles = [Tile(up, wcs, path, None, 3.0), Tile(down, wcs, path, None, 1.0)]
        expected = array + 0.5
        coverage = np.full(array.shape, 4.0, dtype=np.float32)
    plan = plan_on(tiles, wcs, array.shape)
    result = coadd_pass(BACKENDS[backend_name](), tiles, plan, combine=CombineSpec())
    np.testing.assert_allclose(result.image[0], expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(result.coverage[0], coverage, rtol=1e-6)


@pytest.mark.parametrize("combine", ["mean", "median"])
def test_footprint_correct(array, backend_name, combine):
    """A cut of every third pixel and a 45-degree rotated tile on a coarser grid that
    reaches beyond both: the image is finite exactly where coverage > 0, and coverage
    is reproject's footprint (``test_footprint_correct``)."""
    wcs = reference_wcs()
    wcs1 = wcs[::3, ::3]
    wcs2 = wcs.deepcopy()
    wcs2.wcs.pc = np.array([[0.5, -0.5], [0.5, 0.5]])
    wcs_out = wcs1.deepcopy()
    wcs_out.wcs.cdelt = 2 * wcs1.wcs.cdelt[0], 2 * wcs1.wcs.cdelt[1]
    wcs_out.pixel_shape = (334, 399)
    shape = array[::3, ::3].shape
    tiles = [
        Tile(np.full((1, *shape), 2.0, np.float32), wcs1, Path("cut.fits")),
        Tile(np.full((1, *shape), 7.0, np.float32), wcs2, Path("rotated.fits")),
    ]
    plan = plan_on(tiles, wcs_out, array.shape)
    result = coadd_pass(BACKENDS[backend_name](), tiles, plan, combine=CombineSpec(combine))
    coverage = result.coverage[0]
    assert (coverage > 0).any() and (coverage == 2).any() and (coverage == 0).any()
    np.testing.assert_array_equal(np.isfinite(result.image[0]), coverage > 0)
    values = {1.0: (2.0, 7.0), 2.0: (4.5,)}
    for count, allowed in values.items():
        assert np.isin(result.image[0][coverage == count], np.float32(allowed)).all()
    footprint = reproject_footprint(tiles, wcs_out, array.shape)
    if backend_name == "cpu":
        np.testing.assert_array_equal(coverage, footprint)
    else:  # docs/architecture.md §3: equal outside the 1e-3 px edge band
        outside = ~edge_band(tiles, plan)
        np.testing.assert_array_equal(coverage[outside], footprint[outside])


# --- test_coadd.py / test_background.py: background matching, through whole builds ------


def write_tiles(folder: Path, tiles) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for tile in tiles:
        header = tile.wcs.to_header()
        fits.PrimaryHDU(tile.data[0], header=header).writeto(folder / tile.path.name)
    return folder


def build(folder: Path, backend: str, match: str, monkeypatch) -> np.ndarray:
    """A whole build without two-pass and crop (one plan for every variant); the mono
    mosaic and its coverage."""
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    config = BuildConfig(
        backend=backend, match=match, two_pass=TwoPassSpec(enabled=False), crop=False
    )
    result = build_mosaic([folder], config)
    assert result.backend == backend
    return result.image[0], result.coverage[0]


def assert_equal_up_to_a_constant(image, reference, coverage, atol):
    covered = coverage > 0
    assert covered.sum() > 0.5 * coverage.size
    np.testing.assert_array_equal(np.isfinite(image), covered)
    difference = image[covered].astype(np.float64) - reference[covered]
    step = float(difference.max() - difference.min())
    assert step <= atol, f"steps of up to {step:.3g} between tiles"


@pytest.fixture(scope="module")
def consistent_dir(array, tmp_path_factory):
    return write_tiles(tmp_path_factory.mktemp("consistent"), cut_outs(array, overlapping_views()))


@pytest.fixture(scope="module")
def consistent_builds(consistent_dir):
    """The cut-outs without planted offsets, built without matching, per backend."""
    builds = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in BACKENDS:
            builds[name] = build(consistent_dir, name, "none", monkeypatch)
    return builds


def test_offsets_plus_i_are_recovered(
    array, consistent_builds, backend_name, tmp_path, monkeypatch
):
    """Cut-out i offset by +i, overlaps agreeing exactly: offset matching brings the
    mosaic back to the original plus one constant (``test_coadd_numpy_median_match_
    background``, ``test_coadd_background_matching``)."""
    offsets = np.arange(20, dtype=np.float64)
    folder = write_tiles(tmp_path, cut_outs(array, overlapping_views(), offsets))
    image, coverage = build(folder, backend_name, "offset", monkeypatch)
    reference, ref_coverage = consistent_builds[backend_name]
    np.testing.assert_array_equal(coverage, ref_coverage)
    unmatched, _ = build(folder, backend_name, "none", monkeypatch)
    with pytest.raises(AssertionError, match="steps"):  # the case is not trivial
        assert_equal_up_to_a_constant(unmatched, reference, coverage, atol=1e-4)
    assert_equal_up_to_a_constant(image, reference, coverage, atol=1e-4)


@pytest.mark.parametrize("scale", [1e-5, 1e5])
def test_offsets_are_recovered_at_any_scale(array, tmp_path, monkeypatch, scale):
    """``test_solve_corrections_sgd``: random corrections at very different absolute
    scales are solved exactly (here as a whole build of the cut-outs, image and offsets
    scaled together)."""
    offsets = np.random.default_rng(7).uniform(-3, 3, 20)
    planted = write_tiles(
        tmp_path / "planted", cut_outs(array, overlapping_views(), offsets, scale)
    )
    clean = write_tiles(tmp_path / "clean", cut_outs(array, overlapping_views(), None, scale))
    image, coverage = build(planted, "cpu", "offset", monkeypatch)
    reference, _ = build(clean, "cpu", "none", monkeypatch)
    assert_equal_up_to_a_constant(image, reference, coverage, atol=1e-4 * scale)


def test_background_matching_with_nan(array, tmp_path, monkeypatch):
    """Three copies of the image on one grid, offset at random and masked in different
    columns: matching through the overlaps of the unmasked parts recovers the original
    up to a constant (``test_coadd_background_matching_with_nan``)."""
    rng = np.random.default_rng(3)
    masks = [np.s_[:, 122:], np.s_[:, :50], np.s_[:, 266:], np.s_[:, :199]]
    owners = [0, 1, 1, 2]
    wcs = reference_wcs()

    def copies(offsets):
        planes = [array.astype(np.float64) + offset for offset in offsets]
        for mask, owner in zip(masks, owners, strict=True):
            planes[owner][mask] = np.nan
        return [
            Tile(p.astype(np.float32)[None], wcs, Path(f"copy_{k}.fits"))
            for k, p in enumerate(planes)
        ]

    planted = write_tiles(tmp_path / "planted", copies(rng.uniform(-3, 3, 3)))
    clean = write_tiles(tmp_path / "clean", copies(np.zeros(3)))
    image, coverage = build(planted, "cpu", "offset", monkeypatch)
    reference, _ = build(clean, "cpu", "none", monkeypatch)
    assert_equal_up_to_a_constant(image, reference, coverage, atol=1e-4)


def test_background_matching_one_array(array, tmp_path, monkeypatch):
    """With a single input, matching changes nothing
    (``test_coadd_background_matching_one_array``)."""
    folder = write_tiles(tmp_path, cut_outs(array, [np.s_[:, :]]))
    matched, matched_coverage = build(folder, "cpu", "offset", monkeypatch)
    plain, plain_coverage = build(folder, "cpu", "none", monkeypatch)
    np.testing.assert_array_equal(matched_coverage, plain_coverage)
    np.testing.assert_array_equal(matched, plain)


def test_background_matching_consistent_tiles(consistent_dir, consistent_builds, monkeypatch):
    """Mutually consistent cut-outs: matching finds nothing to correct and the mosaic is
    the unmatched one (``test_background_matching_consistent_tiles``)."""
    matched, coverage = build(consistent_dir, "cpu", "offset", monkeypatch)
    reference, ref_coverage = consistent_builds["cpu"]
    np.testing.assert_array_equal(coverage, ref_coverage)
    covered = coverage > 0
    np.testing.assert_allclose(matched[covered], reference[covered], rtol=0, atol=1e-5)
