"""A reset on the first write of an idle pooled producer: a pidbox reply, or ``apply_async`` /
``send_task`` from a web process, fails with a reset or broken pipe because the pooled
connection sat idle until something in between (or the server) dropped it. The pool handed
out a dead connection; the idle cut is the alternative explanation for why it died."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.fixes import snippet
from celery_doctor.rules.registry import rule

# the callers that take a producer from the pool (not kombu's own _publish, which every publish passes)
PUBLISH = re.compile(r"in (apply_async|send_task|_publish_reply|producer_or_acquire)\b")
# the pool forked or retired a child just before the failure (the autoscaler, max-tasks-per-child)
RESIZE = frozenset({"celery.autoscale.resize", "billiard.process.start", "billiard.process.exit"})
RESIZE_WINDOW = timedelta(seconds=5)


@rule("CD-L27", "logs", Category.POOL_EXHAUSTION_OR_MISUSE)
def stale_pooled_producer(ctx: LogContext) -> Iterable[Finding]:
    """A publish on a pooled connection fails with a reset/broken pipe on its first write after idle."""
    hits = [e for e in all_events(ctx) if e.side == Side.CLIENT and PUBLISH.search(e.text)
            and error_family(e) in ("reset", "broken_pipe", "eof")
            and "Unrecoverable error" not in e.text]  # the worker's own consumer dying is not a pooled producer
    if not hits:
        return []
    pidbox = any("_publish_reply" in e.text for e in hits)
    # "after sitting idle" is the reading this rule rests on: an undated paste cannot show it, and a
    # child forked or retired by the pool a moment before is an equal reading (a child holds copies of
    # the parent's sockets, and its exit or after-fork cleanup can end the parent's connection)
    undated = not any(e.dated for e in hits)
    resized = [x for e in hits if e.dated for x in ctx.timeline.events
               if x.signature in RESIZE and x.source == e.source and timedelta(0) <= e.at - x.at <= RESIZE_WINDOW]
    doubt = ""
    if resized:
        doubt = (f" But the pool had just changed its children ('{resized[-1].text.strip()[:80]}' "
                 f"{(hits[0].at - resized[-1].at).total_seconds():.1f} s before): a child forked or retired at that "
                 "moment, holding copies of the parent's sockets, is an equal reading; check whether the resets "
                 "follow every autoscale or child recycle (max-tasks-per-child).")
    elif undated:
        doubt = (" The lines carry no times, so whether the connection had sat idle cannot be seen; give the "
                 "log with its timestamps (an idle gap before the failure, or a pool change at that moment).")
    return [Finding(
        category=Category.POOL_EXHAUSTION_OR_MISUSE, severity=Severity.MEDIUM,
        title="A pooled producer connection was dead when it was next used"
              + (" (remote-control reply)" if pidbox else " (publishing a task)"),
        explanation=("The failure is on a publish (" + ("a pidbox reply" if pidbox else "apply_async/send_task")
                     + ") and is a reset or broken pipe on the first write: the usual reading is that the "
                     "connection came from the pool after sitting idle, and something had closed it meanwhile. "
                     "Either a middlebox cut the idle flow (the alternative: look for regular idle times) or the "
                     "server dropped it; the pool does not check a connection before handing it out." + doubt),
        evidence=evidence_of(hits),
        fix=Fix(text="Retry publishes (task_publish_retry, on by default) and keep idle pooled connections short-"
                     "lived: a smaller broker_pool_limit, heartbeats or TCP keepalive under the idle timeout, or "
                     "broker_pool_limit = 0 for processes that publish rarely.",
                snippet=snippet({"broker_pool_limit": "0"}, ctx.celery_version,
                                "web processes that publish rarely: a fresh connection per publish"),
                verify="celery-doctor repro --fault idle-cut:60:rst --scenario idle"),
        confidence=0.45 if (resized or undated) else 0.6,
        facts={"source": "logs", "pidbox": pidbox, "pool_resized": bool(resized), "undated": undated},
    )]
