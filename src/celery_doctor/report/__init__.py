"""Reports: one module per output format; :func:`render` picks one and redacts the result."""

from __future__ import annotations

import dataclasses
import re

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


_COUNTED = re.compile(r"\b(\d+) ([a-z]+)\(s\)")


def _plural(match: re.Match[str]) -> str:
    n, word = int(match.group(1)), match.group(2)
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith(("s", "x", "ch", "sh")) else f"{n} {word}s"


def plurals(text: str) -> str:
    """'1 incident(s)' -> '1 incident', '3 connection(s)' -> '3 connections': rules write counts
    one way; people read them right."""
    return _COUNTED.sub(_plural, text) if "(s)" in text else text


def _words(report: Report) -> Report:
    """A copy with the counts of findings and warnings in words (the caller's report unchanged)."""
    findings = [dataclasses.replace(f, title=plurals(f.title), explanation=plurals(f.explanation))
                for f in report.findings]
    return dataclasses.replace(report, findings=findings, warnings=[plurals(w) for w in report.warnings])


def render(report: Report, fmt: str, *, color: bool = False, width: int = 110) -> str:
    """Render ``report`` with every string redacted first (tables wrap lines), and the result again;
    a format that redacts each string as it builds its document (JSON) only once."""
    renderer = renderer_for(fmt)
    if renderer.redacts_strings:
        return renderer.render(_words(report), color=color, width=width)
    clean = _words(redact_object(report))
    return redact(renderer.render(clean, color=color, width=width))


__all__ = ["FORMATS", "Renderer", "ReportError", "render", "renderer_for"]
