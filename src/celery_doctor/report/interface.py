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
