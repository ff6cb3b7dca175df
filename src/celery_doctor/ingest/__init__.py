"""Log text -> Events. :func:`read_logs` is the stage's one entry point."""

from __future__ import annotations

import contextlib
import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from celery_doctor.ingest.families import REGISTRY
from celery_doctor.ingest.frames import cut_connection_frame, scan_green_frames
from celery_doctor.ingest.interface import Family, IngestError, IngestResult
from celery_doctor.ingest.matcher import TIMING_BYTES
from celery_doctor.ingest.parallel import scan_files
from celery_doctor.ingest.prefixes import PREFIXES
from celery_doctor.ingest.reader import REPEAT_MIN, Scanner, SourceState, _classify, repeat_keep, scan_banner, scan_json
from celery_doctor.ingest.sources import (
    SNIFF_BYTES,
    GzipStream,
    celery_layout,
    chunks,
    default_year,
    looks_binary,
    open_binary,
    read_head,
    sniff,
    text_lines,
)
from celery_doctor.model import Event, Kind, Side, SourceInfo

# what shows a person that a paste is about Celery and its clients, even with no event in it
CLIENT_TEXT = re.compile(rb"Traceback \(most recent call last\)|site-packages/(?:celery|kombu|amqp|redis|billiard)/|"
                         rb"celery@\S+ v\d|MainProcess\]")
SAMPLE_HALF = 32 * 1024  # the matcher chooses its search strings on this much of the head and the middle
TIMED_MIN = 32 * 1024 * 1024  # from this size, timing engines on the input's middle (~4 ms) pays for itself
PASTE_MAX = 512 * 1024  # inputs up to this size are read record by record (records.py): pastes are small

# The one registry of the stage: log families (one module each in families/) and collector
# prefixes (data in prefixes.py). Everything else looks families and prefixes up here.
FAMILIES: dict[str, Family] = REGISTRY
FORMATS = tuple(FAMILIES)  # what --format-hint accepts
Progress = Callable[[str, int, int], None]


def read_logs(paths: list[str], format_hint: str | None = None, progress: Progress | None = None,
              meanwhile: Callable[[], object] | None = None) -> IngestResult:
    """Read every input; one that cannot be read is a warning, none readable is an IngestError.
    ``meanwhile``: work of the caller's that does not need the result (loading the next stage),
    done while the pool scans, or after a scan without one."""
    if format_hint is not None and format_hint not in FORMATS:
        raise IngestError(f"unknown --format-hint {format_hint!r} (choose from {', '.join(FORMATS)})")
    if not paths:
        raise IngestError("no log files given")
    sources: list[SourceInfo] = []
    problems = []
    opened: list[tuple[SourceInfo, SourceState | None]] = []
    files: list[tuple[str, SourceState, int]] = []
    streams: list[tuple[Iterator[bytes], SourceState, int]] = []
    handles: list[BinaryIO] = []
    try:
        for path in paths:
            name = "stdin" if path == "-" else path
            info = SourceInfo(name=name, format="unknown")
            try:
                state = _read_one(path, info, format_hint, progress, (files, streams, handles))
            except IngestError as exc:
                problems.append(str(exc))
                info.warnings.append(str(exc).removeprefix(f"{path}: "))
                state = None
            opened.append((info, state))
        scan_files(files, streams, progress, meanwhile)  # the big inputs: one pool over the ranges of every file
    finally:
        for handle in handles:
            handle.close()
    events = []
    activity = {}
    for info, state in opened:
        sources.append(info)
        if state is None:
            continue
        events.extend(state.events)
        if state.activity:
            activity[info.name] = state.activity
        for service in sorted({e.source for e in state.events} - {info.name}):
            sources.append(SourceInfo(name=service, format=state.services_family(service),
                                      events=sum(e.source == service for e in state.events)))
    if all(s.format == "unknown" for s in sources):
        reasons = "; ".join(problems or [f"{s.name}: {', '.join(s.warnings)}" for s in sources])
        raise IngestError(f"nothing readable in the given logs ({reasons})")
    # the files the pool scanned had every byte read by the matcher, the report's line among its literals
    without_report = {path for path, state, _ in files if not state.report}
    return IngestResult(events=events, sources=sources, activity=activity, without_report=without_report)


Queues = tuple[list[tuple[str, SourceState, int]], list[tuple[Iterator[bytes], SourceState, int]], list[BinaryIO]]


