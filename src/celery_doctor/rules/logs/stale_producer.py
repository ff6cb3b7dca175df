"""A reset on the first write of an idle pooled producer: a pidbox reply, or ``apply_async`` /
``send_task`` from a web process, fails with a reset or broken pipe because the pooled
connection sat idle until something in between (or the server) dropped it. The pool handed
out a dead connection; the idle cut is the alternative explanation for why it died."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.fixes import snippet
from celery_doctor.rules.registry import rule

# the callers that take a producer from the pool (not kombu's own _publish, which every publish passes)
PUBLISH = re.compile(r"in (apply_async|send_task|_publish_reply|producer_or_acquire)\b")


@rule("CD-L27", "logs", Category.POOL_EXHAUSTION_OR_MISUSE)
def stale_pooled_producer(ctx: LogContext) -> Iterable[Finding]:
    """A publish on a pooled connection fails with a reset/broken pipe on its first write after idle."""
    hits = [e for e in all_events(ctx) if e.side == Side.CLIENT and PUBLISH.search(e.text)
            and error_family(e) in ("reset", "broken_pipe", "eof")
            and "Unrecoverable error" not in e.text]  # the worker's own consumer dying is not a pooled producer
    if not hits:
        return []
    pidbox = any("_publish_reply" in e.text for e in hits)
    return [Finding(
        category=Category.POOL_EXHAUSTION_OR_MISUSE, severity=Severity.MEDIUM,
        title="A pooled producer connection was dead when it was next used"
              + (" (remote-control reply)" if pidbox else " (publishing a task)"),
        explanation=("The failure is on a publish (" + ("a pidbox reply" if pidbox else "apply_async/send_task")
                     + ") and is a reset or broken pipe on the first write: the connection came from the pool "
                     "after sitting idle, and something had closed it meanwhile. Either a middlebox cut the idle "
                     "flow (the alternative: look for regular idle times) or the server dropped it; the pool does "
                     "not check a connection before handing it out."),
        evidence=evidence_of(hits),
        fix=Fix(text="Retry publishes (task_publish_retry, on by default) and keep idle pooled connections short-"
                     "lived: a smaller broker_pool_limit, heartbeats or TCP keepalive under the idle timeout, or "
                     "broker_pool_limit = 0 for processes that publish rarely.",
                snippet=snippet({"broker_pool_limit": "0"}, ctx.celery_version,
                                "web processes that publish rarely: a fresh connection per publish"),
                verify="celery-doctor repro --fault idle-cut:60:rst --scenario idle"),
        confidence=0.6,
        facts={"source": "logs", "pidbox": pidbox},
    )]
