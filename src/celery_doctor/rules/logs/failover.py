"""Failover evidence: kombu moving to the next URL of a multi-host broker_url (``Will retry
using next failover.``), a Sentinel that knows no master (``MasterNotFoundError``), Sentinel's
``+switch-master``, a replica promoted. The broker side moved; the worker followed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Kind, Severity
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

SIGNS = re.compile(r"Will retry using next failover|No master found for|MasterNotFoundError|\+switch-master"
                   r"|MASTER MODE enabled|Connection with master lost")


@rule("CD-L23", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def failover(ctx: LogContext) -> Iterable[Finding]:
    """The worker failed over to another broker node or a Sentinel moved the master."""
    hits = [e for e in all_events(ctx) if e.kind == Kind.FAILOVER or SIGNS.search(f"{e.error or ''}\n{e.text}")]
    if not hits:
        return []
    recovered = any(e.kind == Kind.CONNECTED and hits[0].ts is not None and e.ts is not None and e.ts >= hits[0].ts
                    for e in ctx.timeline.events)
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
        title="A broker node went away and the client failed over",
        explanation=("The logs show failover: a broker node (or Sentinel) refused or knew no master, and the client "
                     "moved to the next one" + (" and connected again" if recovered else "")
                     + ". The cause is on the broker side (a node stopped, a master switch); check that node's log."),
        evidence=evidence_of(hits),
        fix=Fix(text="Nothing to change in Celery if the node was stopped on purpose; list every node in "
                     "broker_url (or every sentinel) and keep broker_connection_retry on. Look at the failed node."),
        confidence=0.85 if recovered else 0.75,
        facts={"source": "logs"},
    )]
