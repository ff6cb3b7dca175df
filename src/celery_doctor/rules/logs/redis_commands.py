"""The Redis endpoint answers, but refuses commands kombu's Redis transport cannot do without.

Two deployments do this. A Redis Cluster (or a cloud "cluster mode" proxy in front of shards)
refuses a multi-key command whose keys hash to different slots, and the worker's one BRPOP over
all its queues (plus mingle's reply keys) is exactly that; a plain cluster node also answers
MOVED for keys it does not own and refuses SELECT of any database but 0. A server older than
the command (WATCH arrived in Redis 2.2, MULTI/EXEC in 2.0) or a proxy that does not implement
it answers "unknown command". Neither is a lost connection: the worker crashes or reconnects at
once, every time, and no retry or timeout helps.

A separate rule (CD-L71) reads redis-py's own pool refusing another connection ("Too many
connections"): the client's cap, where CD-L20 reads the server's maxclients."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Event, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# redis src/cluster.c clusterRedirectClient / getNodeByQuery; the cloud proxies' own wording
CROSS_SLOT = re.compile(
    r"CROSSSLOT Keys in request don't hash to the same slot|"
    r"'?(\w+)'? command keys must (?:be )?in (?:the )?same slot|ClusterCrossSlotError"
)
MOVED = re.compile(r"\b(?:MOVED|ASK) \d+ [\w.:\-\[\]]+:\d+")
CLUSTER_OTHER = re.compile(r"SELECT is not allowed in cluster mode|CLUSTERDOWN")
# src/server.c processCommand: "unknown command '%.128s'" (6.2+: "..., with args beginning with: ...")
UNKNOWN = re.compile(r"unknown command [`']([\w-]+)[`']", re.I)
# what kombu's Redis transport (kombu/transport/redis.py) and redis-py's pipelines send
KOMBU_COMMANDS = frozenset(
    {
        "BRPOP",
        "LPUSH",
        "RPUSH",
        "LLEN",
        "LRANGE",
        "LPOP",
        "RPOP",
        "DEL",
        "MULTI",
        "EXEC",
        "WATCH",
        "UNWATCH",
        "ZADD",
        "ZREM",
        "ZREVRANGEBYSCORE",
        "ZRANGEBYSCORE",
        "HSET",
        "HGET",
        "HDEL",
        "HMGET",
        "SADD",
        "SREM",
        "SMEMBERS",
        "PUBLISH",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SET",
        "GET",
        "SETEX",
        "EXPIRE",
        "PING",
        "SELECT",
        "AUTH",
    }
)
# the Redis release that brought each command kombu needs, where that is the usual reason
SINCE = {
    "WATCH": "2.2",
    "UNWATCH": "2.2",
    "MULTI": "2.0",
    "EXEC": "2.0",
    "BRPOP": "2.0",
    "PUBLISH": "2.0",
    "SUBSCRIBE": "2.0",
    "PSUBSCRIBE": "2.0",
    "HSET": "2.0",
    "HGET": "2.0",
    "HDEL": "2.0",
    "SETEX": "2.0",
}


def _text(e: Event) -> str:
    return f"{e.error or ''}\n{e.text}"


def _cluster_refusal(e: Event) -> re.Match[str] | None:
    """What a cluster said, if it did. The literals every match holds are looked for first: the
    patterns run on every client record, tracebacks included, and CROSS_SLOT's ``(\\w+)`` branch
    would be tried at every word."""
    text = _text(e)
    if ("same slot" in text or "CrossSlot" in text) and (m := CROSS_SLOT.search(text)):
        return m
    if ("MOVED " in text or "ASK " in text) and (m := MOVED.search(text)):
        return m
    return CLUSTER_OTHER.search(text) if "SELECT is not" in text or "CLUSTERDOWN" in text else None


def _unknown_kombu_command(e: Event) -> str | None:
    text = _text(e)
    if "command" not in text and "COMMAND" not in text and "Command" not in text:
        return None
    m = UNKNOWN.search(text)
    return m.group(1).upper() if m and m.group(1).upper() in KOMBU_COMMANDS else None


@rule("CD-L70", "logs", Category.VERSION_INCOMPATIBILITY)
def redis_refuses_commands(ctx: LogContext) -> Iterable[Finding]:
    """The broker's Redis endpoint refuses commands kombu needs: a Redis Cluster or cluster-mode
    proxy (cross-slot BRPOP, MOVED, SELECT), or a server/proxy without the command ("unknown command")."""
    client = [e for e in all_events(ctx) if e.side != Side.BROKER]
    cluster = [e for e in client if _cluster_refusal(e)]
    unknown = [(e, cmd) for e in client if (cmd := _unknown_kombu_command(e))]
    if not cluster and not unknown:
        return []
    findings = []
    if cluster:
        said = sorted(
            {
                m.group(0)
                for e in cluster
                for m in (_cluster_refusal(e),)
                if m
            }
        )
        findings.append(
            Finding(
                category=Category.VERSION_INCOMPATIBILITY,
                severity=Severity.HIGH,
                title="The broker is a Redis Cluster (or a cluster-mode proxy), which kombu cannot use",
                explanation=(
                    f"Redis answered {said[0]!r}: the endpoint is one node of a cluster that shards keys "
                    "across slots. Celery's Redis clients (kombu's transport, the Redis result backend, "
                    "schedulers such as redbeat) talk to one node: they do not follow its MOVED redirects, and "
                    "kombu waits on all of a worker's queues (and mingle's replies) with one multi-key BRPOP, "
                    "which a cluster refuses. The worker dies at start or reconnects forever; kombu does not "
                    "support Redis Cluster, and this is no network or timeout problem."
                ),
                evidence=evidence_of(cluster),
                fix=Fix(
                    text="Use a standalone Redis (or a primary/replica pair behind Sentinel: "
                    "broker_url = 'sentinel://HOST:26379', broker_transport_options = {'master_name': ...}) "
                    "for the broker; on a cloud service choose its non-cluster ('standard') edition, or use "
                    "RabbitMQ. Putting every queue in one hash slot ({tag} names, global_keyprefix) is "
                    "a workaround some report, not a supported mode.",
                    verify="redis-cli -h HOST INFO cluster (cluster_enabled:0), then the worker passes "
                    "'mingle: searching for neighbors'",
                ),
                confidence=0.85,
                facts={"source": "logs", "replies": said},
            )
        )
    if unknown:
        cmds = sorted({c for _, c in unknown})
        old = [f"{c} (Redis {SINCE[c]}+)" for c in cmds if c in SINCE]
        findings.append(
            Finding(
                category=Category.VERSION_INCOMPATIBILITY,
                severity=Severity.HIGH,
                title=f"The broker's Redis does not know {', '.join(cmds)}",
                explanation=(
                    f"Redis answered 'unknown command' to {', '.join(cmds)}, which kombu's Redis transport "
                    "sends as part of its normal work (queues, transactions, restoring unacked messages). "
                    + (f"That is a server older than the command: {', '.join(old)}. " if old else "")
                    + "A proxy in front of Redis that does not implement the command (twemproxy, an Envoy "
                    "redis_proxy, a managed service that renames commands) answers the same. Every worker "
                    "start fails the same way; no retry helps."
                ),
                evidence=evidence_of([e for e, _ in unknown]),
                fix=Fix(
                    text="Run a current Redis server (the distribution's package may be years old) and point "
                    "broker_url at it directly, not through a command-filtering proxy.",
                    verify="redis-cli -h HOST INFO server (redis_version), then redis-cli -h HOST "
                    + " ".join(cmds[:1])
                    + " is no longer 'unknown command'",
                ),
                confidence=0.8,
                facts={"source": "logs", "commands": cmds},
            )
        )
    return findings
