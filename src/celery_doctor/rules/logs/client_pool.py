"""redis-py's own connection pool refused another connection: "Too many connections" (a pool
created with max_connections, every one checked out) or "No connection available" (a
BlockingConnectionPool whose wait ran out). The server never saw the attempt: this is the
client's cap (kombu's redis_max_connections / broker_pool_limit, the result backend's
redis_max_connections, a pool shared by more threads or greenlets than it holds), where
CD-L20 reads the server's own maxclients refusal."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# redis-py redis/connection.py: ConnectionPool.make_connection raises ConnectionError("Too many
# connections") (MaxConnectionsError in 6.x); BlockingConnectionPool.get_connection raises
# ConnectionError("No connection available.") after its timeout
FULL = re.compile(
    r"(?:ConnectionError|MaxConnectionsError)\W{1,4}Too many connections|"
    r"ConnectionError\W{1,4}No connection available"
)
BACKEND = re.compile(r"celery/backends/redis\.py|backends\.redis|store_result|get_task_meta")


@rule("CD-L71", "logs", Category.POOL_EXHAUSTION_OR_MISUSE)
def redis_client_pool_full(ctx: LogContext) -> Iterable[Finding]:
    """redis-py's client-side connection pool was full ("Too many connections", "No connection
    available"): the client's own cap, not the server's maxclients."""
    hits = [e for e in all_events(ctx) if e.side != Side.BROKER and FULL.search(f"{e.error or ''}\n{e.text}")]
    if not hits:
        return []
    backend = any(BACKEND.search(e.text) for e in hits)
    where = "the Redis result backend's pool" if backend else "the connection pool kombu's Redis transport uses"
    setting = "redis_max_connections (result backend)" if backend else "broker_pool_limit / redis_max_connections"
    return [
        Finding(
            category=Category.POOL_EXHAUSTION_OR_MISUSE,
            severity=Severity.HIGH,
            title="redis-py's connection pool was full (Too many connections)",
            explanation=(
                f"redis-py refused to open another connection because {where} already had its maximum "
                "checked out. Nothing reached the server: this is a cap in the client, hit when more "
                "threads, greenlets or chords share the pool than it holds, or when connections are taken "
                "and never given back. The broker is fine; raising the server's maxclients changes "
                "nothing."
            ),
            evidence=evidence_of(hits),
            fix=Fix(
                text=f"Size the pool to the concurrency that shares it ({setting}; with gevent/eventlet at least "
                "the pool size), or leave it unlimited (None) and cap connections at the server; "
                "check that tasks release what they take (no AsyncResult.get() or raw clients held open).",
                verify="the worker log shows no 'Too many connections' under the same load",
            ),
            confidence=0.8,
            facts={"source": "logs", "backend": backend},
        )
    ]
