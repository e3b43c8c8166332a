"""The GUI's application model without Qt: settings <-> config, the input list with real
header checks of real FITS files, and the build state machine."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from badfits import not_fits, write_good_mono, write_good_rgb

from zemosaic_core.config import BACKENDS, COMBINES, MATCH_MODES, BuildConfig
from zemosaic_core.io.loading import probe_input
from zemosaic_gui.model import (
    BuildModel,
    InputListModel,
    MemoryStore,
    SettingsModel,
    config_from_settings,
    settings_from_config,
)
from zemosaic_gui.model.settings import BUILD_SETTINGS, CHOICE_LABELS, NOT_IN_APP

# ---- no Qt --------------------------------------------------------------------------


def test_the_model_imports_and_runs_with_qt_unavailable(tmp_path):
    """Import the model with every Qt binding made unimportable, and use it."""
    good = write_good_rgb(tmp_path)
    code = textwrap.dedent(
        f"""
        import sys

        class NoQt:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6"):
                    raise ImportError(f"Qt is blocked in this test: {{name}}")
                return None

        sys.meta_path.insert(0, NoQt())
        import zemosaic_gui
        from zemosaic_gui.model import BuildModel, InputListModel, SettingsModel
        from zemosaic_core.io.loading import probe_input

        inputs = InputListModel()
        inputs.probe_requested.connect(
            lambda gen, paths: [inputs.apply_probe(gen, p, probe_input(p)) for p in paths]
        )
        inputs.add([{str(good)!r}])
        build = BuildModel()
        build.start()
        build.succeed("result")
        build.finish()
        config = SettingsModel().to_config()
        print("STATUS", inputs.entries()[0].status, build.outcome, config.backend)
        print("QT", sorted(m for m in sys.modules if m.startswith(("PySide6", "shiboken6"))))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "STATUS ok ok auto" in proc.stdout
    assert "QT []" in proc.stdout


# ---- settings <-> config --------------------------------------------------------------


def test_every_config_field_is_an_app_setting_or_left_out_on_purpose():
    """A field added to BuildConfig must be added to the app's settings or to NOT_IN_APP:
    otherwise the app would silently build with its default."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(BuildConfig)}
    shown = {s.field for s in BUILD_SETTINGS}
    assert shown | set(NOT_IN_APP) == fields
    assert not shown & set(NOT_IN_APP)


def test_default_settings_are_the_core_defaults():
    assert SettingsModel().to_config() == BuildConfig()
    assert config_from_settings({}) == BuildConfig()


def test_choices_are_the_cores_and_each_has_a_label():
    assert [v for _, v in SettingsModel.choices("backend")] == list(BACKENDS)
    assert [v for _, v in SettingsModel.choices("combine")] == list(COMBINES)
    assert [v for _, v in SettingsModel.choices("match")] == list(MATCH_MODES)
    for name, values in (("backend", BACKENDS), ("combine", COMBINES), ("match", MATCH_MODES)):
        assert set(CHOICE_LABELS[name]) == set(values)


def test_settings_round_trip_through_a_config():
    config = BuildConfig(
        backend="cpu",
        match="offset",
        batch_size=4,
        keep_isolated=True,
    )
    config = config_from_settings(
        {
            **settings_from_config(config),
            "combine": "winsorized",
            "winsor_low": 0.2,
            "two_pass": False,
            "two_pass_sigma": 30.0,
            "gain_clip_low": 0.9,
        }
    )
    assert config.combine.method == "winsorized" and config.combine.limits == (0.2, 0.1)
    assert not config.two_pass.enabled and config.two_pass.gain_clip == (0.9, 1.18)
    assert config.two_pass.tau == BuildConfig().two_pass.tau  # not shown, kept
    assert config_from_settings(settings_from_config(config)) == config


def test_stored_text_is_read_back_with_its_type_and_junk_is_ignored():
    store = MemoryStore(
        {
            "build/backend": "cpu",
            "build/batch_size": "4",
            "build/kappa": "2.5",
            "build/two_pass": "false",
            "build/keep_isolated": "true",
            "build/match": "no-such-mode",  # from another version: keeps the default
            "build/iterations": "three",
        }
    )
    model = SettingsModel()
    model.load(store)
    config = model.to_config()
    assert config.backend == "cpu" and config.batch_size == 4 and config.combine.kappa == 2.5
    assert not config.two_pass.enabled and config.keep_isolated
    assert config.match == BuildConfig().match and config.combine.iterations == 3

    saved = MemoryStore()
    model.save(saved)
    again = SettingsModel()
    again.load(saved)
    assert again.to_config() == config


def test_changed_fires_once_per_real_change():
    model = SettingsModel()
    seen = []
    model.changed.connect(lambda name, value: seen.append((name, value)))
    assert model.set_value("batch_size", 8.0)
    assert not model.set_value("batch_size", "8")
    model.set_value("two_pass", "off")
    assert seen == [("batch_size", 8), ("two_pass", False)]
    with pytest.raises(ValueError):
        model.set_value("backend", "tpu")
    with pytest.raises(KeyError):
        model.set_value("no_such_setting", 1)


def test_the_limits_core_messages_name_are_app_settings(tmp_path):
    """'Maximum canvas size' and 'Scratch folder' are named by core messages: the app
    must offer them; an empty scratch folder means the core's default."""
    model = SettingsModel()
    assert model.to_config().scratch is None
    model.set_value("scratch", str(tmp_path))
    model.set_value("max_size", "20000")
    config = model.to_config()
    assert config.scratch == tmp_path and config.max_size == 20000
    assert settings_from_config(config)["scratch"] == str(tmp_path)
    model.set_value("scratch", "")
    assert model.to_config().scratch is None


