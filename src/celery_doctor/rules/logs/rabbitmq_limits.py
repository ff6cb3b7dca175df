"""RabbitMQ refused a connection or a channel for a limit it enforces: a vhost's or user's
max-connections ("access to vhost 'v' refused for user 'u': connection limit (N) is reached",
530 NOT_ALLOWED), or a connection's negotiated channel_max / a user's max-channels ("number of
channels opened (N) has reached the negotiated channel_max (N)"). The login and the vhost are fine:
the broker counts connections or channels and this one is over the count, so no password or
permission change helps. The Redis side of the same thing (maxclients) is CD-L20's."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# rabbitmq-server rabbit_reader.erl (vhost limit, 3.7+; user limit, 3.8.10+), as py-amqp quotes the
# 530 reply (amqp.exceptions.NotAllowed) and as the broker logs the handshake error
CONNECTIONS = re.compile(r"connection limit \((\d+)\) is reached")
# rabbit_reader.erl channel.open past the negotiated channel_max; the per-user max-channels (3.8.10+)
CHANNELS = re.compile(
    r"number of channels opened (?:for user '[^']*' )?\(?(\d+)?\)? ?has reached the "
    r"(?:negotiated channel_max \((\d+)\)|maximum allowed user limit of \((\d+)\))"
)


def limit_text(text: str) -> bool:
    """A refusal for a count, not for the credentials (CD-L05 leaves these lines to this rule)."""
    return bool(CONNECTIONS.search(text) or CHANNELS.search(text))


@rule("CD-L73", "logs", Category.BROKER_RESOURCE_ALARM, Category.POOL_EXHAUSTION_OR_MISUSE)
def rabbitmq_count_limits(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ refused a connection over a vhost/user max-connections, or a channel over
    channel_max / max-channels: a count limit, not a login or permission problem."""
    conns = [(e, m) for e in all_events(ctx) if (m := CONNECTIONS.search(f"{e.error or ''}\n{e.text}"))]
    chans = [(e, m) for e in all_events(ctx) if (m := CHANNELS.search(f"{e.error or ''}\n{e.text}"))]
    findings = []
    if conns:
        limit = conns[0][1].group(1)
        findings.append(
            Finding(
                category=Category.BROKER_RESOURCE_ALARM,
                severity=Severity.HIGH,
                title=f"RabbitMQ's connection limit ({limit}) refused the worker",
                explanation=(
                    f"RabbitMQ accepted the login but refused the connection: the vhost's (or the user's) "
                    f"max-connections limit of {limit} was already reached (530 NOT_ALLOWED). Every worker "
                    "process, beat, Flower and each web process's producer pool holds connections of its own; "
                    "a managed plan's limit (CloudAMQP, Amazon MQ) counts them all. The password and "
                    "permissions are fine."
                ),
                evidence=evidence_of([e for e, _ in conns]),
                fix=Fix(
                    text="Count the connections per client (rabbitmqctl list_connections user peer_host, or the "
                    "management UI) and cut them: a smaller broker_pool_limit, fewer processes per host, "
                    "stopping leaked producers; or raise the limit (rabbitmqctl set_vhost_limits / "
                    "set_user_limits '{\"max-connections\": N}', or the plan's).",
                    verify="rabbitmqctl list_vhost_limits (or list_user_limits) against the live count",
                ),
                confidence=0.9,
                facts={"source": "logs", "limit": int(limit), "what": "connections"},
            )
        )
    if chans:
        m = chans[0][1]
        limit = m.group(2) or m.group(3) or m.group(1) or "?"
        findings.append(
            Finding(
                category=Category.POOL_EXHAUSTION_OR_MISUSE,
                severity=Severity.HIGH,
                title=f"A connection ran out of channels (limit {limit})",
                explanation=(
                    f"RabbitMQ closed the connection when it asked for one channel more than its limit of "
                    f"{limit} (the negotiated channel_max, or the user's max-channels). Channels opened and "
                    "never closed pile up on a long-lived connection: a producer or consumer made per call "
                    "and not released, or many threads sharing one connection."
                ),
                evidence=evidence_of([e for e, _ in chans]),
                fix=Fix(
                    text="Release what you take (with app.producer_or_acquire() / connection.channel() in a "
                    "'with' block), reuse producers from the pool instead of creating them per task, or "
                    "raise channel_max only once the count is known to be legitimate.",
                    verify="rabbitmqctl list_connections name channels (the count stays flat under load)",
                ),
                confidence=0.85,
                facts={"source": "logs", "limit": limit, "what": "channels"},
            )
        )
    return findings
