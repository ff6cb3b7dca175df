"""Findings the incidents alone make clear (no config or broker probe needed).

Each rule looks at the incidents (and the timeline around them) and returns zero or more
Findings with the evidence lines that carry the verdict. Rules never match raw text: they see
event kinds, error families, verdicts and times.
"""

from __future__ import annotations

import bisect
import re
import statistics
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from celery_doctor.incidents import ANCHORS, SAME_MOMENT_S, error_family, running_task_age
from celery_doctor.model import (
    Category,
    ClosedBy,
    Event,
    Evidence,
    Finding,
    Fix,
    Incident,
    Kind,
    Phase,
    Severity,
    Side,
)
from celery_doctor.rules.context import (
    MAX_EVIDENCE,
    THREAD_POOLS,
    LogContext,
    Rule,
    cited,
    events_of,
    evidence_of,
    fmt_s,
)
from celery_doctor.rules.fixes import PROVIDER_SETTINGS, heartbeat_for_idle, redis_keepalive, snippet, worst_silence_s
from celery_doctor.rules.logs.default_url import DEFAULT as DEFAULT_URL
from celery_doctor.rules.logs.flow_forgotten import forgotten_flow
from celery_doctor.rules.logs.rabbitmq_limits import limit_text
from celery_doctor.rules.logs.vhost_down import DOWN as VHOST_DOWN
from celery_doctor.rules.logs.worker_conn_cut import GREEN_POOLS, silent_worker_closes
from celery_doctor.rules.registry import RuleInfo, register, rule

# redis-py's and Redis's own words for a refused login (redis/exceptions.py, Redis ACL replies)
# Redis has no password but the client sent one (Redis 6+ acl.c; before 6 server.c authCommand)
REDIS_NO_PASSWORD = r"called without any password configured|Client sent AUTH, but no password is set"
SENTINEL_AUTH = re.compile(r"No master found for .*(?:AuthenticationError|NOAUTH|WRONGPASS|invalid password)")
REDIS_AUTH = re.compile(r"redis\.exceptions|WRONGPASS|NOAUTH|invalid username-password pair|" + r"redis://|rediss://|"
                        + REDIS_NO_PASSWORD)

_evidence = evidence_of
_events = events_of
_fmt_s = fmt_s

@rule("CD-L01", "logs", Category.NETWORK_IDLE_TIMEOUT)
def idle_cut(ctx: LogContext) -> Iterable[Finding]:
    """Cuts by something in between after the connection sat idle: NAT, load balancer, firewall."""
    cuts = [i for i in ctx.incidents if i.phase == Phase.IDLE and i.closed_by == ClosedBy.NETWORK
            and not any(e.kind in (Kind.HEARTBEAT_MISSED_CLIENT, Kind.HEARTBEAT_MISSED_BROKER) for e in i.events)]
    # client-only resets after idle with no broker log: a regular period makes a middlebox likely
    unsure = [i for i in ctx.incidents if i.phase == Phase.IDLE and i.closed_by == ClosedBy.UNKNOWN
              and any(error_family(e) in ("reset", "broken_pipe") for e in i.events if e.side == Side.CLIENT)]
    if not cuts and len(unsure) < 2:
        return []
    members = cuts or unsure
    idles = [i.idle_before_s for i in members if i.idle_before_s is not None]
    estimate = min(idles) if idles else None
    regular = len(idles) >= 2 and statistics.pstdev(idles) <= max(2.0, 0.2 * statistics.fmean(idles))
    confidence = 0.55 if cuts else 0.4
    if len(members) >= 2:
        confidence += 0.1
    if regular:
        confidence += 0.15
    if any(i.period_s for i in members):
        confidence += 0.05
    proxy = any(e.kind == Kind.PROXY_CUT for e in _events(members))
    if proxy:
        confidence = max(confidence, 0.9)
    what = f"after about {_fmt_s(estimate)} of idle time" if estimate is not None else "after idle time"
    explanation = (
        f"{len(members)} connection(s) were cut {what}"
        + (", each time after nearly the same idle time" if regular else "")
        + (". Both sides saw it at the same moment without either closing first" if cuts else
           ". The client saw resets with no broker-side reason in the logs")
        + ": something between worker and broker (a load balancer, NAT gateway, firewall or TLS "
        "proxy) drops flows that stay idle longer than its timeout. AMQP heartbeats (or TCP "
        "keepalives shorter than that timeout) keep the flow alive."
    )
    timeout = estimate or 60.0
    hb = heartbeat_for_idle(timeout)
    network_side = ("Or raise the middlebox's idle timeout well above the longest quiet period: "
                    + "; ".join(PROVIDER_SETTINGS) + ".")
    if ctx.transport != "redis":
        fix = Fix(
            text=(f"Send traffic more often than the middlebox's idle timeout (~{_fmt_s(timeout)}): with "
                  f"broker_heartbeat = {hb} the worker is never silent for more than "
                  f"{_fmt_s(worst_silence_s(hb))} (py-amqp sends a heartbeat after heartbeat / checkrate "
                  f"seconds of silence, checked every heartbeat / checkrate seconds). " + network_side),
            snippet=snippet({"broker_heartbeat": str(hb)}, ctx.celery_version,
                            f"at most {_fmt_s(worst_silence_s(hb))} of silence, inside the "
                            f"~{_fmt_s(timeout)} idle timeout"),
            verify=(f"celery-doctor repro --fault idle-cut:{int(timeout)}:rst --scenario idle "
                    "(with the fixed config) should show no resets"))
    else:
        # Redis has no heartbeat, and a health check only runs when a connection is used: only
        # kernel keepalives reach every idle connection of the pool (proven on a conntrack NAT)
        probe, options = redis_keepalive(timeout)
        fix = Fix(
            text=("Redis has no heartbeat: let the kernel probe every idle Redis connection more often "
                  f"than the idle timeout (~{_fmt_s(timeout)}), TCP keepalive with the first probe after "
                  f"{probe} s. " + network_side),
            snippet="import socket\n" + snippet({"broker_transport_options": options}, ctx.celery_version,
                                                "keepalive probes before the middlebox forgets the flow"),
            verify=(f"celery-doctor repro --broker redis://... --fault idle-cut:{int(timeout)}:rst "
                    "--middlebox kernel --verify-fix"))
    return [Finding(
        category=Category.NETWORK_IDLE_TIMEOUT, severity=Severity.HIGH,
        title=f"Idle connections cut by a middlebox{f' after ~{_fmt_s(estimate)}' if estimate else ''}",
        explanation=explanation, evidence=_evidence(_events(members)), fix=fix,
        confidence=min(confidence, 0.95),
        facts={"idle_timeout_s": estimate, "cuts": len(members), "regular": regular, "source": "logs",
               "heartbeat_s": hb if ctx.transport != "redis" else None, "incidents": [i.id for i in members]},
    )]


