"""Timestamps of every log family and collector prefix, built in one place.

Each family's header parser hands the fields it matched to :func:`stamp` (or an ISO string to
:func:`parse_iso`), so what counts as a valid time (calendar checks, leap seconds, zones) is
decided here once for every layout.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_LEAP = re.compile(r"(?<=[T ]23:59):60(?:\.\d+)?")

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# A moment this close to datetime's ends is a corrupt clock, and the arithmetic that follows
# (clock offsets, idle gaps, the HTML axis) would leave datetime's range: read as undated.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)
# What zone() gives for an offset no clock has (+99:00): stamp() then names no moment.
IMPOSSIBLE_ZONE = timezone(timedelta(0), "impossible")


def _bounded(value: datetime) -> datetime | None:
    return value if EARLIEST <= value <= LATEST else None


def micro(frac: str | None) -> int:
    """Microseconds of a fraction written with 1 to 9 digits."""
    return int((frac or "0")[:6].ljust(6, "0"))


def month(name: str) -> int | None:
    return MONTHS.get(name[:3].lower())


def stamp(year: int, mon: int, day: int, hour: int, minute: int, second: int, usec: int = 0,
          tz: timezone | None = None) -> datetime | None:
    """An aware UTC datetime from a header's fields, or None when they name no real moment
    (the line is then not read as a dated record start)."""
    if tz is IMPOSSIBLE_ZONE:
        return None
    if second == 60:  # a leap second (23:59:60): datetime has none, the moment is just before
        second, usec = 59, 999999
    try:
        value = datetime(year, mon, day, hour, minute, second, usec, tzinfo=tz or UTC)
        return _bounded(value if tz is None else value.astimezone(UTC))
    except (ValueError, OverflowError):  # month 13, Feb 30, year 0; year 1 east of UTC
        return None


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 time (``Z``, ``+hh:mm``, a comma before the fraction), None if it is not one."""
    text = text.replace("Z", "+00:00").replace(",", ".")
    leap = _LEAP.search(text)
    if leap:  # 23:59:60 (a leap second): the last microsecond before it
        text = text[:leap.start()] + ":59.999999" + text[leap.end():]
    try:
        value = datetime.fromisoformat(text)
        return _bounded(value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC))
    except (ValueError, OverflowError):
        return None


def epoch(value: float) -> datetime | None:
    """A Unix time in seconds (or microseconds, when it is that large), None when it names no moment
    datetime can hold (1e20, Infinity, NaN)."""
    try:
        return _bounded(datetime.fromtimestamp(value / (1e6 if value > 1e14 else 1), tz=UTC))
    except (ValueError, OverflowError, OSError):
        return None


def zone(text: str | None) -> timezone | None:
    """``Z``, ``+hh:mm`` or ``-hhmm`` as a timezone; None when the log wrote no zone."""
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    try:
        return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))
    except ValueError:  # +99:00, +12:75: no clock has it
        return IMPOSSIBLE_ZONE
