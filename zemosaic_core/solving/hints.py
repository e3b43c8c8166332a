"""Where a frame points and how large its pixels are, from its FITS header.

Smart telescopes and capture programs write the mount's position and the optics into
every frame (the Seestar writes ``RA``/``DEC`` in degrees, ``FOCALLEN`` and ``XPIXSZ``;
N.I.N.A., SharpCap and MaxIm write ``OBJCTRA``/``OBJCTDEC`` as sexagesimal text;
PANOPTES writes ``RA-MNT``/``DEC-MNT``). With a position and a scale, astrometry.net
searches a few degrees of sky at one scale instead of the whole sky at every scale:
seconds instead of minutes. A hint that cannot be parsed or is out of range is dropped
with the reason (kept in `Hints.notes`), never trusted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from astropy.io import fits

__all__ = ["Hints", "read_hints"]

#: Arcseconds per radian / 1000: pixel size in µm over focal length in mm gives "/px.
_ARCSEC_PER_UM_PER_MM = 206.264806

# Position keywords in order of preference: (RA key, Dec key, RA unit when numeric).
_POSITION_KEYS: tuple[tuple[str, str], ...] = (
    ("RA", "DEC"),
    ("OBJCTRA", "OBJCTDEC"),
    ("RA-MNT", "DEC-MNT"),
    ("RA_OBJ", "DEC_OBJ"),
)
# Keywords that give the pixel scale directly, in arcseconds per pixel.
_SCALE_KEYS: tuple[str, ...] = ("SCALE", "PIXSCALE", "SECPIX")

_SEXAGESIMAL = re.compile(
    r"^\s*([+-]?)\s*(\d+(?:\.\d*)?)[\s:hd°]+(\d+(?:\.\d*)?)[\s:m']*(\d+(?:\.\d*)?)?"
)


@dataclass(frozen=True)
class Hints:
    """What a header says about the pointing and the pixel scale.

    Attributes
    ----------
    ra_deg, dec_deg : float or None
        Approximate centre of the field (ICRS degrees), when the header gives it.
    scale_arcsec : float or None
        Pixel scale of the stored image in arcseconds per pixel, when known.
    source : str
        The keywords the hints came from (for messages), e.g. ``"RA/DEC, FOCALLEN/XPIXSZ"``.
    notes : tuple of str
        Hints found but not used, and why (e.g. ``"DEC=123.0 out of range"``).
    """

    ra_deg: float | None = None
    dec_deg: float | None = None
    scale_arcsec: float | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_position(self) -> bool:
        return self.ra_deg is not None and self.dec_deg is not None

    @property
    def has_scale(self) -> bool:
        return self.scale_arcsec is not None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _sexagesimal(text: str) -> float | None:
    """``"12 50 53.1"`` or ``"+41:07:12"`` as a number of units (hours or degrees)."""
    match = _SEXAGESIMAL.match(text)
    if match is None:
        return None
    sign, whole, minutes, seconds = match.groups()
    value = float(whole) + float(minutes) / 60.0 + float(seconds or 0.0) / 3600.0
    return -value if sign == "-" else value


def _angle(value: object, *, is_ra: bool) -> float | None:
    """Degrees from a header value: a number (degrees) or sexagesimal text (RA in hours)."""
    number = _number(value)
    if number is not None:
        return number
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return number if math.isfinite(number) else None
    parsed = _sexagesimal(text)
    if parsed is None:
        return None
    return parsed * 15.0 if is_ra else parsed


def _card(header: fits.Header, key: str) -> object:
    try:
        return header.get(key)
    except Exception:  # an unparsable card is no hint
        return None


def _position(header: fits.Header, notes: list[str]) -> tuple[float, float, str] | None:
    for ra_key, dec_key in _POSITION_KEYS:
        if ra_key not in header or dec_key not in header:
            continue
        ra = _angle(_card(header, ra_key), is_ra=True)
        dec = _angle(_card(header, dec_key), is_ra=False)
        if ra is None or dec is None:
            notes.append(f"{ra_key}/{dec_key} unparsable")
            continue
        if not (0.0 <= ra < 360.0 + 1e-9) or not (-90.0 <= dec <= 90.0):
            notes.append(f"{ra_key}={ra:g}/{dec_key}={dec:g} out of range")
            continue
        return ra % 360.0, dec, f"{ra_key}/{dec_key}"
    return None


def _scale(header: fits.Header, notes: list[str]) -> tuple[float, str] | None:
    for key in _SCALE_KEYS:
        value = _number(_card(header, key))
        if value is None:
            continue
        if 0.01 <= value <= 3600.0:
            return value, key
        notes.append(f"{key}={value:g} out of range")
    focal = _number(_card(header, "FOCALLEN"))
    pixel = _number(_card(header, "XPIXSZ"))
    if focal is None or pixel is None:
        if (focal is None) != (pixel is None):
            notes.append("FOCALLEN or XPIXSZ missing or unparsable")
        return None
    if focal <= 0 or pixel <= 0:
        notes.append(f"FOCALLEN={focal:g}/XPIXSZ={pixel:g} not positive")
        return None
    # XPIXSZ is the binned pixel size by convention (MaxIm, ASCOM, the Seestar).
    scale = _ARCSEC_PER_UM_PER_MM * pixel / focal
    if not 0.01 <= scale <= 3600.0:
        notes.append(f'FOCALLEN/XPIXSZ give {scale:g}"/px, out of range')
        return None
    return scale, "FOCALLEN/XPIXSZ"


def read_hints(header: fits.Header) -> Hints:
    """Pointing and pixel-scale hints from a FITS header.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header of the image HDU (not modified).

    Returns
    -------
    Hints
        Fields left ``None`` when the header does not give them or gives nonsense; the
        reasons for dropped hints are in ``notes``.
    """
    notes: list[str] = []
    position = _position(header, notes)
    scale = _scale(header, notes)
    sources = [part for part in (position and position[2], scale and scale[1]) if part]
    return Hints(
        ra_deg=position[0] if position else None,
        dec_deg=position[1] if position else None,
        scale_arcsec=scale[0] if scale else None,
        source=", ".join(sources),
        notes=tuple(notes),
    )