@rule("CD-L02", "logs", Category.NETWORK_PATH_LOSS)
def path_loss(ctx: LogContext) -> Iterable[Finding]:
    """Both ends stop hearing each other with no reset (packets dropped, half-open sockets), or
    the path resets busy connections (a middlebox under load: conntrack, LB rebalancing)."""
    # flows that died while reconnects went through at once are a middlebox forgetting idle flows (CD-L60)
    silent = [i for i in ctx.incidents if i.closed_by == ClosedBy.NETWORK and not forgotten_flow(i) and any(
        e.kind in (Kind.HEARTBEAT_MISSED_CLIENT, Kind.HEARTBEAT_MISSED_BROKER, Kind.PROXY_BLACKHOLE)
        or error_family(e) == "timeout" for e in i.events)]
    busy_resets = [i for i in ctx.incidents if i not in silent and i.closed_by == ClosedBy.NETWORK
                   and i.phase == Phase.LOAD]
    # the worker stopped hearing the broker's heartbeats with no task holding its loop: the broker's
    # frames stopped arriving; reconnects that then time out (not refused) say the path drops packets
    deaf = [i for i in _client_missed_heartbeats(ctx) if not _running_task(i) and not _timer_check(i)]
    findings = []
    if deaf:
        stalled = [i for i in deaf if any(e.kind == Kind.CANNOT_CONNECT and error_family(e) == "timeout"
                                          for e in i.events)]
        findings.append(Finding(
            category=Category.NETWORK_PATH_LOSS, severity=Severity.HIGH,
            title="The worker stopped hearing the broker",
            explanation=(
                f"In {len(deaf)} incident(s) the worker gave up because the broker's heartbeats stopped "
                "arriving while no task was running"
                + ("; its reconnects then timed out instead of being refused: packets to the broker were "
                   "dropped (a blackhole, a firewall or security group, a failing link or VPN)" if stalled else
                   ": the path dropped packets, or the broker stalled (check its log for the same moment)")
                + ". Heartbeats detected it; without them the worker would wait on a dead socket."),
            evidence=_evidence(_events(deaf)),
            fix=Fix(text="Look at the network between worker and broker at that time (packet loss, a route "
                         "or firewall change, an idle flow dropped without a reset); keep heartbeats on.",
                    verify="celery-doctor repro --fault blackhole:5:20 --scenario idle"),
            confidence=0.75 if stalled else 0.6, facts={"incidents": [i.id for i in deaf]},
        ))
    if silent:
        both = any({e.side for e in i.events} >= {Side.CLIENT, Side.BROKER} for i in silent)
        findings.append(Finding(
            category=Category.NETWORK_PATH_LOSS, severity=Severity.HIGH,
            title="Packets silently dropped between worker and broker",
            explanation=(
                f"In {len(silent)} incident(s) "
                + ("both the broker (missed heartbeats from client) and the client (missed heartbeats "
                   "or a socket timeout) stopped hearing the other" if both else
                   "the connection stopped carrying packets without a reset")
                + ": the path dropped packets (a blackhole, a half-open flow after a silent middlebox "
                "cut, a failing link). "
                + ("Redis has no heartbeat: a socket timeout or the transport's health check noticed it."
                   if ctx.transport == "redis" else
                   "Heartbeats detected it; without them the sockets would hang.")),
            evidence=_evidence(_events(silent)),
            # RabbitMQ: heartbeats notice a flow the path dropped for good and reconnect (proven by
            # repro --verify-fix on a conntrack NAT's silent drop); Redis has no heartbeat, and no
            # transport option is proven against a blackhole: only the network is named there
            fix=(Fix(text="Keep heartbeats on so both sides detect a dead path within two intervals and "
                          "reconnect, and look at the network between the hosts (packet loss, silent idle "
                          "drops, MTU).",
                     snippet=snippet({"broker_heartbeat": "30"}, ctx.celery_version),
                     verify="celery-doctor repro --fault idle-cut:5:silent --middlebox kernel --verify-fix "
                            "(a flow the path dropped for good)")
                 if ctx.transport != "redis" else
                 Fix(text="Look at the network between the hosts (packet loss, silent idle drops, MTU). Redis "
                          "has no heartbeat; if the drops are idle flows a NAT forgot, TCP keepalive inside "
                          "its idle timeout keeps them (the idle-cut fix).",
                     verify="celery-doctor repro --broker redis:// --fault idle-cut:5:silent --middlebox kernel "
                            "--verify-fix")),
            # one timeout seen by the client alone is also a server that stopped answering (busy, swapping,
            # a fork for a snapshot): an even bet until it recurs or the other side confirms it
            confidence=0.8 if both else (0.55 if len(silent) >= 2 else 0.45),
            facts={"incidents": [i.id for i in silent]},
        ))
    if busy_resets:
        findings.append(Finding(
            category=Category.NETWORK_PATH_LOSS, severity=Severity.HIGH,
            title="Busy connections reset on the path",
            explanation=(
                f"{len(busy_resets)} connection(s) were reset while tasks were flowing, with neither "
                "side closing first: something on the path (a load balancer, NAT or firewall under "
                "load, a flapping link) resets active flows."),
            evidence=_evidence(_events(busy_resets)),
            # no Celery setting makes these resets harmless (late acks were advised once; the
            # repro's ledger showed they save nothing here: docs/repro.md), so none is proposed
            fix=Fix(text="Look at the middlebox between worker and broker (connection tracking limits, "
                         "rebalancing, health checks). Keep publisher confirms and publish retries on, and "
                         "make tasks idempotent: a retry after a reset that ate the broker's confirm sends "
                         "a second copy.",
                    verify="celery-doctor repro --fault reset-under-load:0.02 --scenario load"),
            confidence=0.6, facts={"incidents": [i.id for i in busy_resets]},
        ))
    return findings


