"""Timestamps of every log family and collector prefix, built in one place.

Each family's header parser hands the fields it matched to :func:`stamp` (or an ISO string to
:func:`parse_iso`), so what counts as a valid time (calendar checks, leap seconds, zones) is
decided here once for every layout.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def micro(frac: str | None) -> int:
    """Microseconds of a fraction written with 1 to 9 digits."""
    return int((frac or "0")[:6].ljust(6, "0"))


def month(name: str) -> int | None:
    return MONTHS.get(name[:3].lower())


def stamp(year: int, mon: int, day: int, hour: int, minute: int, second: int, usec: int = 0,
          tz: timezone | None = None) -> datetime | None:
    """An aware UTC datetime from a header's fields, or None when they name no real moment
    (the line is then not read as a dated record start)."""
    try:
        value = datetime(year, mon, day, hour, minute, second, usec, tzinfo=tz or UTC)
    except ValueError:
        return None
    return value if tz is None else value.astimezone(UTC)


def parse_iso(text: str) -> datetime | None:
    """An ISO 8601 time (``Z``, ``+hh:mm``, a comma before the fraction), None if it is not one."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(",", "."))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def zone(text: str | None) -> timezone | None:
    """``Z``, ``+hh:mm`` or ``-hhmm`` as a timezone; None when the log wrote no zone."""
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))
