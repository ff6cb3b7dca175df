"""RabbitMQ refused a connection because the virtual host is down (``541 INTERNAL_ERROR ...
vhost '/' is down``, rabbit_vhost_sup_sup / rabbit_reader): the broker is up but not serving
that vhost (its message store failed or is recovering). Not a permission problem."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

DOWN = re.compile(r"vhost '?[^']*'? is down|\(541\)|INTERNAL_ERROR - access to vhost")


@rule("CD-L24", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def vhost_down(ctx: LogContext) -> Iterable[Finding]:
    """The vhost is down on the broker (541 INTERNAL_ERROR): a broker-side failure, not auth."""
    # 541 is RabbitMQ's INTERNAL_ERROR for more than a vhost that is down: a refused deprecated feature
    # (transient_nonexcl_queues, rules/logs/rabbitmq_refusals.py) is the client's doing, not the vhost's
    hits = [e for e in all_events(ctx) if DOWN.search(text := f"{e.error or ''}\n{e.text}")
            and "transient_nonexcl_queues" not in text]
    if not hits:
        return []
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
        title="The broker's virtual host is down",
        explanation=("RabbitMQ answered 541 INTERNAL_ERROR: the vhost is down. The node runs, but that vhost's "
                     "processes (message store, queues) stopped or are still recovering, so every client of it is "
                     "refused. The credentials are not the problem."),
        evidence=evidence_of(hits),
        fix=Fix(text="Look at the RabbitMQ log for the vhost's crash (disk, corrupted message store); restart it with "
                     "`rabbitmqctl restart_vhost VHOST` once the cause is fixed."),
        confidence=0.9,
        facts={"source": "logs"},
    )]
