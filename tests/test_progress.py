"""One progress bar per build (issue 14): weighted phases, monotone, 100 % only at the end."""

from __future__ import annotations

import pytest

from zemosaic_core import BuildConfig, build_mosaic
from zemosaic_core.runtime.progress import (
    PROGRESS_UNITS,
    BuildProgress,
    EtaEstimator,
    PhaseWork,
)


def test_phases_share_the_bar_by_their_work():
    calls = []
    bar = BuildProgress(
        lambda *a: calls.append(a), [PhaseWork("load", 1), PhaseWork("coadd pass 1", 3)]
    )
    bar("load", 1, 1)
    assert calls[-1] == ("load", 250, PROGRESS_UNITS)
    bar("coadd pass 1", 2, 4)
    assert calls[-1] == ("coadd pass 1", 625, PROGRESS_UNITS)
    bar("coadd pass 1", 4, 4)  # the last phase's end is not the build's end
    assert calls[-1][1] == PROGRESS_UNITS - 1
    bar.finish()
    assert calls[-1] == ("done", PROGRESS_UNITS, PROGRESS_UNITS)


def test_replanning_keeps_the_fraction_and_never_goes_back():
    calls = []
    bar = BuildProgress(lambda *a: calls.append(a), [PhaseWork("load", 1), PhaseWork("x", 1)])
    bar("load", 1, 2)
    assert calls[-1][1] == 250
    bar.plan([PhaseWork("y", 1), PhaseWork("z", 1)])
    bar("y", 0, 5)  # a new phase starting at 0 does not move the bar back
    assert calls[-1] == ("y", 250, PROGRESS_UNITS)
    bar("z", 1, 2)
    assert calls[-1][1] == 250 + 562
    bar("unplanned", 0, 1)  # moves the label only
    assert calls[-1] == ("unplanned", 812, PROGRESS_UNITS)


def test_eta_never_reaches_zero_before_the_end():
    now = [0.0]
    eta = EtaEstimator(clock=lambda: now[0])
    eta.update(0.01)
    assert eta.eta() is None  # too early to tell
    now[0] = 10.0
    eta.update(0.5)
    assert eta.eta() == pytest.approx(10.0)
    now[0] = 30.0  # a long step without reports: the estimate is spent
    assert eta.eta() == pytest.approx(EtaEstimator.MIN_ETA_S)
    eta.update(1.0)
    assert eta.eta() == 0.0


def test_a_build_reports_one_monotone_bar(tmp_path, gui_demo_tiles):
    calls = []
    build_mosaic(
        gui_demo_tiles[:3],
        BuildConfig(backend="cpu", output=tmp_path / "m.fits"),
        progress=lambda *a: calls.append(a),
    )
    done = [d for _, d, _ in calls]
    assert {t for _, _, t in calls} == {PROGRESS_UNITS}
    assert done == sorted(done)
    assert done[-1] == PROGRESS_UNITS and done.count(PROGRESS_UNITS) == 1
    phases = [p for p, _, _ in calls]
    for phase in ("load", "match", "coadd pass 1", "two-pass gains", "coadd pass 2"):
        assert phase in phases
    # The coadd is most of the work: it owns most of the bar.
    coadd = [d for p, d, _ in calls if p.startswith("coadd pass 1")]
    assert coadd[-1] - coadd[0] > PROGRESS_UNITS // 4
