"""JSON-lines logs: python-json-logger worker logs, RabbitMQ's JSON format, the fault proxy's log.

Each line is one self-describing object; its message is classified against the other families'
catalogue entries (a JSON line can hold a worker's or a broker's message).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from celery_doctor.ingest import times
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Side

TS_KEYS = ("ts", "time", "timestamp", "asctime", "@timestamp", "created")
MSG_KEYS = ("message", "msg", "text", "event")  # "event": structlog
LEVEL_KEYS = ("levelname", "level", "severity")


def parse_line(line: str) -> tuple[datetime, str, str, dict[str, Any]] | None:
    """(ts, level, message, object) of one JSON log line, or None if it is not one."""
    line = line.strip().strip("`")  # a JSON line pasted as Markdown inline code
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        return None
    if not isinstance(obj, dict):
        return None
    ts = None
    for key in TS_KEYS:
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9:
            ts = times.epoch(value)
        elif isinstance(value, str):
            ts = times.parse_iso(value.strip()) or _celery_stamp(value)
        if ts is not None:
            break
    message = next((str(obj[k]) for k in MSG_KEYS if isinstance(obj.get(k), str)), "")
    level = next((str(obj[k]).upper() for k in LEVEL_KEYS if obj.get(k)), "")
    if ts is None:
        return None
    return ts, level, message, obj


def exception_text(obj: dict[str, Any]) -> str:
    """The exception a JSON log line carries: python-json-logger's exc_info / exc_text, or
    structlog's "exception" (a string, or a list of {"exc_type", "exc_value"} from the cause on)."""
    value = obj.get("exc_info") or obj.get("exc_text") or obj.get("exception") or ""
    if isinstance(value, list):
        parts = [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in value
                 if isinstance(e, dict) and e.get("exc_type")]
        return "\n".join(parts)
    return value if isinstance(value, str) else ""


def _celery_stamp(value: str) -> datetime | None:
    from celery_doctor.ingest.families.celery import FAMILY as CELERY

    start = CELERY.start(f"[{value}: INFO/x] ", 0)
    return start.ts if start else None


class Json(Family):
    name = "json"
    side = Side.CLIENT  # per line: the family whose catalogue entry matched decides
    line_based = False

    def start(self, line: str, year: int) -> Start | None:
        parsed = parse_line(line)
        return Start(parsed[0], parsed[1], naive=False) if parsed else None

    def message_start(self, line: str) -> int:
        return 0


FAMILY = Json()
