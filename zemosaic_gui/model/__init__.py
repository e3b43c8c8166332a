"""The application model: what the window shows, in plain Python (no Qt import).

- `InputListModel`: the input files and what their header checks found;
- `BuildModel`: the build's state machine (idle, running, cancelling), its progress and
  its outcome;
- `SettingsModel`: the build settings being edited, their ``BuildConfig`` and how they
  persist (defaults and choices read from ``zemosaic_core.config``).

The widgets observe these objects through `Event` and call their methods; the models
run on the GUI thread and are tested without Qt (``tests/test_app_model.py``). They
live in the GUI package, not in the core, because only an interactive front end has
such state: the CLI goes straight from its arguments to a ``BuildConfig``.
"""

from .build import BuildModel
from .events import Event
from .inputs import InputEntry, InputListModel
from .settings import MemoryStore, SettingsModel, config_from_settings, settings_from_config

__all__ = [
    "BuildModel",
    "Event",
    "InputEntry",
    "InputListModel",
    "MemoryStore",
    "SettingsModel",
    "config_from_settings",
    "settings_from_config",
]