@rule("CD-L03", "logs", Category.LONG_TASK_BLOCKS_HEARTBEAT, Category.HEARTBEAT_MISCONFIG)
def heartbeat_silence(ctx: LogContext) -> Iterable[Finding]:
    """The broker closed because the client sent no heartbeat: busy main thread or idle bug."""
    hits = [i for i in ctx.incidents if i.closed_by == ClosedBy.BROKER
            and any(e.kind == Kind.HEARTBEAT_MISSED_CLIENT for e in i.events)]
    # the client alone gave up on the broker while a task held its loop: py-amqp counts only what it
    # read, and a blocked loop reads nothing (idle, it means the broker's heartbeats never came: CD-L02)
    client_busy = [i for i in _client_missed_heartbeats(ctx) if _running_task(i)]
    # Celery 3.0/3.1 ran the client's heartbeat check on the worker's timer ("Error in timer:
    # ConnectionForced(... 'Too many heartbeats missed' ...)"), and it fired on healthy idle
    # connections (celery#1194, py-amqp#6): the client's own checker, not the path
    own_checker = [i for i in _client_missed_heartbeats(ctx) if i not in client_busy and _timer_check(i)]
    findings = []
    busy = [i for i in hits if i.phase == Phase.LOAD and _running_task(i)] + client_busy
    idle = [i for i in hits if i not in busy] + own_checker
    hb = f"{ctx.heartbeat_s:.0f} s" if ctx.heartbeat_s else "the heartbeat interval"
    if busy:
        longest = max((_running_task(i) or 0.0) for i in busy)
        thread_pool = ctx.pool in THREAD_POOLS
        findings.append(Finding(
            category=Category.LONG_TASK_BLOCKS_HEARTBEAT, severity=Severity.HIGH,
            title="A long task kept the worker from sending heartbeats",
            explanation=(
                f"The broker closed {len(busy)} connection(s) for missed heartbeats (timeout {hb}) "
                f"while a task had been running for {_fmt_s(longest)}"
                + (f" in the {ctx.pool} pool, where tasks run in the thread that must also send "
                   "heartbeats" if thread_pool else "")
                + ". The client noticed only when it next used the socket, and unacknowledged "
                "messages were redelivered."),
            evidence=_evidence(_events(busy)),
            fix=Fix(text="Run long tasks where they cannot block the connection's thread (the "
                         "prefork pool), or turn AMQP heartbeats off for this worker and rely on TCP "
                         "keepalive.",
                    snippet=snippet({"broker_heartbeat": "0"}, ctx.celery_version,
                                    "or start the worker with --pool prefork"),
                    verify="celery-doctor repro --scenario long-task (with the fix) should show no "
                           "broker-side close and no duplicate"),
            confidence=0.85 if thread_pool else 0.7, facts={"incidents": [i.id for i in busy]},
        ))
    # the worker's own idle connection, in a pool whose event loop sends heartbeats: "not sent" is the
    # weaker reading, the path losing its frames the stronger one (CD-L61)
    silent_own = {id(close) for _, _, close in silent_worker_closes(ctx)}
    own_idle = bool(idle) and not own_checker and (ctx.pool or "") not in GREEN_POOLS and any(
        any(id(e) in silent_own for e in i.events) for i in idle)
    # "no task was running" needs a client log that spans the moment: the broker's log alone shows
    # no tasks at all, so a task holding the connection's thread (the solo/threads pools, a blocking
    # result .get()) and a connection that sends nothing while idle read the same from it
    # (a green pool, known from the banner or its frames, is the named not-sending case: its pidbox
    # loop does not send heartbeats, celery#3649 and py-amqp#101)
    client_log = any(e.side == Side.CLIENT for e in ctx.timeline.events)  # once: not per incident
    unseen = bool(idle) and not own_checker and (ctx.pool or "") not in GREEN_POOLS and not client_log and not any(
        _client_log_spans(i) for i in idle)
    if idle:
        findings.append(Finding(
            category=Category.HEARTBEAT_MISCONFIG, severity=Severity.HIGH,
            title="Heartbeats negotiated but not sent while idle",
            explanation=(
                (f"{len(idle)} connection(s) were closed for missed heartbeats (timeout {hb}), and only "
                 "the broker's log covers that moment, so whether a task was running cannot be told. "
                 "Either the connection negotiated heartbeats that the code holding it does not send "
                 "when idle (a green-thread pool's pidbox, a result consumer blocked in .get(), a "
                 "publisher connection with no event loop), or a long task held the thread that sends "
                 "them (the solo and threads pools); the worker's log for the same window tells them "
                 "apart." if unseen else
                 f"{len(idle)} connection(s) were closed for missed heartbeats (timeout {hb}) while "
                 "no task was running: the connection negotiated heartbeats, but the code holding it "
                 "does not send them when idle (a green-thread pool's pidbox, a result consumer "
                 "blocked in .get(), a publisher connection with no event loop).")
                + (" Celery 3.0/3.1 checked the broker's heartbeats on the worker's timer ('Error in timer'), "
                   "and that checker declared healthy idle connections dead: the client tore them down "
                   "itself." if own_checker else "")),
            evidence=_evidence(_events(idle)),
            fix=Fix(text="Either make the process send heartbeats (an event-loop pool) or disable them "
                         "for connections that cannot send them.",
                    snippet=snippet({"broker_heartbeat": "0"}, ctx.celery_version,
                                    "connections that cannot send heartbeats should not negotiate them"),
                    verify="celery-doctor repro --scenario idle"),
            confidence=0.4 if own_idle else (0.45 if unseen else 0.7), facts={"incidents": [i.id for i in idle]},
        ))
    return findings


def _client_log_spans(incident: Incident) -> bool:
    """Whether a client-side log speaks of the incident (its own events). Beside that, any dated
    client event at all counts (the caller checks it once): not their window, since two hosts' logs
    without zones are often hours apart (a gevent worker's traceback at 17:28:52 for RabbitMQ's
    close at 19:28:52), and aligning them is the timeline's job, not this rule's."""
    return any(e.side == Side.CLIENT for e in incident.events)


def _timer_check(incident: Incident) -> bool:
    return any("Error in timer" in e.text for e in incident.events)


def _client_missed_heartbeats(ctx: LogContext) -> list[Incident]:
    """Incidents where only the client gave up, on the broker's heartbeats (py-amqp's "Too many
    heartbeats missed"), with no close of the broker's own."""
    return [i for i in ctx.incidents if i.closed_by == ClosedBy.CLIENT
            and any(e.kind == Kind.HEARTBEAT_MISSED_BROKER or error_family(e) == "heartbeat" for e in i.events)
            and not any(e.side == Side.BROKER and e.kind in (Kind.HEARTBEAT_MISSED_CLIENT, Kind.BROKER_FORCED_CLOSE)
                        for e in i.events)]


def _running_task(incident: Incident) -> float | None:
    """Age in seconds of the oldest task running when the incident began, if any."""
    return running_task_age(incident.events, incident.ts)


ANCHOR_KINDS = frozenset().union(*ANCHORS.values())

