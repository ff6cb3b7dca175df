"""What one reproduction run observed: the harness fills it, ``pipeline.reproduce`` judges it.

Nothing here is an opinion: the proxies' decisions, the ledger's lines, the worker's state, the
settings Celery resolved and where the run's files are. The verdict is built elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery_doctor.model import Event
from celery_doctor.repro.brokers import BrokerTarget
from celery_doctor.repro.ledger import BrokerLeftovers, TaskRecord
from celery_doctor.repro.proxy import Fault
from celery_doctor.repro.scenarios import Plan


@dataclass
class WorkerState:
    ready_s: float | None = None
    alive_at_end: bool = False
    exit_status: int | None = None
    # the worker's own error lines (worker.log, worker.out): "file:line: text"
    errors: list[str] = field(default_factory=list)


@dataclass
class Canary:
    """A task published after the fault was removed: does the worker still take new work?"""

    published: bool = False
    executed: bool = False
    attempts: int = 0
    latency_s: float | None = None
    waited_s: float | None = None


@dataclass
class RunFacts:
    label: str
    scenario: str
    fault: Fault | None
    target: BrokerTarget
    versions: dict[str, Any]
    python: str
    config: Path | None
    plan: Plan
    effective: dict[str, Any]  # settings as the worker's Celery resolved them
    tasks: dict[str, TaskRecord]
    leftovers: BrokerLeftovers
    worker: WorkerState
    canary: Canary
    worker_events: list[Event]  # the worker's middlebox (proxy) decisions
    publisher_events: list[Event]  # the publisher's
    middlebox: str  # "proxy" | "kernel"
    middlebox_why: str
    queue: str
    directory: Path
    kept: bool  # the run's folder stays after the run (--workdir)
    logs: list[Path]  # what the logs engine reads: worker log, broker window, proxy events
    wall_s: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    publish_hangs: int = 0
    not_sent_reason: str | None = None

    @property
    def canary_ids(self) -> set[str]:
        return {tid for tid in self.tasks if "-canary-" in tid}

    def file(self, name: str) -> Path:
        return self.directory / name
