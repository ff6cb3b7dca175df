"""The RabbitMQ cluster was split by a network partition between its nodes. Mnesia logs
"running_partitioned_network" when two nodes that each thought the other down meet again; with
cluster_partition_handling = pause_minority a node on the smaller side logs "Cluster
minority/secondary status detected - awaiting recovery" (or "Partial partition detected") and stops
its own applications, closing every client connection with reason 'shutdown' until the partition
heals. The workers' disconnects at that moment are the node pausing, not the workers' network."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

PARTITION = re.compile(r"running_partitioned_network|Partial partition detected")
PAUSED = re.compile(r"minority/secondary status detected")
PEER = re.compile(r"running_partitioned_network, '?([\w@.\-]+)'?\}")


@rule("CD-L76", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def rabbitmq_partition(ctx: LogContext) -> Iterable[Finding]:
    """A network partition split the RabbitMQ cluster (Mnesia's running_partitioned_network, pause_minority
    pausing a node): clients of the paused or split node are cut."""
    broker = [e for e in all_events(ctx) if e.side == Side.BROKER]
    split = [e for e in broker if PARTITION.search(e.text)]
    paused = [e for e in broker if PAUSED.search(e.text)]
    if not split and not paused:
        return []
    peers = sorted({m.group(1) for e in split if (m := PEER.search(e.text))})
    clients_lost = any(e.side == Side.CLIENT for i in ctx.incidents for e in i.events)
    return [
        Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER,
            severity=Severity.HIGH,
            title="A network partition split the RabbitMQ cluster"
            + (" and the minority node paused itself" if paused else ""),
            explanation=(
                "RabbitMQ logged a network partition between its nodes"
                + (f" (this node and {', '.join(peers)})" if peers else "")
                + ". "
                + (
                    "With pause_minority the node on the smaller side stopped its own applications, closing "
                    "every client connection (reason 'shutdown') until the partition heals: "
                    if paused
                    else "Queues whose leader is on the other side are unavailable or diverge until it is resolved: "
                )
                + "the workers' disconnects are the cluster's network, not the workers'. Without a partition "
                "handling mode the two halves keep running apart and must be restarted by hand."
            ),
            evidence=evidence_of([*paused, *split]),
            fix=Fix(
                text="Fix the network between the broker nodes (the same subnet or AZ, no firewall idle cuts on "
                "the Erlang distribution port 25672, net_ticktime above its latency); keep "
                "cluster_partition_handling = pause_minority with an odd number of nodes, and give the "
                "workers every node (broker_url list, or a load balancer) so they reconnect to the majority.",
                verify="rabbitmq-diagnostics cluster_status shows no partitions",
            ),
            confidence=0.92 if (paused and clients_lost) else 0.85 if (paused or clients_lost) else 0.75,
            facts={"source": "logs", "paused": bool(paused), "peers": peers},
        )
    ]