# RabbitMQ's words: `connection_forced: "REASON"`, `because <<"REASON">>`, py-amqp's
# `ConnectionForced(320, 'CONNECTION_FORCED - REASON', ...)`
FORCED_REASON = re.compile(r"""connection_forced: "([^"]+)"|because <<"([^"]+)">>|CONNECTION_FORCED - ([^"]+?)'?[,)]""")
SHUTDOWN = re.compile(r"^broker forced connection closure with reason '(\w+)'$")  # a node stopping


def _first_failure(incident: Incident) -> datetime:
    """When the failure itself began (the incident's events include the context around it)."""
    return min((e.at for e in incident.events if e.kind in ANCHOR_KINDS), default=incident.ts)


@rule("CD-L04", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def broker_restart(ctx: LogContext) -> Iterable[Finding]:
    """The broker shut down, was stopped, forced connections closed or failed over, or went away and came back."""
    def closed_by_broker(e: Event) -> bool:
        return e.kind in (Kind.BROKER_FORCED_CLOSE, Kind.BROKER_STOP, Kind.FAILOVER) or error_family(e) == "forced"

    def came_first(i: Incident, e: Event) -> bool:
        # a node stop logged after the failure is what followed it (an operator cleaning up after a
        # crashed worker), not its cause; the incident's own verdict reads it the same way
        return e.kind != Kind.BROKER_STOP or e.at <= _first_failure(i) + timedelta(seconds=SAME_MOMENT_S)

    hits = [i for i in ctx.incidents if any(closed_by_broker(e) and came_first(i, e) for e in i.events)]
    # no broker log: the broker stopped answering (refused, unresolvable) and came back
    redis_restarts = [i for i in ctx.incidents if i not in hits and i.outage_s and i.phase != Phase.STARTUP
                      and i.closed_by == ClosedBy.BROKER
                      and any(error_family(e) in ("refused", "dns", "unreachable") for e in i.events)]
    hits += redis_restarts
    # an established connection lost, then every reconnect refused: nothing listens on the broker's
    # port any more (the broker stopped, or its host is rebooting); the paste may end before it is back
    went_away = [i for i in ctx.incidents if i not in hits and i.phase != Phase.STARTUP
                 and i.events and i.events[0].kind == Kind.CONNECTION_LOST and i.events[0].side == Side.CLIENT
                 and _refused_after(i)]
    hits += went_away
    # pastes without times: the broker's own close for a shutdown still says who closed it
    undated = [e for e in ctx.timeline.undated if e.kind == Kind.BROKER_FORCED_CLOSE
               or (error_family(e) == "forced" and FORCED_SHUTDOWN.search(f"{e.error or ''} {e.text}"))]
    if not hits and not undated:
        # every connect attempt refused, retried with growing waits, and the paste ends before any got
        # through: nothing listens at that address (the broker is down, restarting or not started yet, or
        # the port is wrong); an even bet without the broker's log or the earlier working connection
        closed = [i for i in ctx.incidents if _refused_throughout(i)]
        if not closed:
            return []
        # the same URL, refused with growing waits, then connected: the broker (or its listener) came up
        # late; a wrong host or port would never have connected
        came_up = [i for i in closed if i.outage_s is not None and i.phase == Phase.STARTUP]
        if came_up:
            waited = max(i.outage_s or 0.0 for i in came_up)
            return [Finding(
                category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
                title="The broker was not up yet when the worker started",
                explanation=(f"Every connect attempt was refused (nothing listening at that address) for "
                             f"{_fmt_s(waited)}, retried with growing waits, and then the same URL connected: the "
                             "broker was down, restarting or still starting, and came up; not a wrong host or port, "
                             "which would never have connected."),
                evidence=_evidence(_events(came_up)),
                fix=Fix(text="Start the worker after the broker is ready (docker compose depends_on with a "
                             "healthcheck, a Kubernetes readiness probe on the broker), and keep "
                             "broker_connection_retry_on_startup on so the worker waits for it, as here."),
                confidence=0.65,
                facts={"source": "logs", "refused_only": True, "came_up": True,
                       "incidents": [i.id for i in came_up]},
            )]
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
            title="The broker was not accepting connections",
            explanation=("Every connect attempt was refused (nothing listening at that address) and retried with "
                         "growing waits, with no successful connect in these lines: the broker was down, restarting "
                         "or not started yet, unless the host or port in the URL is the wrong one. Its own log for "
                         "that window (or `celery-doctor broker URL`) tells which."),
            evidence=_evidence(_events(closed)),
            fix=Fix(text="Check the broker is running and listening on that host and port (its log, `celery-doctor "
                         "broker URL`); in docker compose start the worker after the broker is healthy.",
                    verify="celery-doctor broker URL"),
            confidence=0.45,
            facts={"source": "logs", "refused_only": True, "incidents": [i.id for i in closed]},
        )]
    outages = [i.outage_s for i in hits if i.outage_s]
    if not hits:
        said = sorted({SHUTDOWN.sub(r"\1", next(g for g in m.groups() if g).strip())
                       for e in undated if (m := FORCED_REASON.search(e.text) or BARE_REASON.search(e.text))})
        why = f" giving the reason {', '.join(repr(r) for r in said[:3])}" if said else ""
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
            title=("The broker closed connections for its own shutdown" if not said or "shutdown" in said else
                   "The broker closed the connections on purpose"),
            explanation=(f"RabbitMQ closed the connections itself with CONNECTION_FORCED{why} (a node shutdown, "
                         "restart or an operator's close). These lines carry no times, so the outage's length and "
                         "whether the clients came back cannot be read from them."),
            evidence=_evidence(undated),
            fix=Fix(text="Check why the broker stopped (its own log at that time); keep connection retries on, and "
                         "make consumers that must survive a restart reconnect (Celery does by default)."),
            confidence=0.75,
            facts={"source": "logs", "undated": True},
        )]
    broker_seen = any(e.side == Side.BROKER for e in _events(hits))
    # the broker's own undated close in the same paste (a traceback cut above its header) says who closed it
    events = [*undated, *cited(hits, closed_by_broker)]
    # the reason RabbitMQ gives (rabbitmqctl close_connection, the management UI, a node shutdown)
    reasons = sorted({SHUTDOWN.sub(r"\1", next(g for g in m.groups() if g).strip())
                      for e in [*undated, *_events(hits)]
                      if (m := FORCED_REASON.search(e.text) or (BARE_REASON.search(e.text) if e in undated else None))})
    refused = any(error_family(e) in ("refused", "dns", "unreachable") for e in _events(hits))
    what = ("the broker closing connections itself (a shutdown, an operator's close or a failover)"
            if not reasons else
            "the broker closing connections itself, giving the reason " + ", ".join(f"'{r}'" for r in reasons[:3])
            + " (rabbitmqctl close_connection, the management UI or a node shutting down)")
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
        title="The broker restarted or failed over" if not reasons or refused else
              "The broker closed the connections on purpose",
        explanation=(
            f"{len(hits)} incident(s) began with {what}"
            + (", then refused connections until it was back" if refused else "")
            + (f"; the longest outage lasted {_fmt_s(max(outages))}" if outages else "")
            + ". The worker reconnecting afterwards is the expected behaviour."),
        evidence=_evidence(events),
        fix=Fix(text="Nothing to fix in Celery if the restart was planned; keep connection retries on "
                     "and check why the broker restarted (its own log around that time). Use a "
                     "cluster with a load balancer or Redis Sentinel for planned maintenance."),
        confidence=0.9 if broker_seen else max(0.75 if undated else 0.0,
                                                0.7 if outages or len(went_away) < len(hits) else 0.65),
    )]


