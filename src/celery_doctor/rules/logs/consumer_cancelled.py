"""RabbitMQ cancelled the worker's consumer (basic.cancel): the connection was fine, but the queue
the worker consumed from went away under it. RabbitMQ sends a consumer cancel notification when the
queue is deleted (by an operator, the management UI, an x-expires or auto-delete policy), when the
node that hosts a classic queue stops, and when a replicated queue's leader moves (mirrored queues'
failover, with x-cancel-on-ha-failover). py-amqp raises ConsumerCancelled for it, which Celery
handles as a lost connection and reconnects, re-declaring the queue; messages already in a deleted
queue are gone."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# py-amqp amqp/channel.py _on_basic_cancel: raise ConsumerCancelled(consumer_tag, spec.Basic.Cancel)
# (str: "Basic.cancel: (0) None<tag>", recorded here by deleting a consumed queue on RabbitMQ 3.x)
CANCELLED = re.compile(r"ConsumerCancelled|Basic\.cancel: \(0\)")


@rule("CD-L74", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def consumer_cancelled(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ cancelled the worker's consumer (ConsumerCancelled): its queue was deleted, or the
    node or leader that hosted it went away."""
    hits = [e for e in all_events(ctx) if e.side != Side.BROKER and CANCELLED.search(f"{e.error or ''}\n{e.text}")]
    if not hits:
        return []
    return [
        Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER,
            severity=Severity.HIGH,
            title="RabbitMQ cancelled the worker's consumer (its queue went away)",
            explanation=(
                "The broker sent basic.cancel for the worker's consumer: the connection itself was not cut. "
                "RabbitMQ does that when the queue is deleted (an operator, the management UI, an x-expires "
                "or auto-delete policy), when the node hosting a classic queue stops, or when a replicated "
                "queue's leader moves. Celery treats it as a lost connection and re-declares the queue; "
                "anything that was in a deleted queue is lost. Which of these it was is in the broker's "
                "log for the same moment."
            ),
            evidence=evidence_of(hits),
            fix=Fix(
                text="Find who removed the queue (RabbitMQ log and management audit at that time, policies with "
                "expires / auto-delete matching it); keep task queues durable and not auto-deleted; for node "
                "loss use quorum queues (task_queues with x-queue-type='quorum') so another node takes over.",
                verify="rabbitmqctl list_queues name durable auto_delete policy consumers",
            ),
            confidence=0.6,
            facts={"source": "logs"},
        )
    ]
