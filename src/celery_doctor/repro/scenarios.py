"""Scenarios: what the harness does with the worker while the fault is in place, with time
compressed (heartbeats and idle periods of seconds, not minutes) so each run ends well under
half a minute.

A scenario is a list of steps the harness executes in order (publish, wait, wait for the queue
to drain). Which finding category a run must end with is decided here too, from the fault that
was set *and* from what the proxy actually did (its events are the ground truth: an idle cut
that never fired because heartbeats kept the flow busy must not be reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery_doctor.model import Category, DoctorError, Event, Kind
from celery_doctor.repro.proxy import Fault

SCENARIOS = ("startup", "idle", "load", "long-task")


class ScenarioError(DoctorError):
    """A scenario name or parameter that cannot be run."""


@dataclass(frozen=True)
class Step:
    op: str  # "publish" | "wait" | "drain"
    count: int = 0
    rate: float = 0.0  # tasks per second (0: as fast as confirms allow)
    task: str = "doctor.noop"
    args: tuple[Any, ...] = ()
    seconds: float = 0.0
    label: str = ""


@dataclass
class Plan:
    scenario: str
    steps: list[Step]
    heartbeat: float  # seconds negotiated with the broker (0 = off)
    heartbeat_why: str
    acks_late: bool
    pool: str
    concurrency: int
    drain_s: float  # how long to wait for the last tasks before calling them stranded/lost
    notes: list[str] = field(default_factory=list)

    @property
    def budget_s(self) -> float:
        """A generous bound on the scenario's own steps (the harness adds start/stop time)."""
        total = 0.0
        for step in self.steps:
            if step.op == "wait":
                total += step.seconds
            elif step.op == "publish":
                total += step.count / step.rate if step.rate else step.count * 0.05
            elif step.op == "drain":
                total += self.drain_s
        return total


def default_heartbeat(scenario: str, fault: Fault | None) -> tuple[float, str]:
    """The compressed heartbeat a scenario uses unless --heartbeat or the user's config sets one.

    Each default lets the fault show its classic symptom within seconds: an idle cut needs a
    connection that really goes idle (heartbeats off, as with Celery's 120 s default against a
    shorter idle timeout); a blackhole and a long task need heartbeats short enough to notice.
    """
    if scenario == "long-task":
        return 2.0, "2 s: short, so a long task outlasts the heartbeat window (compressed time)"
    if fault is not None:
        hole = fault.find("blackhole")
        if hole is not None:
            span = hole.for_s if hole.for_s is not None else 10.0
            hb = max(1.0, min(4.0, round(span / 4, 1)))
            return hb, f"{hb:g} s: short enough that both sides notice a {span:g} s blackhole"
        cut = fault.find("idle-cut")
        if cut is not None:
            return 0.0, ("0 (off): the connection goes idle, as with Celery's 120 s default "
                         "against a shorter idle timeout; pass --heartbeat to test a fix")
    return 0.0, "0 (off): nothing in this scenario needs heartbeats; pass --heartbeat to test yours"


def plan(scenario: str, fault: Fault | None, *, heartbeat: float | None = None,
         acks_late: bool | None = None, pool: str | None = None, concurrency: int = 2,
         rate: float = 50.0, duration: float = 10.0, task_seconds: float | None = None,
         broker: str = "rabbitmq") -> Plan:
    """The steps of one scenario, sized to the fault so the fault has time to act."""
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; expected one of: {', '.join(SCENARIOS)}")
    if rate <= 0 or duration <= 0:
        raise ScenarioError("--rate and --duration must be greater than 0")
    hb_default, hb_why = default_heartbeat(scenario, fault)
    hb = hb_default if heartbeat is None else heartbeat
    why = hb_why if heartbeat is None else f"{hb:g} s (--heartbeat)"
    notes: list[str] = []
    if broker == "redis" and heartbeat:
        notes.append("Redis has no AMQP heartbeat: broker_heartbeat (--heartbeat) does nothing on "
                     "this broker; only the transport's health checks and TCP keepalive probe it")
    if broker == "redis":
        hb = 0.0  # nothing is negotiated: waits are sized as without heartbeats
        why = "none: Redis has no AMQP heartbeat (broker_heartbeat is ignored)"
    idle = _idle_wait(fault, hb)
    # long enough for a redelivered message to come back and the worker to reconnect
    drain = max(6.0, 3 * hb + 3.0) if hb else 6.0

    if scenario == "startup":
        steps = [Step("publish", count=5, label="publish 5 tasks while the worker starts"),
                 Step("drain", label="wait for them")]
    elif scenario == "idle":
        steps = [Step("publish", count=3, label="publish 3 tasks"),
                 Step("drain", label="wait for them"),
                 Step("wait", seconds=idle, label=f"stay idle for {idle:g} s"),
                 Step("publish", count=3, label="publish 3 more"),
                 Step("drain", label="wait for them")]
    elif scenario == "load":
        count = max(1, int(rate * duration))
        steps = [Step("publish", count=count, rate=rate, label=f"publish {rate:g}/s for {duration:g} s"),
                 Step("drain", label="wait for the queue to drain")]
        drain = max(drain, 8.0)
    else:  # long-task
        length = task_seconds if task_seconds is not None else (max(5.0, 2.5 * hb + 1) if hb else 5.0)
        steps = [Step("publish", count=1, task="doctor.sleep", args=(length,),
                      label=f"publish one task that runs {length:g} s"),
                 Step("wait", seconds=length + 1, label="let it run"),
                 Step("drain", label="wait for the ack and any redelivery")]
        drain = max(drain, length + 4)
        if acks_late is None:
            acks_late = True
            notes.append("long-task acknowledges late (task_acks_late=True), the setting under which "
                         "a broker-side close makes the broker redeliver; pass --acks-early to compare")
        if pool is None:
            pool = "solo"
            notes.append("long-task runs the solo pool, where tasks run in the thread that sends "
                         "heartbeats; pass --pool prefork to compare")
    return Plan(scenario=scenario, steps=steps, heartbeat=hb, heartbeat_why=why,
                acks_late=bool(acks_late), pool=pool or "prefork",
                concurrency=1 if (pool or "prefork") == "solo" else concurrency,
                drain_s=drain, notes=notes)