BARE_REASON = re.compile(r"CONNECTION_FORCED - (.+?)\s*$", re.M)  # py-amqp's exception line, pasted alone
FORCED_SHUTDOWN = re.compile(r"reason '?shutdown|connection_forced|broker forced connection closure", re.I)


def _refused_throughout(incident: Incident) -> bool:
    """Only connect attempts (two or more), at least one refused, none failing for a reason that says something
    answered (a login, TLS, a reset at connect) or that the name is wrong; Celery's default URL is CD-L22's."""
    client = [e for e in incident.events if e.side == Side.CLIENT]
    tries = [e for e in client if e.kind == Kind.CANNOT_CONNECT]
    families = {error_family(e) for e in tries}
    return (len(tries) >= 2 and len(tries) == len(client) and "refused" in families
            and families <= {"refused", "timeout", None} and not any(DEFAULT_URL.search(e.text) for e in tries))


def _refused_after(incident: Incident) -> bool:
    """Reconnect attempts after the loss were refused (a closed port), none got through to a timeout or DNS."""
    tries = [e for e in incident.events[1:] if e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT]
    return bool(tries) and all(error_family(e) == "refused" for e in tries)


@rule("CD-L05", "logs", Category.AUTH_OR_PERMISSIONS)
def auth(ctx: LogContext) -> Iterable[Finding]:
    """The broker refused the login or the virtual host."""
    def refused(e: Event) -> bool:  # a vhost that is down, or a count limit (CD-L73), is no refusal of the login
        return ((e.kind in (Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED) or error_family(e) in ("auth", "vhost"))
                and not VHOST_DOWN.search(e.text) and not limit_text(e.text))

    hits = [i for i in ctx.incidents if any(refused(e) for e in i.events)]
    # A pasted bare exception (`amqp.exceptions.AccessRefused: ... ACCESS_REFUSED`, redis-py's
    # AuthenticationError) names the refusal with no time: the text alone decides it, but
    # without the worker's own log it cannot show that every attempt fails, so less confident.
    pasted = [e for e in ctx.timeline.undated if refused(e)]
    if not hits and not pasted:
        return []
    events = [*cited(hits, refused), *pasted]
    localhost_only = any("only connect via localhost" in e.text for e in events)
    vhost = any(e.kind == Kind.ACCESS_REFUSED or error_family(e) == "vhost" for e in events)
    redis = any(REDIS_AUTH.search(f"{e.error or ''} {e.text}") for e in events)
    no_password = any(re.search(REDIS_NO_PASSWORD, f"{e.error or ''} {e.text}") for e in events)
    # redis-py's MasterNotFoundError carries each sentinel's refusal ("No master found for 'm' : ... -
    # AuthenticationError(...)"): the sentinels' own password, which the sentinel:// URL does not carry
    sentinels = any(SENTINEL_AUTH.search(f"{e.error or ''} {e.text}") for e in events)
    redis = redis or sentinels
    url = "redis://:PASSWORD@HOST:6379/0" if redis else "amqp://USER:PASSWORD@HOST:5672/VHOST"
    # The same client logged in earlier in this log, and no broker line says why it is refused now:
    # the login that worked stopped working, so either the broker's user changed or the worker no
    # longer sends the configured credentials (an upgrade that stops reading the settings falls
    # back to the default guest URL). Both happen; the log cannot tell which.
    worked = _logged_in_before(ctx, events) if not (localhost_only or sentinels or no_password) else None
    alternative = [] if worked is None else [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.MEDIUM,
        title="The configured broker credentials may no longer be in effect",
        explanation=(f"This worker logged in to the broker at {worked.ts:%H:%M:%S} ({worked.source}:{worked.line}) "
                     "and is refused later with no broker line saying why. If nobody changed the broker's user, "
                     "the worker is not sending the credentials you configured: after a Celery upgrade or a "
                     "changed environment the broker settings can stop being read, and Celery falls back to "
                     "its default URL (amqp://guest@localhost//), whose login the broker refuses."),
        evidence=_evidence([worked, *events[:1]]),
        fix=Fix(text="Compare the URL in the worker's banner ('.> transport:') with the one you configured; "
                     "print the effective setting (celery-doctor config --app APP) under the new release.",
                verify="the banner shows the configured user and vhost"),
        confidence=0.45,
    )]
    return [*alternative, Finding(
        category=Category.AUTH_OR_PERMISSIONS, severity=Severity.HIGH,
        title="The broker refused the login" + (" or the vhost" if vhost else ""),
        explanation=(
            "The broker rejected the credentials" + (" or the virtual host" if vhost else "")
            + (": the 'guest' user may only connect from localhost" if localhost_only else "")
            + ". The worker retries forever and never consumes."),
        evidence=_evidence(events),
        fix=Fix(text="The sentinels refused the worker: they want a password of their own, which the sentinel:// URL "
                     "does not give them (its password is the Redis master's); pass it in broker_transport_options="
                     "{'master_name': ..., 'sentinel_kwargs': {'password': 'SENTINEL_PASSWORD'}}"
                     if sentinels else
                     "Redis has no password, but the broker URL sends one: set the same password on the server "
                     "(requirepass, or the default user's ACL) or take it out of the URL"
                     if no_password else
                     "Put the password Redis expects (requirepass, or the ACL user's) in the broker URL"
                     if redis else
                     "Create a dedicated user with access to the vhost and put it in the broker URL"
                     if not localhost_only else
                     "Create a non-guest user (rabbitmqctl add_user / set_permissions) and use it in "
                     "the broker URL",
                snippet=snippet({"broker_transport_options": "{'master_name': 'MASTER', 'sentinel_kwargs': "
                                                             "{'password': 'SENTINEL_PASSWORD'}}"}
                                if sentinels else {"broker_url": f"'{url}'"}, ctx.celery_version),
                verify=f"celery-doctor broker {url}"),
        confidence=(0.6 if worked is not None else 0.95) if hits else 0.8,
    )]


