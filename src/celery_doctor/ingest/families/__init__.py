"""The log families, one module each behind :class:`celery_doctor.ingest.interface.Family`.

``REGISTRY`` is the one list of families (re-exported as ``celery_doctor.ingest.FAMILIES``):
sniffing, record parsing and the catalogue all go through it. ``LINE_FAMILIES`` are those whose
records start with a header line, tried in this order when a line's family is unknown.
"""

from __future__ import annotations

from celery_doctor.ingest.families import celery, json, rabbitmq, redis
from celery_doctor.ingest.interface import Family

REGISTRY: dict[str, Family] = {f.name: f for f in (celery.FAMILY, rabbitmq.FAMILY, redis.FAMILY, json.FAMILY)}
LINE_FAMILIES: tuple[Family, ...] = tuple(f for f in REGISTRY.values() if f.line_based)


def get(name: str) -> Family | None:
    return REGISTRY.get(name)


def family_of(line: str, year: int) -> Family | None:
    """Which line-based family a (prefix-stripped) line starts a record of."""
    for family in LINE_FAMILIES:
        if family.start(line, year):
            return family
    return None
