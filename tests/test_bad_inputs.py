"""The bad-input corpus: every broken file is skipped by name with a clear reason.

Each case writes a real file (tests/badfits.py) and loads it among good tiles: the good
ones are kept, the bad one is skipped once with the expected reason, exactly one WARNING
names it, no traceback reaches WARNING, and no input file changes by a single byte.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from badfits import BAD_CASES, inf_pixels, odd_name, write_good_mono, write_good_rgb

from zemosaic_core.errors import BuildCancelled, InputError, NoUsableInputError
from zemosaic_core.io.loading import discover_inputs, load_tile, load_tiles, probe_input
from zemosaic_core.runtime.cancel import CancelToken

CORE = "zemosaic_core"


def warnings_naming(caplog: pytest.LogCaptureFixture, path: Path) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno >= logging.WARNING and str(path) in r.getMessage()
    ]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        if record.levelno >= logging.WARNING:
            message = record.getMessage()
            assert "Traceback" not in message
            assert "\n" not in message
            assert record.exc_info is None
            assert record.exc_text is None


def symlinks_supported(tmp_path: Path) -> bool:
    probe = tmp_path / "symlink-probe"
    try:
        probe.symlink_to(tmp_path)
    except (OSError, NotImplementedError):
        return False
    probe.unlink()
    return True


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_is_skipped_by_name(case, tmp_path, caplog, file_hashes):
    spec = BAD_CASES[case]
    good_a = write_good_rgb(tmp_path, "good_a.fits", seed=1)
    bad = spec.writer(tmp_path)
    good_b = write_good_rgb(tmp_path, "good_b.fits", seed=2)
    inputs = [good_a, bad, good_b]
    before = file_hashes(inputs)

    with caplog.at_level(logging.DEBUG, logger=CORE):
        result = load_tiles(inputs)

    assert [t.path for t in result.tiles] == [good_a, good_b]
    assert len(result.skipped) == 1
    skipped = result.skipped[0]
    assert isinstance(skipped, InputError)
    assert skipped.path == bad
    assert spec.keyword in skipped.reason, skipped.reason
    assert "\n" not in skipped.reason

    named = warnings_naming(caplog, bad)
    assert len(named) == 1, [r.getMessage() for r in named]
    assert named[0].getMessage() == f"{bad}: skipped: {skipped.reason}"
    assert not warnings_naming(caplog, good_a) and not warnings_naming(caplog, good_b)
    assert_no_traceback(caplog)
    assert file_hashes(inputs) == before


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_file_load_tile_and_probe(case, tmp_path, file_hashes):
    spec = BAD_CASES[case]
    bad = spec.writer(tmp_path)
    before = file_hashes([bad])

    with pytest.raises(InputError) as info:
        load_tile(bad)
    assert info.value.path == bad
    assert spec.keyword in info.value.reason
    assert str(bad) in str(info.value)

    probe = probe_input(bad)
    assert probe.path == bad
    assert probe.size_bytes == bad.stat().st_size
    if spec.probe_detects:
        assert not probe.ok
        assert probe.reason is not None and spec.keyword in probe.reason
        assert probe.n_channels is None and probe.shape is None
    assert file_hashes([bad]) == before


def test_probe_good_files(tmp_path):
    rgb = probe_input(write_good_rgb(tmp_path))
    assert rgb.ok and rgb.reason is None
    assert rgb.n_channels == 3 and rgb.shape == (3, 64, 64) and rgb.size_bytes > 0
    mono = probe_input(write_good_mono(tmp_path))
    assert mono.ok and mono.n_channels == 1 and mono.shape == (1, 64, 64)
    missing = probe_input(tmp_path / "missing.fits")
    assert not missing.ok and "not found" in missing.reason and missing.size_bytes == 0


def test_inf_pixels_are_no_data_and_the_tile_is_usable(tmp_path, caplog, file_hashes):
    path = inf_pixels(tmp_path)
    before = file_hashes([path])
    with caplog.at_level(logging.DEBUG, logger=CORE):
        result = load_tiles([path])
    assert not result.skipped and len(result.tiles) == 1
    data = result.tiles[0].data
    assert not np.isinf(data).any()
    assert np.isnan(data[0, 5, 7]) and np.isnan(data[1, 10, 11])
    assert np.isnan(data[2, 20:22, 30:33]).all()
    assert int(np.isnan(data).sum()) == 8
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert file_hashes([path]) == before


def test_mono_among_rgb_is_skipped_by_name(tmp_path, caplog, file_hashes):
    rgb = [write_good_rgb(tmp_path, f"rgb_{i}.fits", seed=i) for i in range(3)]
    mono = write_good_mono(tmp_path, "mono.fits")
    inputs = [rgb[0], mono, rgb[1], rgb[2]]
    before = file_hashes(inputs)
    with caplog.at_level(logging.INFO, logger=CORE):
        result = load_tiles(inputs)
    assert [t.path for t in result.tiles] == rgb
    assert all(t.n_channels == 3 for t in result.tiles)
    assert len(result.skipped) == 1 and result.skipped[0].path == mono
    assert result.skipped[0].reason == "mono image among 3-channel tiles"
    assert len(warnings_naming(caplog, mono)) == 1
    assert_no_traceback(caplog)
    assert file_hashes(inputs) == before


def test_rgb_among_mono_majority(tmp_path, caplog):
    monos = [write_good_mono(tmp_path, f"mono_{i}.fits", seed=i) for i in range(2)]
    rgb = write_good_rgb(tmp_path, "rgb.fits")
    with caplog.at_level(logging.INFO, logger=CORE):
        result = load_tiles([rgb, *monos])
    assert [t.path for t in result.tiles] == monos
    assert [e.path for e in result.skipped] == [rgb]
    assert result.skipped[0].reason == "3-channel image among mono tiles"
    assert len(warnings_naming(caplog, rgb)) == 1


def test_channel_tie_goes_to_rgb(tmp_path):
    mono = write_good_mono(tmp_path, "mono.fits")
    rgb = write_good_rgb(tmp_path, "rgb.fits")
    result = load_tiles([mono, rgb])
    assert [t.path for t in result.tiles] == [rgb]
    assert [e.path for e in result.skipped] == [mono]


def test_nothing_usable_raises(tmp_path, caplog):
    bad = [BAD_CASES[name].writer(tmp_path) for name in ("empty", "not_fits", "no_wcs")]
    with caplog.at_level(logging.WARNING, logger=CORE), pytest.raises(NoUsableInputError) as info:
        load_tiles(bad)
    assert str(info.value) == "no usable input among 3 file(s)"
    for path in bad:
        assert len(warnings_naming(caplog, path)) == 1
    with pytest.raises(NoUsableInputError, match="among 0 file"):
        load_tiles([])


def test_missing_file_given_to_load_tiles(tmp_path, caplog):
    good = write_good_rgb(tmp_path)
    missing = tmp_path / "gone.fits"
    with caplog.at_level(logging.WARNING, logger=CORE):
        result = load_tiles([good, missing])
    assert [e.path for e in result.skipped] == [missing]
    assert "not found" in result.skipped[0].reason
    assert len(warnings_naming(caplog, missing)) == 1


def test_progress_and_cancel(tmp_path):
    paths = [write_good_rgb(tmp_path, f"t{i}.fits", seed=i) for i in range(3)]
    calls = []
    load_tiles(paths, progress=lambda *args: calls.append(args))
    assert calls[-1] == ("load", 3, 3)
    assert [c[1] for c in calls] == [0, 1, 2, 3]
    assert all(c[0] == "load" and c[2] == 3 for c in calls)

    token = CancelToken()
    seen = []

    def cancel_after_first(phase, done, total):
        seen.append(done)
        if done == 1:
            token.cancel()

    with pytest.raises(BuildCancelled):
        load_tiles(paths, progress=cancel_after_first, cancel=token)
    assert seen == [0, 1]


# --------------------------------------------------------------------------- names, links


def test_spaces_and_non_ascii_names_are_usable(tmp_path, caplog, file_hashes):
    folder = tmp_path / "dossier étoilé"
    folder.mkdir()
    odd = odd_name(folder)
    other = write_good_rgb(folder, "Light NGC 7023 10.0s.fit", seed=5)
    before = file_hashes([odd, other])
    found = discover_inputs([tmp_path])
    assert sorted(found) == sorted([odd, other])
    with caplog.at_level(logging.WARNING, logger=CORE):
        result = load_tiles(found)
    assert {t.path for t in result.tiles} == {odd, other}
    assert not result.skipped and not caplog.records
    assert load_tile(str(odd)).path == odd
    assert file_hashes([odd, other]) == before


def test_same_file_twice_counts_once(tmp_path):
    good = write_good_rgb(tmp_path)
    assert discover_inputs([good, good]) == [good]
    assert discover_inputs([good, str(good), tmp_path / "." / good.name]) == [good]
    assert discover_inputs([good, tmp_path]) == [good]
    assert discover_inputs([tmp_path, tmp_path]) == [good]


def test_same_file_through_symlink_counts_once(tmp_path):
    if not symlinks_supported(tmp_path):
        pytest.skip("symbolic links not supported here")
    good = write_good_rgb(tmp_path)
    link = tmp_path / "link_to_good.fits"
    link.symlink_to(good)
    assert discover_inputs([good, link]) == [good]
    assert discover_inputs([link, good]) == [link]
    # Inside a folder: the real file and its link count once (sorted: good.fits first).
    assert discover_inputs([tmp_path]) == [good]


def test_symlink_loop_in_folder_terminates(tmp_path, caplog):
    if not symlinks_supported(tmp_path):
        pytest.skip("symbolic links not supported here")
    root = tmp_path / "root"
    sub = root / "sub"
    sub.mkdir(parents=True)
    top = write_good_rgb(root, "a.fits", seed=1)
    inner = write_good_rgb(sub, "b.fits", seed=2)
    (sub / "loop").symlink_to(root, target_is_directory=True)
    (root / "self").symlink_to(root, target_is_directory=True)
    (root / "dangling.fits").symlink_to(root / "nowhere.fits")

    found: list[Path] = []
    worker = threading.Thread(target=lambda: found.extend(discover_inputs([root])), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "discover_inputs did not terminate on a symlink loop"
    assert sorted(os.path.realpath(p) for p in found) == sorted(
        os.path.realpath(p) for p in (top, inner)
    )
    assert len(found) == 2


def test_discovery_patterns_order_hidden_and_missing(tmp_path, caplog):
    names = [
        "b.fits",
        "a.FIT",
        "c.fts",
        "d.fits.fz",
        "e.FITS.GZ",
        "f.fit.gz",
        "g.fts.fz",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    for name in ["notes.txt", "h.fits.bak", "i.fz", "j.gz", ".hidden.fits"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden_dir").mkdir()
    (tmp_path / ".hidden_dir" / "k.fits").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.fits").write_bytes(b"x")
    (tmp_path / "sub" / "y.fit").write_bytes(b"x")
    (tmp_path / "0sub").mkdir()
    (tmp_path / "0sub" / "m.fits").write_bytes(b"x")
    explicit_txt = tmp_path / "notes.txt"
    missing = tmp_path / "does_not_exist.fits"

    with caplog.at_level(logging.WARNING, logger=CORE):
        found = discover_inputs([tmp_path, missing, explicit_txt])

    expected_top = sorted(names)
    expected = (
        [tmp_path / n for n in expected_top]
        + [tmp_path / "0sub" / "m.fits"]
        + [tmp_path / "sub" / "y.fit", tmp_path / "sub" / "z.fits"]
        + [explicit_txt]  # a file named explicitly is taken whatever its suffix
    )
    assert found == expected
    assert discover_inputs([tmp_path]) == found[:-1]  # deterministic
    missing_warnings = warnings_naming(caplog, missing)
    assert len(missing_warnings) == 1
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


# --------------------------------------------------------------------------- special files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_in_a_folder_is_named_and_never_opened(tmp_path, caplog):
    good = write_good_rgb(tmp_path, "good.fits")
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    with caplog.at_level(logging.WARNING, logger=CORE):
        found = discover_inputs([tmp_path])
    assert found == [good]
    named = warnings_naming(caplog, fifo)
    assert len(named) == 1 and "not a regular file: it is a FIFO" in named[0].getMessage()
    # Given to load_tile directly (the GUI's file list), it is refused without blocking.
    worker = threading.Thread(target=lambda: probe_input(fifo), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "probing a FIFO blocked"
    with pytest.raises(InputError, match="FIFO"):
        load_tile(fifo)


def test_symlink_to_a_device_is_not_called_broken(tmp_path, caplog):
    if not symlinks_supported(tmp_path) or not os.path.exists(os.devnull):
        pytest.skip("symbolic links or a null device not available here")
    link = tmp_path / "device.fits"
    link.symlink_to(os.devnull)
    with caplog.at_level(logging.WARNING, logger=CORE):
        assert discover_inputs([link]) == []
    named = warnings_naming(caplog, link)
    assert len(named) == 1
    assert "character device" in named[0].getMessage()
    assert "broken" not in named[0].getMessage()
    assert not os.path.islink(os.devnull) and not Path(os.devnull).is_file()


def test_newline_in_a_file_name_cannot_split_or_forge_a_warning(tmp_path, caplog):
    try:
        bad = tmp_path / "evil\nWARNING forged line.fits"
        bad.write_text("not a FITS file")
    except OSError:
        pytest.skip("file names cannot hold a newline here")
    good = write_good_rgb(tmp_path, "good.fits")
    with caplog.at_level(logging.WARNING, logger=CORE):
        result = load_tiles(discover_inputs([tmp_path]))
    assert [t.path for t in result.tiles] == [good]
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1
    assert "\n" not in messages[0] and "evil\\nWARNING forged line.fits" in messages[0]
    assert "\n" not in str(result.skipped[0])


def test_a_memory_bomb_is_refused_before_it_is_decompressed(tmp_path, caplog, file_hashes):
    """A tiny .fits.gz announcing 48 MB of pixels, read under a 16 MB budget."""
    import gzip

    from astropy.io import fits
    from badfits import tan_header

    header = fits.PrimaryHDU(np.zeros((1, 1, 1), np.float32), tan_header(size=2048)).header.copy()
    header["NAXIS1"] = header["NAXIS2"] = 2048
    header["NAXIS3"] = 3
    data_bytes = 3 * 2048 * 2048 * 4
    raw = header.tostring().encode("ascii") + b"\0" * (data_bytes + (-data_bytes % 2880))
    bomb = tmp_path / "bomb.fits.gz"
    bomb.write_bytes(gzip.compress(raw, compresslevel=1))
    assert bomb.stat().st_size < data_bytes // 100
    good = write_good_rgb(tmp_path, "good.fits")
    before = file_hashes([bomb, good])
    with caplog.at_level(logging.WARNING, logger=CORE):
        result = load_tiles([bomb, good], read_budget=16 * 2**20)
    assert [t.path for t in result.tiles] == [good]
    assert [e.path for e in result.skipped] == [bomb]
    assert "above the memory budget of 16 MB" in result.skipped[0].reason
    assert len(warnings_naming(caplog, bomb)) == 1
    assert file_hashes([bomb, good]) == before