def test_a_combination_the_core_refuses_is_a_value_error():
    model = SettingsModel({"gain_clip_low": 1.2})
    with pytest.raises(ValueError, match="gain clip"):
        model.to_config()


# ---- the input list ------------------------------------------------------------------


@pytest.fixture
def checked_list():
    """An InputListModel whose header checks run at once, with the core's real probe."""
    model = InputListModel()
    requests = []

    def probe_now(generation, paths):
        requests.append(list(paths))
        for path in paths:
            model.apply_probe(generation, path, probe_input(path))

    model.probe_requested.connect(probe_now)
    model.requests = requests
    return model


def test_a_folder_lists_its_fits_with_real_header_checks(tmp_path, checked_list):
    rgb = write_good_rgb(tmp_path)
    mono = write_good_mono(tmp_path)
    junk = not_fits(tmp_path)
    folders = []
    checked_list.folder_added.connect(folders.append)
    added = checked_list.add([tmp_path])
    assert sorted(p.name for p in added) == sorted(p.name for p in (rgb, mono, junk))
    assert folders == [str(tmp_path)] and checked_list.last_folder == str(tmp_path)
    assert checked_list.entry(rgb).status == "ok" and checked_list.entry(rgb).channels == 3
    assert checked_list.entry(rgb).details.startswith("ok — RGB")
    assert checked_list.entry(mono).channels == 1
    skipped = checked_list.entry(junk)
    assert skipped.status == "skipped" and skipped.reason
    assert skipped.status_text == f"skipped: {skipped.reason}"
    assert set(checked_list.usable_paths()) == {rgb, mono}
    summary = checked_list.summary()
    assert summary.startswith("3 files · 2 ok · 1 skipped · ")
    assert checked_list.skip_detail().startswith(f"⚠ {junk.name} skipped: ")
    assert not checked_list.is_checking()


def test_a_file_is_listed_once(tmp_path, checked_list):
    rgb = write_good_rgb(tmp_path)
    assert checked_list.add([rgb]) == [rgb]
    assert checked_list.add([rgb, tmp_path]) == []
    assert checked_list.paths() == [rgb] and len(checked_list.requests) == 1


def test_checks_of_a_cleared_list_are_ignored(tmp_path):
    model = InputListModel()
    pending = []
    model.probe_requested.connect(lambda generation, paths: pending.append((generation, paths)))
    removed = []
    model.removed.connect(removed.append)
    rgb = write_good_rgb(tmp_path)
    model.add([rgb])
    assert model.is_checking() and model.entry(rgb).status == "pending"
    model.clear()
    assert removed and not model.is_checking()
    model.add([rgb])  # listed again: a new check
    (old_generation, _), (new_generation, _) = pending
    model.apply_probe(old_generation, rgb, probe_input(not_fits(tmp_path)))
    assert model.entry(rgb).status == "pending"  # the stale verdict is dropped
    model.apply_probe(new_generation, rgb, probe_input(rgb))
    assert model.entry(rgb).status == "ok"


def test_a_probe_that_raises_skips_the_file_with_the_reason(tmp_path, checked_list):
    model = InputListModel()
    model.probe_requested.connect(
        lambda generation, paths: [
            model.apply_probe(generation, p, PermissionError("permission denied")) for p in paths
        ]
    )
    rgb = write_good_rgb(tmp_path)
    model.add([rgb])
    assert model.entry(rgb).status_text == "skipped: permission denied"


def test_build_skips_and_removal(tmp_path, checked_list):
    a = write_good_rgb(tmp_path, "a.fits")
    b = write_good_rgb(tmp_path, "b.fits", seed=1)
    checked_list.add([a, b])
    updated = []
    checked_list.updated.connect(updated.append)
    checked_list.mark_skipped(b, "isolated: overlaps no other tile")
    assert updated[-1].path == b and checked_list.usable_paths() == [a]
    assert checked_list.skip_detail(b).endswith("isolated: overlaps no other tile")
    checked_list.remove([a])
    assert checked_list.paths() == [b]
    assert checked_list.counts()["skipped"] == 1


