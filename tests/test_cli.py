"""The ``zemosaic`` command line: exit codes, messages, outputs, inputs untouched."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from synthetic import grid_tiles, write_tile

from zemosaic_core.cli import main


@pytest.fixture(scope="module")
def tile_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_tiles")
    for tile in grid_tiles(2, 2, size=100, noise=0.5):
        write_tile(folder / tile.path.name, tile)
    return folder


def test_build_writes_fits_preview_and_tiff(tile_dir, tmp_path, capsys, file_hashes):
    before = file_hashes(sorted(tile_dir.iterdir()))
    out = tmp_path / "m.fits"
    code = main(
        [
            "build", str(tile_dir), "-o", str(out), "--preview", str(tmp_path / "m.png"),
            "--tiff", str(tmp_path / "m.tif"), "--backend", "cpu", "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    with fits.open(out) as hdul:
        assert hdul[0].header["NTILES"] == 4 and hdul[0].header["BACKEND"] == "cpu"
        assert hdul["COVERAGE"].data.max() == 4.0
        image, coverage = hdul[0].data, hdul["COVERAGE"].data
        assert np.array_equal(np.isnan(image[0]), coverage == 0)
    assert (tmp_path / "m.png").stat().st_size > 1000 and (tmp_path / "m.tif").exists()
    assert file_hashes(sorted(tile_dir.iterdir())) == before


def test_no_usable_input_exits_2_with_one_line(tmp_path, capsys):
    junk = tmp_path / "in"
    junk.mkdir()
    (junk / "notes.fits").write_text("not a FITS file at all")
    code = main(["build", str(junk), "-o", str(tmp_path / "m.fits"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "no usable input" in err and "Traceback" not in err
    assert not (tmp_path / "m.fits").exists()


def test_missing_output_folder_is_refused_before_work(tile_dir, tmp_path, capsys):
    code = main(["build", str(tile_dir), "-o", str(tmp_path / "nope" / "m.fits")])
    assert code == 2
    assert "output folder does not exist" in capsys.readouterr().err


def test_empty_folder_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["build", str(tmp_path / "empty"), "-o", str(tmp_path / "m.fits")]) == 2
    assert "no FITS files found" in capsys.readouterr().err


def test_a_failure_exits_1_without_traceback(tile_dir, tmp_path, capsys):
    code = main(["build", str(tile_dir), "-o", str(tmp_path / "m.fits"), "--max-size", "20"])
    err = capsys.readouterr().err
    assert code == 1 and "above the limit of 20 px" in err and "Traceback" not in err


def test_bad_flags_exit_2(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["build", "x", "-o", str(tmp_path / "m.fits"), "--combine", "bogus"])
    assert info.value.code == 2
    assert main(["build", "x", "-o", str(tmp_path / "m.fits"), "--batch-size", "-1"]) == 2


def test_console_script_runs_headless(tile_dir, tmp_path):
    script = Path(sys.executable).with_name("zemosaic")
    out = tmp_path / "m.fits"
    proc = subprocess.run(
        [str(script), "build", str(tile_dir), "-o", str(out), "--backend", "cpu",
         "--log-level", "WARNING"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and "Traceback" not in proc.stderr


def test_rebuilding_into_the_input_folder_ignores_the_previous_mosaic(tmp_path, capsys):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for tile in grid_tiles(2, 1, size=60):
        write_tile(folder / tile.path.name, tile)
    out = folder / "mosaic.fits"
    args = ["build", str(folder), "-o", str(out), "--backend", "cpu", "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--overwrite"]) == 0  # the first mosaic is now in the folder
    err = capsys.readouterr().err
    assert "mosaic.fits: skipped: it is this build's output" in err
    with fits.open(out) as hdul:
        assert hdul[0].header["NTILES"] == 2


# ---- one CLI, one home for defaults (issue 15, item 3) ---------------------------------

CORE = Path(__file__).resolve().parents[1] / "zemosaic_core"


def _imported_modules(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_gui_or_qt():
    offenders = {
        str(path.relative_to(CORE)): sorted(
            name
            for name in _imported_modules(path)
            if name.split(".")[0] in ("zemosaic_gui", "PySide6", "PyQt5", "PyQt6", "qtpy")
        )
        for path in CORE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_core_messages_name_settings_not_cli_flags():
    import ast

    flags = []
    for path in CORE.rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and " --" in f" {node.value}"
                and any(f"--{c}" in node.value for c in "abcdefghijklmnopqrstuvwxyz")
            ):
                flags.append(f"{path.relative_to(CORE)}: {node.value!r}")
    assert flags == []


def test_cli_defaults_and_choices_come_from_the_config():
    from zemosaic_core.cli import _build_config, _parser
    from zemosaic_core.config import BACKENDS, BAYER_PATTERNS, COMBINES, MATCH_MODES, BuildConfig
    from zemosaic_core.display.stretch import STRETCH_MODES

    args = _parser().parse_args(["build", "in", "-o", "out.fits"])
    assert _build_config(args) == BuildConfig(output=Path("out.fits"))
    build = _parser()._subparsers._group_actions[0].choices["build"]
    choices = {a.dest: tuple(a.choices) for a in build._actions if a.choices}
    assert choices == {
        "backend": BACKENDS,
        "combine": COMBINES,
        "match": MATCH_MODES,
        "stretch": STRETCH_MODES,
        "bayer_pattern": BAYER_PATTERNS,
        "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    }


def test_zemosaic_gui_is_found_through_the_installed_entry_point():
    import zemosaic_gui.app
    from zemosaic_core.cli import _gui_main

    assert _gui_main() is zemosaic_gui.app.main


@pytest.fixture
def demo_dir(tmp_path):
    """A "demo" folder already filled (with two small tiles: run-demo only lists it)."""
    folder = tmp_path / "demo_tiles"
    folder.mkdir()
    for tile in grid_tiles(2, 1, size=60):
        write_tile(folder / tile.path.name, tile)
    return folder


def _env_without_display():
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"  # a platform that needs a display: there is none
    return env


def test_headless_demo_builds_in_the_core_without_the_gui(demo_dir, tmp_path):
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "from zemosaic_core.cli import main\n"
        f"status = main(['run-demo', '--headless', '--demo-dir', {str(demo_dir)!r},"
        f" '--output-dir', {str(out)!r}, '--backend', 'cpu'])\n"
        "gui = sorted(m for m in sys.modules if m.startswith(('zemosaic_gui', 'PySide6')))\n"
        "print('GUI MODULES', gui)\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "GUI MODULES []" in proc.stdout
    for name in ("demo_mosaic.fits", "demo_mosaic.png", "demo_mosaic.tif"):
        assert str((out / name).resolve()) in proc.stdout


def test_run_demo_without_a_display_falls_back_to_the_cli_once(demo_dir, tmp_path):
    """`make run` with no display: the app hands the build back to the CLI, whose log
    lines must print once (not once per nested run)."""
    script = Path(sys.executable).with_name("zemosaic")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(script), "run-demo", "--demo-dir", str(demo_dir), "--output-dir", str(out),
         "--backend", "cpu"],
        capture_output=True, text=True, timeout=180, env=_env_without_display(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "No display found" in proc.stdout
    assert proc.stderr.count("Output grid:") == 1, proc.stderr
    assert (out / "demo_mosaic.fits").is_file()


def test_gui_forwards_its_arguments_to_the_app(tmp_path):
    script = Path(sys.executable).with_name("zemosaic")
    proc = subprocess.run(
        [str(script), "gui", "--headless"],
        capture_output=True, text=True, timeout=120, env=_env_without_display(),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "nothing to build" in proc.stderr


# --------------------------------------------------------------------------- reliability


@pytest.mark.parametrize("flag", ["-o", "--preview", "--tiff"])
@pytest.mark.parametrize("named", ["folder", "file"])
def test_an_output_naming_an_input_tile_is_refused_before_work(
    tile_dir, tmp_path, capsys, file_hashes, flag, named
):
    """It used to log "skipped: it is this build's output" and then write over the tile."""
    victim = sorted(tile_dir.iterdir())[1]
    before = file_hashes(sorted(tile_dir.iterdir()))
    inputs = [str(tile_dir)] if named == "folder" else [str(p) for p in sorted(tile_dir.iterdir())]
    outputs = {"-o": str(tmp_path / "m.fits")}
    outputs[flag] = str(victim)
    argv = ["build", *inputs, "--backend", "cpu", "--no-progress"]
    for key, value in outputs.items():
        argv += [key, value]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "inputs are never overwritten" in err and victim.name in err
    assert "Traceback" not in err and "Output grid" not in err  # before any work
    assert file_hashes(sorted(tile_dir.iterdir())) == before
    assert not (tmp_path / "m.fits").exists()


def test_a_hard_link_to_an_input_is_not_an_output_either(tile_dir, tmp_path, capsys, file_hashes):
    victim = sorted(tile_dir.iterdir())[0]
    link = tmp_path / "m.fits"
    try:
        os.link(victim, link)
    except OSError:
        pytest.skip("hard links not supported here")
    before = file_hashes([victim])
    assert main(["build", str(tile_dir), "-o", str(link), "--no-progress"]) == 2
    assert "inputs are never overwritten" in capsys.readouterr().err
    assert file_hashes([victim]) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_an_output_onto_a_fifo_is_refused_and_the_fifo_stays(tile_dir, tmp_path, capsys):
    """Only regular files are ever replaced (``-o /dev/null`` as root replaced the device)."""
    fifo = tmp_path / "m.fits"
    os.mkfifo(fifo)
    code = main(["build", str(tile_dir), "-o", str(fifo), "--backend", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "only regular files are ever replaced" in err and "FIFO" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_atomic_write_never_replaces_a_special_file(tmp_path):
    from zemosaic_core.errors import ZeMosaicError
    from zemosaic_core.io.outputs import atomic_write

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "late.fits"
    with pytest.raises(ZeMosaicError, match="only regular files"), atomic_write(fifo) as handle:
        handle.write(b"data")
        os.mkfifo(fifo)  # appears while the output is written
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["late.fits"]


@pytest.mark.parametrize(
    "option",
    [
        ["--two-pass-sigma", "nan"],
        ["--two-pass-sigma", "inf"],
        ["--kappa", "nan"],
        ["--kappa", "inf"],
        ["--two-pass-gain-clip", "0.9", "nan"],
        ["--two-pass-gain-clip", "0.9", "inf"],
        ["--winsor-limits", "nan", "0.1"],
    ],
)
def test_non_finite_option_values_are_bad_usage(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as info:
        main(["build", "x", "-o", str(tmp_path / "m.fits"), *option])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "finite" in err and "unexpected" not in err and "Traceback" not in err


def test_config_refuses_non_finite_values():
    from zemosaic_core import CombineSpec, TwoPassSpec

    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            CombineSpec("kappa-sigma", kappa=bad)
        with pytest.raises(ValueError):
            TwoPassSpec(sigma=bad)
        with pytest.raises(ValueError):
            TwoPassSpec(gain_clip=(0.9, bad))


def test_explicit_gpu_without_a_gpu_is_one_line_and_exit_2(tile_dir, tmp_path, capsys, monkeypatch):
    from zemosaic_core.engine.backends import detect_gpu

    monkeypatch.delenv("ZEMOSAIC_GPU_SIMULATE", raising=False)
    if detect_gpu().available:
        pytest.skip("a real GPU is present")
    out = tmp_path / "m.fits"
    code = main(["build", str(tile_dir), "-o", str(out), "--backend", "gpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("zemosaic: error: the gpu backend")
    assert not out.exists()
    # The simulated device still counts as a usable GPU.
    monkeypatch.setenv("ZEMOSAIC_GPU_SIMULATE", "1")
    assert main(["build", str(tile_dir), "-o", str(out), "--backend", "gpu", "--no-progress"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["BACKEND"] == "gpu"


def test_version_and_help_for_every_option(capsys):
    from zemosaic_core import __version__
    from zemosaic_core.cli import _parser

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    for name, command in _parser()._subparsers._group_actions[0].choices.items():
        if name == "gui":  # its options belong to zemosaic-gui
            continue
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"


def test_default_output_name_and_no_silent_overwrite(tile_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["build", str(tile_dir), "--backend", "cpu", "--no-progress", "--no-two-pass"]
    assert main(args) == 0
    out = tmp_path / f"{tile_dir.name}_mosaic.fits"
    assert out.is_file()
    before = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2  # never overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == before
    assert main([*args, "--overwrite"]) == 0


def test_log_lines_go_above_the_progress_bar_on_their_own_lines(capsys):
    import logging

    from zemosaic_core import cli

    handler, previous = cli._configure_logging("INFO")
    bar = cli._ProgressBar(enabled=True)
    handler.progress = bar
    try:
        bar("coadd pass 1", 400, 1000)
        logging.getLogger("zemosaic_core.test").warning("a warning line")
        bar("coadd pass 1", 500, 1000)
    finally:
        bar.close()
        for name, (level, propagate) in previous.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "a warning line" in line)
    assert line.split("\r")[-1].startswith("WARNING"), repr(line)
