"""A silent idle cut seen through heartbeats: both sides stop hearing each other (the client's
"Too many heartbeats missed", the broker's "missed heartbeats from client"), yet the client's
reconnect goes through at once. The path carries new flows fine: only the established one died,
which is what a stateful middlebox (NAT, firewall, load balancer) does when it forgets a flow that
stayed idle longer than its timeout and drops its packets without a reset. Heartbeats are on but
their frames come less often than that timeout. A blackhole or a failing link would make the
reconnects time out too (CD-L02 keeps those).

Recorded: tests/fixtures/recorded/c57-rabbit-idle-silent-hb (proxy idle-cut:3:silent with
broker_heartbeat = 10: the client gives up every ~24 s, the broker ~6 s later, reconnects in ms).
"""

from __future__ import annotations

from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, ClosedBy, Finding, Fix, Incident, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, events_of, evidence_of, fmt_s
from celery_doctor.rules.fixes import PROVIDER_SETTINGS, heartbeat_for_idle, snippet, worst_silence_s
from celery_doctor.rules.registry import rule

QUICK_RECONNECT_S = 5.0  # a new flow through the same path connected within this: the path is up


def forgotten_flow(incident: Incident) -> bool:
    """Both sides missed heartbeats, no task ran, and the client was connected again at once."""
    if incident.closed_by != ClosedBy.NETWORK or incident.outage_s is None or incident.outage_s > QUICK_RECONNECT_S:
        return False
    client_deaf = any(
        e.side == Side.CLIENT and (e.kind == Kind.HEARTBEAT_MISSED_BROKER or error_family(e) == "heartbeat")
        for e in incident.events
    )
    broker_deaf = any(e.side == Side.BROKER and e.kind == Kind.HEARTBEAT_MISSED_CLIENT for e in incident.events)
    stalled = any(e.kind == Kind.CANNOT_CONNECT for e in incident.events)
    return client_deaf and broker_deaf and not stalled


@rule("CD-L60", "logs", Category.NETWORK_IDLE_TIMEOUT)
def forgotten_idle_flow(ctx: LogContext) -> Iterable[Finding]:
    """Heartbeat-detected dead flows whose reconnects succeed at once: a middlebox forgot the idle flow."""
    hits = [i for i in ctx.incidents if forgotten_flow(i)]
    if not hits:
        return []
    hb = ctx.heartbeat_s
    silence = worst_silence_s(hb) if hb else None
    # the flow died between two frames: RabbitMQ sends one every timeout / 2 s and py-amqp one after at
    # most `silence` s (and gives up after 2 x heartbeat with nothing read), so the middlebox's idle
    # timeout is under the shorter gap; the fix must leave well under that
    bound = min(silence, hb / 2) if hb and silence else None
    proposed = heartbeat_for_idle(bound) if bound else None
    uptimes = [i.uptime_s for i in hits if i.uptime_s is not None]
    regular = len(uptimes) >= 2 and max(uptimes) - min(uptimes) <= max(2.0, 0.2 * min(uptimes))
    confidence = 0.55 + (0.15 if len(hits) >= 2 else 0.0) + (0.1 if regular else 0.0)
    explanation = (
        f"In {len(hits)} incident(s) both sides stopped hearing each other's heartbeats with no reset, yet the "
        "worker's reconnect through the same path succeeded at once"
        + (f", each time ~{fmt_s(min(uptimes))} after it had connected" if regular else "")
        + ": the path carries new flows, only the established one died. That is a stateful middlebox (NAT, "
        "firewall, load balancer) forgetting a flow that stayed idle longer than its timeout and dropping its "
        "packets silently"
        + (
            f"; heartbeats were on (timeout {fmt_s(hb)}: a frame from each side every {fmt_s(bound or 0)} or so), "
            "so its idle timeout is shorter than that"
            if hb and bound
            else ""
        )
        + ". A blackhole or a failing link would make the reconnects time out as well."
    )
    fix_text = (
        "Raise the middlebox's idle timeout well above the heartbeat's silence: " + "; ".join(PROVIDER_SETTINGS) + "."
    )
    snip = None
    if proposed is not None and hb is not None and proposed < hb:
        fix_text = (
            f"Send frames more often than the middlebox's idle timeout (under {fmt_s(bound or 0)}): "
            f"broker_heartbeat = {proposed} leaves at most {fmt_s(worst_silence_s(proposed))} of silence. "
            + "Or r"
            + fix_text[1:]
        )
        snip = snippet(
            {"broker_heartbeat": str(proposed)},
            ctx.celery_version,
            f"at most {fmt_s(worst_silence_s(proposed))} of silence",
        )
    return [
        Finding(
            category=Category.NETWORK_IDLE_TIMEOUT,
            severity=Severity.HIGH,
            title="A middlebox silently forgot idle flows (heartbeats too sparse for its timeout)",
            explanation=explanation,
            evidence=evidence_of(events_of(hits)),
            fix=Fix(
                text=fix_text,
                snippet=snip,
                verify=f"celery-doctor repro --fault idle-cut:{int(bound or 5)}:silent --scenario idle",
            ),
            confidence=min(confidence, 0.85),
            facts={
                "source": "logs",
                "cuts": len(hits),
                "regular": regular,
                "idle_timeout_below_s": bound,
                "heartbeat_s": proposed,
            },
        )
    ]
