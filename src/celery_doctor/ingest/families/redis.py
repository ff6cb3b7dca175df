"""Redis server logs: 3.0+ ``pid:role`` and <=2.8 ``[pid]`` headers (the year only since 6.x/7.x)."""

from __future__ import annotations

import re
from typing import Any

from celery_doctor.ingest import times
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Side

HEADER = re.compile(
    r"^(?:(\d+):([MSCX])|\[(\d+)\]) (\d{1,2}) (\w{3})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ([.\-*#]) ")
PEER = re.compile(r"addr=(\S+)|client: (\S+)|Accepted (\S+)")
LEVELS = {"#": "WARNING", "*": "NOTICE", "-": "VERBOSE", ".": "DEBUG"}


class Redis(Family):
    name = "redis"
    side = Side.BROKER

    def start(self, line: str, year: int) -> Start | None:
        m = HEADER.match(line)
        if not m:
            return None
        d, mon, y, h, mi, s, frac, level = m.group(4, 5, 6, 7, 8, 9, 10, 11)
        month = times.month(mon)
        ts = times.stamp(int(y) if y else year, month, int(d), int(h), int(mi), int(s),
                         times.micro(frac)) if month else None
        return Start(ts, LEVELS[level], naive=True) if ts else None

    def message_start(self, line: str) -> int:
        m = HEADER.match(line)
        return m.end() if m else 0

    def fields(self, message: str, error: str | None) -> tuple[str | None, dict[str, Any]]:
        m = PEER.search(message)
        return (next((g for g in m.groups() if g), None) if m else None), {}


FAMILY = Redis()
