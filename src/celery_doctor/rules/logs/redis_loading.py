"""Redis answered LOADING: it was reading its dataset (RDB or AOF) into memory, which it does only
after the server process starts (a restart, a crash, an OOM kill, a container rescheduled) or,
on a replica, while it loads its master's copy in a full resync. The workers' connections were
lost or refused because the server restarted or changed roles, not because of the network."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# src/server.c shared.loadingerr "-LOADING Redis is loading the dataset in memory" as redis-py raises it
# (BusyLoadingError, the LOADING code dropped), as clients that keep the code print it, or a repr
LOADING = re.compile(r"(?:LOADING |BusyLoadingError\W{0,3})?Redis is loading the dataset in memory")
# the server's own log of the same start: src/rdb.c / src/server.c (7.x "Loading RDB produced by version",
# "DB loaded from disk: %.3f seconds", "Done loading RDB"; AOF: "DB loaded from append only file")
STARTED = re.compile(r"Loading RDB produced by version|DB loaded from (?:disk|append only file)|Done loading RDB")


@rule("CD-L78", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def redis_loading(ctx: LogContext) -> Iterable[Finding]:
    """Redis refused commands while loading its dataset: it had just (re)started, or a replica resynced."""
    client = [e for e in all_events(ctx) if e.side != Side.BROKER and LOADING.search(f"{e.error or ''}\n{e.text}")]
    if not client:
        return []
    server = [e for e in all_events(ctx) if e.side == Side.BROKER and (
        e.kind == Kind.BROKER_START or STARTED.search(e.text))]
    seen = (" The server's log shows the start: " + server[0].text.strip()[:120] + ".") if server else ""
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
        title="Redis was loading its dataset: it had just restarted",
        explanation=("Redis answered 'LOADING Redis is loading the dataset in memory'. It answers that to every "
                     "command while it reads its RDB or AOF file into memory, which happens only after the server "
                     "process starts (a restart, a crash, an out-of-memory kill, a container moved), or on a replica "
                     "while it loads its master's copy in a full resync. The workers' failures come from that "
                     "restart, not from the network; the larger the dataset, the longer every restart refuses "
                     "them." + seen),
        evidence=evidence_of([*server[:2], *client]),
        fix=Fix(text="Find why Redis restarted (its log and its supervisor's: an OOM kill, a crash, a container "
                     "restart, a failover) and keep the broker's Redis small (no cache or result data beside the "
                     "queues) so a restart loads quickly. Start workers after Redis answers PING with PONG, not "
                     "LOADING (a compose or Kubernetes health check on `redis-cli ping`); Celery's consumer retries "
                     "the connection on its own meanwhile.",
                verify="redis-cli INFO persistence (loading:0, and rdb_last_load_keys_loaded after a start)"),
        confidence=0.9 if server else 0.8,
        facts={"source": "logs", "server_start_seen": bool(server)},
    )]
