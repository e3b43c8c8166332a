"""Writers of small input files for the loading tests: good tiles and a corpus of bad ones.

Every writer takes the folder to write into and returns the path of the file it wrote.
`BAD_CASES` maps a case name to ``BadCase(writer, keyword, probe_detects)``: the reason
of the `InputError` raised for that file must contain ``keyword``; ``probe_detects``
says whether the header-level `probe_input` can see the problem (pixel-level problems
such as all-NaN data need the pixels).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

SIZE = 64
SCALE_DEG = 1.0e-3


def tan_header(
    ra: float = 10.0,
    dec: float = 20.0,
    *,
    size: int = SIZE,
    scale: float = SCALE_DEG,
    axes: tuple[int, int] = (1, 2),
) -> fits.Header:
    """A simple RA---TAN/DEC--TAN header centred on (ra, dec), on FITS axes ``axes``."""
    ax, ay = axes
    header = fits.Header()
    header[f"CTYPE{ax}"] = "RA---TAN"
    header[f"CTYPE{ay}"] = "DEC--TAN"
    header[f"CRVAL{ax}"] = float(ra)
    header[f"CRVAL{ay}"] = float(dec)
    header[f"CRPIX{ax}"] = (size + 1) / 2.0
    header[f"CRPIX{ay}"] = (size + 1) / 2.0
    header[f"CDELT{ax}"] = -float(scale)
    header[f"CDELT{ay}"] = float(scale)
    header[f"CUNIT{ax}"] = "deg"
    header[f"CUNIT{ay}"] = "deg"
    return header


def rgb_data(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A smooth positive (3, size, size) float32 scene with some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 100.0 + 0.5 * xx + 0.25 * yy
    cube = np.stack([base * 1.0, base * 1.2, base * 0.8]).astype(np.float32)
    return cube + rng.normal(0.0, 1.0, cube.shape).astype(np.float32)


def write_good_rgb(folder: Path, name: str = "good.fits", *, seed: int = 0) -> Path:
    """A usable 64x64 RGB float32 tile, ``(3, H, W)`` (NAXIS3 = 3), TAN WCS."""
    path = Path(folder) / name
    ra = 10.0 + 0.03 * seed
    fits.PrimaryHDU(rgb_data(seed), tan_header(ra, 20.0)).writeto(path)
    return path


def write_good_mono(folder: Path, name: str = "mono.fits", *, seed: int = 0) -> Path:
    """A usable 64x64 mono float32 tile, TAN WCS."""
    path = Path(folder) / name
    fits.PrimaryHDU(rgb_data(seed)[1], tan_header(10.0 + 0.03 * seed, 20.0)).writeto(path)
    return path


def sha256_files(paths: Iterable[Path | str]) -> dict[str, str]:
    """sha256 of each file's bytes, keyed by path (to prove inputs are never modified)."""
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _good_bytes() -> bytes:
    """The bytes of a good RGB FITS file (header + data), built in memory."""
    buffer = io.BytesIO()
    fits.PrimaryHDU(rgb_data(7), tan_header()).writeto(buffer)
    return buffer.getvalue()


def _write_bytes(folder: Path, name: str, data: bytes) -> Path:
    path = Path(folder) / name
    path.write_bytes(data)
    return path


def _write_hdu(folder: Path, name: str, data: np.ndarray | None, header: fits.Header) -> Path:
    path = Path(folder) / name
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def _patch_card(raw: bytes, keyword: str, text: str) -> bytes:
    """Replace the 80-byte card of ``keyword`` in the raw header by ``text`` (padded)."""
    key = keyword.ljust(8).encode("ascii")
    for start in range(0, len(raw), 80):
        if raw[start : start + 8] == key:
            card = text.encode("ascii").ljust(80)
            assert len(card) == 80
            return raw[:start] + card + raw[start + 80 :]
        if raw[start : start + 8] == b"END     ":
            break
    raise KeyError(keyword)


# --------------------------------------------------------------------------- bad cases


def not_fits(folder: Path) -> Path:
    return _write_bytes(folder, "not_fits.fits", b"This is a text file, not an image.\n" * 10)


def empty(folder: Path) -> Path:
    return _write_bytes(folder, "empty.fits", b"")


def truncated(folder: Path) -> Path:
    raw = _good_bytes()
    return _write_bytes(folder, "truncated.fits", raw[: 2880 + 5000])


def header_only(folder: Path) -> Path:
    raw = _good_bytes()
    return _write_bytes(folder, "header_only.fits", raw[:2880])


def huge_claim(folder: Path) -> Path:
    """A header promising 100000 x 100000 float32 pixels over a 64x64 data block."""
    raw = _good_bytes()
    raw = _patch_card(raw, "NAXIS1", "NAXIS1  =               100000")
    raw = _patch_card(raw, "NAXIS2", "NAXIS2  =               100000")
    return _write_bytes(folder, "huge_claim.fits", raw)


