"""Finding astrometry.net index files, explaining how to get them, and fetching them.

astrometry.net matches quads of detected stars against pre-built index files. The app
looks for them in one folder: ``--index-dir`` / the setting when given, else
``$ZEMOSAIC_INDEX_DIR``, else a per-user folder (`default_index_dir`); the Debian/Ubuntu
install location (``/usr/share/astrometry``) is searched too, so a system package works
without any setting.

The Tycho-2 index files cover fields from about 0.5 deg to tens of degrees: scales 08
(quads of 30-42') to 19. Debian ships them as ``astrometry-data-tycho2-08-littleendian``,
``-09-`` and ``-10-19-`` (about 100 MB of packages, 152 MB unpacked). ``python -m
zemosaic_core.solving fetch DIR`` downloads those packages with
``apt-get download`` (no root needed) and unpacks their index files into DIR.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..config import setting_name

__all__ = [
    "INDEX_DIR_ENV",
    "INDEX_PACKAGES",
    "SYSTEM_INDEX_DIRS",
    "default_index_dir",
    "fetch_debian_index",
    "find_index_files",
    "missing_index_message",
    "resolve_index_dir",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the index folder (overrides the per-user default).
INDEX_DIR_ENV = "ZEMOSAIC_INDEX_DIR"

#: The Debian packages of Tycho-2 index files for fields of ~0.5-3 deg (2-11 "/px
#: frames of 1000-2000 px): scales 08 (quads of 30-42') to 19.
INDEX_PACKAGES: tuple[str, ...] = (
    "astrometry-data-tycho2-08-littleendian",
    "astrometry-data-tycho2-09-littleendian",
    "astrometry-data-tycho2-10-19-littleendian",
)

#: Where system packages put index files (searched after the configured folder).
SYSTEM_INDEX_DIRS: tuple[Path, ...] = (
    Path("/usr/share/astrometry"),
    Path("/usr/local/share/astrometry"),
    Path("/opt/homebrew/share/astrometry"),
    Path("/usr/local/astrometry/data"),
)

_STAMP = ".zemosaic-fetched"


def default_index_dir() -> Path:
    """The per-user folder for index files (``ZEMOSAIC_INDEX_DIR`` wins when set).

    Returns
    -------
    Path
        Windows ``%LOCALAPPDATA%\\zemosaic\\astrometry-index``; macOS
        ``~/Library/Application Support/zemosaic/astrometry-index``; elsewhere
        ``$XDG_DATA_HOME/zemosaic/astrometry-index`` (``~/.local/share`` by default).
    """
    override = os.environ.get(INDEX_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "zemosaic" / "astrometry-index"


def resolve_index_dir(index_dir: str | Path | None) -> Path:
    """The folder to search: ``index_dir`` when given, else `default_index_dir`."""
    return Path(index_dir).expanduser() if index_dir else default_index_dir()


def _is_index_name(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("index-") and lower.endswith((".fits", ".fit"))


def find_index_files(index_dir: str | Path | None = None, *, system: bool = True) -> list[Path]:
    """Index files (``index-*.fits``) in the configured folder, else in the system folders.

    Parameters
    ----------
    index_dir : path-like, optional
        The configured folder (see `resolve_index_dir`); searched recursively.
    system : bool
        Also search `SYSTEM_INDEX_DIRS` when the configured folder holds none.

    Returns
    -------
    list of Path
        Sorted by name; empty when none are found.
    """
    folders = [resolve_index_dir(index_dir)]
    if system:
        folders.extend(SYSTEM_INDEX_DIRS)
    for folder in folders:
        if not folder.is_dir():
            continue
        found = sorted(
            (p for p in folder.rglob("index-*") if p.is_file() and _is_index_name(p.name)),
            key=lambda p: p.name,
        )
        if found:
            return found
    return []


def missing_index_message(index_dir: str | Path | None = None) -> str:
    """What to install, and where, when no index file is found (one paragraph)."""
    folder = resolve_index_dir(index_dir)
    packages = " ".join(INDEX_PACKAGES)
    return (
        f"no astrometry.net index files in {folder}: plate solving needs the Tycho-2 "
        f"index files (scales 08 to 19, about 150 MB). On Debian/Ubuntu: "
        f"'sudo apt-get install {packages}', or without root "
        f"'python -m zemosaic_core.solving fetch {folder}'; elsewhere download "
        f"index-4108.fits to index-4119.fits from the astrometry.net data site into that "
        f"folder (or name another one in {setting_name('solve.index_dir')})"
    )


def _run(command: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    logger.info("running: %s", " ".join(command))
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, check=False, timeout=1800
    )


def _download(packages: Sequence[str], workdir: Path) -> None:
    """``apt-get download`` the packages into ``workdir``; refresh a private package
    list first when the system's lists are missing (a fresh machine, no root)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("apt-get and dpkg-deb are needed to fetch the Debian index packages")
    first = _run(["apt-get", "download", *packages], workdir)
    if first.returncode == 0:
        return
    logger.info("apt-get download failed (%s); refreshing a private package list",
                first.stderr.strip().splitlines()[-1:] or "?")  # fmt: skip
    state = workdir / "apt-state"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    options = [
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Debug::NoLocking=1",
    ]  # fmt: skip
    update = _run(["apt-get", *options, "update"], workdir)
    if update.returncode != 0:
        raise RuntimeError(f"apt-get update failed: {update.stderr.strip()[-500:]}")
    second = _run(["apt-get", *options, "download", *packages], workdir)
    if second.returncode != 0:
        raise RuntimeError(f"apt-get download failed: {second.stderr.strip()[-500:]}")


