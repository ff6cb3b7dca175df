"""`proxy` output: one line per decision of the fault proxy, as it happens."""

from __future__ import annotations

from celery_doctor.model import Event
from celery_doctor.redact import redact


def proxy_banner(host: str, port: int, upstream: str, fault: str | None) -> str:
    return redact(f"proxy listening on {host}:{port} -> {upstream}, fault: {fault or 'none'} (Ctrl-C to stop)")


def proxy_event_line(event: Event) -> str:
    """time, what the proxy did, which connection, why — columns aligned for tail -f reading."""
    detail = event.detail or {}
    stamp = event.at.isoformat(timespec="milliseconds") if event.ts else "-"
    message = str(detail.get("message", "")).strip()
    return redact(f"{stamp} {event.kind.value:<16} {event.peer or '-':<22} {message}".rstrip())
