"""Live broker probes: a URL in, :class:`~celery_doctor.model.BrokerFacts` out."""

from __future__ import annotations

from celery_doctor.broker.interface import (
    BadURLError,
    BrokerError,
    BrokerProbe,
    ProbeOptions,
    UnreachableError,
)
from celery_doctor.model import BrokerFacts
from celery_doctor.redact import redact


def probe_class(url: str) -> type[BrokerProbe]:
    from celery_doctor.broker.rabbitmq import RabbitMQProbe
    from celery_doctor.broker.redis import RedisProbe

    scheme = url.strip().split("://", 1)[0].lower() if "://" in url else ""
    for cls in (RabbitMQProbe, RedisProbe):
        if scheme in cls.schemes:
            return cls
    known = ", ".join(f"{s}://" for cls in (RabbitMQProbe, RedisProbe) for s in cls.schemes)
    raise BadURLError(f"bad broker URL {redact(url)}: scheme must be one of {known}")


def probe_broker(url: str, options: ProbeOptions | None = None) -> BrokerFacts:
    """Probe the broker at ``url``; raises :class:`BrokerError` when nothing usable answers."""
    probe = probe_class(url)(url, options or ProbeOptions())
    try:
        return probe.probe()
    finally:
        probe.budget.cancel()


__all__ = ["BadURLError", "BrokerError", "ProbeOptions", "UnreachableError", "probe_broker"]
