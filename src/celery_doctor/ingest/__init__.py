"""Log text -> Events. :func:`read_logs` is the stage's one entry point."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime

from celery_doctor.ingest import signatures
from celery_doctor.ingest.families import LINE_FAMILIES, REGISTRY
from celery_doctor.ingest.interface import Family, IngestError, IngestResult
from celery_doctor.ingest.parallel import scan_split, workers_for
from celery_doctor.ingest.prefixes import PREFIXES
from celery_doctor.ingest.reader import Scanner, SourceState, scan_banner, scan_json
from celery_doctor.ingest.sources import (
    celery_layout,
    chunks,
    default_year,
    looks_binary,
    open_binary,
    read_head,
    sniff,
    text_lines,
    undated_errors,
)
from celery_doctor.model import SourceInfo

# The one registry of the stage: log families (one module each in families/) and collector
# prefixes (data in prefixes.py). Everything else looks families and prefixes up here.
FAMILIES: dict[str, Family] = REGISTRY
FORMATS = tuple(FAMILIES)  # what --format-hint accepts
Progress = Callable[[str, int, int], None]


def read_logs(paths: list[str], format_hint: str | None = None, progress: Progress | None = None) -> IngestResult:
    """Read every input; one that cannot be read is a warning, none readable is an IngestError."""
    if format_hint is not None and format_hint not in FORMATS:
        raise IngestError(f"unknown --format-hint {format_hint!r} (choose from {', '.join(FORMATS)})")
    if not paths:
        raise IngestError("no log files given")
    sources: list[SourceInfo] = []
    events = []
    activity = {}
    problems = []
    for path in paths:
        name = "stdin" if path == "-" else path
        info = SourceInfo(name=name, format="unknown")
        try:
            state = _read_one(path, info, format_hint, progress)
        except IngestError as exc:
            problems.append(str(exc))
            info.warnings.append(str(exc).removeprefix(f"{path}: "))
            sources.append(info)
            continue
        sources.append(info)
        if state is None:
            continue
        events.extend(state.events)
        if state.activity:
            activity[name] = state.activity
        for service in sorted({e.source for e in state.events} - {name}):
            sources.append(SourceInfo(name=service, format=state.services_family(service),
                                      events=sum(e.source == service for e in state.events)))
    if all(s.format == "unknown" for s in sources):
        reasons = "; ".join(problems or [f"{s.name}: {', '.join(s.warnings)}" for s in sources])
        raise IngestError(f"nothing readable in the given logs ({reasons})")
    return IngestResult(events=events, sources=sources, activity=activity)


def _read_one(path: str, info: SourceInfo, hint: str | None, progress: Progress | None) -> SourceState | None:
    stream, size = open_binary(path)
    year, guessed = default_year(path) if path != "-" else (0, True)
    with stream:
        head = read_head(stream, info.warnings)
        if not head:
            info.warnings.append("empty")
            return None
        if looks_binary(head):
            info.warnings.append("binary data, not a log: skipped")
            return None
        year = year or datetime.now(tz=UTC).year
        family, prefix, services = sniff(head, hint, year)
        if family is None:
            undated = undated_errors(head)
            if undated:  # a pasted traceback without times: say so, never "no incident"
                info.meta["undated_errors"] = undated
                info.format = "undated"
                info.warnings.append(f"no timestamps: {len(undated)} connection error line(s) cannot be placed "
                                     "on the timeline")
            else:
                info.warnings.append("unknown log format (not a Celery, RabbitMQ, Redis or JSON log): skipped")
            return None
        info.format = family + (f" ({prefix})" if prefix else "")
        state = SourceState(info=info, family=family, prefix=prefix, year=year, services=services)
        if family in ("celery", "multi"):
            sample = head[:65536].decode("utf-8", errors="replace")
            scan_banner(sample, info)
            if family == "celery" and prefix is None:
                info.meta["layout"] = celery_layout(sample)
        if family == "redis" and guessed and b" 20" not in head[:4096]:
            info.warnings.append(f"Redis lines carry no year: assumed {year} (the file's date)")
        if family == "json":
            scan_json(text_lines(chunks(stream, head, info.warnings)), state, _classify)
            info.lines = max((e.line for e in state.events), default=0)
            return state
        if path != "-" and not isinstance(stream, gzip.GzipFile) and workers_for(size) > 1:
            scan_split(path, state, size)  # large plain file: one range per core
            if progress is not None:
                progress(info.name, size, size)
            return state
        scanner = Scanner(state)
        done = 0
        for block in chunks(stream, head, info.warnings):
            scanner.feed(block)
            done += len(block)
            if progress is not None:
                progress(info.name, done, size)
        scanner.finish()
    return state


def _classify(message: str) -> tuple[str, signatures.Signature] | None:
    for family in LINE_FAMILIES:
        sig = family.match(message)
        if sig is not None:
            return family.name, sig
    return None


__all__ = ["FAMILIES", "FORMATS", "PREFIXES", "IngestError", "IngestResult", "read_logs"]