def fetch_debian_index(
    destination: str | Path, packages: Sequence[str] = INDEX_PACKAGES, *, force: bool = False
) -> list[Path]:
    """Download the Debian index packages and unpack their index files into a folder.

    Parameters
    ----------
    destination : path-like
        Created when missing. A stamp file records what was fetched, so a second call
        with the same packages does nothing.
    packages : sequence of str
        Debian package names (default `INDEX_PACKAGES`).
    force : bool
        Fetch again even when the stamp says it was done.

    Returns
    -------
    list of Path
        The index files now in ``destination``.

    Raises
    ------
    RuntimeError
        When apt-get or dpkg-deb is missing or fails (the message says why).
    """
    dest = Path(destination).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    stamp = dest / _STAMP
    wanted = "\n".join(sorted(packages)) + "\n"
    if not force and stamp.is_file() and stamp.read_text(encoding="utf-8") == wanted:
        files = find_index_files(dest, system=False)
        if files:
            logger.info("index files already fetched into %s (%d files)", dest, len(files))
            return files
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
        workdir = Path(tmp)
        _download(packages, workdir)
        debs = sorted(workdir.glob("*.deb"))
        if not debs:
            raise RuntimeError("apt-get download produced no package")
        unpacked = workdir / "unpacked"
        for deb in debs:
            result = _run(["dpkg-deb", "-x", str(deb), str(unpacked)], workdir)
            if result.returncode != 0:
                raise RuntimeError(f"dpkg-deb -x {deb.name} failed: {result.stderr.strip()}")
        moved = 0
        for source in unpacked.rglob("index-*"):
            if source.is_file() and _is_index_name(source.name):
                os.replace(source, dest / source.name)  # same file system: atomic
                moved += 1
        if moved == 0:
            raise RuntimeError("the downloaded packages hold no index file")
    stamp.write_text(wanted, encoding="utf-8")
    files = find_index_files(dest, system=False)
    logger.info("fetched %d index files into %s", len(files), dest)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zemosaic_core.solving fetch DIR`` / ``find [DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m zemosaic_core.solving")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the Debian Tycho-2 index files into DIR")
    fetch.add_argument("directory", type=Path, nargs="?", default=None)
    find = sub.add_parser("find", help="list the index files that would be used")
    find.add_argument("directory", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "fetch":
        try:
            files = fetch_debian_index(resolve_index_dir(args.directory))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"fetch failed: {exc}", file=sys.stderr)
            return 1
        print(f"{len(files)} index files in {resolve_index_dir(args.directory)}")
        return 0
    files = find_index_files(args.directory)
    if not files:
        print(missing_index_message(args.directory), file=sys.stderr)
        return 1
    for path in files:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
