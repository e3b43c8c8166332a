"""Plate solutions cached by file content, and ``.wcs`` sidecar files.

A solution belongs to the pixels, not to the file's name or place: the cache key is the
SHA-256 of the file's bytes, so a renamed or copied frame is not solved again, and a
changed one is. Entries are ``<sha256>.wcs`` FITS headers in a per-user cache folder,
written atomically; nothing is ever written next to or into an input.

A ``<stem>.wcs`` file next to a frame (astrometry.net's ``solve-field`` and ASTAP
write them) is read as that frame's solution.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from astropy.io import fits

__all__ = [
    "CACHE_DIR_ENV",
    "SolutionCache",
    "default_cache_dir",
    "file_digest",
    "find_sidecar",
    "wcs_stem",
    "read_wcs_header",
    "write_wcs_header",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the solution cache folder.
CACHE_DIR_ENV = "ZEMOSAIC_SOLVE_CACHE"

_CHUNK = 1 << 20
_FITS_SUFFIXES = (".fz", ".gz")


def default_cache_dir() -> Path:
    """The per-user cache folder of solutions (``ZEMOSAIC_SOLVE_CACHE`` wins when set).

    Returns
    -------
    Path
        Windows ``%LOCALAPPDATA%\\zemosaic\\cache\\solutions``; macOS
        ``~/Library/Caches/zemosaic/solutions``; elsewhere
        ``$XDG_CACHE_HOME/zemosaic/solutions`` (``~/.cache`` by default).
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "zemosaic" / "cache" / "solutions"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "zemosaic" / "solutions"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "zemosaic" / "solutions"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits (the file is only read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_wcs_header(path: str | Path) -> fits.Header:
    """The header of a ``.wcs`` file: a FITS file holding one header (astrometry.net,
    ASTAP), or the same 80-character cards as plain text with line breaks."""
    try:
        return fits.getheader(path, 0)
    except Exception:
        text = Path(path).read_text(encoding="ascii", errors="replace")
        return fits.Header.fromstring(text, sep="\n")


def write_wcs_header(path: str | Path, header: fits.Header) -> Path:
    """Write ``header`` as a header-only FITS file, atomically (temporary file, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".wcs", dir=target.parent)
    os.close(handle)
    try:
        fits.PrimaryHDU(header=_primary_header(header)).writeto(temporary, overwrite=True)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _primary_header(header: fits.Header) -> fits.Header:
    """WCS cards under a data-less primary header (NAXIS = 0)."""
    out = fits.Header()
    for card in header.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "END"):
            continue
        out.append(card.copy() if hasattr(card, "copy") else card)
    return out


def wcs_stem(path: str | Path) -> str:
    """A frame's name without its FITS and compression suffixes (``a.fits.fz`` -> ``a``):
    its solution is ``<stem>.wcs``."""
    base = Path(path).name
    for suffix in _FITS_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return Path(base).stem


def find_sidecar(path: str | Path) -> Path | None:
    """The ``.wcs`` file next to a frame, if any: ``<stem>.wcs`` (see `wcs_stem`), or the
    whole name with ``.wcs`` appended."""
    frame = Path(path)
    base = frame.name
    for suffix in _FITS_SUFFIXES:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    candidates = [frame.with_name(wcs_stem(frame) + ".wcs")]
    candidates.append(frame.with_name(base + ".wcs"))
    candidates.append(frame.with_name(frame.stem + ".wcs"))
    for candidate in dict.fromkeys(candidates):
        if candidate.is_file():
            return candidate
    return None


class SolutionCache:
    """Solutions by file content hash, in a folder (created on first write).

    Parameters
    ----------
    folder : path-like, optional
        Default `default_cache_dir`.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()

    def _entry(self, digest: str) -> Path:
        return self.folder / f"{digest}.wcs"

    def get(self, digest: str) -> fits.Header | None:
        """The cached header for a content hash, or None (a damaged entry counts as none)."""
        entry = self._entry(digest)
        if not entry.is_file():
            return None
        try:
            return read_wcs_header(entry)
        except Exception as exc:
            logger.debug("cache entry %s unreadable: %s", entry, exc)
            return None

    def put(self, digest: str, header: fits.Header) -> None:
        """Store a header; a cache that cannot be written is logged, never fatal."""
        try:
            write_wcs_header(self._entry(digest), header)
        except OSError as exc:
            logger.warning("cannot write the plate-solution cache in %s: %s", self.folder, exc)
