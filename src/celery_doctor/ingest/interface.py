"""What the ingest stage returns, and its error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from celery_doctor.model import DoctorError, Event, SourceInfo


class IngestError(DoctorError):
    """No input could be read at all (one unreadable file among others is only a warning)."""


@dataclass
class IngestResult:
    events: list[Event]  # connection-relevant events of every source, each source in file order
    sources: list[SourceInfo]
    activity: dict[str, list[tuple[datetime, datetime, int]]] = field(default_factory=dict)
