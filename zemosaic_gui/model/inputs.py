"""The input list: files to build from, each with what its header check found.

Adding a folder expands it at once (the core's ``discover_inputs``); each new file is
then *pending* until its header check (the core's ``probe_input``, run off the GUI
thread by whoever listens to `InputListModel.probe_requested`) says ``ok`` or
``skipped`` and why. A build may also skip a file (`mark_skipped`). Checks of a list
that was cleared meanwhile are ignored (generations).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import Event

__all__ = [
    "OK",
    "PENDING",
    "SKIPPED",
    "InputEntry",
    "InputListModel",
    "format_details",
    "format_size",
]

log = logging.getLogger(__name__)

#: Entry states.
PENDING, OK, SKIPPED = "pending", "ok", "skipped"


def format_size(size: float) -> str:
    """Human-readable size with binary prefixes (``"12.3 MB"``).

    Parameters
    ----------
    size : float
        Bytes.

    Returns
    -------
    str
    """
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - unreachable


#: Start of the core's reason for a frame without a celestial WCS (the build solves it).
NO_WCS_PREFIX = "no celestial WCS"
NO_WCS_TIP = "No WCS: plate-solved when the build starts (or read from a <name>.wcs sidecar)"


def format_details(details: Mapping[str, str]) -> str:
    """A probe's header details on one line.

    ``"10 s · IRCUT · Bayer GRBG · 2024-07-30T22:44:36 · Seestar S50"``.
    """
    order = ("exposure", "filter", "bayer", "date", "camera")
    return " · ".join(
        f"Bayer {details[key]}" if key == "bayer" else details[key]
        for key in order
        if key in details
    )


def path_key(path: str | os.PathLike[str]) -> str:
    """The identity of a file in the list (absolute, case-folded where the OS does)."""
    return os.path.normcase(os.path.abspath(os.fspath(path)))


@dataclass
class InputEntry:
    """One listed file.

    Attributes
    ----------
    path : Path
    status : {"pending", "ok", "skipped"}
    reason : str
        Why it is skipped ("" otherwise).
    channels : int or None
        1 or 3 once checked ``ok``.
    shape : tuple of int or None
        ``(C, H, W)`` once checked ``ok``.
    size_bytes : int
        Size on disk.
    header : str
        Exposure, filter, Bayer pattern, date and camera from the header, once checked.
    """

    path: Path
    status: str = PENDING
    reason: str = ""
    channels: int | None = None
    shape: tuple[int, ...] | None = None
    size_bytes: int = 0
    header: str = ""
    #: Status text and details set by `InputListModel.set_status` (override the defaults).
    note: str = ""
    note_details: str = ""

    @property
    def key(self) -> str:
        """`path_key` of the file."""
        return path_key(self.path)

    @property
    def status_text(self) -> str:
        """``"checking…"``, ``"ok"`` or ``"skipped: <reason>"`` (or the note set)."""
        if self.note:
            return self.note
        if self.status == SKIPPED:
            return f"skipped: {self.reason}"
        return "ok" if self.status == OK else "checking…"

    @property
    def details(self) -> str:
        """The longer status (a tooltip): ``"ok — RGB 640 × 480 px"``, ``"Skipped: ..."``."""
        if self.note:
            return self.note_details or self.note
        if self.status == SKIPPED:
            return f"Skipped: {self.reason}"
        if self.status == PENDING:
            return self.status_text
        kind = {1: "mono", 3: "RGB"}.get(self.channels or 0, "")
        shape = " × ".join(str(s) for s in self.shape[-2:][::-1]) if self.shape else ""
        text = f"ok — {kind} {shape} px".replace("  ", " ").strip()
        return f"{text}\n{self.header}" if self.header else text


def _default_discover(paths: Sequence[Path]) -> list[Path]:
    from zemosaic_core.io.loading import discover_inputs

    return list(discover_inputs(paths))


class InputListModel:
    """The files of the next build, observable.

    Parameters
    ----------
    discover : callable, optional
        ``paths -> list of Path`` (default ``zemosaic_core.io.loading.discover_inputs``).

    Attributes
    ----------
    added : Event
        ``added(entries)``: new rows, in list order.
    updated : Event
        ``updated(entry)``: a row's status changed.
    removed : Event
        ``removed(keys)``: rows left the list (`path_key` of each).
    probe_requested : Event
        ``probe_requested(generation, paths)``: check these files' headers, then call
        `apply_probe` with each outcome and that generation.
    folder_added : Event
        ``folder_added(folder)``: a folder was added (to remember it).
    last_folder : str
        The folder of the last file or folder added.
    """

    def __init__(self, discover: Callable[[Sequence[Path]], list[Path]] | None = None) -> None:
        self._discover = discover or _default_discover
        self._entries: dict[str, InputEntry] = {}
        self._generation = 0
        self._pending = 0
        self.last_folder = ""
        self.added = Event()
        self.updated = Event()
        self.removed = Event()
        self.probe_requested = Event()
        self.folder_added = Event()

    # ---- changes --------------------------------------------------------------------

    def add(self, paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Add files and folders (folders are searched recursively for FITS files).

        Parameters
        ----------
        paths : iterable of path-like

        Returns
        -------
        list of Path
            The files newly added (a file already listed is not added twice).
        """
        new: list[InputEntry] = []
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                self.last_folder = str(path)
                self.folder_added.emit(str(path))
            elif path.parent.is_dir():
                self.last_folder = str(path.parent)
            try:
                files = self._discover([path])
            except Exception as exc:
                log.warning("Cannot add %s: %s", path, exc)
                if path.is_dir():
                    continue
                files = [path]  # listed, so that its check can say what is wrong
            if path.is_dir() and not files:
                log.warning("No FITS files (*.fit, *.fits, *.fts, .fz, .gz) found in %s", path)
            for file in files:
                key = path_key(file)
                if key in self._entries:
                    continue
                entry = InputEntry(Path(file), size_bytes=_size_on_disk(Path(file)))
                self._entries[key] = entry
                new.append(entry)
        if new:
            log.info("Added %d file(s); checking their headers", len(new))
            self._pending += len(new)
            self.added.emit(list(new))
            self.probe_requested.emit(self._generation, [e.path for e in new])
        return [e.path for e in new]

    def apply_probe(self, generation: int, path: str | os.PathLike[str], outcome: Any) -> None:
        """Record a header check (``InputProbe``, or the exception the check raised).

        Parameters
        ----------
        generation : int
            The one `probe_requested` gave; a check of a cleared list is ignored.
        path : path-like
        outcome : InputProbe or BaseException
        """
        if generation != self._generation:
            return
        self._pending = max(0, self._pending - 1)
        entry = self._entries.get(path_key(path))
        if entry is None:
            return
        entry.note = entry.note_details = ""
        if isinstance(outcome, BaseException):
            entry.status = SKIPPED
            entry.reason = (
                getattr(outcome, "reason", None) or str(outcome) or type(outcome).__name__
            )
        elif getattr(outcome, "ok", False):
            entry.status, entry.reason = OK, ""
            entry.channels = getattr(outcome, "n_channels", None)
            shape = getattr(outcome, "shape", None)
            entry.shape = tuple(shape) if shape else None
            entry.size_bytes = int(getattr(outcome, "size_bytes", 0) or entry.size_bytes)
            entry.header = format_details(getattr(outcome, "details", None) or {})
        elif str(getattr(outcome, "reason", "")).startswith(NO_WCS_PREFIX):
            # Not skipped: the build plate-solves it (or reads its .wcs sidecar).
            entry.status, entry.reason = PENDING, ""
            entry.note, entry.note_details = "no WCS", NO_WCS_TIP
        else:
            entry.status = SKIPPED
            entry.reason = getattr(outcome, "reason", "") or "unusable"
        self.updated.emit(entry)

    def mark_skipped(self, path: str | os.PathLike[str], reason: str) -> None:
        """Show a file as skipped with ``reason`` (the core left it out of a build)."""
        entry = self._entries.get(path_key(path))
        if entry is None:
            return
        entry.status, entry.reason = SKIPPED, reason
        entry.note = entry.note_details = ""
        self.updated.emit(entry)

    def set_status(
        self, path: str | os.PathLike[str], status: str, text: str = "", details: str = ""
    ) -> None:
        """Give a file a status and, optionally, its own words (a step such as plate
        solving reporting on it).

        Parameters
        ----------
        path : path-like
        status : {"pending", "ok", "skipped"}
            Decides whether the file is built (`usable_paths`) and how it is counted.
        text, details : str, optional
            Status text and tooltip ("" = the status's own).
        """
        if status not in (PENDING, OK, SKIPPED):
            raise ValueError(f"unknown input status {status!r}")
        entry = self._entries.get(path_key(path))
        if entry is None:
            return
        entry.status = status
        entry.reason = text if status == SKIPPED else ""
        entry.note, entry.note_details = text, details
        self.updated.emit(entry)

    def recheck(self) -> None:
        """Check every listed file's header again (a setting that changes how files read
        changed, e.g. the Bayer pattern of frames that declare none); checks still
        running are ignored."""
        if not self._entries:
            return
        self._generation += 1
        self._pending = len(self._entries)
        for entry in self._entries.values():
            entry.status, entry.reason = PENDING, ""
            entry.note = entry.note_details = ""
            self.updated.emit(entry)
        self.probe_requested.emit(self._generation, [e.path for e in self._entries.values()])

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Remove files from the list (unlisted ones are ignored)."""
        keys = [key for key in map(path_key, paths) if self._entries.pop(key, None) is not None]
        if keys:
            self.removed.emit(keys)

    def clear(self) -> None:
        """Remove every file; header checks still running are ignored."""
        self._generation += 1
        self._pending = 0
        keys = list(self._entries)
        self._entries.clear()
        self.removed.emit(keys)

    # ---- queries --------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Bumped by `clear`: checks requested before are stale."""
        return self._generation

    def entries(self) -> list[InputEntry]:
        """Every row, in list order."""
        return list(self._entries.values())

    def entry(self, path: str | os.PathLike[str]) -> InputEntry:
        """The row of ``path``.

        Raises
        ------
        KeyError
            When the file is not listed.
        """
        return self._entries[path_key(path)]

    def paths(self) -> list[Path]:
        """Every listed file, in list order."""
        return [e.path for e in self._entries.values()]

    def usable_paths(self) -> list[Path]:
        """Files not skipped (ok, or still being checked: the core checks them again)."""
        return [e.path for e in self._entries.values() if e.status != SKIPPED]

    def is_checking(self) -> bool:
        """Whether header checks are still running."""
        return self._pending > 0

    def counts(self) -> dict[str, int]:
        """Number of rows per status, and their total size in bytes (``"bytes"``)."""
        counts = {OK: 0, SKIPPED: 0, PENDING: 0, "bytes": 0}
        for entry in self._entries.values():
            counts[entry.status] += 1
            counts["bytes"] += entry.size_bytes
        return counts

    def summary(self) -> str:
        """``"6 files · 5 ok · 1 skipped · 12.3 MB"`` (``"No input yet"`` when empty)."""
        counts = self.counts()
        total = counts[OK] + counts[SKIPPED] + counts[PENDING]
        if not total:
            return "No input yet"
        parts = [f"{total} file{'s' if total != 1 else ''}", f"{counts[OK]} ok"]
        if counts[SKIPPED]:
            parts.append(f"{counts[SKIPPED]} skipped")
        if counts[PENDING]:
            parts.append(f"{counts[PENDING]} checking")
        parts.append(format_size(counts["bytes"]))
        return " · ".join(parts)

    def skip_detail(self, current: str | os.PathLike[str] | None = None) -> str:
        """Why the ``current`` file (or else the first skipped one) is skipped; without a
        skipped file, the ``current`` file's header details; "" if none."""
        skipped = [e for e in self._entries.values() if e.status == SKIPPED]
        if not skipped:
            chosen_entry = self._entries.get(path_key(current)) if current is not None else None
            if chosen_entry is not None and chosen_entry.header:
                return f"ⓘ {chosen_entry.path.name}: {chosen_entry.header}"
            return ""
        chosen = next(
            (e for e in skipped if current is not None and e.key == path_key(current)),
            skipped[0],
        )
        text = f"⚠ {chosen.path.name} skipped: {chosen.reason}"
        if len(skipped) > 1:
            text += f"  (+{len(skipped) - 1} more skipped: select a row to see why)"
        return text


def _size_on_disk(path: Path) -> int:
    try:
        return int(path.stat().st_size)
    except OSError:
        return 0
