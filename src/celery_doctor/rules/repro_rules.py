"""Findings from a reproduction's own ground truth (``repro.facts.RunFacts``): what the
proxies did to each side's connections, what the ledger says happened to the tasks, and
whether the worker still consumes after the fault. The logs engine judges the run's logs as it
would judge anyone's; these rules say what only the run can know (a publisher that never got a
message through, a worker that is alive but deaf), so the verdict never misses a fault that
acted on the publishing side or left no line in any log.

Rule ids (``Finding.rule_id``, in docs/incident-rules.md): CD-R01 publish failed, CD-R02 alive
but not consuming, CD-R03 worker refused, CD-R04 publisher fell behind; ``facts["rule"]`` names
them in words.
Each fix that a rerun can check carries ``facts["repro_fix"]`` (the run options that apply it),
which ``repro --verify-fix`` applies to the same fault on the same broker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from celery_doctor.model import Category, Event, Evidence, Finding, Fix, Kind, Severity
from celery_doctor.repro.facts import RunFacts
from celery_doctor.rules.fixes import heartbeat_for_idle, redis_keepalive, snippet, worst_silence_s
from celery_doctor.rules.registry import rule


def _evidence(events: list[Event], source: str, limit: int = 4) -> list[Evidence]:
    return [Evidence(source=source, line=e.line, text=e.text, ts=e.ts) for e in events[:limit]]


def heartbeat_fix(facts: RunFacts, idle_s: float) -> Fix:
    """RabbitMQ: the heartbeat `logs` and `diagnose` propose for the same idle timeout (one rule,
    rules/fixes.py HEARTBEAT_RULE): py-amqp then leaves at most half of it silent, and a flow the
    middlebox dropped anyway is noticed within two intervals and reconnected."""
    hb = heartbeat_for_idle(idle_s)
    return Fix(text=f"Enable AMQP heartbeats (~{idle_s:g} s idle timeout here): with broker_heartbeat = {hb} "
                    f"the worker is never silent for more than {worst_silence_s(hb):.1f} s, so the "
                    "middlebox keeps the flow, and a flow it dropped anyway is noticed within two "
                    "intervals and reconnected.",
               snippet=snippet({"broker_heartbeat": f"{hb}"}, facts.versions.get("celery")),
               verify=_verify_line(facts))


# Linux socket option numbers (socket.TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT): the run's config
# module is written as literals, and kombu/redis-py take the options as {number: value}
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 4, 5, 6


def keepalive_options(idle_s: float) -> dict[str, Any]:
    """TCP keepalive probes more often than a NAT's idle timeout: the kernel sends them on
    every idle connection of the pool, which no application-level check reaches."""
    first = max(1, int(idle_s / 3))
    return {"socket_keepalive": True,
            "socket_keepalive_options": {TCP_KEEPIDLE: first, TCP_KEEPINTVL: first, TCP_KEEPCNT: 3}}


def keepalive_fix(facts: RunFacts, idle_s: float) -> Fix:
    first, options = redis_keepalive(idle_s)
    return Fix(text=f"Turn on TCP keepalive with the first probe well before the NAT's idle timeout "
                    f"(~{idle_s:g} s here, first probe after {first} s): the kernel probes every idle "
                    "Redis connection of the pool, which keeps the NAT's flow entry alive (Redis has no "
                    "heartbeat of its own).",
               snippet="import socket\n" + snippet({"broker_transport_options": options}, facts.versions.get("celery")),
               verify=_verify_line(facts))


def _verify_line(facts: RunFacts) -> str:
    fault = f" --fault {facts.fault.spec}" if facts.fault else ""
    return (f"celery-doctor repro --scenario {facts.scenario}{fault} --broker {facts.target.kind}:// "
            "--verify-fix (reruns the same fault with this fix)")


KEEPALIVE_NEEDS_KERNEL = (
    "not provable through the userspace proxy: the kernel answers TCP keepalive probes below it, so "
    "the proxy sees an idle flow and cuts it whatever the fix; rerun as root with --middlebox kernel "
    "(a real conntrack NAT, where keepalives count) and --verify-fix")


def fix_for(facts: RunFacts, idle_s: float) -> tuple[Fix, dict[str, object] | None]:
    """The fix for a flow the path drops, and the run options that apply it (None when this
    run's middlebox cannot prove it: a keepalive fix through the userspace proxy).

    Only fixes a rerun has proven are proposed (docs/repro.md, "Which fixes are proven"):
    RabbitMQ heartbeats (proxy and kernel NAT), Redis TCP keepalive (kernel NAT). Redis health
    checks with a socket timeout are not proposed: through the proxy a BRPOP reply swallowed by
    the dead flow still loses a task, and on a real NAT keepalive alone does the job."""
    if facts.target.kind == "redis":
        fix = keepalive_fix(facts, idle_s)
        if facts.middlebox == "kernel":
            return fix, {"transport_options": keepalive_options(idle_s)}
        return Fix(text=fix.text, snippet=fix.snippet, verify=(
            f"celery-doctor repro --scenario {facts.scenario}"
            + (f" --fault {facts.fault.spec}" if facts.fault else "")
            + " --broker redis:// --middlebox kernel --verify-fix (as root; the userspace proxy cannot "
              "see keepalives)")), None
    fix = heartbeat_fix(facts, idle_s)
    return fix, {"heartbeat": float(heartbeat_for_idle(idle_s))}


def _attach(finding: Finding, fix: Fix, options: dict[str, object] | None) -> None:
    finding.fix = fix
    if options is not None:
        finding.facts["repro_fix"] = options
    else:
        finding.facts["repro_fix_unproven"] = KEEPALIVE_NEEDS_KERNEL


@rule("CD-R01", "repro", Category.BROKER_RESTART_OR_FAILOVER, Category.NETWORK_PATH_LOSS,
      Category.NETWORK_IDLE_TIMEOUT, Category.AUTH_OR_PERMISSIONS, Category.UNKNOWN)
def publish_failed(facts: RunFacts, summary: dict[str, Any]) -> Iterable[Finding]:
    """The publisher could not get messages to the broker: the fault acted on the producing
    side (a refusal, a cut, a blackhole), whatever the worker's own connection saw."""
    failed = int(summary.get("publish_failed", 0) or 0) + int(summary.get("publish_interrupted", 0) or 0)
    sent = int(summary.get("sent", 0) or 0)
    if not failed:
        return []
    kinds = Counter(e.kind for e in facts.publisher_events)
    errors = summary.get("publish_errors") or {}
    top_error = max(errors, key=lambda k: errors[k]) if isinstance(errors, dict) and errors else None
    acted = [e for e in facts.publisher_events if e.kind in (Kind.PROXY_REFUSE, Kind.PROXY_CUT, Kind.PROXY_BLACKHOLE)]
    if kinds.get(Kind.PROXY_REFUSE):
        category, how = Category.BROKER_RESTART_OR_FAILOVER, (
            f"the broker's address refused {kinds[Kind.PROXY_REFUSE]} new connection(s) (reset at connect)")
    elif kinds.get(Kind.PROXY_BLACKHOLE):
        category, how = Category.NETWORK_PATH_LOSS, "the path stopped carrying the publisher's packets"
    elif kinds.get(Kind.PROXY_CUT):
        idle = facts.fault is not None and facts.fault.find("idle-cut") is not None
        category = Category.NETWORK_IDLE_TIMEOUT if idle else Category.NETWORK_PATH_LOSS
        how = f"the path cut the publisher's connection {kinds[Kind.PROXY_CUT]} time(s)"
    elif top_error and any(w in top_error for w in ("ACCESS_REFUSED", "NOAUTH", "WRONGPASS", "auth")):
        category, how = Category.AUTH_OR_PERMISSIONS, "the broker refused the publisher's login"
    else:
        category, how = Category.UNKNOWN, "the publishes raised with no fault acting on the path"
    share = f"{failed} of {sent}" if sent else str(failed)
    evidence = _evidence(acted, "publisher-proxy-events.jsonl")
    if top_error:
        count = errors[top_error]
        evidence.append(Evidence(source="ledger.jsonl", line=0, text=f"publish error x{count}: {top_error}"))
    return [Finding(
        category=category, severity=Severity.HIGH,
        title=f"{share} publish(es) failed: {how}",
        explanation=(f"The publisher's calls raised or never returned for {share} task(s) sent "
                     f"({how}). These tasks never reached the queue; the worker's own connection "
                     "may look healthy, which is why the worker's log alone shows nothing. "
                     "Producers retry a publish only within kombu's retry policy, so a refusal "
                     "longer than that loses the task at the caller."),
        evidence=evidence, confidence=0.9 if failed == sent else 0.75,
        facts={"rule": "repro.publish_failed", "failed": failed, "sent": sent, "source": "repro"},
    )]


@rule("CD-R02", "repro", Category.NETWORK_IDLE_TIMEOUT, Category.NETWORK_PATH_LOSS, Category.UNKNOWN)
def not_consuming(facts: RunFacts) -> Iterable[Finding]:
    """The worker process is alive but took no new task after the fault was removed: its
    consumer socket died without either end noticing (half-open), the classic silent cut."""
    if not (facts.worker.alive_at_end and facts.canary.published and not facts.canary.executed):
        return []
    cuts = [e for e in facts.worker_events if e.kind == Kind.PROXY_CUT]
    holes = [e for e in facts.worker_events if e.kind == Kind.PROXY_BLACKHOLE]
    cut = facts.fault.find("idle-cut") if facts.fault is not None else None
    hb = facts.effective.get("broker_heartbeat", facts.plan.heartbeat)
    probe = ("no heartbeat was negotiated" if facts.target.kind == "rabbitmq" and not hb else
             "Redis has no heartbeat and the transport's health check did not replace it"
             if facts.target.kind == "redis" else f"heartbeats ({hb} s) did not replace it")
    fix, options = fix_for(facts, cut.seconds if cut is not None and cut.seconds else 10.0)
    facts_out: dict[str, Any] = {"rule": "repro.not_consuming", "source": "repro"}
    if options is not None:
        facts_out["repro_fix"] = options
    else:
        facts_out["repro_fix_unproven"] = KEEPALIVE_NEEDS_KERNEL
    if cuts and cut is not None:
        category = Category.NETWORK_IDLE_TIMEOUT
        title = "Idle connection dropped by the middlebox: the worker is alive but no longer consumes"
        evidence = _evidence(cuts, "proxy-events.jsonl")
    elif holes:
        category = Category.NETWORK_PATH_LOSS
        title = "Path went dark: the worker is alive but no longer consumes"
        evidence = _evidence(holes, "proxy-events.jsonl")
    else:
        category = Category.UNKNOWN
        title = "The worker is alive but no longer consumes"
        evidence = []
    waited = facts.canary.waited_s
    evidence.append(Evidence(source="ledger.jsonl", line=0,
                             text=f"canary task published after the fault was removed; not executed "
                                  f"after {waited} s"))
    return [Finding(
        category=category, severity=Severity.CRITICAL, title=title,
        explanation=(f"After the fault was removed the worker process was still running but a new "
                     f"task did not run within {waited} s. The middlebox forgot the flow and no reset "
                     f"reached the worker, so its socket still looks open; {probe}, so nothing noticed "
                     "the connection was dead. In production this is a worker that stays up and "
                     "silently stops taking work until it is restarted."),
        evidence=evidence, fix=fix, confidence=0.9 if category != Category.UNKNOWN else 0.5,
        facts=facts_out,
    )]


@rule("CD-R03", "repro", Category.BROKER_RESTART_OR_FAILOVER)
def worker_refused(facts: RunFacts) -> Iterable[Finding]:
    """The worker's own connections were refused (a startup against a broker that is down or
    not serving): the worker log shows only retries, the proxy knows why."""
    refused = [e for e in facts.worker_events if e.kind == Kind.PROXY_REFUSE]
    if not refused:
        return []
    recovered = facts.canary.executed
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
        title=f"The broker's address refused {len(refused)} worker connection(s)",
        explanation=("Every new connection the worker opened was reset at connect, as when the "
                     "broker is down, restarting or not serving yet. Celery retries connecting "
                     + ("and consumed again once connections were accepted."
                        if recovered else "and had not consumed again by the end of the run.")),
        evidence=_evidence(refused, "proxy-events.jsonl"), confidence=0.85,
        facts={"rule": "repro.worker_refused", "source": "repro", "refused": len(refused)},
    )]


