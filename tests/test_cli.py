"""The ``zemosaic`` command line: exit codes, messages, outputs, inputs untouched."""

from __future__ import annotations

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


def test_version_and_help_for_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from zemosaic_core import __version__

    assert __version__ in capsys.readouterr().out
    from zemosaic_core.cli import _parser

    build = next(
        a
        for a in _parser()._subparsers._group_actions[0].choices.values()
        if a.prog.endswith("build")
    )
    for action in build._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help text"


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
