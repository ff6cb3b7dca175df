""""No connection failure in these logs" (CD-L13), said only as strongly as the logs allow.

Silence is evidence only where the tool could have heard a failure: an input it could not read
(empty, binary, an unknown format, a compressed file cut short), a run where no worker log was
read at all (the broker's side only), or a worker that started but never logged
``celery@host ready.`` (stuck in a start-up step, or started at ``-l warning``, which hides the
line) leave failures unseen. Then the verdict stays at 0.5 or below (0.7 for an extra input
that could not be read beside a worker log that was) and says what was not read.
"""

from __future__ import annotations

from celery_doctor.model import Category, Finding, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events
from celery_doctor.rules.registry import rule

UNSURE = 0.5  # the most a "nothing failed" may claim when part of the picture could not be read
PARTIAL = ("ends early", "truncated", "cannot be read", "could not be read", "binary data", "empty")


def _blind_spots(ctx: LogContext) -> tuple[list[str], float]:
    """What the logs could not show, in words, one item per reason; and the most "nothing failed"
    may then claim (0.5 when the worker's side may be the part missing, 0.7 for an extra input
    that could not be read beside a worker log that was)."""
    out = []
    sources = ctx.timeline.sources
    events = all_events(ctx)
    client = {e.source for e in events if e.side == Side.CLIENT}
    read = [s for s in sources if s.format != "unknown"]
    ceiling = 1.0
    for s in sources:
        if s.format == "unknown":
            out.append(f"{s.name} could not be read ({'; '.join(s.warnings) or 'not a log this tool reads'})")
            ceiling = min(ceiling, UNSURE if not client else 0.7)
        elif partial := [w for w in s.warnings if any(mark in w for mark in PARTIAL)]:
            out.append(f"{s.name} was read only in part ({'; '.join(partial)})")
            ceiling = UNSURE
    if read and not client and all(s.format.startswith(("rabbitmq", "redis")) for s in read):
        out.append("no worker log was read: only the broker's side of the connections is seen")
        ceiling = UNSURE
    ready = {e.source for e in events if e.kind == Kind.WORKER_READY}
    started = {e.source for e in events if e.side == Side.CLIENT and e.kind == Kind.CONNECTED}
    started |= {s.name for s in sources if s.meta.get("pool") or s.meta.get("concurrency")}  # a worker banner
    busy = {name for name, curve in ctx.timeline.activity.items() if any(n for *_, n in curve)}
    stuck = sorted(started - ready - busy)
    if stuck:
        out.append(f"{', '.join(stuck)}: the worker started but never logged 'celery@... ready.' nor received a "
                   "task: it may be stuck in a start-up step (or runs at -l warning, which hides the line)")
        ceiling = UNSURE
    return out, ceiling


@rule("CD-L13", "logs", Category.NO_INCIDENT)
def no_incident(ctx: LogContext) -> list[Finding]:
    """No lost connection, failed connect, missed heartbeat or broker-side close in the logs; at
    most 0.5 when the worker's log could not be read (or none was given), or the worker never
    became ready."""
    spots, ceiling = _blind_spots(ctx)
    confidence = min(0.8 if ctx.timeline.events else 0.4, ceiling)
    explanation = ("No lost connection, failed connect, missed heartbeat or broker-side close was found in the "
                   "given logs.")
    if spots:
        explanation += " But not everything could be seen: " + "; ".join(spots) + "."
    return [Finding(
        category=Category.NO_INCIDENT, severity=Severity.INFO,
        title="No connection failure in these logs" + (" (but part of the picture is missing)" if spots else ""),
        explanation=explanation, confidence=confidence,
        facts={"not_seen": spots} if spots else {},
    )]