def cut_fix(facts: RunFacts, findings: list[Finding]) -> None:
    """An idle cut the logs engine found gets the fix this run can prove (scaled to the run's
    compressed idle timeout) and a ``repro_fix`` for --verify-fix."""
    cut = facts.fault.find("idle-cut") if facts.fault is not None else None
    if cut is None or cut.seconds is None:
        return
    for finding in findings:
        if finding.category == Category.NETWORK_IDLE_TIMEOUT and "repro_fix" not in finding.facts:
            _attach(finding, *fix_for(facts, cut.seconds))


# pools where a task runs in the thread that must also send the connection's heartbeats
HEARTBEAT_THREAD_POOLS = ("solo", "threads", "eventlet", "gevent")


def long_task_fix(facts: RunFacts, findings: list[Finding]) -> None:
    """A long task that starved the heartbeats gets the two fixes the logs rules propose as
    run options, so --verify-fix reruns both: the prefork pool (the main process keeps sending
    heartbeats while a child runs the task) and heartbeats off. RabbitMQ only: Redis has no
    heartbeat for a long task to starve, and no rule proposes either there."""
    if facts.target.kind != "rabbitmq" or facts.plan.pool not in HEARTBEAT_THREAD_POOLS:
        return
    for finding in findings:
        if finding.category == Category.LONG_TASK_BLOCKS_HEARTBEAT and "repro_fix" not in finding.facts:
            finding.facts["repro_fix"] = {"pool": "prefork"}
            finding.facts["repro_fix_also"] = [{"heartbeat": 0.0}]


