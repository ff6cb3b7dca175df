"""Celery worker and beat logs (3.1 to 5.x), with kombu, py-amqp and redis-py messages in them."""

from __future__ import annotations

import re
from typing import Any

from celery_doctor.ingest import times
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Kind, Side

# default worker_log_format: "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
HEADER = re.compile(r"^\[(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?: ?(\w+)/([^\]]*)\] ?")
# custom worker_log_format that still starts with a timestamp and carries a level
CUSTOM = re.compile(
    r"^\[?(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?(Z|[+-]\d\d:?\d\d)?\]?[ :|\-\]]+"
    r"(?:.{0,60}?)\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
ERRNO = re.compile(r"(?:Errno |\(|Error )(\d{2,3})\b")
AUTH = re.compile(r"AccessRefused|ACCESS_REFUSED|login refused|WRONGPASS|NOAUTH|invalid password|"
                  r"AuthenticationError|invalid username-password")
CONNECT_REASON = re.compile(r"Cannot connect to \S+?: (.+?)\.*$")
REPR_AT_END = re.compile(r"\(([A-Z]\w+(?:Error|Exception|Refused|Forced|Closed)\(.*\))\)\s*$")


class Celery(Family):
    name = "celery"
    side = Side.CLIENT

    def start(self, line: str, year: int) -> Start | None:
        m = HEADER.match(line)
        if m:
            y, mo, d, h, mi, s, frac, level = m.group(1, 2, 3, 4, 5, 6, 7, 8)
            ts = times.stamp(int(y), int(mo), int(d), int(h), int(mi), int(s), times.micro(frac))
            return Start(ts, level.upper(), naive=True) if ts else None
        m = CUSTOM.match(line)
        if m:
            y, mo, d, h, mi, s, frac, zone, level = m.groups()
            tz = times.zone(zone)
            ts = times.stamp(int(y), int(mo), int(d), int(h), int(mi), int(s), times.micro(frac), tz)
            return Start(ts, level.upper(), naive=tz is None) if ts else None
        return None

    def message_start(self, line: str) -> int:
        m = HEADER.match(line) or CUSTOM.match(line)
        return m.end() if m else 0

    def error(self, lines: list[str], message: str) -> str | None:
        connect = CONNECT_REASON.search(lines[0])
        if connect:  # the reason is on the first line; the rest says when it retries
            return connect.group(1)
        if len(lines) > 1:
            last = next((ln.strip() for ln in reversed(lines[1:]) if ln.strip()), "")
            if last and not last.startswith(("File ", "^", "~")):
                return last
        m = REPR_AT_END.search(lines[0])
        return m.group(1) if m else None

    def fields(self, message: str, error: str | None) -> tuple[str | None, dict[str, Any]]:
        en = ERRNO.search(error) if error else None
        return None, ({"errno": int(en.group(1))} if en else {})

    def refine(self, kind: Kind, error: str | None) -> Kind:
        if kind in (Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT) and error and AUTH.search(error):
            return Kind.AUTH_REFUSED
        return kind


FAMILY = Celery()
