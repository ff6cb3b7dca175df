"""Collector prefixes, as data: what a log collector puts in front of the original line.

Each entry is a name, a pattern with optional ``ts`` (the collector's own time, used only when the
inner line has no zone) and ``svc`` (the service or container) groups, and an example. Sniffing
tries them in this order; adding a collector is one entry here plus its fixture and test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from celery_doctor.ingest import times


@dataclass(frozen=True)
class Prefix:
    name: str
    pattern: re.Pattern[str]
    example: str
    services: bool = False  # several services interleave in one file (docker compose)

    def strip(self, line: str) -> tuple[str, str | None, datetime | None]:
        """(line without the prefix, service, the collector's time); the line as-is if no match."""
        m = self.pattern.match(line)
        if not m:
            return line, None, None
        groups = m.groupdict()
        ts = times.parse_iso(groups["ts"]) if groups.get("ts") else None
        return line[m.end():], groups.get("svc"), ts


PREFIXES: tuple[Prefix, ...] = (
    Prefix("docker-compose", re.compile(r"^(?P<svc>[A-Za-z0-9][\w.\-]*)\s*\| ?"),
           "celery-worker-1  | [2026-11-23 21:20:59,470: WARNING/MainProcess] ...", services=True),
    Prefix("heroku", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
                                r"(?P<svc>[\w.\-]+\[[\w.\-]+\]): "),
           "2016-01-07T21:03:51.716218+00:00 app[worker.1]: ..."),
    Prefix("journald", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:?\d\d) \S+ "
                                  r"(?P<svc>[\w.\-@/]+?)(?:\[\d+\])?: "),
           "2026-11-23T21:20:59+0000 host celery[811]: ... (journalctl -o short-iso)"),
    Prefix("kubectl", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) "),
           "2026-11-23T21:20:59.000000000Z ... (kubectl logs --timestamps)"),
    # syslog / Papertrail: no year, no zone: the inner line's time wins
    Prefix("syslog", re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d (?:\S+ )?(?P<svc>[\w.\-/]+?)(?:\[\d+\])?: +"),
           "Jun 12 06:16:56 app/worker.1:  ..."),
)
BY_NAME: dict[str, Prefix] = {p.name: p for p in PREFIXES}


def strip(line: str, prefix: str | None) -> tuple[str, str | None, datetime | None]:
    """(line without the named collector prefix, service, prefix timestamp)."""
    if prefix is None:
        return line, None, None
    return BY_NAME[prefix].strip(line)
