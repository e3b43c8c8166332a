"""Outputs (docs/architecture.md §7): the science FITS, a preview PNG, a 16-bit TIFF, all atomic.

Every file is written to a temporary name in the target folder, flushed to disk and
renamed over the target, so a crash or a full disk never leaves a half-written file
that looks finished, and a previous output survives until the new one is complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..display.colour import calibration_header_cards
from ..display.stretch import StretchMode, StretchParams, compute_params, render_rgb
from ..engine.coverage import covered_mask, shared_plane
from ..errors import UsageError, ZeMosaicError, printable_path
from ..result import BuildResult
from ..runtime.scratch import TEMP_PREFIX, owned_prefix, release_pages

logger = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _not_replaceable(target: Path) -> str | None:
    """Why an existing ``target`` must not be replaced (None: absent or a regular file)."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check it ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "it is a folder, not a file"
    kinds = {
        stat.S_ISFIFO(mode): "a FIFO (named pipe)",
        stat.S_ISCHR(mode): "a character device",
        stat.S_ISBLK(mode): "a block device",
        stat.S_ISSOCK(mode): "a socket",
    }
    return f"it is {kinds.get(True, 'a special file')}; only regular files are ever replaced"


def check_writable_folder(path: str | Path) -> Path:
    """Refuse an output that cannot be written, before any work.

    Its folder must exist and be writable, and the output itself must be absent or a
    regular file (a device, a FIFO or a folder is never replaced).

    Raises
    ------
    UsageError
        With the path and the reason.
    """
    target = Path(path)
    shown = printable_path(target)
    problem = _not_replaceable(target)
    if problem is not None:
        if "folder" in problem:
            raise UsageError(f"output is a folder, not a file: {shown}")
        raise UsageError(f"output {shown} cannot be replaced: {problem}")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"output folder does not exist: {printable_path(folder)}")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=owned_prefix(TEMP_PREFIX)):
            pass
    except OSError as exc:
        raise UsageError(
            f"output folder is not writable: {printable_path(folder)} ({exc.strerror})"
        ) from None
    return target


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    target = Path(path)
    problem = _not_replaceable(target)
    if problem is not None:
        raise ZeMosaicError(f"could not write {printable_path(target)}: {problem}")
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=owned_prefix(TEMP_PREFIX), suffix=target.suffix
    )
    os.close(fd)  # reopened by name: some writers (tifffile) want a named file object
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        with open(tmp_name, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        problem = _not_replaceable(target)  # it may have appeared while we wrote
        if problem is not None:
            raise ZeMosaicError(f"could not write {printable_path(target)}: {problem}")
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise ZeMosaicError(
                f"could not write {printable_path(target)}: {exc.strerror or exc}"
            ) from exc
        raise


def _write_with(path: str | Path, writer: Callable[[BinaryIO], object]) -> Path:
    with atomic_write(path) as handle:
        writer(handle)
    logger.info("Wrote %s", printable_path(path))
    return Path(path)


def coverage_for_output(coverage: np.ndarray) -> np.ndarray:
    """``(H, W)`` when every channel's coverage is identical, else ``(C, H, W)``."""
    plane = shared_plane(coverage)
    return coverage if plane is None else plane


_FITS_BLOCK = 2880
_WRITE_BAND_BYTES = 64 * 1024 * 1024


def _image_header(shape: tuple[int, ...], cards: fits.Header, *, primary: bool) -> fits.Header:
    """A float32 image HDU header for ``shape`` (NumPy order), then ``cards``."""
    header = fits.Header()
    if primary:
        header["SIMPLE"] = (True, "conforms to FITS standard")
    else:
        header["XTENSION"] = ("IMAGE", "image extension")
    header["BITPIX"] = (-32, "IEEE single precision floating point")
    header["NAXIS"] = len(shape)
    for axis, length in enumerate(reversed(shape), start=1):
        header[f"NAXIS{axis}"] = length
    if primary:
        header["EXTEND"] = True
    else:
        header["PCOUNT"] = 0
        header["GCOUNT"] = 1
    header.extend(cards, unique=True)
    return header


def fits_headers(result: BuildResult) -> tuple[fits.Header, fits.Header]:
    """Headers of the science FITS: the primary image and the ``COVERAGE`` extension."""
    cards = result.wcs.to_header(relax=True)
    cards["BACKEND"] = (result.backend, "backend that produced all channels")
    cards["TWOPASS"] = (bool(result.two_pass), "two-pass coverage renormalization applied")
    cards["NTILES"] = (len(result.tile_paths), "tiles in the mosaic")
    cards["GPUALL"] = (bool(result.gpu_all), "every pass ran all channels on the GPU")
    if result.n_channels == 3:
        cards["CSPACE"] = ("RGB", "plane order: R, G, B")
    cards["COLCAL"] = (False, "colour calibration applied")
    if result.colour_calibration is not None:
        for key, value, comment in calibration_header_cards(result.colour_calibration):
            cards[key] = (value, comment)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    cards["DATE"] = (now, "file creation (UTC)")
    cards["CREATOR"] = "ZeMosaic"
    for path in result.tile_paths:
        # FITS header text is printable ASCII: escape accents and the like.
        name = path.name.encode("ascii", "backslashreplace").decode("ascii")
        cards.add_history("".join(ch for ch in f"tile: {name}" if ch.isprintable())[:72])
    image_shape = result.image.shape[1:] if result.n_channels == 1 else result.image.shape
    primary = _image_header(tuple(image_shape), cards, primary=True)
    cov_cards = result.wcs.to_header(relax=True)
    cov_cards["EXTNAME"] = "COVERAGE"
    cov_cards["BUNIT"] = ("", "sum of tile weights")
    coverage = _image_header(coverage_for_output(result.coverage).shape, cov_cards, primary=False)
    return primary, coverage


def _write_hdu(handle: BinaryIO, header: fits.Header, data: np.ndarray) -> None:
    """Write one HDU, its data as big-endian float32 in row bands (no full-size copy)."""
    handle.write(header.tostring().encode("ascii"))
    planes = data.reshape(-1, *data.shape[-2:])
    rows = max(1, _WRITE_BAND_BYTES // max(1, 4 * data.shape[-1]))
    written = 0
    for plane in planes:
        for y0 in range(0, plane.shape[0], rows):
            block = np.ascontiguousarray(plane[y0 : y0 + rows], dtype=">f4")
            handle.write(block.tobytes())
            written += block.nbytes
            release_pages(data)
    handle.write(b"\0" * (-written % _FITS_BLOCK))


def write_fits(path: str | Path, result: BuildResult) -> Path:
    """Write the science FITS atomically, streaming its data in row bands."""
    primary, coverage_header = fits_headers(result)
    image = result.image[0] if result.n_channels == 1 else result.image
    coverage = coverage_for_output(result.coverage)

    def writer(handle: BinaryIO) -> None:
        _write_hdu(handle, primary, image)
        _write_hdu(handle, coverage_header, coverage)

    return _write_with(path, writer)


def write_preview_png(
    path: str | Path,
    result: BuildResult,
    mode: StretchMode = "auto",
    params: StretchParams | None = None,
) -> Path:
    """Write the 8-bit stretched PNG preview atomically (display only).

    Parameters
    ----------
    path : path-like
    result : BuildResult
    mode : {"auto", "linked", "asinh", "linear"}
        The automatic stretch, used when ``params`` is not given.
    params : StretchParams, optional
        The exact transfer to use (the GUI passes the one on screen, levels included),
        so the PNG is the screen's image at 1:1.
    """
    from PIL import Image

    if params is None:
        params = compute_params(result.image, mode)
    image = Image.fromarray(render_rgb(result.image, params))  # (h, w, 3) uint8: RGB
    return _write_with(path, lambda handle: image.save(handle, format="PNG"))


def write_tiff(path: str | Path, result: BuildResult) -> Path:
    """Write a 16-bit *linear* TIFF (min..max of the covered data to 0..65535), atomically.

    Linear on purpose (for further processing): it looks dark until stretched.

    Works in row bands: no full-size float copies of a large mosaic.
    """
    import tifffile

    cube = result.image
    channels, height, width = cube.shape
    rows = max(1, (16 << 20) // max(1, 4 * width))
    lo, hi = np.inf, -np.inf
    for y0 in range(0, height, rows):
        band = cube[:, y0 : y0 + rows]
        if np.isfinite(band).any():
            lo, hi = min(lo, float(np.nanmin(band))), max(hi, float(np.nanmax(band)))
    if not np.isfinite(lo):
        lo, hi = 0.0, 1.0
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    data = np.empty((height, width, channels), dtype=np.uint16)
    for y0 in range(0, height, rows):
        band = np.nan_to_num((cube[:, y0 : y0 + rows] - np.float32(lo)) * np.float32(scale))
        # FITS row 0 is the bottom row; TIFF row 0 is the top.
        top = height - y0 - band.shape[1]
        data[top : height - y0] = (
            np.clip(band + 0.5, 0, 65535).astype(np.uint16).transpose(1, 2, 0)[::-1]
        )
    image = data[:, :, 0] if channels == 1 else data
    photometric = "minisblack" if channels == 1 else "rgb"
    return _write_with(
        path, lambda handle: tifffile.imwrite(handle, image, photometric=photometric)
    )


def crop_to_coverage(
    image: np.ndarray, coverage: np.ndarray, wcs: WCS
) -> tuple[np.ndarray, np.ndarray, WCS]:
    """Auto-crop to the bounding box of covered pixels, shifting the WCS to match.

    Returns views of ``image`` and ``coverage``.
    """
    covered = covered_mask(coverage)
    rows = np.flatnonzero(covered.any(axis=1))
    cols = np.flatnonzero(covered.any(axis=0))
    if rows.size == 0:
        return image, coverage, wcs
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (y0, x0) == (0, 0) and (y1, x1) == covered.shape:
        return image, coverage, wcs
    # Views, not copies: a copy would briefly double the largest arrays of a build.
    return image[:, y0:y1, x0:x1], coverage[:, y0:y1, x0:x1], wcs[y0:y1, x0:x1]
