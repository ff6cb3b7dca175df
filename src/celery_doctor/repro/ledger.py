"""The ledger: what happened to every task of a run, from the lines the harness, the publisher
and the worker appended (``harness_app.record``) and from what was left in the broker at the end.

A task planned is in the ledger whatever happens to it. Its life, as lines:
- *planned* (the harness, before asking the publisher), *sending* (the publisher, just before
  the call), *published* (the call returned: with publisher confirms on RabbitMQ the broker has
  it; or raised, with the error);
- *received*, *started* (one line per execution, with ``redelivered``), *succeeded*, *acked*
  (the client library accepted the ack or raised) from the worker.

Each task ends in exactly one named state (``STATES``), and the counts of the states add up to
the planned tasks, so no task can vanish from the verdict:
``executed`` once; ``duplicated`` (more than once: by redelivery, or because the broker got two
copies from a publisher retry); ``started_not_succeeded``; ``stranded`` (never ran, still in
the broker); ``lost`` (confirmed, never ran, gone from the broker); ``publish_failed`` (the
publish raised, never ran); ``publish_interrupted`` (the publisher died or hung inside the call,
never ran, not in the broker); ``not_sent`` (planned, the publisher never got to it);
``unaccounted`` (never ran, and the broker could not be checked).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMES_SHOWN = 50  # task ids listed per group; the counts are always complete


STATES = ("executed", "duplicated", "started_not_succeeded", "stranded", "lost", "publish_failed",
          "publish_interrupted", "not_sent", "unaccounted")
STATE_WORDS = {
    "executed": "executed once", "duplicated": "executed more than once",
    "started_not_succeeded": "started but never finished", "stranded": "stranded in the broker",
    "lost": "lost (confirmed, never ran, gone from the broker)",
    "publish_failed": "publish failed", "publish_interrupted": "publish interrupted (outcome unknown)",
    "not_sent": "never sent", "unaccounted": "unaccounted for (broker not checked)",
}


@dataclass
class TaskRecord:
    id: str
    planned: bool = False
    sending: int = 0  # publish calls begun
    published: bool | None = None  # True confirmed, False raised, None no publish line
    publish_error: str | None = None
    publish_ts: float | None = None
    received: int = 0
    executions: int = 0
    redelivered: int = 0  # executions the broker flagged as redelivered
    fresh_repeats: int = 0  # executions after the first NOT flagged redelivered: a second copy
    succeeded: int = 0
    acks_ok: int = 0
    acks_failed: int = 0
    ack_errors: list[str] = field(default_factory=list)
    first_start: float | None = None
    last_success: float | None = None
    tags: set[str] = field(default_factory=set)  # Redis: one delivery tag per copy published


@dataclass
class BrokerLeftovers:
    """Task ids found in the broker after the worker stopped (before the queue was deleted)."""

    queued: list[str] = field(default_factory=list)  # ready in the queue
    unacked: list[str] = field(default_factory=list)  # held as unacked (Redis 'unacked' hash)
    checked: bool = False
    note: str | None = None
    # copies of each task the broker routed to the run (the witness queue, brokers.py): the
    # publisher's end of a duplicate, as the broker saw it
    copies: dict[str, int] | None = None
    witnessed: bool = False


def task_id(prefix: str, seq: int) -> str:
    """The id the publisher gives task ``seq`` (harness_app uses the same format)."""
    return f"{prefix}-{seq:05d}"


def append(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append lines the way the worker and publisher do (O_APPEND, whole lines)."""
    if not rows:
        return
    now = time.time()
    data = "".join(json.dumps({"ts": now, **row}, sort_keys=True) + "\n" for row in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The ledger's JSON lines; a torn last line (process killed mid-write) is skipped."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                rows.append(row)
    return rows


def build(rows: list[dict[str, Any]]) -> dict[str, TaskRecord]:
    tasks: dict[str, TaskRecord] = {}
    for row in rows:
        rec = tasks.setdefault(row["id"], TaskRecord(row["id"]))
        ev = row.get("ev")
        ts = row.get("ts")
        if ev == "planned":
            rec.planned = True
        elif ev == "sending":
            rec.sending += 1
        elif ev == "published":
            ok = bool(row.get("ok"))
            # a retried publish that finally went through counts as confirmed
            rec.published = ok or bool(rec.published)
            if not ok:
                rec.publish_error = row.get("error")
            rec.publish_ts = rec.publish_ts or ts
        elif ev == "received":
            rec.received += 1
            if isinstance(row.get("tag"), str) and len(row["tag"]) >= 32:
                rec.tags.add(row["tag"])
        elif ev == "started":
            rec.executions += 1
            rec.redelivered += 1 if row.get("redelivered") else 0
            if rec.executions > 1 and not row.get("redelivered"):
                rec.fresh_repeats += 1
            rec.first_start = rec.first_start or ts
        elif ev == "succeeded":
            rec.succeeded += 1
            rec.last_success = ts
        elif ev == "acked":
            if row.get("ok"):
                rec.acks_ok += 1
            else:
                rec.acks_failed += 1
                if row.get("error"):
                    rec.ack_errors.append(str(row["error"]))
    return tasks


def _names(ids: list[str]) -> list[str]:
    return sorted(ids)[:NAMES_SHOWN]


def state(rec: TaskRecord, in_broker: set[str], checked: bool) -> str:
    """The one state a task ended in (see the module docstring)."""
    if rec.executions > 1:
        return "duplicated"
    if rec.executions == 1:
        return "executed" if rec.succeeded else "started_not_succeeded"
    if rec.id in in_broker:
        return "stranded"
    if rec.published:
        return "lost" if checked else "unaccounted"
    if rec.published is False:
        return "publish_failed"
    if rec.sending:
        return "publish_interrupted"
    return "not_sent"


def summarise(tasks: dict[str, TaskRecord], leftovers: BrokerLeftovers,
              exclude: set[str] | None = None) -> dict[str, Any]:
    """The ledger summary as a JSON-ready dict (counts, then the task ids of each problem)."""
    exclude = exclude or set()
    recs = [r for r in tasks.values() if r.id not in exclude]
    in_broker = set(leftovers.queued) | set(leftovers.unacked)
    confirmed = [r for r in recs if r.published]
    failed = [r for r in recs if r.published is False]
    never_ran = [r for r in confirmed if r.executions == 0]
    lost = [r.id for r in never_ran if r.id not in in_broker] if leftovers.checked else []
    stranded = [r.id for r in never_ran if r.id in in_broker]
    unknown = [r.id for r in never_ran if not leftovers.checked]
    duplicated = {r.id: r.executions for r in recs if r.executions > 1}
    not_succeeded = [r.id for r in confirmed if r.executions and not r.succeeded]
    ran_unconfirmed = [r.id for r in failed if r.executions]
    ack_failed = [r.id for r in recs if r.acks_failed]
    # executed, yet back in the queue: its ack never reached the broker, it would run again
    requeued = [r.id for r in recs if r.executions and r.id in in_broker]
    states: dict[str, list[str]] = {name: [] for name in STATES}
    for r in recs:
        states[state(r, in_broker, leftovers.checked)].append(r.id)
    copies: dict[str, int] | None = None
    source = None
    if leftovers.witnessed and leftovers.copies is not None:
        copies, source = dict(leftovers.copies), "the broker's witness queue"
    elif any(r.tags for r in recs):
        # Redis: a copy keeps its delivery tag when restored; two tags are two publishes (a copy
        # whose BRPOP reply died with a reset never reached the worker, and is not counted)
        copies, source = {r.id: len(r.tags) for r in recs}, "the delivery tags the worker received"
    if copies is not None:
        # two copies of a task are a second publish, whatever the redelivered flags of its
        # executions say; runs beyond the copies are redeliveries
        by_publish = [r.id for r in recs if copies.get(r.id, 0) >= 2 and r.executions >= 2]
        by_redelivery = [r.id for r in recs if r.executions > max(1, copies.get(r.id, 0))]
    else:
        by_publish = [r.id for r in recs if r.fresh_repeats]
        by_redelivery = [r.id for r in recs if r.executions > 1 and not r.fresh_repeats]
    no_publish_record = [r.id for r in recs if r.executions and r.published is None]
    summary: dict[str, Any] = {
        "planned": sum(1 for r in recs if r.planned) or len(recs),
        "sent": sum(1 for r in recs if r.sending or r.published is not None),
        "states": {name: len(ids) for name, ids in states.items()},
        "not_sent": len(states["not_sent"]),
        "publish_interrupted": len(states["publish_interrupted"]),
        "duplicated_by_redelivery": len(by_redelivery),
        "duplicated_by_publish": len(by_publish),
        "witnessed": copies is not None,
        "copies_source": source,
        "copies_in_broker": sum(copies.get(r.id, 0) for r in recs) if copies is not None else None,
        "published_twice": sum(1 for r in recs if copies.get(r.id, 0) >= 2) if copies is not None else None,
        "executed_without_publish_record": len(no_publish_record),
        "published": sum(1 for r in recs if r.published is not None),
        "confirmed": len(confirmed),
        "publish_failed": len(failed),
        "received": sum(1 for r in recs if r.received),
        "executed": sum(1 for r in recs if r.executions),
        "executions": sum(r.executions for r in recs),
        "succeeded": sum(1 for r in recs if r.succeeded),
        "acked": sum(1 for r in recs if r.acks_ok),
        "ack_failed": len(ack_failed),
        "redelivered": sum(1 for r in recs if r.redelivered),
        "lost": len(lost),
        "stranded": len(stranded),
        "unaccounted": len(unknown),
        "duplicated": len(duplicated),
        "extra_executions": sum(n - 1 for n in duplicated.values()),
        "started_not_succeeded": len(not_succeeded),
        "requeued_after_execution": len(requeued),
        "executed_although_publish_failed": len(ran_unconfirmed),
        "broker_checked": leftovers.checked,
        "names": {
            **{f"state_{name}": _names(ids) for name, ids in states.items() if name != "executed"},
            "duplicated_by_publish": _names(by_publish),
            "duplicated_by_redelivery": _names(by_redelivery),
            "executed_without_publish_record": _names(no_publish_record),
            "lost": _names(lost),
            "stranded": _names(stranded),
            "unaccounted": _names(unknown),
            "duplicated": {k: duplicated[k] for k in _names(list(duplicated))},
            "publish_failed": _names([r.id for r in failed]),
            "ack_failed": _names(ack_failed),
            "started_not_succeeded": _names(not_succeeded),
            "requeued_after_execution": _names(requeued),
            "executed_although_publish_failed": _names(ran_unconfirmed),
        },
        "publish_errors": dict(Counter(_short_error(r.publish_error) for r in failed if r.publish_error)),
        "ack_errors": dict(Counter(_short_error(e) for r in recs for e in r.ack_errors)),
    }
    if leftovers.note:
        summary["broker_note"] = leftovers.note
    return summary


def _short_error(error: str | None) -> str:
    return (error or "").splitlines()[0][:120] if error else ""


def verdict_line(summary: dict[str, Any]) -> str:
    """One sentence: where every planned task ended (each state named and counted)."""
    states = summary.get("states")
    if states:
        planned = summary.get("planned", 0)
        if states.get("executed") == planned and planned:
            return f"all {planned} planned task(s) executed exactly once"
        parts = [f"{n} {STATE_WORDS[name]}" for name, n in states.items() if n]
        extra = []
        if summary.get("duplicated_by_publish"):
            extra.append(f"{summary['duplicated_by_publish']} published twice (a publisher retry)")
        if summary.get("executed_without_publish_record"):
            extra.append(f"{summary['executed_without_publish_record']} ran although the publisher "
                         "never saw the publish return")
        return f"{planned} planned: " + ", ".join(parts) + (f" ({'; '.join(extra)})" if extra else "")
    problems = []
    for key, word in (("lost", "lost"), ("stranded", "stranded in the broker"),
                      ("unaccounted", "unaccounted for"), ("duplicated", "executed more than once"),
                      ("publish_failed", "not confirmed by the broker")):
        if summary.get(key):
            problems.append(f"{summary[key]} {word}")
    if not problems:
        return f"all {summary.get('confirmed', 0)} confirmed task(s) executed exactly once"
    return ", ".join(problems)
