"""GUI side of plate solving: each input shows no WCS -> solving… -> solved / failed."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from zemosaic_core import build_mosaic
from zemosaic_core.config import BuildConfig, SolveSpec, TwoPassSpec
from zemosaic_core.solving import write_wcs_header
from zemosaic_gui.input_panel import PENDING, SKIPPED, InputPanel
from zemosaic_gui.worker import BuildRunner


def test_unsolved_frames_show_their_solve_status(qtbot, real_data, index_dir, tmp_path):
    """Real probe, real build: a sidecar frame is solved, a starless one fails with why."""
    source = sorted((real_data / "seestar_ngc7023").glob("*.fit"))[0]
    with fits.open(source) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data.copy()
    reference = WCS(header)
    for key in list(header.keys()):
        if key.startswith(("CRVAL", "CRPIX", "CTYPE", "CUNIT", "CD", "PC", "CDELT", "WCSAXES")):
            header.remove(key, remove_all=True)
    good = tmp_path / "sub.fit"
    fits.PrimaryHDU(data, header=header).writeto(good)
    write_wcs_header(tmp_path / "sub.wcs", reference.to_header(relax=True))
    starless = tmp_path / "starless.fits"
    noise = np.random.default_rng(5).normal(100.0, 3.0, size=(300, 400)).astype(np.float32)
    fits.PrimaryHDU(noise).writeto(starless)

    panel = InputPanel()
    qtbot.addWidget(panel)
    panel.add_inputs([good, starless])
    qtbot.waitUntil(lambda: not panel.is_checking(), timeout=10000)
    assert panel.status(good) == (PENDING, "no WCS")
    assert panel.status(starless) == (PENDING, "no WCS")
    assert set(panel.usable_paths()) == {good, starless}

    runner = BuildRunner(build_mosaic)
    runner.solve_status.connect(panel.set_solve_status)
    states = []
    runner.solve_status.connect(lambda path, state, detail: states.append((path, state)))
    config = BuildConfig(
        backend="cpu",
        two_pass=TwoPassSpec(enabled=False),
        solve=SolveSpec(index_dir=index_dir, cache_dir=tmp_path / "cache"),
    )
    with qtbot.waitSignal(runner.finished, timeout=120000):
        runner.start([good, starless], config)
    assert states == [(str(starless), "solving"), (str(starless), "failed")]
    status, text = panel.status(starless)
    assert status == SKIPPED and "too few stars" in text
    assert panel.status(good)[0] == PENDING  # read from its sidecar: no solve, no status
