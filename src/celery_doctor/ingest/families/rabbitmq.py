"""RabbitMQ server logs: <=3.6 ``=ERROR REPORT====`` reports, 3.7/3.8 lager, 3.9+ logger (with zone)."""

from __future__ import annotations

import re
from typing import Any

from celery_doctor.ingest import times
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Side

LOGGER = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)([+-]\d\d:\d\d)? \[(\w+)\] (<[\d.]+>) ?")  # 3.7+ (3.9+ has zone)
REPORT = re.compile(r"^=(\w+) REPORT==== (\d{1,2})-(\w{3})-(\d{4})::(\d\d):(\d\d):(\d\d)(?: UTC)? ===")
PEER = re.compile(r"\(?(\[?[0-9a-fA-F.:]+\]?:\d+) -> (\[?[0-9a-fA-F.:]+\]?:\d+)")
CONN_PID = re.compile(r"connection (<[\d.]+>)")
TIMEOUT_S = re.compile(r"timeout: (\d+)s")
STATE = re.compile(r"state: (\w+)")
RESOURCE = re.compile(r"(memory|disk) resource limit alarm", re.I)
DURATION = re.compile(r"duration: '(?:(\d+)D, )?(?:(\d+)H, )?(?:(\d+)M, )?(?:(\d+)s|(\d+)ms)'")


class RabbitMQ(Family):
    name = "rabbitmq"
    side = Side.BROKER

    def start(self, line: str, year: int) -> Start | None:
        m = LOGGER.match(line)
        if m:
            stamp, zone, level, _pid = m.groups()
            ts = times.parse_iso(stamp + (zone or ""))
            return Start(ts, level.upper(), naive=zone is None, key=line[: m.end()]) if ts else None
        m = REPORT.match(line)
        if m:
            level, d, mon, y, h, mi, s = m.groups()
            month = times.month(mon)
            ts = times.stamp(int(y), month, int(d), int(h), int(mi), int(s)) if month else None
            return Start(ts, level.upper(), naive=not line.rstrip().endswith("UTC ===")) if ts else None
        return None

    def message_start(self, line: str) -> int:
        m = LOGGER.match(line)
        return m.end() if m else 0

    def fields(self, message: str, error: str | None) -> tuple[str | None, dict[str, Any]]:
        m = PEER.search(message)
        detail: dict[str, Any] = {}
        if (pid := CONN_PID.search(message)) is not None:
            detail["conn"] = pid.group(1)
        # a number too long for any real timeout or duration (5000 digits) is not read as one
        if (t := TIMEOUT_S.search(message)) is not None and len(t.group(1)) <= 18:
            detail["timeout_s"] = int(t.group(1))
        if (st := STATE.search(message)) is not None:
            detail["state"] = st.group(1)
        if (d := DURATION.search(message)) is not None and all(len(x or "") <= 18 for x in d.groups()):
            days, hours, mins, secs, ms = (int(x) if x else 0 for x in d.groups())
            detail["duration_s"] = days * 86400 + hours * 3600 + mins * 60 + secs + ms / 1000
        if (r := RESOURCE.search(message)) is not None:
            detail["resource"] = r.group(1).lower()
        return (m.group(1) if m else None), detail


FAMILY = RabbitMQ()
