"""The broker closed a worker's own long-lived connection, and the worker never said a word.

A broker line alone ("client unexpectedly closed TCP connection", "missed heartbeats from
client") is usually read as a short-lived publisher that exited without closing. But when the
closed connection is one the worker opened (the broker accepted it at the moment the worker logged
"Connected to", then the worker logged "ready"), the worker had not exited: no shutdown, no loss,
no task running. Nobody at either end closed it: something between did. An abrupt close of an idle
worker's connection is a reset from the path (a firewall or load balancer dropping the flow with a
RST: the broker's next heartbeat frame met it); missed heartbeats from an idle worker whose event
loop sends them mean the worker's frames were lost on the way (or its host froze).

Recorded: tests/fixtures/recorded/c44-rabbit-nft-reject, c31-rabbit-nft-reject (an nftables
`reject with tcp reset` of the worker's flows) and the -rst-swallowed runs (the same rule acting as
a DROP), on a broker that other clients share.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from celery_doctor.incidents import connection_key, running_task_age
from celery_doctor.model import Category, Event, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, evidence_of
from celery_doctor.rules.fixes import PROVIDER_SETTINGS
from celery_doctor.rules.registry import rule

ACCEPT_BEFORE_S = 1.0  # the broker logs the accept this little before the client logs "Connected to"
ACCEPT_AFTER_S = 0.5  # and the worker's other connections (pidbox, events) right after it
QUIET_S = 5.0  # the worker logged no loss, no shutdown this close to the broker's close
GREEN_POOLS = {"gevent", "eventlet"}  # their pidbox / blocked hub may really not send heartbeats
CLOSES = (Kind.CLIENT_CLOSED_ABRUPTLY, Kind.HEARTBEAT_MISSED_CLIENT)
NOTICED = {Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT, Kind.WORKER_SHUTDOWN, Kind.HEARTBEAT_MISSED_BROKER}


def worker_connections(ctx: LogContext) -> dict[str, tuple[Event, Event]]:
    """Broker connection key -> (the worker's "Connected to", the broker's accept of it)."""
    events = ctx.timeline.events
    accepts = [e for e in events if e.side == Side.BROKER and e.kind == Kind.CONNECTION_ACCEPTED and connection_key(e)]
    out: dict[str, tuple[Event, Event]] = {}
    window, after = timedelta(seconds=ACCEPT_BEFORE_S), timedelta(seconds=ACCEPT_AFTER_S)
    for c in (e for e in events if e.side == Side.CLIENT and e.kind == Kind.CONNECTED):
        for a in accepts:
            if -after <= c.at - a.at <= window and (key := connection_key(a)):
                out.setdefault(key, (c, a))
    return out


def silent_worker_closes(ctx: LogContext) -> list[tuple[Event, Event, Event]]:
    """(connected, accepted, close) for broker closes of a worker connection the worker never noticed."""
    mine = worker_connections(ctx)
    if not mine:
        return []
    events = ctx.timeline.events
    quiet = timedelta(seconds=QUIET_S)
    out = []
    for e in events:
        if e.side != Side.BROKER or e.kind not in CLOSES or (key := connection_key(e)) not in mine:
            continue
        connected, accepted = mine[key]
        if e.at - accepted.at < quiet:
            continue  # a helper connection that lived a moment (mingle, a broadcast): not an idle flow
        source = [x for x in events if x.source == connected.source]
        if any(x.kind in NOTICED and abs(x.at - e.at) <= quiet for x in source):
            continue
        # another of its connections closed in order at that moment: the client was shutting down (Celery
        # 4.x prints "Warm shutdown" on stdout, not in --logfile), and this close was part of that
        if any(
            x.side == Side.BROKER
            and x.kind == Kind.CONNECTION_CLOSED_CLEAN
            and connection_key(x) in mine
            and abs(x.at - e.at) <= quiet
            for x in events
        ):
            continue
        if running_task_age(source, e.at) is not None:
            continue
        out.append((connected, accepted, e))
    return out


@rule("CD-L61", "logs", Category.NETWORK_IDLE_TIMEOUT, Category.NETWORK_PATH_LOSS)
def worker_connection_cut(ctx: LogContext) -> Iterable[Finding]:
    """A worker's own idle connection closed on the broker's side while the worker noticed nothing."""
    hits = silent_worker_closes(ctx)
    if not hits:
        return []
    findings = []
    resets = [h for h in hits if h[2].kind == Kind.CLIENT_CLOSED_ABRUPTLY]
    deaf = [h for h in hits if h[2].kind == Kind.HEARTBEAT_MISSED_CLIENT]
    network_side = "; ".join(PROVIDER_SETTINGS)
    if resets:
        findings.append(
            Finding(
                category=Category.NETWORK_IDLE_TIMEOUT,
                severity=Severity.HIGH,
                title="A client's idle connection was reset between it and the broker",
                explanation=(
                    f"{len(resets)} connection(s) that {_who(resets)} opened (accepted by the broker as it logged its "
                    "connect) were closed abruptly on the broker's side while it was idle and logged no loss and no "
                    "shutdown: the client did not close them, and the broker did not either. Something between (a "
                    "firewall, NAT or load balancer) dropped the flow with a reset; the broker's next frame met it. "
                    "The client notices only when it next reads or writes (a publisher's pooled connection: at its "
                    "next publish, which kombu retries on a new connection)."
                ),
                evidence=evidence_of(_cited(resets)),
                fix=Fix(
                    text=(
                        "Find the device between worker and broker that resets idle flows, and raise its idle "
                        f"timeout or exempt the broker's port: {network_side}. Keep heartbeats on so the worker "
                        "notices a dead flow in seconds, not at the next task."
                    )
                ),
                confidence=0.6 if len(resets) >= 2 else 0.5,
                facts={"source": "logs", "connections": len(resets)},
            )
        )
    if deaf and (ctx.pool or "") not in GREEN_POOLS:
        findings.append(
            Finding(
                category=Category.NETWORK_PATH_LOSS,
                severity=Severity.HIGH,
                title="The broker stopped hearing an idle worker that sends heartbeats",
                explanation=(
                    f"The broker closed {len(deaf)} of the worker's own connection(s) for missed heartbeats while no "
                    "task was running and the worker logged nothing: an idle worker's event loop sends its heartbeats, "
                    "so its frames did not arrive (dropped on the path, or the worker's host froze). The worker itself "
                    "never noticed, which rules out a broker that closed in order."
                ),
                evidence=evidence_of(_cited(deaf)),
                fix=Fix(
                    text="Look at the network between worker and broker at that time (a firewall or security group "
                    "dropping packets, a failing link or VPN); keep heartbeats on.",
                    verify="celery-doctor repro --fault blackhole:5:20 --scenario idle",
                ),
                confidence=0.55,
                facts={"source": "logs", "connections": len(deaf)},
            )
        )
    return findings


def _who(hits: list[tuple[Event, Event, Event]]) -> str:
    names = sorted({c.source.rsplit("/", 1)[-1] for c, _, _ in hits})
    return "the client logging to " + ", ".join(names)


def _cited(hits: list[tuple[Event, Event, Event]]) -> list[Event]:
    """The close first, then the accept and the worker's connect that tie it to the worker."""
    return [close for _, _, close in hits] + [e for c, a, _ in hits for e in (c, a)]
