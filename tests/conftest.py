import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Plate solutions found by tests go to a throw-away cache, never the user's.
os.environ.setdefault("ZEMOSAIC_SOLVE_CACHE", tempfile.mkdtemp(prefix="zm-solve-"))


# --- loading fixtures (tests/test_loading.py, tests/test_bad_inputs.py) ---------------

from pathlib import Path as _Path  # noqa: E402

import pytest as _pytest  # noqa: E402

REAL_DATA_ENV = "ZEMOSAIC_REAL_DATA"


def _real_data_dir() -> _Path:
    override = os.environ.get(REAL_DATA_ENV)
    if override:
        return _Path(override)
    return _Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@_pytest.fixture(scope="session")
def real_data() -> _Path:
    """The folder of real FITS files (shared/data/real, or $ZEMOSAIC_REAL_DATA); skip if absent."""
    root = _real_data_dir()
    if not root.is_dir():
        _pytest.skip(
            f"real FITS data not found at {root} (set {REAL_DATA_ENV} to the shared/data/real folder)"
        )
    return root


@_pytest.fixture
def file_hashes():
    """``file_hashes(paths)`` -> {path: sha256}: call before and after, compare."""
    from badfits import sha256_files

    return sha256_files


# --- GUI fixtures (tests/test_gui*.py) -------------------------------------------------


@_pytest.fixture(scope="session")
def gui_demo_tiles(tmp_path_factory) -> list:
    """Six small (200 px) RGB demo tiles, written once per session; returns their paths."""
    from zemosaic_core.datasets.demo import write_demo_tiles

    return list(write_demo_tiles(tmp_path_factory.mktemp("gui_demo"), tile_size=200))


@_pytest.fixture
def gui_settings(tmp_path):
    """A QSettings INI file in tmp_path; QSettings' default user scope points there too."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings")
    )
    return QSettings(str(tmp_path / "zemosaic.ini"), QSettings.Format.IniFormat)


@_pytest.fixture
def gui_window(qtbot, qapp, gui_settings):
    """``make(**kwargs)`` -> a shown, themed MainWindow (1400x900) with test settings.

    GPU detection is replaced by an instant fake unless ``detect_gpu`` is given; the
    window is closed (stopping any build, detaching its log handler) after the test.
    """
    from types import SimpleNamespace

    from zemosaic_gui import MainWindow
    from zemosaic_gui.theme import apply_theme

    apply_theme(qapp)
    windows = []

    def make(**kwargs):
        kwargs.setdefault("settings", gui_settings)
        kwargs.setdefault("confirm_quit", False)  # a teardown close must not wait for a click
        kwargs.setdefault(
            "detect_gpu",
            lambda: SimpleNamespace(available=False, description="not probed in tests"),
        )
        window = MainWindow(**kwargs)
        qtbot.addWidget(window)
        window.resize(1400, 900)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@_pytest.fixture(autouse=True)
def _restore_product_log_levels():
    """Put the zemosaic loggers' levels back after each test (the GUI's dropdown sets them)."""
    import logging

    names = ("zemosaic_core", "zemosaic_gui")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


# --- plate-solving fixtures (tests/test_solving.py, tests/test_gui_solving.py) ----------


@_pytest.fixture(scope="session")
def index_dir() -> _Path:
    """The astrometry.net index folder: $ZEMOSAIC_INDEX_DIR (set by ``make test``), else
    ``.cache/astrometry-index`` (``make index``). Fails when the variable is set and the
    folder holds no index file: solver tests never skip in CI."""
    from zemosaic_core.solving import find_index_files
    from zemosaic_core.solving.index_files import INDEX_DIR_ENV

    configured = os.environ.get(INDEX_DIR_ENV)
    fetched = _Path(__file__).resolve().parents[1] / ".cache" / "astrometry-index"
    files = find_index_files(configured or fetched, system=not configured)
    if not files:
        message = f"no astrometry.net index files (set {INDEX_DIR_ENV}; `make index` fetches them)"
        if configured:
            _pytest.fail(message)
        _pytest.skip(message)
    return files[0].parent
