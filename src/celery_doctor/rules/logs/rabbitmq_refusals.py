"""RabbitMQ refusing what this Celery/kombu asks of it, so the connection closes right after it
opened: a queue type that cannot do global QoS, and RabbitMQ 4.3's refusal of transient
non-exclusive queues. Neither is the network or the broker's health: the client and the broker
disagree about a feature, and the fix is a release or a setting.

- ``NOT_IMPLEMENTED - queue 'q' in vhost '/' does not support global qos`` (reply 540, raised by
  py-amqp as ``AMQPNotImplementedError: Basic.consume: (540) ...``): rabbit_quorum_queue.erl and
  rabbit_stream_queue.erl refuse a consumer on a channel with global QoS. Celery asks for global
  QoS on RabbitMQ (kombu's ``qos_semantics_matches_spec``); Celery 5.5 added
  ``worker_detect_quorum_queues`` (celery/utils/quorum_queues.py), which turns it off when a task
  queue is declared with ``x-queue-type: quorum``.
- ``INTERNAL_ERROR - Feature `transient_nonexcl_queues` is deprecated. By default, this feature is
  not permitted anymore`` (reply 541, rabbit_deprecated_features.erl): RabbitMQ 4.3 refuses
  queues that are neither durable nor exclusive, which is how Celery and kombu declared their
  pidbox (control) reply and event queues until they made them exclusive (celery/celery#10290,
  celery/kombu#2531). The worker dies in mingle's hello, the first such declaration after
  connecting; a paste cut before the broker's error text still shows that place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Event, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.logs.traceback import parse
from celery_doctor.rules.registry import rule

GLOBAL_QOS = re.compile(r"does not support global qos")
TRANSIENT = re.compile(r"transient_nonexcl_queues")


def _text(e: Event) -> str:
    return f"{e.error or ''}\n{e.text}"


@rule("CD-L51", "logs", Category.VERSION_INCOMPATIBILITY)
def global_qos_refused(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ refused a consumer because its queue (quorum, stream) cannot do the global QoS
    Celery asked for (540 NOT_IMPLEMENTED ... does not support global qos)."""
    hits = [e for e in all_events(ctx) if GLOBAL_QOS.search(_text(e))]
    if not hits:
        return []
    return [
        Finding(
            category=Category.VERSION_INCOMPATIBILITY,
            severity=Severity.HIGH,
            title="RabbitMQ refuses the worker's global QoS on a quorum or stream queue",
            explanation=(
                "RabbitMQ answered 540 NOT_IMPLEMENTED: the queue does not support global QoS. Quorum and "
                "stream queues only take per-consumer prefetch, while Celery asks RabbitMQ for a "
                "channel-wide (global) one, so the broker closes the connection when the worker starts "
                "consuming, at every restart. Celery before 5.5 cannot switch it off; 5.5 and later do "
                "when they see a task queue declared as quorum."
            ),
            evidence=evidence_of(hits),
            fix=Fix(
                text="Upgrade to Celery 5.5+ and declare the queues with queue_arguments={'x-queue-type': "
                "'quorum'} in task_queues (worker_detect_quorum_queues, on by default, then uses "
                "per-consumer QoS); or consume from a classic queue.",
                verify="the worker log shows 'Global QoS is disabled' at start and keeps its connection",
            ),
            confidence=0.9,
            facts={"source": "logs", "broker_reply": 540},
        )
    ]


REDIS_ERROR = re.compile(r"redis\.exceptions|kombu/transport/redis\.py|ResponseError|same slot|CROSSSLOT")


def _dies_in_hello(e: Event) -> bool:
    """A client loss whose traceback runs through mingle's hello (celery/worker/consumer/mingle.py
    send_hello -> app.control.inspect().hello): the first reply queue the worker declares."""
    if e.side != Side.CLIENT or e.kind not in (Kind.CONNECTION_LOST, Kind.WORKER_CRASH):
        return False
    if REDIS_ERROR.search(f"{e.error or ''}\n{e.text}"):  # a Redis reply or kombu's Redis transport: no RabbitMQ
        return False
    tb = parse(e.text)
    return tb.has_frame("celery/worker/consumer/mingle.py", "send_hello")


@rule("CD-L52", "logs", Category.VERSION_INCOMPATIBILITY)
def transient_queue_refused(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ 4.3+ refuses the transient non-exclusive reply queues older Celery/kombu declare
    (541 ... `transient_nonexcl_queues`), or, with that text cut off, the worker loses the connection
    inside mingle's hello right after connecting to RabbitMQ."""
    said = [
        e
        for e in all_events(ctx)
        if TRANSIENT.search(_text(e)) and (e.side == Side.CLIENT or e.kind == Kind.CHANNEL_ERROR)
    ]
    hello = (
        []
        if said or ctx.transport in ("redis", "rediss", "sentinel", "sqs")
        else [e for e in all_events(ctx) if _dies_in_hello(e)]
    )
    if not said and not hello:
        return []
    if said:
        explanation = (
            "RabbitMQ refused to declare a transient (non-durable) non-exclusive queue: the "
            "`transient_nonexcl_queues` feature is deprecated and, from RabbitMQ 4.3, not permitted by "
            "default. Celery and kombu declared their control (pidbox) reply and event queues that way "
            "until their 2026 releases made them exclusive, so the worker dies as soon as it asks its "
            "neighbours hello, at every restart."
        )
        confidence = 0.9
    else:
        explanation = (
            "The worker loses its connection inside mingle's hello, the moment it first declares its "
            "control reply queue, right after connecting. RabbitMQ 4.3 and later refuse that queue "
            "(transient and non-exclusive, `transient_nonexcl_queues`) with 541 INTERNAL_ERROR; the "
            "broker's error text is not in these logs, so look for it in the RabbitMQ log before "
            "taking this for the cause."
        )
        confidence = 0.5
    return [
        Finding(
            category=Category.VERSION_INCOMPATIBILITY,
            severity=Severity.HIGH,
            title="RabbitMQ refuses the worker's transient reply queue (transient_nonexcl_queues)",
            explanation=explanation,
            evidence=evidence_of(said or hello),
            fix=Fix(
                text="Upgrade Celery and kombu to the releases that declare control and event queues exclusive "
                "(celery/celery#10290, celery/kombu#2531; or set control_queue_exclusive=True and "
                "event_queue_exclusive=True where available); until then RabbitMQ 4.3 can permit the feature "
                "again with deprecated_features.permit.transient_nonexcl_queues = true.",
                verify="the worker gets past 'mingle: searching for neighbors' and stays connected",
            ),
            confidence=confidence,
            facts={"source": "logs", "broker_text_seen": bool(said)},
        )
    ]
