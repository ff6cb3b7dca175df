"""What the ingest stage returns, its error type, and the interface every log family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery_doctor.ingest import signatures
from celery_doctor.model import DoctorError, Event, Kind, Side, SourceInfo


class IngestError(DoctorError):
    """No input could be read at all (one unreadable file among others is only a warning)."""


@dataclass
class IngestResult:
    events: list[Event]  # connection-relevant events of every source, each source in file order
    sources: list[SourceInfo]
    activity: dict[str, list[tuple[datetime, datetime, int]]] = field(default_factory=dict)
    # files whose every byte the scan's matcher read without finding a `celery report` line in them
    # (the report pasted inside a log is looked for in the other files only)
    without_report: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Start:
    """What the first line of a record says."""

    ts: datetime | None  # None: the line starts a record but carries no time (a cut header)
    level: str
    naive: bool  # the log wrote no zone: read as UTC
    key: str = ""  # RabbitMQ 3.9+: lines of one multi-line message share ts+pid
    standalone: bool = False  # a header-less line that is a record of its own (shutdown, banner)


class Family(ABC):
    """One log family (who writes it, how its records start, which catalogue entries apply).

    Adding a family is one module in ``families/`` implementing this, one entry in the registry
    (``families/__init__.py``), and its catalogue entries in ``signatures.py``.
    """

    name: str
    side: Side
    line_based: bool = True  # False: one self-describing object per line (JSON)

    @abstractmethod
    def start(self, line: str, year: int) -> Start | None:
        """The header of a line that starts a record (prefix already removed), or None."""

    def message_start(self, line: str) -> int:
        """Where the message begins after the family's own header (0 when there is none)."""
        return 0

    def fields(self, message: str, error: str | None) -> tuple[str | None, dict[str, Any]]:
        """(peer, detail) that a record carries (connection pid, timeout, errno, ...)."""
        return None, {}

    def refine(self, kind: Kind, error: str | None) -> Kind:
        """The kind, corrected by what the error says (a lost connection that was a refused login)."""
        return kind

    def error(self, lines: list[str], message: str) -> str | None:
        """The exception or reason a client record names (None for broker families)."""
        return None

    def match(self, message: str) -> signatures.Signature | None:
        """The catalogue entry for a record, matched on whitespace-normalised text so that a line
        hard-wrapped by a mail client or terminal still matches."""
        return signatures.match(self.name, " ".join(message.split()))

    def undated_start(self, line: str) -> Start | None:
        """A record start without a time: a header cut at the front, a layout without time, or
        a header-less line that stands alone. None for families that have none."""
        return None

    def literals(self) -> tuple[bytes, ...]:
        """What the fast scan looks for in raw bytes of a source of this family."""
        return signatures.literals(self.name)
