"""JSON output. The schema is documented in docs/json-schema.md; bump SCHEMA_VERSION on change."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from datetime import datetime
from enum import Enum
from typing import Any

from celery_doctor import __version__
from celery_doctor.model import Event, Report
from celery_doctor.redact import redact, redact_data
from celery_doctor.report.interface import Renderer

SCHEMA_VERSION = "1.0"


@functools.lru_cache(maxsize=256)
def _fields(kind: Any) -> tuple[str, ...] | None:
    """The field names of a dataclass type (None for any other type): looked up once per type."""
    return tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None


def to_jsonable(value: Any) -> Any:
    kind: Any = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most values: nothing to convert
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    names = _fields(kind)
    if names is not None:
        return {name: to_jsonable(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        # strict JSON has no NaN or Infinity (a log's own JSON may carry them): no number, null
        return round(value, 3) if math.isfinite(value) else None
    return value


def report_document(report: Report) -> dict[str, Any]:
    """The report as JSON data, every string redacted: the events as they are written (_event),
    the rest in one pass over it."""
    rest = redact_data({
        "summary": to_jsonable(report.summary),
        "findings": to_jsonable(report.findings),
        "incidents": [_incident(i) for i in report.incidents],
        "sources": to_jsonable(report.sources),
        "data": to_jsonable(report.data),
        "warnings": list(report.warnings),
    })
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "celery-doctor", "version": __version__},
        "command": report.command,
        "summary": rest["summary"],
        "findings": rest["findings"],
        "incidents": rest["incidents"],
        "sources": rest["sources"],
        "timeline": [_event(e) for e in report.events],
        "undated": [_event(e) for e in report.undated],
        "data": rest["data"],
        "warnings": rest["warnings"],
    }


def _event(event: Event) -> dict[str, Any]:
    """One event, its strings redacted: written field by field (a report holds up to 2,000; the
    generic conversion and redaction passes cost four times as much). A test checks it against
    those passes, field for field."""
    out = {"ts": event.ts.isoformat() if event.ts is not None else None, "source": redact(event.source),
           "line": event.line, "side": event.side.value, "kind": event.kind.value, "text": redact(event.text),
           "peer": _redacted(event.peer), "error": _redacted(event.error), "signature": _redacted(event.signature),
           "level": _redacted(event.level)}
    if event.detail:
        out["detail"] = redact_data(to_jsonable(event.detail))
    return out


def _redacted(text: str | None) -> str | None:
    return redact(text) if text else text


def _incident(incident: Any) -> dict[str, Any]:
    # its events are written as evidence below, not converted whole first (two thirds of the time
    # a report of a few hundred incidents took)
    names = _fields(incident.__class__) or ()
    out = {name: to_jsonable(getattr(incident, name)) for name in names if name != "events"}
    out["ts"] = incident.ts.isoformat()
    out["evidence"] = [
        {"source": e.source, "line": e.line, "text": e.text, "ts": e.ts.isoformat()}
        for e in incident.events
    ]
    return out


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # one for every item: dumps() builds one per call


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def document_text(doc: dict[str, Any]) -> str:
    """The document as text: one top-level key per line and one item of each top-level list per
    line (a timeline event, a finding), each written by json's C encoder. ``indent`` would make
    json use its pure-Python encoder, four times slower on a report of 2,000 events."""
    parts = []
    for key, value in doc.items():
        head = f"  {_dumps(key)}: "
        if isinstance(value, list) and value:
            items = ",\n".join("    " + _dumps(item) for item in value)
            parts.append(f"{head}[\n{items}\n  ]")
        else:
            parts.append(head + _dumps(value))
    return "{\n" + ",\n".join(parts) + "\n}\n"


class JsonRenderer(Renderer):
    redacts_strings = True  # report_document redacts every string of the document

    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        return document_text(report_document(report))