def _logged_in_before(ctx: LogContext, refusals: list[Event]) -> Event | None:
    """The client's own 'Connected to' earlier in the same source as the first dated refusal, when
    no broker line explains the refusal (a broker log naming the user decides it instead)."""
    dated = sorted((e for e in refusals if e.ts is not None), key=lambda e: e.ts)  # type: ignore[arg-type,return-value]
    if not dated or any(e.side == Side.BROKER for e in refusals):
        return None
    first = dated[0]
    earlier = [e for e in ctx.timeline.events if e.kind == Kind.CONNECTED and e.side == Side.CLIENT
               and e.source == first.source and e.ts is not None and first.ts is not None and e.ts < first.ts]
    return earlier[-1] if earlier else None


@rule("CD-L06", "logs", Category.REDIS_SERVER_TIMEOUT)
def redis_timeout(ctx: LogContext) -> Iterable[Finding]:
    """Redis closed idle clients because of its `timeout` setting (server log, or orderly closes
    of idle connections)."""
    server = [i for i in ctx.incidents if any(e.kind == Kind.SERVER_CLOSED_IDLE for e in i.events)]
    # without the server log: orderly closes of idle Redis connections point at `timeout`
    client = [i for i in ctx.incidents if ctx.transport == "redis" and i not in server
              and i.phase in (Phase.IDLE, Phase.UNKNOWN) and i.closed_by in (ClosedBy.BROKER, ClosedBy.UNKNOWN)
              and any(error_family(e) == "eof" for e in i.events)
              # an idle timeout needs an established connection: closes during connect are not it
              and not all(e.kind == Kind.CANNOT_CONNECT for e in i.events if e.side == Side.CLIENT)]
    hits = server + client
    if not hits:
        return []
    return [Finding(
        category=Category.REDIS_SERVER_TIMEOUT, severity=Severity.HIGH,
        title="Redis closed idle client connections (server `timeout`)",
        explanation=(
            ("The Redis server logged that it closed idle clients" if server else
             "Idle Redis connections were closed in order by the server side")
            + ": a non-zero `timeout` makes Redis drop any client idle longer than it (blocked BRPOP "
            "consumers excepted), so producer and result connections die between uses."),
        evidence=_evidence(_events(hits)),
        fix=Fix(text="Set `timeout 0` on the server (CONFIG SET timeout 0 and in redis.conf), or make "
                     "the client probe its connections more often than the timeout.",
                snippet=snippet({"broker_transport_options": "{'health_check_interval': 10}"},
                                ctx.celery_version),
                verify="celery-doctor broker redis://HOST:6379/0"),
        confidence=0.9 if server else (0.5 if all(i.phase == Phase.IDLE for i in client) else 0.4),
        facts={"incidents": [i.id for i in hits]},
    )]


