"""The AMQP byte stream lost its framing: py-amqp read a byte where a frame end (0xce) must be
("Received 0x00 while expecting 0xce", amqplib's "Framing Error, received 0x.. while expecting
0xce"), librabbitmq read a bad frame, or RabbitMQ saw a method where a content header belongs
(UNEXPECTED_FRAME). A healthy network does not do this (TCP delivers bytes in order); the usual
reason is one connection or channel written or read by two threads, greenlets or forked processes
at once (a producer shared without a pool, a result backend used from threads, a connection made
before the fork), and sometimes a peer that is not speaking AMQP. Said as a lead, not a certainty:
the frames alone do not show who shared the connection."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# py-amqp amqp/transport.py read_frame: UnexpectedFrame('Received {0:#04x} while expecting 0xce');
# amqplib: "Framing Error, received 0x%02x while expecting 0xce"; py-amqp 1.x "Received frame type N while
# expecting type: M"; librabbitmq's ChannelError "Bad frame read"
CLIENT = re.compile(
    r"[Rr]eceived 0x[0-9a-f]{2} while expecting 0xce|Received frame type \d+ while expecting type|"
    r"Bad frame read"
)
# rabbitmq-server rabbit_command_assembler.erl: "expected content header for class ~w, got non content header
# frame instead", "expected content body, got non content body frame instead" (unexpected_frame, 505)
BROKER = re.compile(r"UNEXPECTED_FRAME|unexpected_frame|expected content (?:header|body)[^\n]{0,40}got non content")


@rule("CD-L75", "logs", Category.POOL_EXHAUSTION_OR_MISUSE)
def frame_errors(ctx: LogContext) -> Iterable[Finding]:
    """AMQP framing broke (0xce frame-end errors, Bad frame read, UNEXPECTED_FRAME): most often one
    connection or channel used by two threads, greenlets or processes at once."""
    hits = [
        e
        for e in all_events(ctx)
        if (e.side != Side.BROKER and CLIENT.search(f"{e.error or ''}\n{e.text}"))
        or BROKER.search(f"{e.error or ''}\n{e.text}")
    ]
    if not hits:
        return []
    interleaved = any(BROKER.search(f"{e.error or ''}\n{e.text}") for e in hits)
    return [
        Finding(
            category=Category.POOL_EXHAUSTION_OR_MISUSE,
            severity=Severity.MEDIUM,
            title="The AMQP frames were interleaved (a connection used from two places at once?)",
            explanation=(
                (
                    "RabbitMQ received a method where a message's content header or body belonged: two "
                    "publishes were written on one channel at the same time. "
                    if interleaved
                    else "The client read a byte where an AMQP frame must end (0xce). TCP does not reorder bytes, so "
                    "the stream was read or written by two users at once. "
                )
                + "The usual reason is a connection or channel shared without locking: a producer or "
                "result backend used from several threads or greenlets (gevent/eventlet without the "
                "connection per greenlet), or a connection opened before the worker forked and then used "
                "in both processes. A peer that is not an AMQP broker gives the same. The frames alone do "
                "not show who shared it."
            ),
            evidence=evidence_of(hits),
            fix=Fix(
                text="Give each thread or greenlet its own connection (app.pool / app.producer_pool acquired in a "
                "'with' block, never a module-level Connection or Producer), open connections after the fork "
                "(worker_process_init), and check the URL's port is RabbitMQ's AMQP listener.",
                verify="the frame errors stop under the same concurrency",
            ),
            confidence=0.6 if interleaved else 0.45,
            facts={"source": "logs", "broker_saw_interleaving": interleaved},
        )
    ]
