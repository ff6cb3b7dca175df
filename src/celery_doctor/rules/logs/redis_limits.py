"""Redis refused or closed a client for a limit it enforces: output/query buffer limits,
eviction, maxmemory (OOM), a failed RDB save (MISCONF), maxclients. These are the Redis side of
a broker resource alarm: the server is up but will not serve this client."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# the server's own words (redis/src/networking.c, server.c), as the client or the server logs them
LIMITS = (
    ("output buffer", re.compile(r"closed ASAP for overcoming of output buffer limits")),
    ("query buffer", re.compile(r"reached max query buffer length|Closing client that reached max query buffer")),
    ("eviction", re.compile(r"Evicting client")),
    # redis-py 4+ strips the OOM code into its OutOfMemoryError: "command not allowed when used memory > ..."
    ("maxmemory", re.compile(r"(?:OOM )?command not allowed when used memory|OutOfMemoryError")),
    ("failed RDB save", re.compile(r"MISCONF Redis is configured to save RDB snapshots")),
    ("maxclients", re.compile(r"max number of clients reached")),
    # a managed Redis plan's quota (Upstash: "ERR max daily request limit exceeded. Limit: 10000, Usage: 10000",
    # the older "ERR max requests limit exceeded", "ERR max concurrent connections exceeded"): Celery's idle
    # polling alone spends a small daily quota
    ("plan quota", re.compile(r"max (?:daily )?requests? limit exceeded|max concurrent connections exceeded")),
)
# a word every match of a LIMITS pattern holds (test_log_rule_modules checks it): most events hold
# none, and an `in` test of each is ten times cheaper than the patterns
WORDS = ("buffer", "Evicting", "not allowed", "OutOfMemory", "MISCONF", "max number of clients", "exceeded")
FIXES = {
    "output buffer": "raise client-output-buffer-limit pubsub (results are delivered over pub/sub), or "
                     "ignore results you never read (task_ignore_result) so subscribers do not pile up",
    "query buffer": "raise client-query-buffer-limit, or send smaller messages",
    "eviction": "give Redis more memory or set maxmemory-policy noeviction for the broker database",
    "maxmemory": "free memory (purge backlogs, expire results: result_expires) or raise maxmemory; "
                 "use maxmemory-policy noeviction so Celery's keys are not evicted silently",
    "failed RDB save": "fix the disk Redis saves to (space, permissions); until then Redis refuses writes "
                       "(stop-writes-on-bgsave-error)",
    "maxclients": "cap the connections: broker_pool_limit, redis_max_connections and worker concurrency "
                  "across all hosts, or raise maxclients / the plan's connection limit",
    "plan quota": "move the broker to a plan without a request quota (or a Redis of your own): an idle worker "
                  "polls Redis continuously (BRPOP timeouts, heartbeats, mingle, the unacked restore), so a "
                  "daily request quota runs out within hours whatever the task load",
}


@rule("CD-L20", "logs", Category.BROKER_RESOURCE_ALARM)
def redis_limits(ctx: LogContext) -> Iterable[Finding]:
    """Redis closed or refused a client for a server-enforced limit (buffers, eviction,
    maxmemory, MISCONF, maxclients)."""
    hits = []
    kinds: set[str] = set()
    for e in all_events(ctx):
        text = f"{e.error or ''}\n{e.text}"
        found = [name for name, pattern in LIMITS if pattern.search(text)] if any(w in text for w in WORDS) else []
        if found or e.kind == Kind.SERVER_CLOSED_LIMIT:
            hits.append(e)
            kinds.update(found or ["output buffer"])
    if not hits:
        return []
    server = any(e.side == Side.BROKER for e in hits)
    names = sorted(kinds)
    return [Finding(
        category=Category.BROKER_RESOURCE_ALARM, severity=Severity.HIGH,
        title=f"Redis enforced a limit ({', '.join(names)})",
        explanation=(f"{'The Redis server logged' if server else 'Redis answered'} that it "
                     + ("closed or refused clients" if server else "refused the command")
                     + f" for a limit it enforces ({', '.join(names)}). The server is up but will not serve "
                     "these clients, so workers lose their connection or crash and retry; this is not a "
                     "network cut and not the idle `timeout`."),
        evidence=evidence_of(hits),
        fix=Fix(text="; ".join(FIXES[n] for n in names) + ".",
                verify="celery-doctor broker redis://HOST:6379/0 (shows memory, clients and buffer limits)"),
        confidence=0.9 if server else 0.85,
        facts={"limits": names, "source": "logs"},
    )]
