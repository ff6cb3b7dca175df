"""The server closes the connection while the client is still connecting, again and again, as
the retry interval grows (2, 4, 6 ... s). An idle `timeout` (Redis) or an idle cut cannot do
that: they need an idle, established connection. A server or proxy that hangs up at connect
time is refusing this client: TLS expected on that port, a proxy or load balancer with no
healthy backend, a connection limit."""

from __future__ import annotations

from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, evidence_of
from celery_doctor.rules.registry import rule


@rule("CD-L26", "logs", Category.TLS_OR_PROXY)
def connect_time_close(ctx: LogContext) -> Iterable[Finding]:
    """Closes (EOF/reset) during connect, repeated with growing retry intervals or once: not an idle
    timeout (one attempt is weaker evidence and is said so)."""
    attempts = [e for e in ctx.timeline.events if e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT
                and error_family(e) in ("eof", "reset", "broken_pipe")]
    # a reconnect that was closed once and then got through at the next try, amid losses of
    # established connections, is one more of those (a path resetting flows caught a handshake), not
    # a server that refuses this client at connect time
    losses = any(e.kind == Kind.CONNECTION_LOST for e in ctx.timeline.events if e.side == Side.CLIENT)
    if losses:
        caught = {id(e) for i in ctx.incidents if i.outage_s is not None
                  and sum(1 for e in i.events if e in attempts) == 1 for e in i.events}
        attempts = [e for e in attempts if id(e) not in caught]
    if not attempts:
        return []
    once = len(attempts) == 1
    if once and losses:
        return []
    tls = any("rediss://" in e.text or "amqps://" in e.text or ":5671" in e.text for e in attempts)
    return [Finding(
        category=Category.TLS_OR_PROXY, severity=Severity.HIGH,
        title="The server hangs up while the worker is still connecting",
        explanation=(("A connect attempt was closed by the other end before the connection was up (the paste "
                      "shows one). " if once else
                      f"{len(attempts)} connect attempts were closed by the other end before the connection was "
                      "up, each retried after a longer wait. ") + "An idle timeout (Redis `timeout`, a load balancer's "
                     "idle cut) needs an established, idle connection, so it is not that. Something at the "
                     "address refuses this client at connect time: a TLS port spoken to in plain text (or the "
                     "reverse), a proxy or load balancer with no healthy backend, or a connection limit."
                     + (" The URL uses TLS: check the certificate settings (broker_use_ssl)." if tls else "")),
        evidence=evidence_of(attempts),
        fix=Fix(text="Connect by hand to the same address (redis-cli -h HOST -p PORT [--tls] PING, or "
                     "openssl s_client -connect HOST:PORT) to see who answers; match the scheme (rediss:// / "
                     "amqps://) to the port, and check the proxy's backends and connection limits.",
                verify="celery-doctor broker URL"),
        confidence=0.5 if once else 0.6,
        facts={"source": "logs", "attempts": len(attempts),
               "incidents": [i.id for i in ctx.incidents if any(e in attempts for e in i.events)]},
    )]
