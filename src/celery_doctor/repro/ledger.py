"""The ledger: what happened to every task of a run, from the lines the publisher and the
worker appended (``harness_app.record``) and from what was left in the broker at the end.

The truth a run is judged by:
- *published*: the publisher's call returned (with publisher confirms on RabbitMQ, the broker
  has the message) or raised;
- *executed*: the task body ran (one ``started`` line per execution, so a redelivery that runs
  again is a second line); *succeeded*: it returned;
- *acked*: the worker's client library accepted the ack (the broker may still never see it when
  the socket is already dead: the end-of-run queue check catches that);
- *lost*: confirmed but never executed and no longer in the broker;
  *stranded*: confirmed, never executed, still queued (or held unacked) in the broker at the end;
  *duplicated*: executed more than once.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMES_SHOWN = 50  # task ids listed per group; the counts are always complete


@dataclass
class TaskRecord:
    id: str
    published: bool | None = None  # True confirmed, False raised, None no publish line
    publish_error: str | None = None
    publish_ts: float | None = None
    received: int = 0
    executions: int = 0
    redelivered: int = 0  # executions the broker flagged as redelivered
    succeeded: int = 0
    acks_ok: int = 0
    acks_failed: int = 0
    ack_errors: list[str] = field(default_factory=list)
    first_start: float | None = None
    last_success: float | None = None


@dataclass
class BrokerLeftovers:
    """Task ids found in the broker after the worker stopped (before the queue was deleted)."""

    queued: list[str] = field(default_factory=list)  # ready in the queue
    unacked: list[str] = field(default_factory=list)  # held as unacked (Redis 'unacked' hash)
    checked: bool = False
    note: str | None = None


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
        if ev == "published":
            ok = bool(row.get("ok"))
            # a retried publish that finally went through counts as confirmed
            rec.published = ok or bool(rec.published)
            if not ok:
                rec.publish_error = row.get("error")
            rec.publish_ts = rec.publish_ts or ts
        elif ev == "received":
            rec.received += 1
        elif ev == "started":
            rec.executions += 1
            rec.redelivered += 1 if row.get("redelivered") else 0
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
    summary: dict[str, Any] = {
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
    """One sentence: is every task accounted for?"""
    problems = []
    for key, word in (("lost", "lost"), ("stranded", "stranded in the broker"),
                      ("unaccounted", "unaccounted for"), ("duplicated", "executed more than once"),
                      ("publish_failed", "not confirmed by the broker")):
        if summary.get(key):
            problems.append(f"{summary[key]} {word}")
    if not problems:
        return f"all {summary.get('confirmed', 0)} confirmed task(s) executed exactly once"
    return ", ".join(problems)
