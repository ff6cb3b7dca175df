"""Collector prefixes, as data: what a log collector puts in front of the original line.

Each entry is a name, a pattern with optional ``ts`` (the collector's own time, used only when the
inner line has no zone) and ``svc`` (the service or container) groups, and an example. Sniffing
tries them in this order; adding a collector is one entry here plus its fixture and test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery_doctor.ingest import times


@dataclass(frozen=True)
class Prefix:
    name: str
    pattern: re.Pattern[str]
    example: str
    services: bool = False  # several services interleave in one file (docker compose)
    # a wrapper that is not a prefix but a whole object around the line (docker json-file,
    # journalctl -o json): (inner line, service, time) or None
    decode: Callable[[str], tuple[str, str | None, datetime | None] | None] | None = None

    def strip(self, line: str) -> tuple[str, str | None, datetime | None]:
        """(line without the prefix, service, the collector's time); the line as-is if no match."""
        if self.decode is not None:
            return self.decode(line) or (line, None, None)
        m = self.pattern.match(line)
        if not m:
            return line, None, None
        groups = m.groupdict()
        ts = times.parse_iso(groups["ts"]) if groups.get("ts") else None
        return line[m.end():], groups.get("svc"), ts


def _docker_json(line: str) -> tuple[str, str | None, datetime | None] | None:
    """docker's json-file driver: {"log": "...\\n", "stream": "stderr", "time": "..."}."""
    obj = _object(line)
    if obj is None or not isinstance(obj.get("log"), str):
        return None
    ts = obj.get("time")
    return obj["log"].rstrip("\n"), None, times.parse_iso(ts) if isinstance(ts, str) else None


def _journal_json(line: str) -> tuple[str, str | None, datetime | None] | None:
    """journalctl -o json: MESSAGE, __REALTIME_TIMESTAMP (microseconds), the unit or identifier."""
    obj = _object(line)
    if obj is None or not isinstance(obj.get("MESSAGE"), str):
        return None
    ts = None
    try:
        ts = datetime.fromtimestamp(int(obj.get("__REALTIME_TIMESTAMP", "")) / 1e6, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        ts = None
    service = obj.get("_SYSTEMD_UNIT") or obj.get("SYSLOG_IDENTIFIER")
    return obj["MESSAGE"], str(service) if service else None, ts


def _object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


CRI = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) "
                 r"(?:stdout|stderr) (?P<tag>[PF]) ")


def cri_partial(line: str) -> bool | None:
    """For a Kubernetes CRI line: True if it is a partial (P) line that the next one continues."""
    m = CRI.match(line)
    return None if m is None else m.group("tag") == "P"


PREFIXES: tuple[Prefix, ...] = (
    Prefix("docker-json", re.compile(r'^\{"log":'), '{"log":"[2026-...] ...\\n","stream":"stderr","time":"..."}',
           decode=_docker_json),
    Prefix("journald-json", re.compile(r'^\{.*"__REALTIME_TIMESTAMP"'),
           '{"MESSAGE": "...", "__REALTIME_TIMESTAMP": ...}', decode=_journal_json),
    # Kubernetes CRI (containerd, CRI-O) files under /var/log/pods: "P" lines are cut and go on
    Prefix("cri", CRI, "2026-11-23T21:20:59.123456789Z stderr F [2026-11-23 21:20:59,470: WARNING/...] ..."),
    # Cloud Foundry `cf logs`: "2020-07-21T10:40:12.93-0400 [APP/PROC/WEB/4] ERR ..." (also RTR, CELL, OUT)
    Prefix("cf", re.compile(r"^\s*(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
                            r"\[(?P<svc>[A-Z]+(?:/[\w.\-]+)*)\] (?:OUT|ERR) ?"),
           "2020-07-21T10:40:12.93-0400 [APP/PROC/WEB/4] ERR [2020-07-21 14:40:12,930: ERROR/MainProcess] ..."),
    # Google Cloud Logging lines copied from the Logs Explorer: severity, the entry's time, the summary
    # fields in brackets (getsentry/sentry#91329: "[resource.labels.containerName: sentry-worker]")
    Prefix("gcp-logging", re.compile(r"^(?:DEFAULT|DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL|ALERT|EMERGENCY) "
                                     r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) "
                                     r"\[resource\.labels\.\w+: (?P<svc>[^\]]+)\] "),
           "INFO 2025-05-05T06:58:31.342089926Z [resource.labels.containerName: sentry-worker] 06:58:31 [ERROR] ..."),
    # with -t / --timestamps, docker's time of the line after the bar (cmd/formatter/logs.go:
    # prefix, RFC3339NanoFixed, a space, the line)
    Prefix("docker-compose", re.compile(r"^(?P<svc>[A-Za-z0-9][\w.\-]*)\s*\| ?"
                                        r"(?:(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) )?"),
           "celery-worker-1  | [2026-11-23 21:20:59,470: WARNING/MainProcess] ... "
           "(with -t: celery-worker-1  | 2026-11-23T21:20:59.470123456Z [2026-11-23 ...)", services=True),
    Prefix("heroku", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) "
                                r"(?P<svc>[\w.\-]+\[[\w.\-]+\]): "),
           "2016-01-07T21:03:51.716218+00:00 app[worker.1]: ..."),
    Prefix("journald", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:?\d\d) \S+ "
                                  r"(?P<svc>[\w.\-@/]+?)(?:\[\d+\])?: "),
           "2026-11-23T21:20:59+0000 host celery[811]: ... (journalctl -o short-iso)"),
    Prefix("kubectl", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) "),
           "2026-11-23T21:20:59.000000000Z ... (kubectl logs --timestamps)"),
    # a log viewer's own time in front (CloudWatch, Grafana/Loki, Datadog exports): ISO with a zone
    Prefix("viewer", re.compile(r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d))\s+"
                                r"(?=\S)(?!\[\w+\] <)"),
           "2025-03-27T05:41:48.225+00:00 2025-03-27 05:41:48,226 ERROR [consumer.py:_error_handler] ..."),
    # syslog / Papertrail: no year, no zone: the inner line's time wins
    # (journalctl's default and -o short-precise have the same shape, the latter with microseconds)
    Prefix("syslog", re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? (?:\S+ )?"
                                r"(?P<svc>[\w.\-/@]+?)(?:\[\d+\])?: +"),
           "Jun 12 06:16:56 app/worker.1:  ... / Dec 01 10:00:00.123456 host celery[811]: ..."),
    # supervisord's own log about its children ("INFO exited: celery (exit status 1; not expected)")
    # is a Celery-like custom layout; a program's captured output carries no prefix
)
BY_NAME: dict[str, Prefix] = {p.name: p for p in PREFIXES}


def strip(line: str, prefix: str | None) -> tuple[str, str | None, datetime | None]:
    """(line without the named collector prefix, service, prefix timestamp)."""
    if prefix is None:
        return line, None, None
    return BY_NAME[prefix].strip(line)
