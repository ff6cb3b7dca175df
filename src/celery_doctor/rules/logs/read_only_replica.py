"""The Redis the workers use became a replica: its writes are refused (READONLY) and blocked
BRPOPs are broken off. Either a failover promoted another node while the clients still talk to
the old master (a cached DNS name, no Sentinel), or someone ran REPLICAOF on it. A REPLICAOF from
an address nobody knows is the known attack on a Redis reachable without a password."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# The server's replies (redis src/server.c shared.roslaveerr: "-READONLY You can't write against a
# read only replica." — "slave" before 5.0; redis-py's ReadOnlyError strips the READONLY code) and
# src/blocked.c, 6.2+: "-UNBLOCKED force unblock from blocking operation, instance state changed
# (master -> replica?)"
CLIENT = re.compile(r"can't write against a read only (?:replica|slave)|ReadOnlyError|"
                    r"UNBLOCKED force unblock from blocking operation")
# src/replication.c replicaofCommand: "REPLICAOF %s:%d enabled (user request from '%s')" (5.0+),
# "SLAVE OF %s:%d enabled (user request from '%s')" before
SERVER = re.compile(r"(?:REPLICAOF|SLAVE OF) (\S+) enabled \(user request from '[^']*?addr=(\S+?):\d+")


@rule("CD-L40", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def read_only_replica(ctx: LogContext) -> Iterable[Finding]:
    """Redis refused writes as a read-only replica, or broke off blocked reads because it became one."""
    client = [e for e in all_events(ctx) if e.side != Side.BROKER and CLIENT.search(f"{e.error or ''}\n{e.text}")]
    server = [(e, m) for e in all_events(ctx) if e.side == Side.BROKER and (m := SERVER.search(e.text))]
    if not client and not server:
        return []
    refused = any("read only" in e.text or "ReadOnlyError" in f"{e.error}" for e in client)
    by = sorted({m.group(2) for _, m in server})
    masters = sorted({m.group(1) for _, m in server})
    told = (f" The server's log shows REPLICAOF {', '.join(masters)} asked by {', '.join(by)}: if that is not "
            "your operator or your failover tooling, the server is reachable by strangers, who make exposed "
            "Redis servers replicas of their own to load code into them.") if server else ""
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
        title="The workers' Redis became a read-only replica",
        explanation=("Redis " + ("refused the workers' writes as a read-only replica" if refused else
                                 "broke off the workers' blocked reads (BRPOP) as it turned into a replica"
                                 if client else "was turned into a replica")
                     + ". After a failover the clients still talk to the old master (a DNS name cached by the "
                     "client or the OS, a fixed IP, no Sentinel), or someone ran REPLICAOF on it." + told),
        evidence=evidence_of([*(e for e, _ in server), *client]),
        fix=Fix(text="Point broker_url at the current master: the provider's primary endpoint, or Sentinel "
                     "(broker_url = 'sentinel://HOST:26379', broker_transport_options = {'master_name': ...}) so "
                     "kombu asks for the master on every reconnect. If the REPLICAOF was no one's, close the "
                     "server to the internet (bind, protected-mode, requirepass, a firewall) and run REPLICAOF "
                     "NO ONE.",
                verify="celery-doctor broker redis://HOST:6379/0 (shows the server's role)"),
        confidence=0.9 if server else 0.8,
        facts={"source": "logs", "replicaof_from": by},
    )]
