"""Line layouts of each log family, collector prefixes, and their timestamps.

A *family* decides which catalogue entries apply (celery, rabbitmq, redis) and how a record
starts; a *prefix* is what a log collector puts in front of the original line (docker-compose,
Heroku/Cloud Foundry drains, journald, kubectl --timestamps).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

# --- record starts, per family ------------------------------------------------------------------
CELERY = re.compile(r"^\[(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?: ?(\w+)/([^\]]*)\] ?")
# custom worker_log_format that still starts with a timestamp and carries a level
CELERY_CUSTOM = re.compile(
    r"^\[?(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?(Z|[+-]\d\d:?\d\d)?\]?[ :|\-\]]+"
    r"(?:.{0,60}?)\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
RABBIT_LOGGER = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)([+-]\d\d:\d\d)? \[(\w+)\] (<[\d.]+>) ?")  # 3.7+ (3.9+ has zone)
RABBIT_OLD = re.compile(r"^=(\w+) REPORT==== (\d{1,2})-(\w{3})-(\d{4})::(\d\d):(\d\d):(\d\d)(?: UTC)? ===")
REDIS = re.compile(
    r"^(?:(\d+):([MSCX])|\[(\d+)\]) (\d{1,2}) (\w{3})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ([.\-*#]) ")

# --- collector prefixes --------------------------------------------------------------------------
PREFIXES: dict[str, re.Pattern[str]] = {
    "docker-compose": re.compile(r"^(?P<svc>[A-Za-z0-9][\w.\-]*)\s*\| ?"),
    "heroku": re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
                         r"(?P<svc>[\w.\-]+\[[\w.\-]+\]): "),
    "journald": re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:?\d\d) \S+ "
                           r"(?P<svc>[\w.\-@/]+?)(?:\[\d+\])?: "),
    "kubectl": re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) "),
    # syslog / Papertrail: "Jun 12 06:16:56 app/worker.1:  " (no year, no zone: the inner line's time wins)
    "syslog": re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d (?:\S+ )?(?P<svc>[\w.\-/]+?)(?:\[\d+\])?: +"),
}


@dataclass(frozen=True)
class Start:
    """What the first line of a record says."""

    ts: datetime
    level: str
    naive: bool  # the log wrote no zone: read as UTC
    key: str = ""  # RabbitMQ 3.9+: lines of one multi-line message share ts+pid


def _micro(frac: str | None) -> int:
    return int((frac or "0")[:6].ljust(6, "0"))


def parse_iso(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace(",", "."))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _zone(text: str | None) -> timezone | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))


def start_celery(line: str) -> Start | None:
    m = CELERY.match(line)
    if m:
        y, mo, d, h, mi, s, frac, level = m.group(1, 2, 3, 4, 5, 6, 7, 8)
        ts = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), _micro(frac), tzinfo=UTC)
        return Start(ts, level.upper(), naive=True)
    m = CELERY_CUSTOM.match(line)
    if m:
        y, mo, d, h, mi, s, frac, zone, level = m.groups()
        tz = _zone(zone)
        ts = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), _micro(frac), tzinfo=tz or UTC)
        return Start(ts.astimezone(UTC), level.upper(), naive=tz is None)
    return None


def start_rabbitmq(line: str) -> Start | None:
    m = RABBIT_LOGGER.match(line)
    if m:
        stamp, zone, level, _pid = m.groups()
        ts = parse_iso(stamp + (zone or ""))
        if ts is None:
            return None
        return Start(ts, level.upper(), naive=zone is None, key=line[: m.end()])
    m = RABBIT_OLD.match(line)
    if m:
        level, d, mon, y, h, mi, s = m.groups()
        month = MONTHS.get(mon.lower())
        if month is None:
            return None
        ts = datetime(int(y), month, int(d), int(h), int(mi), int(s), tzinfo=UTC)
        return Start(ts, level.upper(), naive=not line.rstrip().endswith("UTC ==="))
    return None


def start_redis(line: str, year: int) -> Start | None:
    m = REDIS.match(line)
    if not m:
        return None
    d, mon, y, h, mi, s, frac, level = m.group(4, 5, 6, 7, 8, 9, 10, 11)
    month = MONTHS.get(mon.lower())
    if month is None:
        return None
    ts = datetime(int(y) if y else year, month, int(d), int(h), int(mi), int(s), _micro(frac), tzinfo=UTC)
    return Start(ts, {"#": "WARNING", "*": "NOTICE", "-": "VERBOSE", ".": "DEBUG"}[level], naive=True)


def message_start(family: str, line: str) -> int:
    """Where the message text begins after the family's own line header."""
    pattern = {"celery": CELERY, "rabbitmq": RABBIT_LOGGER, "redis": REDIS}.get(family)
    m = pattern.match(line) if pattern else None
    if m is None and family == "celery":
        m2 = CELERY_CUSTOM.match(line)
        return m2.end() if m2 else 0
    return m.end() if m else 0


# --- JSON lines (python-json-logger, RabbitMQ's JSON format, the fault proxy) -------------------
TS_KEYS = ("ts", "time", "timestamp", "asctime", "@timestamp", "created")
MSG_KEYS = ("message", "msg", "text")
LEVEL_KEYS = ("levelname", "level", "severity")


def parse_json_line(line: str) -> tuple[datetime, str, str, dict[str, object]] | None:
    """(ts, level, message, object) of one JSON log line, or None if it is not one."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    ts = None
    for key in TS_KEYS:
        value = obj.get(key)
        if isinstance(value, int | float) and value > 1e9:
            ts = datetime.fromtimestamp(value / (1e6 if value > 1e14 else 1), tz=UTC)
        elif isinstance(value, str):
            ts = parse_iso(value.strip()) or _celery_stamp(value)
        if ts is not None:
            break
    message = next((str(obj[k]) for k in MSG_KEYS if isinstance(obj.get(k), str)), "")
    level = next((str(obj[k]).upper() for k in LEVEL_KEYS if obj.get(k)), "")
    if ts is None:
        return None
    return ts, level, message, obj


def _celery_stamp(value: str) -> datetime | None:
    start = start_celery(f"[{value}: INFO/x] ")
    return start.ts if start else None