def truncated_gz(folder: Path) -> Path:
    compressed = gzip.compress(_good_bytes())
    return _write_bytes(folder, "truncated.fits.gz", compressed[: len(compressed) // 2])


def one_d(folder: Path) -> Path:
    header = fits.Header()
    header["CTYPE1"] = "RA---TAN"
    header["CRVAL1"] = 10.0
    header["CRPIX1"] = 1.0
    header["CDELT1"] = 1e-3
    return _write_hdu(folder, "one_d.fits", np.arange(64, dtype=np.float32), header)


def four_d(folder: Path) -> Path:
    data = np.ones((2, 3, SIZE, SIZE), dtype=np.float32)
    return _write_hdu(folder, "four_d.fits", data, tan_header())


def two_planes(folder: Path) -> Path:
    return _write_hdu(folder, "two_planes.fits", rgb_data()[:2].copy(), tan_header())


def four_planes(folder: Path) -> Path:
    data = np.concatenate([rgb_data(), rgb_data()[:1]])
    return _write_hdu(folder, "four_planes.fits", data, tan_header())


def no_wcs(folder: Path) -> Path:
    return _write_hdu(folder, "no_wcs.fits", rgb_data(), fits.Header())


def linear_wcs(folder: Path) -> Path:
    header = fits.Header()
    for axis in (1, 2):
        header[f"CTYPE{axis}"] = "LINEAR"
        header[f"CRVAL{axis}"] = 0.0
        header[f"CRPIX{axis}"] = 1.0
        header[f"CDELT{axis}"] = 1.0
    return _write_hdu(folder, "linear_wcs.fits", rgb_data(), header)


def singular_cd(folder: Path) -> Path:
    header = tan_header()
    for axis in (1, 2):
        del header[f"CDELT{axis}"]
    header["CD1_1"] = 1e-3
    header["CD1_2"] = 2e-3
    header["CD2_1"] = 1e-3
    header["CD2_2"] = 2e-3
    return _write_hdu(folder, "singular_cd.fits", rgb_data(), header)


def nan_crval(folder: Path) -> Path:
    """``CRVAL1 = NAN`` written into the raw header bytes (astropy cannot write it)."""
    raw = _patch_card(_good_bytes(), "CRVAL1", "CRVAL1  =                  NAN")
    return _write_bytes(folder, "nan_crval.fits", raw)


def sip_diverges(folder: Path) -> Path:
    header = tan_header()
    header["CTYPE1"] = "RA---TAN-SIP"
    header["CTYPE2"] = "DEC--TAN-SIP"
    header["A_ORDER"] = 3
    header["B_ORDER"] = 3
    header["A_2_0"] = 1e-2
    header["A_3_0"] = 1e-2
    header["B_0_2"] = -1e-2
    header["B_0_3"] = 1e-2
    return _write_hdu(folder, "sip_diverges.fits", rgb_data(), header)


def sip_folds(folder: Path) -> Path:
    """A SIP that folds the image onto itself: the inverse converges, to the wrong pixel.

    x' = u + 0.01 u**2 with u = x - 63 turns back at u = -50: pixel x = 0 (u = -63) and
    x = 26 (u = -37) see the same sky, and all_world2pix converges to the latter.
    """
    header = tan_header()
    header["CTYPE1"] = "RA---TAN-SIP"
    header["CTYPE2"] = "DEC--TAN-SIP"
    header["CRPIX1"] = 64.0
    header["A_ORDER"] = 2
    header["B_ORDER"] = 2
    header["A_2_0"] = 1e-2
    return _write_hdu(folder, "sip_folds.fits", rgb_data(), header)


def all_nan(folder: Path) -> Path:
    data = np.full((3, SIZE, SIZE), np.nan, dtype=np.float32)
    return _write_hdu(folder, "all_nan.fits", data, tan_header())


def all_inf(folder: Path) -> Path:
    data = np.full((3, SIZE, SIZE), np.inf, dtype=np.float32)
    data[1] = -np.inf
    return _write_hdu(folder, "all_inf.fits", data, tan_header())


def bad_bayer(folder: Path) -> Path:
    header = tan_header()
    header["BAYERPAT"] = "CYGM"
    return _write_hdu(folder, "bad_bayer.fits", rgb_data()[0], header)


def all_zero(folder: Path) -> Path:
    data = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    return _write_hdu(folder, "all_zero.fits", data, tan_header())


def constant(folder: Path) -> Path:
    data = np.full((3, SIZE, SIZE), 42.0, dtype=np.float32)
    data[:, :4] = np.nan  # a blank border does not make it an image
    return _write_hdu(folder, "constant.fits", data, tan_header())


def bscale_zero(folder: Path) -> Path:
    """An int16 image whose BSCALE card is 0 (every physical value would be BZERO)."""
    buffer = io.BytesIO()
    values = (rgb_data(2)[0] * 10).astype(np.int16)
    fits.PrimaryHDU(values, tan_header()).writeto(buffer)
    raw = _patch_card(buffer.getvalue(), "CUNIT1", "BSCALE  =                    0")
    return _write_bytes(folder, "bscale_zero.fits", raw)


def nearly_empty(folder: Path) -> Path:
    """A tile with data in 0.4 % of its pixels, NaN and 0 elsewhere."""
    data = np.full((3, SIZE, SIZE), np.nan, dtype=np.float32)
    data[:, 32:, :] = 0.0
    data[:, 10:14, 10:14] = rgb_data(5)[:, 10:14, 10:14]
    return _write_hdu(folder, "nearly_empty.fits", data, tan_header())


def gzip_bad_crc(folder: Path) -> Path:
    """A gzip file whose data are intact but whose CRC does not match them."""
    compressed = bytearray(gzip.compress(_good_bytes()))
    compressed[-8] ^= 0xFF  # first byte of the CRC32 trailer
    return _write_bytes(folder, "bad_crc.fits.gz", bytes(compressed))


def bitpix_12(folder: Path) -> Path:
    raw = _patch_card(_good_bytes(), "BITPIX", "BITPIX  =                   12")
    return _write_bytes(folder, "bitpix_12.fits", raw)


def crpix_text(folder: Path) -> Path:
    """``CRPIX1 = 'abc'``: astropy would silently take 0 and solve the wrong sky."""
    raw = _patch_card(_good_bytes(), "CRPIX1", "CRPIX1  = 'abc'")
    return _write_bytes(folder, "crpix_text.fits", raw)


def compressed_bad_znaxis(folder: Path) -> Path:
    """A tile-compressed image whose ZNAXIS2 no longer matches its table of tiles."""
    buffer = io.BytesIO()
    values = (rgb_data(6)[0] * 10).astype(np.int16)
    primary = fits.PrimaryHDU()
    fits.HDUList([primary, fits.CompImageHDU(values, tan_header())]).writeto(buffer)
    raw = buffer.getvalue()
    start = raw.index(b"ZNAXIS2 =")
    card = b"ZNAXIS2 =                    5".ljust(80)
    return _write_bytes(folder, "bad_znaxis.fits.fz", raw[:start] + card + raw[start + 80 :])


@dataclass(frozen=True)
class BadCase:
    writer: Callable[[Path], Path]
    keyword: str
    probe_detects: bool = True


BAD_CASES: dict[str, BadCase] = {
    "not_fits": BadCase(not_fits, "not a FITS file"),
    "empty": BadCase(empty, "empty file"),
    "truncated": BadCase(truncated, "truncated"),
    "header_only": BadCase(header_only, "header only"),
    "huge_claim": BadCase(huge_claim, "truncated"),
    "truncated_gz": BadCase(truncated_gz, "truncated gzip"),
    "one_d": BadCase(one_d, "1-D"),
    "four_d": BadCase(four_d, "4-D"),
    "two_planes": BadCase(two_planes, "2 planes"),
    "four_planes": BadCase(four_planes, "4 planes"),
    "no_wcs": BadCase(no_wcs, "no celestial WCS"),
    "linear_wcs": BadCase(linear_wcs, "no celestial WCS"),
    "singular_cd": BadCase(singular_cd, "singular WCS matrix"),
    "nan_crval": BadCase(nan_crval, "CRVAL1"),
    "sip_diverges": BadCase(sip_diverges, "does not converge"),
    "sip_folds": BadCase(sip_folds, "round trip (error 26 px)"),
    "all_nan": BadCase(all_nan, "no finite pixels", probe_detects=False),
    "all_inf": BadCase(all_inf, "no finite pixels", probe_detects=False),
    "bad_bayer": BadCase(bad_bayer, "Bayer pattern"),
    "all_zero": BadCase(all_zero, "constant image: every pixel with data is 0", False),
    "constant": BadCase(constant, "constant image: every pixel with data is 42", False),
    "bscale_zero": BadCase(bscale_zero, "BSCALE = 0"),
    "nearly_empty": BadCase(nearly_empty, "nearly empty: only 0.39 %", False),
    "gzip_bad_crc": BadCase(gzip_bad_crc, "CRC check failed"),
    "bitpix_12": BadCase(bitpix_12, "invalid BITPIX 12"),
    "crpix_text": BadCase(crpix_text, "CRPIX1 (not a number"),
    "compressed_bad_znaxis": BadCase(compressed_bad_znaxis, "damaged compressed image"),
}


# --------------------------------------------------------------------------- usable oddities


def inf_pixels(folder: Path) -> Path:
    """A usable RGB tile with a few +inf / -inf pixels (they mean "no data")."""
    data = rgb_data(3)
    data[0, 5, 7] = np.inf
    data[1, 10, 11] = -np.inf
    data[2, 20:22, 30:33] = np.inf
    return _write_hdu(folder, "inf_pixels.fits", data, tan_header(10.05, 20.0))


def odd_name(folder: Path, name: str = "tile é ü 星 with spaces.fits", seed: int = 4) -> Path:
    """A usable RGB tile whose name holds spaces and non-ASCII characters."""
    return write_good_rgb(folder, name, seed=seed)