def _read_one(path: str, info: SourceInfo, hint: str | None, progress: Progress | None,
              queues: Queues) -> SourceState | None:
    """Open and sniff one input. A small one is read here, record by record; a big one is queued
    for the scan (plain files by path for the pool, streams left open)."""
    stream, size = open_binary(path)
    year, guessed = default_year(path) if path != "-" else (0, True)
    files, streams, handles = queues
    keep = False
    try:
        head = read_head(stream, info.warnings)
        if not head:
            info.warnings.append("empty")
            return None
        if looks_binary(head):
            info.warnings.append("binary data, not a log: skipped")
            return None
        year = year or datetime.now(tz=UTC).year
        family, prefix, services = sniff(head, hint, year)
        if family == "json" and len(head) < SNIFF_BYTES:  # small: every line
            info.format = family + (f" ({prefix})" if prefix else "")
            state = SourceState(info=info, family=family, prefix=prefix, year=year, services=services)
            scan_json(text_lines(chunks(stream, head, info.warnings)), state, _classify)
            info.lines = max((e.line for e in state.events), default=0)
            return state
        whole = head
        if len(head) >= SNIFF_BYTES:  # is the rest small enough to be read record by record?
            whole = head + _read_more(stream, PASTE_MAX + 1 - len(head), info.warnings)
        small = len(whole) <= PASTE_MAX
        if family is None and not small:
            info.warnings.append("unknown log format (not a Celery, RabbitMQ, Redis or JSON log): skipped")
            return None
        state = SourceState(info=info, family=family or "paste", prefix=prefix, year=year, services=services)
        if family in ("celery", "multi", None):
            sample = whole[:65536].decode("utf-8", errors="replace")
            scan_banner(sample, info)
            scan_green_frames(sample, info)
            if family == "celery" and prefix is None:
                info.meta["layout"] = celery_layout(sample)
        if family == "redis" and guessed and b" 20" not in head[:4096]:
            info.warnings.append(f"Redis lines carry no year: assumed {year} (the file's date)")
        if small:  # what people paste: read every record in order (cut headers, bare tracebacks)
            scanner = Scanner(state)
            scanner.feed_records(whole if whole.endswith(b"\n") else whole + b"\n")
            scanner.finish()
            _describe(state, family, prefix, whole[:SNIFF_BYTES])
            if progress is not None:
                progress(info.name, len(whole), max(size, len(whole)))
            return state if state.events or family is not None else None
        info.format = (family or "paste") + (f" ({prefix})" if prefix else "")
        state.sample = whole[:SAMPLE_HALF]
        if path != "-" and not isinstance(stream, GzipStream | gzip.GzipFile):
            if size > 4 * SAMPLE_HALF:  # and from its middle: a broker's head is its boot, not its churn
                with contextlib.suppress(OSError, ValueError):
                    stream.seek(size // 2)
                    middle = stream.read(TIMING_BYTES if size >= TIMED_MIN else SAMPLE_HALF)
                    state.sample += middle[:SAMPLE_HALF]
                    if size >= TIMED_MIN:
                        state.timing = middle
            state.keep = repeat_keep(size)
            files.append((path, state, size))  # read again by range, in the pool
        else:
            # compressed: ~8x inflated; stdin: unknown, as if big
            state.keep = repeat_keep(REPEAT_MIN if path == "-" else 8 * size)
            streams.append((chunks(stream, whole, info.warnings), state, size))
            handles.append(stream)
            keep = True
        return state
    finally:
        if not keep:
            stream.close()


def _read_more(stream: BinaryIO, want: int, warnings: list[str]) -> bytes:
    try:
        return stream.read(max(0, want))
    except (EOFError, OSError, zlib.error) as exc:
        warnings.append(f"compressed data ends early ({exc.__class__.__name__}): read up to the break")
        return b""


def _describe(state: SourceState, family: str | None, prefix: str | None, whole: bytes) -> None:
    """The source's format in words, and what a paste without times holds."""
    info = state.info
    seen = sorted({_family_of_event(e) for e in state.events})
    if family is None and seen:
        info.format = (seen[0] if len(seen) == 1 else "multi") + " (paste" + (f", {prefix})" if prefix else ")")
    elif family is not None:
        info.format = family + (f" ({prefix})" if prefix else "")
    undated = [e for e in state.events if e.ts is None]
    if undated:
        info.meta["undated_errors"] = [[e.line + _error_line(e), (e.error or e.text.splitlines()[0])[:300]]
                                       for e in undated if e.kind not in (Kind.WORKER_SHUTDOWN, Kind.WORKER_READY)][:5]
        info.warnings.append(f"no timestamps on {len(undated)} event(s): they are kept in input order and "
                             "cannot be placed on the timeline")
    if not state.events and (cut := cut_connection_frame(whole.decode("utf-8", errors="replace"))):
        info.meta["cut_connection_traceback"] = [cut[0], cut[1]]
    if family is None and not state.events:
        if CLIENT_TEXT.search(whole):
            info.format = "paste"
            info.warnings.append("read as a paste: no connection event in it (a traceback cut before its "
                                 "exception line, or only task lines)")
        else:
            info.warnings.append("unknown log format (not a Celery, RabbitMQ, Redis or JSON log): skipped")


def _family_of_event(event: Event) -> str:
    head = (event.signature or "").split(".", 1)[0]
    return head if head in FAMILIES else ("celery" if event.side == Side.CLIENT else "broker")


def _error_line(event: Event) -> int:
    """How many lines into the event's record its error line is (0: the first)."""
    lines = event.text.splitlines()
    if event.error:
        for index, line in enumerate(lines):
            if line.strip() == event.error:
                return index
    return 0


__all__ = ["FAMILIES", "FORMATS", "PREFIXES", "IngestError", "IngestResult", "read_logs"]
