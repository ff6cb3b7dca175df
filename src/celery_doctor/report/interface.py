"""The contract every output format fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod

from celery_doctor.model import DoctorError, Report


class ReportError(DoctorError):
    """A report could not be produced (bad format name, unwritable output)."""


class Renderer(ABC):
    @abstractmethod
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        """Return the whole report as one string (redaction happens after)."""


def plain(value: object) -> str:
    """A summary value as a person reads it: {'network': 3} -> 'network 3'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)
