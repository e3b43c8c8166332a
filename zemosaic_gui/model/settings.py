"""Build settings as the app edits and stores them, and their `BuildConfig`.

The GUI edits flat, typed values (one per widget) and stores them under ``build/`` in
``QSettings``; the core wants a `zemosaic_core.BuildConfig`. This module is the one
mapping between the two. Every default and every choice is read from the core's config
objects (`BuildConfig()`, ``BACKENDS``...): nothing is typed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from zemosaic_core.config import (
    BACKENDS,
    BAYER_PATTERNS,
    COMBINES,
    MATCH_MODES,
    BuildConfig,
    CombineSpec,
)

from .events import Event

__all__ = [
    "BUILD_SETTINGS",
    "CHOICE_LABELS",
    "NOT_IN_APP",
    "SETTINGS_GROUP",
    "MemoryStore",
    "Setting",
    "SettingsModel",
    "SettingsStore",
    "config_from_settings",
    "settings_from_config",
]

log = logging.getLogger(__name__)

#: ``QSettings`` group of the build settings.
SETTINGS_GROUP = "build"

#: How the app names each choice the core offers (missing ones show the core's name).
CHOICE_LABELS: dict[str, dict[str, str]] = {
    "backend": {"auto": "Auto", "cpu": "CPU", "gpu": "GPU"},
    "combine": {
        "mean": "Mean",
        "median": "Median",
        "kappa-sigma": "Kappa-sigma",
        "winsorized": "Winsorized",
    },
    "match": {"affine": "Affine (gain + offset)", "offset": "Offset only", "none": "None"},
    "bayer_pattern": {"": "None (read as mono)"},
}


@dataclass(frozen=True)
class Setting:
    """One flat build setting.

    Attributes
    ----------
    name : str
        Its name, also its key in the ``build/`` settings group.
    kind : type
        ``bool``, ``int``, ``float`` or ``str``.
    field : str
        The `BuildConfig` field it is part of.
    read : callable
        Its value in a `BuildConfig`.
    choices : tuple of str, optional
        The values allowed (the core's).
    """

    name: str
    kind: type
    field: str
    read: Callable[[BuildConfig], Any]
    choices: tuple[str, ...] | None = None


#: Every setting the app edits, in the order of the panel.
BUILD_SETTINGS: tuple[Setting, ...] = (
    Setting("backend", str, "backend", lambda c: c.backend, BACKENDS),
    Setting("combine", str, "combine", lambda c: c.combine.method, COMBINES),
    Setting("kappa", float, "combine", lambda c: c.combine.kappa),
    Setting("iterations", int, "combine", lambda c: c.combine.iterations),
    Setting("winsor_low", float, "combine", lambda c: c.combine.limits[0]),
    Setting("winsor_high", float, "combine", lambda c: c.combine.limits[1]),
    Setting("match", str, "match", lambda c: c.match, MATCH_MODES),
    Setting("batch_size", int, "batch_size", lambda c: c.batch_size),
    Setting("keep_isolated", bool, "keep_isolated", lambda c: c.keep_isolated),
    Setting("max_size", int, "max_size", lambda c: c.max_size),
    Setting("scratch", str, "scratch", lambda c: "" if c.scratch is None else str(c.scratch)),
    Setting("colour_calibration", bool, "colour_calibration", lambda c: c.colour_calibration),
    Setting("north_up", bool, "north_up", lambda c: c.north_up),
    Setting(
        "bayer_pattern",
        str,
        "bayer_pattern",
        lambda c: c.bayer_pattern or "",
        ("", *BAYER_PATTERNS),
    ),
    Setting("solve", bool, "solve", lambda c: c.solve.enabled),
    Setting(
        "index_dir",
        str,
        "solve",
        lambda c: "" if c.solve.index_dir is None else str(c.solve.index_dir),
    ),
    Setting("sub_weighting", bool, "quality", lambda c: c.quality.weight),
    Setting("reject_subs", float, "quality", lambda c: c.quality.reject_sigma),
    Setting("two_pass", bool, "two_pass", lambda c: c.two_pass.enabled),
    Setting("two_pass_sigma", float, "two_pass", lambda c: c.two_pass.sigma),
    Setting("gain_clip_low", float, "two_pass", lambda c: c.two_pass.gain_clip[0]),
    Setting("gain_clip_high", float, "two_pass", lambda c: c.two_pass.gain_clip[1]),
)

#: `BuildConfig` fields the app does not edit, and why. A new field goes into
#: `BUILD_SETTINGS` or here (``tests/test_app_model.py`` checks), so that a setting added
#: to the core is never silently dropped by the app.
NOT_IN_APP: dict[str, str] = {
    "output": "the app builds in memory and writes on Save as",
    "preview": "the app builds in memory and writes on Save as",
    "tiff": "the app builds in memory and writes on Save as",
    "max_memory": "the app uses the core's default budget",
    "crop": "the app always crops to the covered pixels",
    "preview_stretch": "the preview panel chooses the stretch; a saved PNG is the screen's image",
}

_BY_NAME: dict[str, Setting] = {s.name: s for s in BUILD_SETTINGS}


def settings_from_config(config: BuildConfig) -> dict[str, Any]:
    """The flat settings of ``config``.

    Parameters
    ----------
    config : BuildConfig

    Returns
    -------
    dict
        ``{name: value}`` for every `BUILD_SETTINGS` entry.
    """
    return {s.name: s.kind(s.read(config)) for s in BUILD_SETTINGS}


def config_from_settings(values: Mapping[str, Any], **overrides: Any) -> BuildConfig:
    """The `BuildConfig` of flat settings (the inverse of `settings_from_config`).

    Parameters
    ----------
    values : mapping
        Flat settings; missing ones take the config's defaults.
    **overrides
        `BuildConfig` fields to set besides (``output``, ``preview``...).

    Returns
    -------
    BuildConfig

    Raises
    ------
    ValueError
        When the core rejects a value or a combination of values.
    """
    defaults = BuildConfig()
    v = {**settings_from_config(defaults), **values}
    fields: dict[str, Any] = {
        "backend": v["backend"],
        "combine": CombineSpec(
            method=v["combine"],
            kappa=v["kappa"],
            iterations=v["iterations"],
            limits=(v["winsor_low"], v["winsor_high"]),
        ),
        "match": v["match"],
        "batch_size": v["batch_size"],
        "keep_isolated": v["keep_isolated"],
        "max_size": v["max_size"],
        "scratch": Path(v["scratch"]) if v["scratch"] else None,  # "" = the default
        "colour_calibration": v["colour_calibration"],
        "north_up": v["north_up"],
        "bayer_pattern": v["bayer_pattern"] or None,  # "" = frames without one are mono
        # Solver parameters the app does not show (cache, time limit, radius) keep theirs.
        "solve": replace(
            defaults.solve,
            enabled=v["solve"],
            index_dir=Path(v["index_dir"]) if v["index_dir"] else None,  # "" = the default
        ),
        "quality": replace(
            defaults.quality, weight=v["sub_weighting"], reject_sigma=v["reject_subs"]
        ),
        # Parameters the app does not show (tau, minimum valid pixels) keep their defaults.
        "two_pass": replace(
            defaults.two_pass,
            enabled=v["two_pass"],
            sigma=v["two_pass_sigma"],
            gain_clip=(v["gain_clip_low"], v["gain_clip_high"]),
        ),
    }
    fields.update(overrides)
    return BuildConfig(**fields)


def _coerce(setting: Setting, value: Any) -> Any:
    """``value`` (a widget's, or text from an INI file) as the setting's type.

    Raises
    ------
    ValueError
        When it cannot be read as one, or is not one of the choices.
    """
    if setting.kind is bool:
        if isinstance(value, str):
            text = value.strip().lower()
            if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(f"{setting.name}: not a yes/no value: {value!r}")
            return text in ("1", "true", "yes", "on")
        return bool(value)
    if setting.kind is int:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"{setting.name}: not a whole number: {value!r}")
        return int(number)
    if setting.kind is float:
        return float(value)
    text = str(value)
    if setting.choices is not None and text not in setting.choices:
        raise ValueError(f"{setting.name}: {text!r} is not one of {setting.choices}")
    return text


class SettingsStore(Protocol):
    """Where settings persist: ``QSettings`` fits, and so does `MemoryStore`."""

    def value(self, key: str, defaultValue: Any = None) -> Any:  # noqa: N803 - Qt's name
        """The stored value of ``key``, or ``defaultValue``."""

    def setValue(self, key: str, value: Any) -> None:  # noqa: N802 - Qt's name
        """Store ``value`` under ``key``."""


class MemoryStore:
    """A `SettingsStore` in a dict (tests, and runs that must not touch the user's)."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(values or {})

    def value(self, key: str, defaultValue: Any = None) -> Any:  # noqa: N803 - Qt's name
        """The stored value of ``key``, or ``defaultValue``."""
        return self.data.get(key, defaultValue)

    def setValue(self, key: str, value: Any) -> None:  # noqa: N802 - Qt's name
        """Store ``value`` under ``key``."""
        self.data[key] = value


class SettingsModel:
    """The build settings being edited, observable.

    Parameters
    ----------
    values : mapping, optional
        Initial flat values (default: `BuildConfig`'s defaults).

    Attributes
    ----------
    changed : Event
        ``changed(name, value)`` after a setting takes a new value.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = settings_from_config(BuildConfig())
        self.changed = Event()
        for name, value in (values or {}).items():
            self.set_value(name, value)

    @staticmethod
    def names() -> tuple[str, ...]:
        """Every setting's name, in panel order."""
        return tuple(_BY_NAME)

    @staticmethod
    def choices(name: str) -> tuple[tuple[str, str], ...]:
        """``(label, value)`` of each choice of ``name`` (the core's choices, in order)."""
        setting = _BY_NAME[name]
        labels = CHOICE_LABELS.get(name, {})
        return tuple((labels.get(c, c), c) for c in setting.choices or ())

    def value(self, name: str) -> Any:
        """The current value of ``name``."""
        return self._values[name]

    def values(self) -> dict[str, Any]:
        """A copy of every current value."""
        return dict(self._values)

    def set_value(self, name: str, value: Any) -> bool:
        """Set one setting; `changed` follows when its value changes.

        Parameters
        ----------
        name : str
        value : object
            Converted to the setting's type.

        Returns
        -------
        bool
            Whether the value changed.

        Raises
        ------
        KeyError
            Unknown setting.
        ValueError
            A value of the wrong type, or not one of the choices.
        """
        new = _coerce(_BY_NAME[name], value)
        if self._values[name] == new:
            return False
        self._values[name] = new
        self.changed.emit(name, new)
        return True

    def set_config(self, config: BuildConfig) -> None:
        """Take every setting from ``config``."""
        for name, value in settings_from_config(config).items():
            self.set_value(name, value)

    def reset(self) -> None:
        """Back to the defaults."""
        self.set_config(BuildConfig())

    def to_config(self, **overrides: Any) -> BuildConfig:
        """The `BuildConfig` these settings describe.

        Parameters
        ----------
        **overrides
            Fields to set besides (``output``, ``preview``...).

        Raises
        ------
        ValueError
            When the core rejects a combination of values.
        """
        return config_from_settings(self._values, **overrides)

    def load(self, store: SettingsStore) -> None:
        """Read every stored setting; missing or unreadable ones keep their value."""
        for name in self.names():
            stored = store.value(f"{SETTINGS_GROUP}/{name}")
            if stored is None:
                continue
            try:
                self.set_value(name, stored)
            except (TypeError, ValueError) as exc:
                log.debug("Ignoring the stored setting %s: %s", name, exc)

    def save(self, store: SettingsStore) -> None:
        """Write every setting under the ``build/`` group."""
        for name, value in self._values.items():
            store.setValue(f"{SETTINGS_GROUP}/{name}", value)
