"""A long task kept the worker from sending heartbeats, seen from the client side only: the
ack after the task fails (``Couldn't ack``) or the connection is lost right after ``Task ...
succeeded in Ns`` with N well above the heartbeat, in a pool where tasks run in the thread
that sends heartbeats (solo/threads: the banner, ``-P``, or task lines under MainProcess)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from celery_doctor.model import Category, Event, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import THREAD_POOLS, LogContext, evidence_of, fmt_s
from celery_doctor.rules.fixes import snippet
from celery_doctor.rules.registry import rule

DEFAULT_HEARTBEAT_S = 60.0  # RabbitMQ's server default caps what Celery (120 s) negotiates


def _task_seconds(event: Event) -> float | None:
    """How long the task that ended just before this event ran (from the worker's look-back)."""
    longest = None
    for task in event.detail.get("recent_long_tasks") or []:
        try:
            since = datetime.fromisoformat(task["since"])
            until = datetime.fromisoformat(task["until"])
        except (KeyError, TypeError, ValueError):
            continue
        if event.ts is not None and abs((event.ts - until).total_seconds()) <= 5:
            longest = max(longest or 0.0, (until - since).total_seconds())
    return longest


@rule("CD-L21", "logs", Category.LONG_TASK_BLOCKS_HEARTBEAT)
def long_task_client_side(ctx: LogContext) -> Iterable[Finding]:
    """The connection died during a long task that ran in the heartbeat thread, seen from the
    worker's log alone (Couldn't ack, or a loss right after a long task succeeded)."""
    if any(e.kind == Kind.HEARTBEAT_MISSED_CLIENT for e in ctx.timeline.events):
        return []  # the broker said it: rules/logs_rules.heartbeat_silence judges it
    heartbeat = ctx.heartbeat_s or DEFAULT_HEARTBEAT_S
    hits: list[tuple[Event, float]] = []
    for e in ctx.timeline.events:
        if e.side != Side.CLIENT or e.kind not in (Kind.CONNECTION_LOST, Kind.HEARTBEAT_MISSED_BROKER):
            continue
        seconds = _task_seconds(e)
        if seconds is not None and seconds > heartbeat:
            hits.append((e, seconds))
    if not hits or ctx.transport == "redis":
        return []
    thread_pool = ctx.pool in THREAD_POOLS or (ctx.pool is None and any(
        "/MainProcess] Task " in e.text for e in ctx.timeline.events))
    couldnt_ack = any("Couldn't ack" in e.text for e, _ in hits)
    longest = max(s for _, s in hits)
    return [Finding(
        category=Category.LONG_TASK_BLOCKS_HEARTBEAT, severity=Severity.HIGH,
        title=f"A {fmt_s(longest)} task kept the worker from sending heartbeats",
        explanation=(f"The connection was found dead right after a task that ran {fmt_s(longest)}, longer than "
                     f"the heartbeat ({fmt_s(heartbeat)})"
                     + (", and the ack for it failed (Couldn't ack): the message will be redelivered" if couldnt_ack
                        else "")
                     + ". " + ("Tasks run in the thread that must also send heartbeats (solo/threads pool), "
                               "so the broker closed the silent connection."
                               if thread_pool else "The pool is not known from these lines; with prefork the "
                               "main process keeps sending heartbeats, so check the pool (-P).")),
        evidence=evidence_of(e for e, _ in hits),
        fix=Fix(text="Run long tasks in the prefork pool (-P prefork), or disable AMQP heartbeats for this worker "
                     "and rely on TCP keepalive; with acks_late, make the task idempotent.",
                snippet=snippet({"broker_heartbeat": "0"}, ctx.celery_version, "or start the worker with -P prefork"),
                verify="celery-doctor repro --scenario long-task (with the fix) should show no duplicate"),
        # a failed ack after a task longer than the heartbeat is strong on its own; a known
        # prefork pool (heartbeats go on in the main process) speaks against it
        confidence=(0.85 if couldnt_ack else 0.75) if thread_pool else
                   (0.75 if couldnt_ack else 0.55) if ctx.pool is None else 0.45,
        facts={"task_s": longest, "heartbeat_s": heartbeat, "source": "logs"},
    )]
