"""Finding and reading the input FITS files (pipeline step 1, "load").

Everything a user can throw at the program ends up here: folders, duplicate paths,
symbolic links, compressed files, mono images, colour cubes in either axis order, raw
Bayer frames, unsolved frames and plain garbage. The rule is simple: a file that can be
used becomes a `Tile`; a file that cannot is skipped with one WARNING saying why, in
words, and the build goes on with the others. Tracebacks go to DEBUG only.

Inputs are opened read-only (``memmap=False``: the pixel data are copied into memory,
never mapped) and are never modified.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import stat
import threading
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, NoConvergence

from ..config import setting_name
from ..errors import InputError, MissingWCSError, NoUsableInputError, printable_path
from ..runtime.cancel import CancelToken, check_cancel
from ..runtime.cpus import available_cpus
from ..runtime.progress import ProgressCallback, report
from ..tile import LazyTile, Tile, TileLike
from .debayer import BAYER_PATTERNS, array_pattern, debayer_bilinear

logger = logging.getLogger(__name__)

#: File name suffixes taken from folders (case-insensitive): ``.fit``, ``.fits``,
#: ``.fts``, each optionally followed by ``.fz`` or ``.gz``.
FITS_PATTERNS: tuple[str, ...] = tuple(
    base + comp for base in (".fit", ".fits", ".fts") for comp in ("", ".fz", ".gz")
)

#: Largest pixel->sky->pixel round-trip error accepted for a WCS, in pixels.
ROUND_TRIP_TOLERANCE_PX = 0.5

#: A tile must hold data (finite and non-zero) in at least this fraction of its pixel
#: values; below it the file is "nearly empty" (0 and NaN are the two usual "no data"
#: fills of stacking programs) and would only add edges and noise to the mosaic.
MIN_DATA_FRACTION = 0.01

_FITS_BLOCK = 2880
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_REASON = 300
_VALID_BITPIX = (8, 16, 32, 64, -32, -64)

#: ``provider(path) -> WCS header`` for a frame without a celestial WCS (a sidecar, a
#: cached or a new plate solution); raises InputError with the reason when it has none.
WcsProvider = Callable[[Path], fits.Header]

# Header keywords that define the celestial WCS: an unparsable one is fatal (astropy
# would otherwise replace the value by a default such as 0 and solve the wrong sky).
_WCS_KEY = re.compile(
    r"^(WCSAXES|CRVAL|CRPIX|CDELT|CROTA|CTYPE|CUNIT|CD\d|PC\d|PV\d|PS\d|LONPOLE|LATPOLE|"
    r"RADESYS|RADECSYS|EQUINOX|EPOCH|A_|B_|AP_|BP_)"
)
# Of those, the ones whose value must be a number (astropy silently takes a default
# such as 0 for a string there). EQUINOX/EPOCH are left out: some writers use 'J2000'.
_WCS_NUMBER_KEY = re.compile(
    r"^(CRVAL|CRPIX|CDELT|CROTA|CD\d|PC\d|PV\d|LONPOLE|LATPOLE|A_|B_|AP_|BP_)"
)
# wcslib's messages start with where in its C code they were raised: not for users.
_WCSLIB_WHERE = re.compile(r"ERROR \d+ in \w+\(\) at line \d+ of file [^:]*:\s*")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class InputProbe:
    """Header-level verdict on one input file (for the GUI's file list).

    Attributes
    ----------
    path : Path
        The file.
    ok : bool
        True when the headers describe a usable image (pixel values are not read, so a
        file found ``ok`` can still turn out to hold no finite pixel).
    reason : str or None
        Why it cannot be used, when ``ok`` is False.
    n_channels : int or None
        1 (mono) or 3 (RGB, including debayered raw frames), when known.
    shape : tuple of int or None
        ``(C, H, W)`` of the tile the file would give, when known.
    size_bytes : int
        Size of the file on disk (0 when it cannot be read).
    details : dict of str to str
        What the headers say about the exposure, for the user (`header_details`).
    """

    path: Path
    ok: bool
    reason: str | None
    n_channels: int | None
    shape: tuple[int, int, int] | None
    size_bytes: int
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    """What `load_tiles` read.

    Attributes
    ----------
    tiles : list of TileLike
        The usable tiles (a :class:`LazyTile` for those read again when needed), in input order, all with the same channel count.
    skipped : list of InputError
        One entry per file that was not used, with its reason.
    """

    tiles: list[TileLike] = field(default_factory=list)
    skipped: list[InputError] = field(default_factory=list)


@dataclass
class _Selection:
    """The HDU chosen in a file and how to turn its data into a tile."""

    index: int
    layout: str  # "2d", "planes_first" (NAXIS3 = C) or "planes_last" (NAXIS1 = C)
    n_planes: int
    height: int
    width: int
    wcs: WCS
    bayer: str | None  # pattern applying to the array as stored, or None

    @property
    def n_channels(self) -> int:
        return 3 if self.bayer is not None else self.n_planes


# --------------------------------------------------------------------------- discovery


def is_fits_name(name: str | Path) -> bool:
    """True when a file name ends with one of `FITS_PATTERNS` (case-insensitive)."""
    return Path(name).name.lower().endswith(FITS_PATTERNS)


def discover_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the list of input files.

    Parameters
    ----------
    paths : iterable of path-like
        Files and folders. A file given by name is taken whatever its suffix; folders
        are searched recursively for names matching `FITS_PATTERNS`. Entries whose name
        starts with ``'.'`` inside a folder are skipped.

    Returns
    -------
    list of Path
        The files, each once (two paths that resolve to the same file, e.g. through a
        symbolic link, count once: the first seen is kept). Order: the order of
        ``paths``; inside a folder, its files sorted by name, then its sub-folders
        sorted by name, depth first.

    Notes
    -----
    A path that does not exist is skipped with a WARNING naming it. Symbolic links to
    folders are followed, but each real folder is visited once, so link loops end.
    """
    found: list[Path] = []
    seen_files: set[str] = set()
    seen_dirs: set[str] = set()

    def add_file(path: Path) -> None:
        key = os.path.normcase(os.path.realpath(path))
        if key in seen_files:
            logger.debug("%s: already listed (same file), counted once", path)
            return
        seen_files.add(key)
        found.append(path)

    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            for item in _walk_folder(path, seen_dirs):
                add_file(item)
        elif path.is_file():
            add_file(path)
        else:
            logger.warning("%s: skipped: %s", printable_path(path), _not_a_file_reason(path))
    logger.debug("discovered %d input file(s)", len(found))
    return found


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _not_a_file_reason(path: Path) -> str:
    """Why ``path`` (no folder, no regular file) cannot be an input."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "no such file or folder"
    except OSError as exc:
        return f"cannot access it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return "cannot access it"  # it changed under our feet
    return f"not a regular file: it is {_file_kind(mode)}"


def _walk_folder(root: Path, seen_dirs: set[str]) -> Iterator[Path]:
    """Yield the FITS files below ``root``, depth first, each real folder once."""
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.normcase(os.path.realpath(folder))
        if real in seen_dirs:
            logger.debug("%s: folder already searched (symbolic link loop?), skipped", folder)
            continue
        seen_dirs.add(real)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            logger.warning(
                "%s: skipped: cannot read folder (%s)",
                printable_path(folder),
                exc.strerror or exc,
            )
            continue
        subfolders: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            if is_dir:
                subfolders.append(Path(entry.path))
            elif is_file and is_fits_name(entry.name):
                yield Path(entry.path)
            elif is_fits_name(entry.name):
                # A FIFO or a device named like a FITS file: never opened (a FIFO would
                # block the build), but said, so that it does not vanish silently.
                path = Path(entry.path)
                logger.warning("%s: skipped: %s", printable_path(path), _not_a_file_reason(path))
        stack.extend(reversed(subfolders))


# --------------------------------------------------------------------------- reading


def _one_line(text: object) -> str:
    """A message squeezed onto one short line (no traceback or multi-line text in reasons)."""
    line = " ".join(str(text).split())
    if len(line) > _MAX_REASON:
        line = line[: _MAX_REASON - 3] + "..."
    return line


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        # astropy's KeyError carries "Keyword 'X' not found."; a dict's, just the key.
        found = re.search(r"[Kk]eyword '([^']*)'", str(exc.args[0]))
        keyword = found.group(1) if found else exc.args[0]
        return _one_line(f"header keyword {keyword} missing or unreadable")
    text = _WCSLIB_WHERE.sub("", str(exc))
    return _one_line(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _fail(path: Path, reason: str, exc: BaseException | None = None) -> InputError:
    """Build the InputError for ``path``; the traceback of ``exc`` goes to DEBUG only."""
    if exc is not None:
        logger.debug("%s: %s", path, reason, exc_info=exc)
    return InputError(path, _one_line(reason))


#: ``warnings.catch_warnings`` swaps process-wide state: two threads inside it at once
#: leave a dead recorder installed for the rest of the process. Reads capture their
#: warnings one at a time (the debayering, the costly part, runs outside).
_WARNINGS_LOCK = threading.RLock()


@contextmanager
def _quiet_astropy(path: Path) -> Iterator[None]:
    """Turn the warnings astropy emits while reading into DEBUG log lines."""
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            try:
                yield
            finally:
                for item in caught:
                    logger.debug(
                        "%s: %s: %s", path, item.category.__name__, _one_line(item.message)
                    )


@dataclass
class _FileInfo:
    """What the first look at a file found: its size and whether it is gzip-compressed."""

    path: Path
    size: int
    is_gzip: bool
    _gzip_length: int | None = None

    def data_length(self) -> int:
        """Bytes of FITS the file holds (decompressed, for gzip).

        A gzip file is decompressed once, in bounded chunks, to the end: that is where
        its CRC and length are checked, so corrupt data are refused here, not used.
        """
        if not self.is_gzip:
            return self.size
        if self._gzip_length is None:
            total = 0
            try:
                with gzip.open(self.path, "rb") as gz:
                    while chunk := gz.read(1 << 22):
                        total += len(chunk)
            except EOFError as exc:
                raise _fail(
                    self.path, "truncated gzip file (the compressed stream ends early)", exc
                ) from exc
            except (OSError, zlib.error) as exc:
                raise _fail(self.path, f"corrupt gzip file ({_exc_text(exc)})", exc) from exc
            self._gzip_length = total
        return self._gzip_length


def _first_header_problem(block: bytes) -> str | None:
    """A fatal problem of the first header block that astropy would misreport."""
    card = block[80:160]
    if card[:8] != b"BITPIX  " or card[8:10] != b"= ":
        return None
    text = card[10:].split(b"/")[0].strip()
    try:
        bitpix = int(text)
    except ValueError:
        return f"invalid BITPIX {text.decode('ascii', 'replace')!r}"
    if bitpix not in _VALID_BITPIX:
        allowed = ", ".join(str(b) for b in _VALID_BITPIX)
        return f"invalid BITPIX {bitpix} (FITS allows {allowed})"
    return None


def _check_file(path: Path) -> _FileInfo:
    """Basic file checks before astropy opens it."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        reason = "broken symbolic link" if path.is_symlink() else "file not found"
        raise _fail(path, reason) from exc
    except OSError as exc:
        raise _fail(path, f"cannot access the file ({exc.strerror or exc})", exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        # Never opened: reading a FIFO blocks, and a device is not an image.
        raise _fail(path, f"not a regular file: it is {_file_kind(st.st_mode)}")
    size = int(st.st_size)
    if size == 0:
        raise _fail(path, "empty file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(2)
            handle.seek(0)
            if magic == _GZIP_MAGIC:
                try:
                    with gzip.GzipFile(fileobj=handle, mode="rb") as gz:
                        head = gz.read(_FITS_BLOCK)
                except (OSError, EOFError, zlib.error) as exc:
                    raise _fail(path, f"corrupt gzip file ({_exc_text(exc)})", exc) from exc
                if not head:
                    raise _fail(path, "empty file (after gzip decompression)")
            else:
                head = handle.read(_FITS_BLOCK)
    except PermissionError as exc:
        raise _fail(path, "cannot read the file (permission denied)", exc) from exc
    except OSError as exc:
        raise _fail(path, f"cannot read the file ({exc.strerror or exc})", exc) from exc
    if not head.startswith(b"SIMPLE  ="):
        raise _fail(path, "not a FITS file")
    problem = _first_header_problem(head)
    if problem:
        raise _fail(path, problem)
    return _FileInfo(path, size, magic == _GZIP_MAGIC)


def _promised_data_bytes(hdu: fits.hdu.base._BaseHDU, dims: Sequence[int]) -> int:
    """Bytes of data the header of ``hdu`` announces (padding excluded)."""
    if isinstance(hdu, fits.CompImageHDU):
        table = getattr(hdu, "_bintable", None)
        if table is not None:
            header = table.header
            return int(header["NAXIS1"]) * int(header["NAXIS2"]) + int(header.get("PCOUNT", 0))
        info = hdu.fileinfo() or {}
        return max(int(info.get("datSpan", 0)) - (_FITS_BLOCK - 1), 0)
    header = hdu.header
    bytes_per_value = abs(int(header["BITPIX"])) // 8
    gcount = int(header.get("GCOUNT", 1))
    pcount = int(header.get("PCOUNT", 0))
    return bytes_per_value * gcount * (pcount + math.prod(int(d) for d in dims))


def _check_data_present(
    path: Path, hdu: fits.hdu.base._BaseHDU, dims: Sequence[int], file: _FileInfo
) -> None:
    """Refuse an HDU whose data the file does not hold (truncated, header only)."""
    info = hdu.fileinfo()
    if not info:
        return
    offset = int(info["datLoc"])
    needed = _promised_data_bytes(hdu, dims)
    if needed <= 0:
        return
    available = max(file.data_length() - offset, 0)
    if available >= needed:
        return
    if available == 0:
        raise _fail(path, f"header only: no data after the header (it promises {needed} bytes)")
    raise _fail(path, f"truncated: header promises {needed} bytes of data, file holds {available}")


def _unparsable_wcs_cards(header: fits.Header) -> list[str]:
    """WCS cards whose value cannot be used, each as ``"KEYWORD (why)"``.

    Unparsable values (e.g. ``CRVAL1 = NAN``), non-finite numbers and text where a
    number is due (astropy would silently take a default such as 0 there).
    """
    bad = []
    for card in header.cards:
        keyword = card.keyword
        if not _WCS_KEY.match(keyword or ""):
            continue
        try:
            value = card.value
        except Exception:  # astropy raises VerifyError (or ValueError) for such cards
            bad.append(f"{keyword} (unreadable value)")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{keyword} (value {value})")
        elif _WCS_NUMBER_KEY.match(keyword) and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            bad.append(f"{keyword} (not a number: {_one_line(repr(value))[:40]})")
    return bad


def _wcs_error_text(exc: BaseException, axes: Sequence[int]) -> str:
    """An astropy/wcslib error in words, its keywords numbered as in the file.

    For a cube whose colour axis comes first (``NAXIS1 = 3``) the celestial axes are
    FITS axes 2 and 3, but wcslib numbers them 1 and 2 in its messages.
    """
    text = _exc_text(exc)
    if list(axes) == [1, 2]:
        return text

    def renumber(match: re.Match[str]) -> str:
        index = int(match.group(2))
        return match.group(1) + (str(axes[index - 1]) if 1 <= index <= len(axes) else "?")

    return re.sub(r"\b(CTYPE|CUNIT|CRVAL|CRPIX|CDELT|CROTA)(\d)\b", renumber, text)


def _round_trip_points(height: int, width: int) -> np.ndarray:
    xs = (0.0, width - 1.0)
    ys = (0.0, height - 1.0)
    corners = [(x, y) for y in ys for x in xs]
    return np.array([((width - 1) / 2.0, (height - 1) / 2.0), *corners], dtype=float)


def _celestial_wcs(
    path: Path,
    hdul: fits.HDUList,
    header: fits.Header,
    axes: list[int],
    height: int,
    width: int,
) -> WCS:
    """Read, validate and return the 2-D celestial WCS of an image plane."""
    bad = _unparsable_wcs_cards(header)
    if bad:
        cards = ", ".join(bad[:4])
        raise _fail(path, f"unparsable WCS header card {cards}")
    try:
        wcs = WCS(header, fobj=hdul, naxis=axes, relax=True)
    except Exception as exc:
        raise _fail(path, f"unparsable WCS ({_wcs_error_text(exc, axes)})", exc) from exc
    if wcs.naxis != 2 or not wcs.has_celestial or {wcs.wcs.lng, wcs.wcs.lat} != {0, 1}:
        raise MissingWCSError(path, "no celestial WCS (not plate-solved?)")
    try:
        wcs.wcs.set()
        matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    except Exception as exc:
        if "singular" in str(exc).lower():
            raise _fail(path, "singular WCS matrix", exc) from exc
        raise _fail(path, f"invalid WCS ({_wcs_error_text(exc, axes)})", exc) from exc
    numbers = {
        "CRVAL": np.asarray(wcs.wcs.crval, dtype=float),
        "CRPIX": np.asarray(wcs.wcs.crpix, dtype=float),
        "CD/PC/CDELT": matrix,
    }
    for name, values in numbers.items():
        if not np.all(np.isfinite(values)):
            raise _fail(path, f"invalid WCS: non-finite {name}")
    scale = float(np.max(np.abs(matrix)))
    if scale == 0.0 or abs(float(np.linalg.det(matrix))) <= 1e-12 * scale * scale:
        raise _fail(path, "singular WCS matrix")
    wcs.pixel_shape = (width, height)

    # The whole transform (SIP and lookup tables included) must invert where it matters.
    pixels = _round_trip_points(height, width)
    what = "WCS fails the pixel->sky->pixel round trip"
    try:
        world = wcs.all_pix2world(pixels, 0)
    except Exception as exc:
        raise _fail(path, f"{what} ({_exc_text(exc)})", exc) from exc
    if not np.all(np.isfinite(world)):
        raise _fail(path, f"{what}: no sky position for some image pixels")
    try:
        back = wcs.all_world2pix(world, 0, tolerance=1e-4, maxiter=50, quiet=False)
    except NoConvergence as exc:
        raise _fail(path, f"{what}: the SIP distortion does not converge", exc) from exc
    except Exception as exc:
        raise _fail(path, f"{what} ({_exc_text(exc)})", exc) from exc
    error = float(np.max(np.abs(np.asarray(back, dtype=float) - pixels)))
    if not math.isfinite(error) or error > ROUND_TRIP_TOLERANCE_PX:
        raise _fail(path, f"{what} (error {error:.3g} px)")
    return wcs


def _bayer_pattern(
    path: Path, header: fits.Header, height: int, fallback: str | None = None
) -> str | None:
    """The Bayer pattern applying to the stored array, or None for a mono image.

    ``fallback`` is the user's pattern for frames that declare none (no BAYERPAT card);
    a frame that declares one, or says it is mono, keeps what it says.
    """
    try:
        value = header.get("BAYERPAT")
    except Exception as exc:
        raise _fail(path, "unparsable BAYERPAT card", exc) from exc
    if value is None and fallback:
        value = fallback
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().upper()
    if text in ("", "NONE", "MONO", "MONOCHROME"):
        return None
    if text not in BAYER_PATTERNS:
        raise _fail(
            path,
            f"unsupported Bayer pattern {text!r} (expected one of {', '.join(BAYER_PATTERNS)})",
        )
    try:
        x_off = int(float(header.get("XBAYROFF", 0) or 0))
        y_off = int(float(header.get("YBAYROFF", 0) or 0))
        row_order = str(header.get("ROWORDER", "") or "").strip().upper()
    except Exception as exc:
        raise _fail(path, f"unparsable Bayer offsets ({_exc_text(exc)})", exc) from exc
    return array_pattern(
        text, height, x_offset=x_off, y_offset=y_off, bottom_up=row_order == "BOTTOM-UP"
    )


def _is_image_hdu(hdu: object) -> bool:
    if isinstance(hdu, fits.GroupsHDU):
        return False
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def _inspect_hdu(
    path: Path,
    hdul: fits.HDUList,
    index: int,
    file: _FileInfo,
    bayer_fallback: str | None = None,
    wcs_header: fits.Header | None = None,
) -> _Selection:
    """Header-level checks of one image HDU; raises InputError with the reason."""
    hdu = hdul[index]
    header = hdu.header
    try:
        naxis = int(header.get("NAXIS", 0))
        dims = [int(header[f"NAXIS{k}"]) for k in range(1, naxis + 1)]  # FITS order
    except Exception as exc:
        raise _fail(path, f"malformed image header ({_exc_text(exc)})", exc) from exc
    if naxis == 1:
        raise _fail(path, "1-D data: expected a 2-D image or a 3-D colour cube")
    if naxis > 3:
        raise _fail(path, f"{naxis}-D data: expected a 2-D image or a 3-D colour cube")
    if any(d <= 0 for d in dims):
        raise _fail(path, f"empty image (axis lengths {dims})")
    if naxis == 2:
        layout, planes, width, height, axes = "2d", 1, dims[0], dims[1], [1, 2]
    elif dims[2] in (1, 3):
        layout, planes, width, height, axes = "planes_first", dims[2], dims[0], dims[1], [1, 2]
    elif dims[0] in (1, 3):
        layout, planes, width, height, axes = "planes_last", dims[0], dims[1], dims[2], [2, 3]
    else:
        raise _fail(path, f"3-D image with {dims[2]} planes: expected 1 or 3")
    if isinstance(hdu, fits.CompImageHDU):
        _check_compressed_layout(path, hdu)
    else:
        _check_scaling(path, header)
    _check_data_present(path, hdu, dims, file)
    if wcs_header is not None:  # a plate solution of the image plane: pixel axes 1, 2
        wcs = _celestial_wcs(path, hdul, wcs_header, [1, 2], height, width)
    else:
        wcs = _celestial_wcs(path, hdul, header, axes, height, width)
    bayer = _bayer_pattern(path, header, height, bayer_fallback) if planes == 1 else None
    return _Selection(index, layout, planes, height, width, wcs, bayer)


def _check_scaling(path: Path, header: fits.Header) -> None:
    """Refuse BSCALE/BZERO cards that cannot describe an image (BSCALE = 0, text, NaN)."""
    for keyword in ("BSCALE", "BZERO"):
        try:
            value = header.get(keyword)
        except Exception as exc:
            raise _fail(path, f"unreadable {keyword} card", exc) from exc
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"{keyword} is not a number ({_one_line(repr(value))[:40]})")
        if not math.isfinite(value):
            raise _fail(path, f"{keyword} = {value}: not a finite number")
    if header.get("BSCALE") == 0:
        raise _fail(path, "BSCALE = 0: every pixel would have the same value (BZERO)")


def _check_compressed_layout(path: Path, hdu: fits.CompImageHDU) -> None:
    """Refuse a tile-compressed image whose table does not hold one row per tile.

    A damaged ZNAXISn or ZTILEn would otherwise decompress into an image of the wrong
    shape, silently (or fail later with an unrelated message).
    """
    table = getattr(hdu, "_bintable", None)
    if table is None:
        return
    header = table.header
    try:
        naxis = int(header["ZNAXIS"])
        dims = [int(header[f"ZNAXIS{k}"]) for k in range(1, naxis + 1)]
        tiles = [
            int(header.get(f"ZTILE{k}", dims[0] if k == 1 else 1)) for k in range(1, naxis + 1)
        ]
        rows = int(header["NAXIS2"])
    except Exception as exc:
        raise _fail(path, f"damaged compressed image header ({_exc_text(exc)})", exc) from exc
    if any(d <= 0 for d in dims) or any(t <= 0 for t in tiles):
        raise _fail(path, f"damaged compressed image header (ZNAXIS {dims}, ZTILE {tiles})")
    expected = math.prod(-(-d // t) for d, t in zip(dims, tiles, strict=True))
    if expected != rows:
        raise _fail(
            path,
            f"damaged compressed image: its header announces {expected} tiles "
            f"(ZNAXIS {dims}, ZTILE {tiles}), its table holds {rows}",
        )


def _select(
    path: Path,
    hdul: fits.HDUList,
    file: _FileInfo,
    bayer_fallback: str | None = None,
    wcs_header: fits.Header | None = None,
) -> _Selection:
    """The first HDU holding a usable image with a celestial WCS."""
    first_error: InputError | None = None
    index = 0
    while True:
        try:
            hdu = hdul[index]
        except IndexError:
            break
        except Exception as exc:  # a damaged later HDU: stop searching there
            logger.debug("%s: cannot read HDU %d", path, index, exc_info=exc)
            if first_error is None:
                first_error = _fail(path, f"damaged FITS structure ({_exc_text(exc)})")
            break
        if _is_image_hdu(hdu) and int(hdu.header.get("NAXIS", 0) or 0) > 0:
            try:
                selection = _inspect_hdu(path, hdul, index, file, bayer_fallback, wcs_header)
            except InputError as err:
                logger.debug("%s: HDU %d not usable: %s", path, index, err.reason)
                if first_error is None:
                    first_error = err
            else:
                if index > 0:
                    logger.debug("%s: image found in HDU %d", path, index)
                return selection
        index += 1
    if first_error is not None:
        raise first_error
    raise _fail(path, "no image data in any HDU (header only?)")


@contextmanager
def _open_fits(path: Path, file: _FileInfo) -> Iterator[fits.HDUList]:
    """Open read-only, unmapped, HDUs loaded lazily."""
    try:
        hdul = fits.open(
            path, mode="readonly", memmap=False, lazy_load_hdus=True, ignore_missing_simple=False
        )
    except InputError:
        raise
    except Exception as exc:
        reason = f"unreadable FITS file ({_exc_text(exc)})"
        if file.is_gzip:
            file.data_length()  # a damaged stream is the better reason: raised from here
            reason = f"corrupt gzip file ({_exc_text(exc)})"
        raise _fail(path, reason, exc) from exc
    try:
        yield hdul
    finally:
        hdul.close()


def _read_pixels(path: Path, hdu: fits.hdu.base._BaseHDU, selection: _Selection) -> np.ndarray:
    """The HDU's data as a fresh float32 ``(C, H, W)`` C-contiguous array, non-finite -> NaN."""
    try:
        data = hdu.data
    except Exception as exc:
        raise _fail(path, f"cannot read the pixel data ({_exc_text(exc)})", exc) from exc
    if data is None:
        raise _fail(path, "header only: no pixel data")
    raw = np.asarray(data)
    header = hdu.header
    blank_mask = None
    if (
        raw.dtype.kind in "iu"
        and "BLANK" in header
        and not isinstance(hdu, fits.CompImageHDU)
        and int(header.get("BITPIX", 0)) > 0
    ):
        # astropy leaves BLANK values in place when the data stay integers (e.g. uint16
        # via BZERO = 32768); the physical value of BLANK marks "no data".
        blank = int(header["BLANK"]) * float(header.get("BSCALE", 1)) + float(
            header.get("BZERO", 0)
        )
        blank_mask = raw == blank
    # np.array always copies: native byte order float32, never a view on the file.
    pixels = np.array(raw, dtype=np.float32, order="C", copy=True)
    del data, raw
    if blank_mask is not None and blank_mask.any():
        pixels[blank_mask] = np.nan
    if selection.layout == "2d":
        pixels = pixels[np.newaxis]
    elif selection.layout == "planes_last":
        pixels = np.ascontiguousarray(np.moveaxis(pixels, -1, 0))
    expected = (selection.n_planes, selection.height, selection.width)
    if pixels.shape != expected:
        raise _fail(path, f"pixel data of shape {pixels.shape} do not match the header {expected}")
    finite = np.isfinite(pixels)
    if not finite.all():
        if not finite.any():
            raise _fail(path, "no finite pixels (all NaN or infinite)")
        pixels[~finite] = np.nan  # inf is "no data" too
    _check_content(path, pixels, finite)
    return pixels


def _check_content(path: Path, pixels: np.ndarray, finite: np.ndarray) -> None:
    """Refuse a tile that holds no image: constant (all zero included) or nearly empty.

    Such a tile adds nothing but edges, and as a photometric reference it would drag
    the whole mosaic to its level.
    """
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    if low == high:
        raise _fail(path, f"constant image: every pixel with data is {low:g}")
    with np.errstate(invalid="ignore"):
        holding = int(np.count_nonzero(finite & (pixels != 0)))
    if holding < MIN_DATA_FRACTION * pixels.size:
        share = 100.0 * holding / pixels.size
        raise _fail(
            path,
            f"nearly empty: only {share:.2g} % of the pixel values hold data "
            f"(the others are 0 or NaN; at least {100 * MIN_DATA_FRACTION:g} % needed)",
        )


def _read_peak_bytes(hdu: fits.hdu.base._BaseHDU, selection: _Selection) -> int:
    """Memory that reading an HDU takes at its peak, from its header alone (bytes).

    The raw array as stored, astropy's scaled copy when BSCALE/BZERO apply (float64
    for 32- and 64-bit integers), the float32 tile, and the debayered planes with their
    temporaries for a raw frame.
    """
    header = hdu.header
    values = selection.n_planes * selection.height * selection.width
    bitpix = int(header.get("ZBITPIX", header.get("BITPIX", -32)) or -32)
    raw = values * abs(bitpix) // 8
    scaled = 0
    if bitpix > 0 and (header.get("BSCALE", 1) != 1 or header.get("BZERO", 0) != 0):
        scaled = values * (8 if bitpix >= 32 else 4)
    tile = values * 4
    debayer = 6 * values * 4 if selection.bayer is not None else 0
    return raw + scaled + tile + debayer


def _load_tile(
    path: Path,
    memory_budget: int | None,
    bayer_fallback: str | None,
    wcs_header: fits.Header | None,
) -> Tile:
    file = _check_file(path)
    with _quiet_astropy(path), _open_fits(path, file) as hdul:
        selection = _select(path, hdul, file, bayer_fallback, wcs_header)
        hdu = hdul[selection.index]
        if memory_budget is not None:
            needed = _read_peak_bytes(hdu, selection)
            if needed > memory_budget:
                raise _fail(
                    path,
                    f"reading it needs about {needed / 2**20:.0f} MB "
                    f"({selection.width} x {selection.height} px x {selection.n_channels}), "
                    f"above the memory budget of {memory_budget / 2**20:.0f} MB "
                    f"(raise {setting_name('max_memory')})",
                )
        file.data_length()  # a gzip file's CRC is checked before its data are used
        pixels = _read_pixels(path, hdu, selection)
    if selection.bayer is not None:
        pixels = debayer_bilinear(pixels[0], selection.bayer)
        logger.debug("%s: raw Bayer frame debayered (%s as stored)", path, selection.bayer)
    logger.debug(
        "%s: loaded HDU %d, %d x %d x %d",
        path,
        selection.index,
        pixels.shape[0],
        pixels.shape[1],
        pixels.shape[2],
    )
    return Tile(data=pixels, wcs=selection.wcs, path=path)


def load_tile(
    path: str | Path,
    bayer_fallback: str | None = None,
    *,
    memory_budget: int | None = None,
    wcs_header: fits.Header | None = None,
) -> Tile:
    """Read one input file as a tile.

    Parameters
    ----------
    path : path-like
        A FITS file (``.fz`` tile-compressed and ``.gz`` files included). The first HDU
        holding a 2-D image or a 3-D colour cube with a celestial WCS is used.
    bayer_fallback : {"RGGB", "BGGR", "GRBG", "GBRG"}, optional
        Bayer pattern of a raw frame that declares none (no ``BAYERPAT`` card).
    memory_budget : int, optional
        Bytes that reading the file may take at its peak; a file whose header announces
        more is refused before its data are read or decompressed. ``None``: no limit.
    wcs_header : astropy.io.fits.Header, optional
        WCS cards for the image plane (a plate solution) used instead of the file's own
        header WCS; validated the same way.

    Returns
    -------
    Tile
        ``data`` float32 ``(C, H, W)`` C-contiguous, a fresh array (C = 1, or 3 for a
        colour cube or a debayered raw frame), NaN for no data (inf included); the 2-D
        celestial WCS (SIP kept).

    Raises
    ------
    InputError
        When the file cannot be used; ``reason`` says why in words (the traceback, if
        any, is logged at DEBUG). `MissingWCSError` when it only lacks a celestial WCS.
    """
    p = Path(path)
    try:
        return _load_tile(p, memory_budget, bayer_fallback, wcs_header)
    except InputError:
        raise
    except MemoryError as exc:
        raise _fail(p, "not enough memory to read it", exc) from exc
    except Exception as exc:
        raise _fail(p, f"unreadable FITS file ({_exc_text(exc)})", exc) from exc


#: Header details shown per input: label and the cards that may hold it, first found wins.
DETAIL_CARDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("exposure", ("EXPTIME", "EXPOSURE", "EXP_TIME")),
    ("filter", ("FILTER", "FILTER1")),
    ("bayer", ("BAYERPAT", "COLORTYP")),
    ("date", ("DATE-OBS", "DATE_OBS", "DATE")),
    ("camera", ("INSTRUME", "CAMERA", "TELESCOP")),
)


def header_details(*headers: fits.Header) -> dict[str, str]:
    """Exposure, filter, Bayer pattern, date and camera from FITS headers (first wins).

    Returns
    -------
    dict of str to str
        Only the details found; the exposure as ``"10 s"``.
    """
    details: dict[str, str] = {}
    for label, keys in DETAIL_CARDS:
        for header in headers:
            value = next((header.get(k) for k in keys if header.get(k) not in (None, "")), None)
            if value is None:
                continue
            if label == "exposure":
                try:
                    text = f"{float(value):g} s"
                except (TypeError, ValueError):
                    text = str(value)
            else:
                text = str(value).strip()
            if text:
                details[label] = text
                break
    return details


def probe_input(path: str | Path, bayer_fallback: str | None = None) -> InputProbe:
    """Check one input from its headers only (fast: pixel data are not read).

    Parameters
    ----------
    path : path-like
        The file.
    bayer_fallback : str, optional
        As in `load_tile`.

    Returns
    -------
    InputProbe
        ``ok`` with channel count and tile shape, or not ``ok`` with the reason.
    """
    p = Path(path)
    try:
        size_bytes = int(p.stat().st_size)
    except OSError:
        size_bytes = 0
    try:
        file = _check_file(p)
        with _quiet_astropy(p), _open_fits(p, file) as hdul:
            selection = _select(p, hdul, file, bayer_fallback)
            details = header_details(hdul[selection.index].header, hdul[0].header)
    except InputError as err:
        return InputProbe(p, False, err.reason, None, None, size_bytes)
    except Exception as exc:
        failure = _fail(p, f"unreadable FITS file ({_exc_text(exc)})", exc)
        return InputProbe(p, False, failure.reason, None, None, size_bytes)
    channels = selection.n_channels
    shape = (channels, selection.height, selection.width)
    return InputProbe(p, True, None, channels, shape, size_bytes, details)


def _channel_word(n_channels: int) -> str:
    return "mono" if n_channels == 1 else f"{n_channels}-channel"


def _lazy(
    tile: Tile, bayer_fallback: str | None = None, wcs_header: fits.Header | None = None
) -> LazyTile:
    path = tile.path
    return LazyTile(
        path=path,
        wcs=tile.wcs,
        shape=tile.shape,
        n_channels=tile.n_channels,
        reader=lambda: load_tile(path, bayer_fallback, wcs_header=wcs_header).data,
        weight_map=tile.weight_map,
        tile_weight=tile.tile_weight,
    )


T = TypeVar("T")
R = TypeVar("R")

#: Peak memory of reading one uncompressed frame, in multiples of its file size: a
#: 16-bit raw frame becomes float32 RGB (6x) with the debayering temporaries beside it.
_READ_EXPANSION = 12


def _read_workers(items: Sequence[str | Path], read_budget: int | None) -> int:
    """Files read at once: one per CPU while their peaks fit the read budget together.

    Compressed files are read one at a time: their expanded size is only known once
    their header is read, and the read budget is the defence against bombs.
    """
    cpus = available_cpus()
    if cpus <= 1 or len(items) < 2:
        return 1
    largest = 0
    for item in items:
        if str(item).lower().endswith((".gz", ".fz")):
            return 1
        try:
            largest = max(largest, os.stat(item).st_size)
        except OSError:
            continue
    if read_budget is None:
        return cpus
    return int(max(1, min(cpus, read_budget // max(1, _READ_EXPANSION * largest))))


def _in_order(read: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[T, R]]:
    """``(item, read(item))`` in the order of ``items``, at most ``workers`` in flight.

    A bounded window (not ``Executor.map``, which reads everything ahead): tiles read
    in advance wait in memory until their turn.
    """
    if workers <= 1:
        for item in items:
            yield item, read(item)
        return
    with ThreadPoolExecutor(workers) as pool:
        window: deque[tuple[T, Future[R]]] = deque()
        position = 0
        try:
            while window or position < len(items):
                while position < len(items) and len(window) < workers:
                    window.append((items[position], pool.submit(read, items[position])))
                    position += 1
                item, future = window.popleft()
                yield item, future.result()
        finally:
            for _, future in window:
                future.cancel()


def load_tiles(
    paths: Sequence[str | Path],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    memory_budget: int | None = None,
    read_budget: int | None = None,
    bayer_fallback: str | None = None,
    wcs_provider: WcsProvider | None = None,
) -> LoadResult:
    """Read every input, skipping the unusable ones.

    Parameters
    ----------
    paths : sequence of path-like
        The input files (see `discover_inputs`).
    progress : callable, optional
        Called as ``progress("load", done, total)``.
    cancel : CancelToken, optional
        Checked before each file.
    memory_budget : int, optional
        Bytes of pixels kept in memory; the tiles beyond it become
        :class:`~zemosaic_core.tile.LazyTile` objects that read their file again when
        their pixels are needed (every file is still read once here, to check it).
        ``None`` keeps every tile in memory.
    read_budget : int, optional
        Bytes that reading one file may take at its peak (see `load_tile`); a file
        that needs more is skipped by name. ``None``: no limit.
    bayer_fallback : str, optional
        Bayer pattern of raw frames that declare none (see `load_tile`).
    wcs_provider : callable, optional
        Asked for a WCS header when a file has no celestial WCS (see `WcsProvider`,
        e.g. :class:`zemosaic_core.solving.WcsProvider`); without one such files are
        skipped.

    Returns
    -------
    LoadResult
        The usable tiles and the skipped files. Each skipped file is logged once at
        WARNING as ``"<path>: skipped: <reason>"``. All tiles share one channel count:
        the majority wins (a tie goes to 3 channels), the others are skipped.

    Raises
    ------
    NoUsableInputError
        When no file is usable.
    BuildCancelled
        When ``cancel`` is set.
    """
    items = list(paths)
    total = len(items)
    loaded: list[TileLike] = []
    skipped: list[InputError] = []

    def skip(err: InputError) -> None:
        skipped.append(err)
        logger.warning("%s: skipped: %s", printable_path(err.path), err.reason)

    report(progress, "load", 0, total)

    def read(item: str | Path) -> Tile | InputError:
        # In a worker thread: errors come back as values, in the order of the inputs.
        check_cancel(cancel)
        try:
            return load_tile(item, bayer_fallback, memory_budget=read_budget)
        except InputError as err:
            return err

    held = 0
    for done, (item, outcome) in enumerate(
        _in_order(read, items, _read_workers(items, read_budget)), start=1
    ):
        check_cancel(cancel)
        wcs_header = None
        try:
            if isinstance(outcome, MissingWCSError) and wcs_provider is not None:
                # Solving stays here, one frame at a time: it has its own process and
                # reports each frame's status in order.
                wcs_header = wcs_provider(Path(item))
                outcome = load_tile(
                    item, bayer_fallback, memory_budget=read_budget, wcs_header=wcs_header
                )
            if isinstance(outcome, InputError):
                raise outcome
            tile = outcome
        except InputError as err:
            skip(err)
        else:
            held += tile.data.nbytes
            over_budget = memory_budget is not None and held > memory_budget
            loaded.append(_lazy(tile, bayer_fallback, wcs_header) if over_budget else tile)
        report(progress, "load", done, total)
    check_cancel(cancel)

    tiles: list[TileLike] = []
    if loaded:
        counts = Counter(tile.n_channels for tile in loaded)
        keep = max(counts, key=lambda c: (counts[c], c))  # majority; a tie goes to 3
        for candidate in loaded:
            if candidate.n_channels == keep:
                tiles.append(candidate)
            else:
                word, among = _channel_word(candidate.n_channels), _channel_word(keep)
                skip(InputError(candidate.path, f"{word} image among {among} tiles"))
    if not tiles:
        raise NoUsableInputError(f"no usable input among {total} file(s)")
    logger.info(
        "loaded %d tile(s) with %d channel(s); %d file(s) skipped",
        len(tiles),
        tiles[0].n_channels,
        len(skipped),
    )
    return LoadResult(tiles=tiles, skipped=skipped)