def _idle_wait(fault: Fault | None, heartbeat: float) -> float:
    """Idle long enough for an idle cut to fire (and recur), or for a blackhole to pass."""
    if fault is None:
        return 6.0
    if fault.find("broker-restart"):
        return 12.0  # the hook stops and starts the broker; the worker's retry backs off
    cut = fault.find("idle-cut")
    if cut is not None and cut.seconds is not None and cut.mode == "silent":
        # a silent cut does not recur (the flow is dead, nothing reconnects): one period
        return round(cut.seconds + 2.0, 1)
    if cut is not None and cut.seconds is not None:
        # three periods: cuts recur at the idle timeout when nothing keeps the flow busy
        return round(min(3 * cut.seconds + 1.5, max(cut.seconds + 2, 24.0)), 1)
    hole = fault.find("blackhole")
    if hole is not None:
        span = hole.for_s if hole.for_s is not None else 10.0
        return round(hole.after_s + span + max(2.0, heartbeat) + 1.0, 1)
    return 6.0


# -- what the verdict must say -------------------------------------------------------------

def expected_categories(fault: Fault | None, scenario: str, plan_: Plan,
                        proxy_events: list[Event], publisher_events: list[Event] | None = None,
                        broker: str = "rabbitmq") -> tuple[set[Category], str]:
    """The categories the top finding may name, given what the proxies really did (the
    worker's and the publisher's: a fault that only hit the publisher still acted)."""
    kinds = {e.kind for e in proxy_events} | {e.kind for e in publisher_events or []}
    fired_cut = Kind.PROXY_CUT in kinds
    fired_hole = Kind.PROXY_BLACKHOLE in kinds
    if fault is not None:
        if fault.find("broker-restart"):
            return {Category.BROKER_RESTART_OR_FAILOVER}, "the broker was restarted by the hook"
        cut = fault.find("idle-cut")
        if cut is not None and fired_cut:
            accepted = {Category.NETWORK_IDLE_TIMEOUT}
            if cut.mode == "silent":  # half-open flows are noticed as missing heartbeats
                accepted.add(Category.NETWORK_PATH_LOSS)
            return accepted, "the proxy cut idle connections"
        if fault.find("blackhole") is not None and fired_hole:
            return {Category.NETWORK_PATH_LOSS}, "the proxy blackholed live connections"
        if (fault.find("reset-under-load") or fault.find("reset-after-bytes")) and fired_cut:
            return ({Category.NETWORK_PATH_LOSS, Category.TLS_OR_PROXY},
                    "the proxy reset busy connections")
        if fault.find("refuse") and Kind.PROXY_REFUSE in kinds:
            return ({Category.NETWORK_PATH_LOSS, Category.BROKER_RESTART_OR_FAILOVER},
                    "the proxy refused connections")
    if scenario == "long-task" and plan_.pool == "solo" and plan_.heartbeat and broker != "redis":
        return {Category.LONG_TASK_BLOCKS_HEARTBEAT}, "a task outlasted the heartbeat window in the solo pool"
    if fault is not None and (fault.find("latency") or fault.find("bandwidth")):
        return {Category.NO_INCIDENT}, "latency and bandwidth slow the path but break no connection"
    if scenario == "long-task" and broker == "redis":
        return {Category.NO_INCIDENT}, "Redis has no heartbeat for a long task to starve"
    return {Category.NO_INCIDENT}, "the fault never acted on a connection" if fault else "no fault was set"