@rule("CD-R04", "repro", Category.NO_INCIDENT)
def fell_behind(facts: RunFacts, summary: dict[str, Any]) -> Iterable[Finding]:
    """The fault broke no connection but slowed the path so much that the publisher could not
    keep the planned rate: say so, with the tasks it never sent, instead of a bare 'no incident'."""
    not_sent = int(summary.get("not_sent", 0) or 0)
    if not not_sent or summary.get("publish_failed") or summary.get("publish_interrupted"):
        return []
    return [Finding(
        category=Category.NO_INCIDENT, severity=Severity.LOW,
        title=f"No connection failed, but the publisher fell behind: {not_sent} planned task(s) never sent",
        explanation=((facts.not_sent_reason or "The publisher did not send every planned task in time.")
                     + ". No connection was cut or refused: the path is slow, not broken. Publisher "
                       "confirms make each publish wait one round trip, so the rate a producer can "
                       "reach falls as the latency grows."),
        evidence=[Evidence(source="ledger.jsonl", line=0, text=facts.not_sent_reason or "")],
        confidence=0.8, facts={"rule": "repro.fell_behind", "source": "repro", "not_sent": not_sent},
    )]


def duplicate_note(summary: dict[str, Any], findings: list[Finding]) -> None:
    """A reset that made the publisher send a task twice is named in the finding: two messages,
    neither redelivered, so neither late acks nor anything on the worker would have stopped it."""
    twice = int(summary.get("duplicated_by_publish", 0) or 0)
    again = int(summary.get("duplicated_by_redelivery", 0) or 0)
    if not twice:
        return
    line = (f"The ledger: {twice} task(s) ran twice because the publisher sent them twice (its retry "
            "after a reset lost the broker's confirm: two messages, neither flagged redelivered)"
            + (f"; {again} ran again because the broker redelivered them (flagged redelivered: the "
               "worker's connection died before its ack arrived)" if again else "")
            + ". Only idempotent tasks make a second copy harmless.")
    for finding in findings:
        if finding.category in (Category.NETWORK_PATH_LOSS, Category.TLS_OR_PROXY):
            finding.explanation += "\n" + line
            finding.facts["duplicated_by_publish"] = twice
            finding.facts["duplicated_by_redelivery"] = again


def evaluate(facts: RunFacts, summary: dict[str, Any]) -> list[Finding]:
    return [*publish_failed(facts, summary), *not_consuming(facts), *worker_refused(facts),
            *fell_behind(facts, summary)]