# ---- the build state machine --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_build_runs_then_succeeds():
    clock = FakeClock()
    model = BuildModel(clock=clock)
    states, outcomes, progress = [], [], []
    model.state_changed.connect(states.append)
    model.finished.connect(outcomes.append)
    model.progressed.connect(progress.append)
    assert model.can_start(True) and not model.can_start(False) and not model.can_save
    model.start()
    assert model.is_building and model.can_cancel and not model.can_start(True)
    with pytest.raises(RuntimeError):
        model.start()
    clock.now += 2
    model.report_progress("coadd pass 1", 250, 1000)  # one bar for the whole build
    assert progress[-1].label == "Coadd pass 1" and progress[-1].percent == 25
    assert model.current_progress() is not None
    clock.now += 3
    model.succeed("the mosaic")
    clock.now += 1  # the thread takes a moment to end: not part of the build time
    assert model.finish() == "ok"
    assert states == ["running", "idle"] and outcomes == ["ok"]
    assert model.result == "the mosaic" and model.can_save
    assert model.current_progress() is None  # nothing counts down once it is over
    assert model.final_texts() == ("Done", "Done in 0:05", 100)
    assert model.report_progress("late", 1, 1) is None


def test_cancel_is_requested_once_and_ends_cancelled():
    model = BuildModel()
    assert not model.request_cancel()  # nothing runs
    model.start()
    assert model.request_cancel() and model.cancel_requested and not model.can_cancel
    assert not model.request_cancel()
    assert model.finish() == "cancelled"  # ended without a word: Cancel was pressed
    assert model.final_texts()[1] == "Cancelled" and model.result is None


def test_a_failure_keeps_the_previous_result():
    model = BuildModel()
    model.start()
    model.succeed("first")
    model.finish()
    model.start()
    model.fail("Out of memory", "Traceback ...")
    assert model.finish() == "failed"
    assert model.error == ("Out of memory", "Traceback ...")
    assert model.result == "first" and model.can_save
    assert model.final_texts() == ("Failed", "Failed — see the log", 0)
    model.start()
    assert model.finish() == "failed"  # a thread that ended without an outcome


def test_a_step_can_give_a_file_its_own_status(tmp_path, checked_list):
    rgb = write_good_rgb(tmp_path)
    checked_list.add([rgb])
    checked_list.set_status(rgb, "pending", "solving…", "Plate solving…")
    entry = checked_list.entry(rgb)
    assert (entry.status_text, entry.details) == ("solving…", "Plate solving…")
    assert checked_list.usable_paths() == [rgb]
    checked_list.set_status(rgb, "skipped", "failed: no stars", "Plate solving failed")
    assert checked_list.usable_paths() == [] and checked_list.counts()["skipped"] == 1
    assert checked_list.skip_detail().endswith("skipped: failed: no stars")
    checked_list.mark_skipped(rgb, "isolated")
    assert checked_list.entry(rgb).status_text == "skipped: isolated"
    with pytest.raises(ValueError):
        checked_list.set_status(rgb, "solved")


def test_solving_settings_reach_the_build_config(tmp_path):
    """The app's solve switch and index folder become the core's SolveSpec (and back)."""
    from zemosaic_gui.model.settings import config_from_settings, settings_from_config

    config = config_from_settings({"solve": False, "index_dir": str(tmp_path)})
    assert config.solve.enabled is False
    assert config.solve.index_dir == tmp_path
    assert settings_from_config(config)["index_dir"] == str(tmp_path)
    assert config_from_settings({"index_dir": ""}).solve.index_dir is None
    assert config_from_settings({}).solve.enabled is BuildConfig().solve.enabled


def test_sub_quality_settings_reach_the_build_config():
    from zemosaic_gui.model.settings import config_from_settings, settings_from_config

    config = config_from_settings({"sub_weighting": True, "reject_subs": 3.0})
    assert config.quality.weight is True and config.quality.reject_sigma == 3.0
    assert settings_from_config(config)["reject_subs"] == 3.0
    assert config_from_settings({}).quality == BuildConfig().quality


def test_recheck_asks_for_every_listed_file_again_and_ignores_stale_checks(tmp_path):
    from zemosaic_gui.model.inputs import InputListModel

    files = [tmp_path / f"t{k}.fits" for k in range(3)]
    for f in files:
        f.write_bytes(b"x")
    model = InputListModel(discover=lambda paths: list(paths))
    asked = []
    model.probe_requested.connect(lambda generation, paths: asked.append((generation, paths)))
    model.add(files)
    first = asked[-1][0]
    model.recheck()
    generation, paths = asked[-1]
    assert generation != first and sorted(paths) == sorted(files)
    assert model.is_checking()
    model.apply_probe(first, files[0], ValueError("stale"))  # from before the recheck
    assert model.entry(files[0]).status != "skipped"
