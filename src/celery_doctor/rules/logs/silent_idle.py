"""Regular idle drops with no error text: the worker logs only "Connection to broker lost"
(or kombu's "Connection error ... Retry in") after the same idle time each time, and is
connected again at once. Nothing refused it and nothing timed out: an idle cut by a middlebox
that closes quietly (FIN), seen without the exception lines."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, ClosedBy, Finding, Fix, Phase, Severity, Side
from celery_doctor.rules.context import LogContext, events_of, evidence_of, fmt_s
from celery_doctor.rules.fixes import (
    PROVIDER_SETTINGS,
    heartbeat_for_idle,
    redis_keepalive,
    snippet,
    worst_silence_s,
)
from celery_doctor.rules.registry import rule

QUICK_RECONNECT_S = 10.0


@rule("CD-L25", "logs", Category.NETWORK_IDLE_TIMEOUT)
def silent_idle_drops(ctx: LogContext) -> Iterable[Finding]:
    """Three or more idle drops after nearly the same idle time, no error text, instant reconnects."""
    drops = [i for i in ctx.incidents if i.phase == Phase.IDLE and i.closed_by == ClosedBy.UNKNOWN
             and i.idle_before_s is not None and (i.outage_s is None or i.outage_s <= QUICK_RECONNECT_S)
             and not any(error_family(e) for e in i.events if e.side == Side.CLIENT)]
    if len(drops) < 3:
        return []
    idles = [i.idle_before_s for i in drops if i.idle_before_s is not None]
    mean = statistics.fmean(idles)
    if mean <= 0 or statistics.pstdev(idles) > max(2.0, 0.2 * mean):
        return []
    estimate = min(idles)
    hb = heartbeat_for_idle(estimate)
    return [Finding(
        category=Category.NETWORK_IDLE_TIMEOUT, severity=Severity.HIGH,
        title=f"Idle connections dropped quietly after ~{fmt_s(estimate)}",
        explanation=(f"{len(drops)} connections were lost after nearly the same idle time (~{fmt_s(mean)}), "
                     "with no exception text, and came back at once: no refusal, no timeout, no broker restart. "
                     "That is a middlebox (load balancer, NAT, proxy) closing idle flows."),
        evidence=evidence_of(events_of(drops)),
        fix=Fix(text=(f"Keep the flow busier than its idle timeout: broker_heartbeat = {hb} leaves at most "
                      f"{fmt_s(worst_silence_s(hb))} of silence; or raise the idle timeout: "
                      + "; ".join(PROVIDER_SETTINGS) + "."),
                snippet=snippet({"broker_heartbeat": str(hb)}, ctx.celery_version,
                                f"at most {fmt_s(worst_silence_s(hb))} of silence") if ctx.transport != "redis"
                else snippet({"broker_transport_options": redis_keepalive(estimate)[1]}, ctx.celery_version,
                             "TCP keepalive probes inside the idle timeout (import socket)"),
                verify=f"celery-doctor repro --fault idle-cut:{int(estimate)}:fin --scenario idle"),
        confidence=0.7 if len(drops) >= 4 else 0.6,
        facts={"idle_timeout_s": estimate, "cuts": len(drops), "regular": True, "source": "logs",
               "heartbeat_s": hb if ctx.transport != "redis" else None},
    )]
