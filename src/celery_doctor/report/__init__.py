"""Reports: one module per output format; :func:`render` picks one and redacts the result."""

from __future__ import annotations

from celery_doctor.model import Report
from celery_doctor.redact import redact, redact_object
from celery_doctor.report.interface import Renderer, ReportError

FORMATS = ("text", "json", "markdown", "html")


def renderer_for(fmt: str) -> Renderer:
    if fmt == "json":
        from celery_doctor.report.json import JsonRenderer

        return JsonRenderer()
    if fmt == "text":
        from celery_doctor.report.text import TextRenderer

        return TextRenderer()
    if fmt == "markdown":
        from celery_doctor.report.markdown import MarkdownRenderer

        return MarkdownRenderer()
    if fmt == "html":
        from celery_doctor.report.html import HtmlRenderer

        return HtmlRenderer()
    raise ReportError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")


def render(report: Report, fmt: str, *, color: bool = False, width: int = 110) -> str:
    """Render ``report`` with every string redacted first (tables wrap lines), and the result again."""
    clean = redact_object(report)
    return redact(renderer_for(fmt).render(clean, color=color, width=width))


__all__ = ["FORMATS", "Renderer", "ReportError", "render", "renderer_for"]