@rule("CD-L07", "logs", Category.BROKER_RESOURCE_ALARM)
def alarms(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ raised a memory or disk alarm and blocked publishers."""
    hits = [e for e in ctx.timeline.events if e.kind in (Kind.ALARM_SET, Kind.BLOCKED)]
    if not hits:
        return []
    resources = sorted({str(e.detail.get("resource")) for e in hits if e.detail.get("resource")})
    return [Finding(
        category=Category.BROKER_RESOURCE_ALARM, severity=Severity.HIGH,
        title=f"Broker resource alarm ({', '.join(resources) or 'memory/disk'})",
        explanation=("The broker raised a resource alarm: it blocks every publishing connection "
                     "until the alarm clears, so producers hang and may hit their timeouts."),
        evidence=_evidence(hits),
        fix=Fix(text="Free memory or disk on the broker (consume or purge backlogs, add capacity), "
                     "or raise the watermark if it is set too low.",
                verify="celery-doctor broker amqp://... (shows alarms and watermarks)"),
        confidence=0.9,
    )]


TIMEOUT_USED = re.compile(r"Timeout (?:value )?used: (\d+) ?ms")


@rule("CD-L08", "logs", Category.VERSION_INCOMPATIBILITY)
def consumer_timeout(ctx: LogContext) -> Iterable[Finding]:
    """RabbitMQ closed a channel whose delivery stayed unacknowledged past `consumer_timeout`."""
    def timed_out(e: Event) -> bool:
        return e.kind == Kind.CONSUMER_TIMEOUT or error_family(e) == "ack_timeout"

    hits = [i for i in ctx.incidents if any(timed_out(e) for e in i.events)]
    pasted = [e for e in ctx.timeline.undated if timed_out(e)]  # the error quoted without its log line
    if not hits and not pasted:
        return []
    events = [*cited(hits, timed_out), *pasted]
    # RabbitMQ names the value it applied (3.9+: "Timeout used: 5000 ms"; 3.12+: "Timeout value used")
    used = [int(m.group(1)) for e in events if (m := TIMEOUT_USED.search(e.text))]
    value = f" ({fmt_s(max(used) / 1000)} in effect)" if used else ""
    return [Finding(
        category=Category.VERSION_INCOMPATIBILITY, severity=Severity.HIGH,
        title=f"RabbitMQ's delivery acknowledgement timeout{value} closed the channel",
        explanation=("RabbitMQ 3.8.15 and later close a consumer's channel when a delivery stays "
                     "unacknowledged longer than `consumer_timeout` (30 min by default since 3.8.17). "
                     "Late-acked long tasks, or ETA/countdown tasks held by the worker, hit it after "
                     "a broker upgrade."),
        evidence=_evidence(events),
        fix=Fix(text="Raise consumer_timeout on the broker (rabbitmq.conf or per queue) above your "
                     "longest task / ETA, or stop holding ETA tasks in the worker."),
        confidence=0.8 if hits else 0.75,
    )]


@rule("CD-L09", "logs", Category.PREFORK_FORK_SHARED_CONNECTION)
def fork_shared(ctx: LogContext) -> Iterable[Finding]:
    """Interleaved frames on one AMQP connection: it is shared across a fork."""
    hits = [e for e in ctx.timeline.events if e.kind == Kind.CHANNEL_ERROR
            and ("unexpected_frame" in e.text or "expected content header" in e.text)]
    if not hits:
        return []
    return [Finding(
        category=Category.PREFORK_FORK_SHARED_CONNECTION, severity=Severity.HIGH,
        title="Several processes write to one AMQP connection",
        explanation=("The broker received interleaved frames (unexpected_frame): a connection opened "
                     "before a fork is being used by parent and child at once. Open connections after "
                     "the fork (worker_process_init) and never share one across processes."),
        evidence=_evidence(hits),
        fix=Fix(text="Create broker connections/producers inside each process (after fork), e.g. in "
                     "a worker_process_init handler; do not publish on a connection inherited from "
                     "the parent."),
        confidence=0.8,
    )]


@rule("CD-L10", "logs", Category.BENIGN_CLIENT_DISCONNECT, Category.UNKNOWN)
def benign_disconnects(ctx: LogContext) -> Iterable[Finding]:
    """Broker-only 'client unexpectedly closed' while the worker log shows nothing wrong."""
    hits = [i for i in ctx.incidents if i.closed_by == ClosedBy.CLIENT
            and all(e.side == Side.BROKER for e in i.events if e.kind != Kind.OTHER)
            and all(e.kind == Kind.CLIENT_CLOSED_ABRUPTLY for e in i.events if e.side == Side.BROKER)]
    # a close of a connection a client in these logs opened, and never noticed, is no exiting publisher (CD-L61)
    own = {id(close) for _, _, close in silent_worker_closes(ctx)}
    hits = [i for i in hits if not all(id(e) in own for e in i.events if e.kind == Kind.CLIENT_CLOSED_ABRUPTLY)]
    if not hits:
        return []
    clients = [s.name for s in ctx.timeline.sources
               if any(e.source == s.name and e.side == Side.CLIENT for e in ctx.timeline.events)]
    watched = [i for i in hits if any(ctx.timeline.covers(name, i.ts) for name in clients)]
    # the broker's own accept line for the same connection dates its life: a connection opened, logged in
    # and dropped within seconds is a client that did one thing and exited (a script, `celery status`, a
    # web request's publish), not a worker's consumer cut by a middlebox (that needs idle time first). A worker
    # stuck reconnecting in a loop looks the same from the broker, so it stays an even bet without the client log
    accepts = _accepts(ctx.timeline.events)
    brief = [i for i in hits if i not in watched and (life := _lifetime(i, accepts)) is not None
             and life <= SHORT_LIVED_S]
    findings = []
    if len(watched) + len(brief) < len(hits):
        # without the client's log a short-lived publisher and a network cut look the same
        findings.append(Finding(
            category=Category.UNKNOWN, severity=Severity.MEDIUM,
            title="Clients dropped connections without closing; the client side is not in the logs",
            explanation=(f"The broker logged {_closes(i for i in hits if i not in watched)} connection(s) closed "
                         "without an AMQP "
                         "close while no client log covers those moments. Short-lived publishers that exit "
                         "without closing, a middlebox cutting flows, and crashing clients all look like this "
                         "from the broker. Add the worker's or the publishing application's log for the same "
                         "window to tell them apart."),
            evidence=_evidence(_events(i for i in hits if i not in watched)),
            confidence=0.3, facts={"incidents": [i.id for i in hits if i not in watched]},
        ))
    # a busy broker's abrupt closes past the first of each window were counted, not read (reader.REPEAT_KEEP)
    counted = sum(int((s.meta.get("counted") or {}).get(Kind.CLIENT_CLOSED_ABRUPTLY.value, 0))
                  for s in ctx.timeline.sources)
    more = f" (and {counted} more the scan counted without reading them one by one)" if counted else ""
    findings.append(Finding(
        category=Category.BENIGN_CLIENT_DISCONNECT, severity=Severity.INFO,
        title="Clients that exit without closing their connection",
        explanation=(
            f"The broker logged {_closes(hits)} connection(s){more} closed without an AMQP close, and "
            + ("the worker log shows no failure at those moments: " if watched else
               "no client log covers those moments; if they come from ")
            + "short-lived publishers (scripts, web requests, cron jobs) that exit without closing, "
            "the broker only warns and nothing is lost."),
        evidence=_evidence(_events(hits)),
        fix=Fix(text="Close connections (or use `with app.connection_for_write()` / "
                     "`app.pool.acquire()`) in short-lived publishers; otherwise ignore these warnings."),
        confidence=(0.75 if watched and len(watched) == len(hits) else
                    0.5 if len(watched) + len(brief) == len(hits) else 0.35),
        # the closes are explained (as exits, or as unknown without the client's log): not CD-L11's too
        facts={"source": "logs", "short_lived": len(brief), "incidents": [i.id for i in hits],
               **({"counted_closes": counted} if counted else {})},
    ))
    return findings


SHORT_LIVED_S = 10.0


def _noted(rows: Iterable[tuple[Any, Any, Any]]) -> list[Evidence]:
    """Evidence from (source, line, text) rows a source's meta noted (lines no event was made of)."""
    return [Evidence(source=str(name), line=int(line), text=str(text)) for name, line, text in rows]


def _closes(incidents: Iterable[Incident]) -> int:
    """How many connections the broker saw dropped in ``incidents`` (closes at one moment are one
    incident: 514 closes of a churning broker were "15 connections")."""
    incidents = list(incidents)
    return sum(e.kind == Kind.CLIENT_CLOSED_ABRUPTLY for i in incidents for e in i.events) or len(incidents)


def _accepts(events: list[Event]) -> dict[tuple[str, object], list[datetime]]:
    """(source, connection) -> when the broker accepted it, in order (indexed once, not per incident)."""
    out: dict[tuple[str, object], list[datetime]] = {}
    for e in events:
        if e.kind == Kind.CONNECTION_ACCEPTED and e.detail.get("conn"):
            out.setdefault((e.source, e.detail["conn"]), []).append(e.at)
    return out


def _lifetime(incident: Incident, accepts: dict[tuple[str, object], list[datetime]]) -> float | None:
    """Seconds from the broker's accept of the connection to its abrupt close, when both are logged."""
    close = next((e for e in incident.events if e.kind == Kind.CLIENT_CLOSED_ABRUPTLY and e.detail.get("conn")), None)
    if close is None:
        return None
    opened = accepts.get((close.source, close.detail["conn"]), [])
    k = bisect.bisect_right(opened, close.at)
    return (close.at - opened[k - 1]).total_seconds() if k else None


for _id, _name, _cat, _why in (
        ("CD-L11", "unexplained", Category.UNKNOWN,
         "Connection failures no rule explains: said as unknown, with their lines, never guessed."),
        ("CD-L12", "undated_errors", Category.UNKNOWN,
         "Connection errors in a paste without timestamps: shown, but not matched or phased."),
        ("CD-L77", "cut_connection_traceback", Category.UNKNOWN,
         "A traceback through the connection code cut before its exception line: a failure, kind unseen.")):
    register(RuleInfo(_id, _name, "logs", (_cat,), _why, __name__))

RULES: tuple[Rule, ...] = (idle_cut, path_loss, heartbeat_silence, broker_restart, auth,
                           redis_timeout, alarms, consumer_timeout, fork_shared, benign_disconnects)


# Failures a client notices the moment they happen: a refused login (a connected worker does not
# log in again), an operator's close, a channel closed for an ack timeout, interleaved frames. When
# only the broker saw one, it happened to another client. Not so for missed heartbeats or an abrupt
# close, which a worker whose connection died silently may not notice for a while.
NOTICED_AT_ONCE = {Category.AUTH_OR_PERMISSIONS, Category.BROKER_RESTART_OR_FAILOVER,
                   Category.VERSION_INCOMPATIBILITY, Category.PREFORK_FORK_SHARED_CONNECTION}
UP_KINDS = {Kind.CONNECTED, Kind.WORKER_READY, Kind.TASK_RECEIVED, Kind.TASK_SUCCEEDED, Kind.TASK_FAILED}


def _connected_at(ctx: LogContext) -> Callable[[datetime], bool]:
    """Whether some given client log shows its client connected at a moment: after a connect (or
    work) and before its next failure. A healthy worker logs little, so a connection stays up past
    its log's last line."""
    changes: dict[str, list[tuple[datetime, bool]]] = {}
    for e in ctx.timeline.events:
        if e.side == Side.CLIENT and e.kind != Kind.OTHER:
            changes.setdefault(e.source, []).append((e.at, e.kind in UP_KINDS))

    def up(ts: datetime) -> bool:
        for seq in changes.values():
            before = [state for at, state in seq if at <= ts]
            if before and before[-1]:
                return True
        return False

    return up


OTHER_CLIENT_NOTE = ("\nOnly the broker's log shows it, at moments the given client logs show their clients "
                     "connected, and a client notices this at once: it happened to another client of this "
                     "broker, not to these workers.")


def _other_clients(ctx: LogContext, findings: list[Finding]) -> None:
    """A broker log is shared by every client of the broker. A failure the client notices at once,
    seen only by the broker while the given client logs show their clients connected, belongs to
    another client (another app's wrong password, an operator closing someone else's connection):
    true, and worth a line, but no cause of what the given workers went through."""
    up = _connected_at(ctx)
    alone = [i for i in ctx.incidents if all(e.side == Side.BROKER for e in i.events)]
    broker_only = {(e.source, e.line) for i in alone for e in i.events}
    while_up = {(e.source, e.line) for i in alone if up(i.ts) for e in i.events}
    for f in findings:
        lines = {(e.source, e.line) for e in f.evidence}
        if not lines or f.category in (Category.BENIGN_CLIENT_DISCONNECT, Category.NO_INCIDENT, Category.UNKNOWN):
            continue
        # a failure a client notices at once, some of it while the given clients were connected, none
        # of it in their own logs (the same other client's attempts before a worker's log begins
        # count with the rest)
        if f.category not in NOTICED_AT_ONCE or not lines <= broker_only or not lines & while_up:
            continue
        f.facts["other_client"] = True
        f.severity = Severity.LOW
        f.title = f"another client of the broker: {f.title}"
        # what the rule says of the workers (they retry, they never consume) is not so: keep its first sentence
        f.explanation = f.explanation.split(". ")[0].rstrip(".") + "." + OTHER_CLIENT_NOTE


def evaluate(ctx: LogContext) -> list[Finding]:
    from celery_doctor.rules.logs import RULES as MODULE_RULES  # they import this module's helpers

    findings = [f for rule in (*RULES, *MODULE_RULES) for f in rule(ctx)]
    _other_clients(ctx, findings)
    explained = {(e.source, e.line) for f in findings for e in f.evidence}
    # a finding's evidence shows a few lines; the incidents it explains are all of them
    covered = {n for f in findings for n in f.facts.get("incidents", ())}
    unexplained = [i for i in ctx.incidents if i.id not in covered
                   and not any((e.source, e.line) in explained for e in i.events)]
    if unexplained:
        findings.append(Finding(
            category=Category.UNKNOWN, severity=Severity.MEDIUM,
            title=f"{len(unexplained)} connection failure(s) the logs cannot explain",
            explanation=(
                "These failures carry no sign of who closed the connection or why. Add the other "
                "side's log for the same window (the broker's log for a worker, or the worker's for "
                "the broker), the effective config (celery-doctor config --app), and a broker probe."),
            evidence=_evidence(_events(unexplained)),
            confidence=0.3, rule_id="CD-L11",
        ))
    undated = [(s.name, line, text) for s in ctx.timeline.sources for line, text in s.meta.get("undated_errors", [])]
    if not ctx.incidents and undated:
        findings.append(Finding(
            category=Category.UNKNOWN, severity=Severity.MEDIUM,
            title="Connection errors without timestamps",
            explanation=("These inputs show connection errors, but their lines carry no times, so they cannot be "
                         "matched with the other side or told idle from busy. Give the worker's own log (with "
                         "its timestamps) and the broker's log for the same window."),
            evidence=_noted(undated[:MAX_EVIDENCE]),
            confidence=0.3, rule_id="CD-L12",
        ))
    elif not ctx.incidents and (cut := [(s.name, *s.meta["cut_connection_traceback"]) for s in ctx.timeline.sources
                                        if s.meta.get("cut_connection_traceback")]):
        # "no connection failure" would be false here: the paste shows one, only not which
        findings.append(Finding(
            category=Category.UNKNOWN, severity=Severity.MEDIUM,
            title="A connection failure whose error line the paste cut off",
            explanation=("The traceback runs through the code that opens or reads the broker connection (kombu, "
                         "py-amqp, redis-py) and stops before its exception line, so a connection failed here "
                         "but not how: refused, reset, timed out and refused logins all pass these frames. Give "
                         "the whole traceback (its last line names the error), or the worker's log around it."),
            evidence=_noted(cut),
            confidence=0.3, rule_id="CD-L77",
        ))
    elif not ctx.incidents:
        from celery_doctor.rules.logs.no_incident import no_incident

        findings += no_incident(ctx)  # as strong as the logs allow (rules/logs/no_incident.py)
    findings.sort(key=lambda f: (f.severity.rank >= Severity.MEDIUM.rank, f.confidence), reverse=True)
    return findings
