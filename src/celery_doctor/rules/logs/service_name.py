"""The broker's address is a bare service name (``rabbitmq``, ``redis``, ``broker``) that stopped
resolving. Docker's embedded DNS answers for a compose service only while one of its containers
runs (and Kubernetes' cluster DNS only for a headless service with ready pods), so a worker that
cannot resolve its broker's service name most often means the broker container is down or
restarting: the broker side, not the worker's network. It can also be a worker outside the
broker's network or a misspelt name, which is why this stays below 0.5 unless the logs show the
name resolving before (the worker was connected through it, then lost it).

The errors, as clients word them: ``[Errno -3] Temporary failure in name resolution`` /
``[Errno -2] Name or service not known`` (glibc getaddrinfo via socket.gaierror, redis-py's
``Error -3 connecting to redis:6379``), py-amqp's ``failed to resolve broker hostname``
(amqp/transport.py, when getaddrinfo returns nothing usable).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, Event, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, evidence_of
from celery_doctor.rules.registry import rule

HOST = re.compile(r"\b(?:amqps?|pyamqp|redis|rediss|sentinel)://(?:[^@\s/]*@)?(?P<host>[A-Za-z0-9_-]+)(?::\d+)?[/\s:]")
UNRESOLVED = re.compile(r"failed to resolve broker hostname")
NOT_SERVICES = {"localhost"}


def _service(e: Event) -> str | None:
    m = HOST.search(e.text)
    if m is None:
        return None
    host = m["host"]
    if host.lower() in NOT_SERVICES or host.replace("_", "").isdigit() or "*" in host:
        return None
    return host


@rule("CD-L53", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def service_name_unresolved(ctx: LogContext) -> Iterable[Finding]:
    """The worker cannot resolve its broker's bare service name (a compose service, a Kubernetes
    service): most often that broker container is not running."""
    misses = [
        e
        for e in ctx.timeline.events
        if e.side == Side.CLIENT
        and e.kind in (Kind.CANNOT_CONNECT, Kind.CONNECTION_LOST)
        and (error_family(e) == "dns" or UNRESOLVED.search(f"{e.error or ''}\n{e.text}"))
        and _service(e)
    ]
    if not misses:
        return []
    names = sorted({n for e in misses if (n := _service(e))})
    connected_before = any(
        e.side == Side.CLIENT
        and e.kind == Kind.CONNECTED
        and e.ts is not None
        and misses[0].ts is not None
        and e.ts < misses[0].ts
        and any(f"@{n}:" in e.text or f"//{n}:" in e.text for n in names)
        for e in ctx.timeline.events
    )
    return [
        Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER,
            severity=Severity.HIGH,
            title=f"The broker's service name ({', '.join(names)}) no longer resolves",
            explanation=(
                f"The worker could not resolve {', '.join(repr(n) for n in names)}, a bare service name. "
                "Docker's DNS answers for a compose service only while its container runs, so the broker "
                "container is most likely stopped or restarting"
                + (
                    " (the worker had connected through that name before)."
                    if connected_before
                    else "; a worker on another network, or a misspelt name, fails the same way."
                )
            ),
            evidence=evidence_of(misses),
            fix=Fix(
                text="Check the broker container or pod (docker compose ps / logs, kubectl get pods) and why it "
                "stopped (out of memory, disk, a crash at boot); give it restart: unless-stopped and make the "
                "worker depend on its health check.",
                verify="docker compose ps shows the broker up; the worker logs 'Connected to'",
            ),
            confidence=0.6 if connected_before else 0.45,
            facts={"source": "logs", "names": names},
        )
    ]
