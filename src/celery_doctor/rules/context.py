"""What the log rules see: the timeline, its incidents, and what the logs say about the run
(version, pool, transport, negotiated heartbeat). Shared by rules/logs_rules.py and the one-rule
modules in rules/logs/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celery_doctor.model import Event, Evidence, Finding, Incident, Kind, Side
from celery_doctor.timeline import Timeline

MAX_EVIDENCE = 8
THREAD_POOLS = {"solo", "threads"}


@dataclass
class LogContext:
    timeline: Timeline
    incidents: list[Incident]
    celery_version: str | None
    pool: str | None
    transport: str | None  # "amqp", "redis", ... from the banner or the events
    heartbeat_s: float | None  # negotiated timeout the broker reported, if any
    # package -> (version, the line that names it) from a `celery report` given beside the logs
    reported: dict[str, tuple[str, Evidence]] = field(default_factory=dict)
    # package -> what the logs show of its release (rules/logs/versions.py: seen_in), once per context
    versions: dict[str, Any] | None = None


Rule = Callable[[LogContext], Iterable[Finding]]


def context_for(timeline: Timeline, incidents: list[Incident],
                reported: dict[str, tuple[str, Evidence]] | None = None) -> LogContext:
    meta: dict[str, object] = {}
    for source in timeline.sources:
        for key, value in source.meta.items():
            meta.setdefault(key, value)
    hb = [e.detail["timeout_s"] for e in timeline.events
          if e.kind == Kind.HEARTBEAT_MISSED_CLIENT and e.detail.get("timeout_s")]
    transport = str(meta.get("transport") or "")
    client_text = "\n".join(e.text for e in timeline.events if e.side == Side.CLIENT and e.kind != Kind.OTHER)
    if not transport and ("redis/" in client_text or "redis.exceptions" in client_text or "redis://" in client_text):
        transport = "redis"
    if not transport:
        broker_formats = {s.format for s in timeline.sources}
        transport = "redis" if any("redis" in f for f in broker_formats) else (
            "amqp" if any("rabbit" in f for f in broker_formats) else "")
    return LogContext(
        timeline=timeline, incidents=incidents,
        celery_version=str(meta["celery_version"]) if meta.get("celery_version") else None,
        pool=str(meta["pool"]).lower() if meta.get("pool") else None,
        transport=transport.split(":")[0].lower() or None,
        heartbeat_s=float(hb[0]) if hb else None,
        reported=dict(reported or {}),
    )


def evidence_of(events: Iterable[Event], kinds: set[Kind] | None = None) -> list[Evidence]:
    out: list[Evidence] = []
    seen: set[tuple[str, int]] = set()
    for e in events:
        if kinds is not None and e.kind not in kinds:
            continue
        if (e.source, e.line) in seen:
            continue
        seen.add((e.source, e.line))
        out.append(Evidence.of(e))
        if len(out) >= MAX_EVIDENCE:
            break
    return out


def events_of(incidents: Iterable[Incident]) -> list[Event]:
    return [e for inc in incidents for e in inc.events]


def cited(incidents: Iterable[Incident], deciding: Callable[[Event], bool]) -> list[Event]:
    """The events a rule cites from the incidents it matched: the lines that decided it first, then
    the rest of each incident on the deciding connection or the client's side. A close of another
    connection that only joined the incident for happening at the same moment is not evidence of
    this cause, so it stays out."""
    first: list[Event] = []
    rest: list[Event] = []
    for inc in incidents:
        hits = [e for e in inc.events if deciding(e)]
        peers = {e.peer for e in hits if e.peer}
        first += hits
        rest += [e for e in inc.events if not deciding(e)
                 and (e.side != Side.BROKER or not e.peer or not peers or e.peer in peers)]
    return first + rest


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"



def all_events(ctx: LogContext) -> list[Event]:
    """Every event the rules may look at, dated first then the undated ones (pastes)."""
    return [*ctx.timeline.events, *ctx.timeline.undated]
