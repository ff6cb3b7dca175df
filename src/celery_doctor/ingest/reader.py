"""Scan one log source and turn its rare interesting lines into Events.

A log of a gigabyte is mostly task lines or broker connection churn. Parsing every line would
cost minutes, so the scanner runs one multi-literal matcher (matcher.py) over the raw bytes of a
window, rejects what cannot matter before decoding anything, and parses only the records around
the remaining hits (plus a bounded look back at the task lines before a client-side failure, to
tell idle from busy). Task lines and connection lifecycle lines are counted per slice of the
window, never stored. Memory is one window plus its look-back, whatever the size of the input.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from celery_doctor.ingest import counting, families, matcher, prefixes, signatures
from celery_doctor.ingest.families import celery as celery_family
from celery_doctor.ingest.families import json as json_family
from celery_doctor.ingest.families.celery import CHAIN, EXCEPTION
from celery_doctor.ingest.families.celery import FAMILY as CELERY
from celery_doctor.ingest.families.rabbitmq import PEER
from celery_doctor.ingest.interface import Start
from celery_doctor.ingest.records import TRACEBACK as TRACEBACK_TEXT
from celery_doctor.ingest.records import elide_a_frame
from celery_doctor.model import Event, Kind, Side, SourceInfo

Buffer = bytes | bytearray  # a window: bytes, or the pool's reused read buffer
CHUNK = 8 * 1024 * 1024  # one window of a file at a time: two workers' windows stay in the 32 MB L3 cache
NEAR_BYTES = 64 * 1024  # after a broker-side incident, its lifecycle lines this far on are events
NEAR_EVENTS = 6
NEAR_FIRST = 4096  # the first piece of those bytes searched
NEAR_BUDGET = 120  # in all, per window: a churning broker's abrupt closes do not bring back every accept
HEAD_LIFECYCLE = 40  # the first accepts of a broker log pair with the workers' first connects
# a frame of the broker client libraries as Python prints it (absolute, or relative as error trackers show it)
FRAME = re.compile(r'^\s*File "(?:[^"]*/)?(?:celery|kombu|amqp|redis|billiard|vine|librabbitmq)/[^"]+", line \d+, in ')
TRACEBACK_WINDOW = 8 * 1024  # a traceback's exception line is this close to its first line
MAX_CHAIN = 8  # chained tracebacks followed back to the first of their record
CHAIN_BYTES = tuple(sentence.encode() for sentence in CHAIN)
CHAIN_WORDS = b" above exception"  # in both sentences
CHAIN_REACH = 400  # the sentence, a blank line and the traceback's header, with a collector's prefix on each
# Celery's default header ("[2026-11-01 00:00:00,123: ERROR/"), and a line that starts with one
# behind a collector's prefix: where a record of that layout ends
CELERY_HEADER = rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: [A-Z]+/"
HEADER_BYTES = re.compile(CELERY_HEADER)
NEXT_HEADER = re.compile(rb"\n[^\n]{0,160}?" + CELERY_HEADER)
APP_CODE_BYTES = re.compile(celery_family.APP_CODE.pattern.encode(), re.M)
TASK_LOGGER_BYTES = re.compile(celery_family.TASK_LOGGER.pattern.encode())
# what every match of celery_family.BROKER_CODE holds (a wider net: a traceback that holds one is read whole)
BROKER_WORDS = tuple((word.encode(), None) for word in (
    *celery_family.BROKER_LIBRARIES, "sentinel://",
    *(f"celery{sep}{part}" for sep in ("/", "\\") for part in celery_family.BROKER_CELERY_PARTS)))
WINDOW_MARKS = 64  # past this many tracebacks in a window, its connection-error words are marked in one pass
SAMPLE = 64 * 1024  # the load curve counts task lines in this much of each slice, then scales
# how far past its edges a window is scanned: a line that crosses an edge (a literal cut in two)
# is found whole by the window that holds its hit (the longest literal or match is far shorter)
EDGE = 4096
MAX_RECORD_LINES = 60
MAX_SCAN_LINES = 2000  # a record is followed this far (a deep traceback), keeping MAX_RECORD_LINES of it
MAX_TEXT = 16 * 1024
HEAD_SCAN = 256 * 1024  # the start of a file is searched for the whole catalogue (banner, readiness)
# A line the catalogue knows, repeated thousands of times (a worker retrying a broker that is down
# every 2 s, 580,000 times in 100 MB; a broker under churn logging an abrupt close every few KB):
# in an input of REPEAT_MIN or more, a search expression with more than REPEAT_KEEP hits in a
# window repeats: its first few become Events (repeat_keep: REPEAT_KEEP, fewer in bigger inputs),
# the rest are counted per window with the kind of the last kept one. An expression with fewer
# hits (a real failure's lines: a few a window) keeps them all. Read one by one, such a log cost
# 170 us a line and 1.4 GB of memory per 100 MB. Tracebacks are exempt (each is judged on its
# bytes first).
REPEAT_KEEP = 64
REPEAT_MIN = 32 * 1024 * 1024  # inputs smaller than this are read line by line, every repeat kept
# what one expression keeps over a whole input, spread over its windows (at least REPEAT_FLOOR
# each): the events, the analysis and the report stop growing with the log (a churning 1 GB broker
# log kept 8,500 abrupt closes at 64 a window, and its analysis cost three times its scan)
REPEAT_BUDGET = 512
REPEAT_FLOOR = 2
# of a big input's abrupt closes in a window, those whose following lifecycle lines are looked for
# (CHURN_NEAR where a window keeps REPEAT_KEEP, fewer as it keeps fewer; one at least)
CHURN_NEAR = 4
LOOKBACK_TASKS = 50
LOOKBACK_BYTES = 256 * 1024
LOAD_WINDOW_S = 60.0
MAX_BUCKETS = 400

RUNTIME = re.compile(r" succeeded in (\d+(?:\.\d+)?)s")
TASK_ID = re.compile(r"(?:Task |Received task: )([\w.:\-]+)\[([^\]\s]+)\]")
CONNECTION_MARK = b"\0connection error"  # the key of the marks expression (never a literal of a log)
# a `celery report` pasted into a log (settings/runtime_report.py reads it; it holds this line)
REPORT_LINE = b"software -> celery:"
# the header of a task's own failure ("Task x[id] raised unexpected: ...", 2.x-3.0 "raised
# exception"): a traceback on the line below it is the task's, dropped without a look at its bytes
RAISED_LINE = b"] raised "
LIFECYCLE_KINDS = frozenset({Kind.CONNECTION_ACCEPTED, Kind.CONNECTION_CLOSED_CLEAN})
BANNER = {
    "celery_version": re.compile(r"celery@\S+ v(\d+\.\d+\.\d+\S*)"),
    "transport": re.compile(r"\.> transport:\s+(\S+)"),
    "concurrency": re.compile(r"\.> concurrency:\s+(\d+)"),
    "pool": re.compile(r"\.> concurrency:\s+\d+ \((\w+)\)"),
}


@dataclass
class SourceState:
    """What is known about one source while it streams."""

    info: SourceInfo
    family: str  # celery | rabbitmq | redis | json | multi
    prefix: str | None
    year: int
    events: list[Event] = field(default_factory=list)
    activity: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    last_task: datetime | None = None
    last_ts: datetime | None = None
    out_of_order: int = 0
    services: dict[str, str] = field(default_factory=dict)  # docker-compose service -> family
    # hits past REPEAT_KEEP in a window: (first time, last time of the window, how many, their kind)
    counted: list[tuple[datetime, datetime, int, str]] = field(default_factory=list)
    keep: int | None = None  # in a big input, the hits a window keeps of an expression that repeats (repeat_keep)
    sample: bytes = b""  # a little of the input (head and middle): the matcher's search strings are chosen on it
    timing: bytes = b""  # a big input's middle megabyte: the matcher's engine is chosen by timing it there
    report: bool = False  # the scan saw a `celery report` line (REPORT_LINE)

    def services_family(self, source: str) -> str:
        service = source.rsplit(":", 1)[-1]
        return f"{self.services.get(service, 'unknown')} ({self.prefix or 'paste'})"


@dataclass
class Record:
    start: int  # byte offset of its first line in the buffer
    lines: list[str]
    service: str | None
    prefix_ts: datetime | None
    # set by the whole-input splitter (records.py): the family and header it already read;
    # header-less records have a header with no time and family None (the catalogue decides)
    family: str | None = None
    head: Start | None = None
    end: int = 0  # byte offset just past its last line


strip_prefix = prefixes.strip


def repeat_keep(size: int) -> int | None:
    """How many hits of one expression each window of an input of ``size`` bytes keeps (the rest
    are counted); None: every hit is read (an input under REPEAT_MIN)."""
    if size < REPEAT_MIN:
        return None
    return max(REPEAT_FLOOR, min(REPEAT_KEEP, REPEAT_BUDGET * CHUNK // size))


def record_start(family: str, line: str, year: int) -> Start | None:
    found = families.get(family)
    return found.start(line, year) if found is not None and found.line_based else None


def family_of(line: str, year: int) -> str | None:
    """For multi-service files: which family a (prefix-stripped) line belongs to."""
    found = families.family_of(line, year)
    return found.name if found else None


def _in_traceback(line: str) -> bool:
    return line[:1] in (" ", "\t") or line.startswith((TRACEBACK_TEXT, *CHAIN)) or bool(EXCEPTION.match(line))


class Scanner:
    """Scans one source's chunks; ``feed`` per chunk, ``finish`` at the end."""

    def __init__(self, state: SourceState) -> None:
        self.state = state
        line_families = tuple(f.name for f in families.LINE_FAMILIES)
        names = line_families if state.family not in families.REGISTRY or state.family == "json" else (state.family,)
        rare = sorted({e for n in names for e in signatures.expressions(n, counted=False)}, key=repr)
        every = sorted({e for n in names for e in signatures.expressions(n)}, key=repr)
        if state.family == "json":  # one object per line: the message decides, and the proxy's own lines
            rare = [e for e in rare if e[0] != signatures.TRACEBACK] + [(b'"proxy"', None)]
            every = rare
        self.client_like = "celery" in names and state.family != "json"
        rare = [*rare, (REPORT_LINE, None)]  # found in the same pass: no one reads the file again for it
        if self.client_like:
            rare.append((RAISED_LINE, None))
        # a traceback in a client log is judged by where the words that name a connection error
        # fall, never by decoding: those words are searched after each traceback (a second
        # database), or over the whole window in the same pass where tracebacks are many
        mark = (CONNECTION_MARK, signatures.CONNECTION_ERROR_BYTES.pattern)
        self.marks = matcher.build((mark,)) if self.client_like else None
        self.broker_words = matcher.build(BROKER_WORDS if self.client_like else ())  # a broker log has no tracebacks
        self._own: list[int | bool] = [-1, False]  # the last task logger header judged, and its answer
        self.matcher = matcher.build(tuple(rare), state.sample, state.timing)
        self.with_marks = (matcher.build((*self.matcher.expressions, mark), state.sample, state.timing)
                           if self.client_like else None)
        self.mark_id = len(self.matcher.expressions)  # in with_marks (the others keep their index)
        self._report_id = self.matcher.expressions.index((REPORT_LINE, None))
        self._raised_id = self.matcher.expressions.index((RAISED_LINE, None)) if self.client_like else -4
        self._not_events = frozenset({self._report_id, self._raised_id})  # hits that never make an event
        self.errors: list[int] | None = None  # the marks of the whole window, when it has many tracebacks
        # the last window had many tracebacks, so this one is likely to (at first: the sample says)
        self.dense = bool(state.sample) and state.sample.count(signatures.TRACEBACK) * CHUNK > WINDOW_MARKS * len(
            state.sample)
        # with the lifecycle lines: the file's head, near incidents
        self.full = matcher.build(tuple(every), state.sample)
        self.lifecycle = frozenset(i for i, e in enumerate(self.full.expressions) if e not in rare)
        self._traceback_id = next((i for i, e in enumerate(self.matcher.expressions) if e[0] == signatures.TRACEBACK),
                                  -2)
        self._full_traceback_id = next(
            (i for i, e in enumerate(self.full.expressions) if e[0] == signatures.TRACEBACK), -2)
        self.first_chunk = True
        # 3.1 logs "Received task: x[id]", 4.0+ "Task x[id] received"
        layout = "celery-3.1" if state.info.meta.get("layout") == "celery-3.1" else "celery"
        family = layout if state.family in ("celery", "multi") else state.family
        self.arrival_literal = signatures.ACTIVITY_LITERALS.get(family, b"")
        self.activity_family = families.REGISTRY.get("celery" if family.startswith("celery") else family)
        self.tail = b""
        self.line_base = 0  # physical line number of the first byte of the current window
        # records (their first byte) read in this window, and the kind of the event each made: a
        # record two hits lead to is read once, and the second hit still says what it made (a
        # window's repeats are counted by the kind its kept hits made)
        self.seen: dict[int, Kind | None] = {}
        self.near_left = 0
        self.near_budget = NEAR_BUDGET
        self.churn_near = self._churn_near = max(1, (state.keep or REPEAT_KEEP) * CHURN_NEAR // REPEAT_KEEP)
        self._end = 0
        self._ts_cache: dict[str, datetime] = {}
        self._taskless = (0, -1)  # a stretch of the window known to hold no task line (start, end)

    # -- helpers over raw bytes ---------------------------------------------------------------
    @staticmethod
    def _line_at(buf: Buffer, pos: int) -> tuple[int, int]:
        start = buf.rfind(b"\n", 0, pos) + 1
        end = buf.find(b"\n", pos)
        return start, len(buf) if end < 0 else end

    @staticmethod
    def _decode(raw: Buffer) -> str:
        text = raw[:MAX_TEXT].decode("utf-8", errors="replace")
        return text.rstrip("\r")

    def _split(self, line: str) -> tuple[str, str | None, datetime | None]:
        return strip_prefix(line, self.state.prefix)

    def _family_for(self, line: str, service: str | None) -> str | None:
        if self.state.family != "multi":
            return self.state.family
        if service and service in self.state.services:
            return self.state.services[service]
        found = family_of(line, self.state.year)
        if found and service:
            self.state.services[service] = found
        return found

    def _start_of(self, family: str, line: str) -> Start | None:
        head = record_start(family, line, self.state.year)
        if head is None and (fam := families.get(family)) is not None:
            alone = fam.undated_start(line)  # a standalone line is never part of the record above
            return alone if alone is not None and alone.standalone else None
        return head

    # -- records ------------------------------------------------------------------------------
    def _record(self, buf: Buffer, pos: int) -> Record | None:
        """The whole multi-line record around byte ``pos``."""
        start, end = self._line_at(buf, pos)
        line, service, pts = self._split(self._decode(buf[start:end]))
        family = self._family_for(line, service)
        if family is None:
            return None
        head = self._start_of(family, line)
        # walk back to the line that starts the record (tracebacks, continuation lines)
        steps = 0
        while (head is None or self._continues(family, head, buf, start)) and start > 0 and steps < MAX_RECORD_LINES:
            start, _ = self._line_at(buf, start - 1)
            line, service, pts = self._split(self._decode(buf[start:buf.find(b"\n", start)]))
            head = self._start_of(family, line)
            steps += 1
        if head is None:
            return None
        lines = [line]
        cursor = buf.find(b"\n", start)
        taken = 1
        while 0 <= cursor < len(buf) - 1 and taken < MAX_SCAN_LINES:
            nxt_end = buf.find(b"\n", cursor + 1)
            nxt_end = len(buf) if nxt_end < 0 else nxt_end
            raw, nservice, _ = self._split(self._decode(buf[cursor + 1:nxt_end]))
            if nservice != service and self.state.prefix == "docker-compose":
                break
            nhead = self._start_of(family, raw)
            if nhead is not None and not (head.key and nhead.key == head.key):
                break
            if family == "rabbitmq" and nhead is not None:
                raw = raw[families.REGISTRY[family].message_start(raw):]  # 3.9+: drop the repeated prefix
            if taken >= MAX_RECORD_LINES and not _in_traceback(raw):
                break  # past the usual length only a traceback goes on (its frames, chain lines, exceptions)
            lines.append(raw)
            taken += 1
            if len(lines) > MAX_RECORD_LINES:  # a long traceback: its head and its exceptions are what count
                elide_a_frame(lines)
            cursor = nxt_end
        return Record(start=start, lines=lines, service=service, prefix_ts=pts, family=family, head=head,
                      end=max(cursor, end))

    def _continues(self, family: str, head: Start, buf: Buffer, start: int) -> bool:
        """RabbitMQ 3.9+: a line with the same ts+pid as the one before continues it."""
        if family != "rabbitmq" or not head.key or start == 0:
            return False
        prev_start, prev_end = self._line_at(buf, start - 1)
        prev, _, _ = self._split(self._decode(buf[prev_start:prev_end]))
        return prev.startswith(head.key)

    def _event(self, record: Record, line_no: int, buf: Buffer) -> Event | None:
        if record.head is not None:  # from the whole-input splitter
            head = record.head
            candidates = [families.REGISTRY[record.family]] if record.family else list(families.LINE_FAMILIES)
        else:
            name = self._family_for(record.lines[0], record.service)
            if name is None:
                return None
            candidates = [families.REGISTRY[name]]
            found = self._start_of(name, record.lines[0])
            if found is None:
                return None
            head = found
        family, sig = candidates[0], None
        for family in candidates:  # a header-less record: the first family whose catalogue matches
            body = record.lines[0][family.message_start(record.lines[0]):]
            message = "\n".join([body, *record.lines[1:]])
            sig = family.match(message)
            if sig is not None:
                break
        if sig is None:
            family = candidates[0]
            body = record.lines[0][family.message_start(record.lines[0]):]
            message = "\n".join([body, *record.lines[1:]])
        text = "\n".join([record.lines[0], *record.lines[1:]]).rstrip()
        kind = sig.kind if sig else None
        if sig is None and family.side == Side.CLIENT:
            kind = self._traceback_kind(body, record.lines, bare=head.ts is None)
        if kind is None:
            return None
        ts = record.prefix_ts if (record.prefix_ts and head.naive) else head.ts
        if head.naive:
            self.state.info.meta["naive_tz"] = True
        error = family.error(record.lines, message)
        peer, detail = family.fields(message, error)
        kind = family.refine(kind, error)
        side = family.side
        source = self.state.info.name + (f":{record.service}" if self.state.family == "multi" and record.service
                                         else "")
        if ts is not None and side == Side.CLIENT and kind not in (Kind.WORKER_READY, Kind.WORKER_SHUTDOWN,
                                                                   Kind.CONNECTED):
            detail.update(self._task_context(buf, record.start, ts))
        signature = sig.id if sig else (
            "python.traceback.crash" if kind == Kind.WORKER_CRASH else
            "celery.traceback.connection_error" if "Traceback (most recent" in message
            else "python.exception.connection_error")
        return Event(ts=ts, source=source, line=line_no, side=side, kind=kind, text=text, peer=peer,
                     error=error, signature=signature, level=head.level or None, detail=detail)

    @staticmethod
    def _traceback_kind(body: str, lines: list[str], bare: bool = False) -> Kind | None:
        """A logged traceback ending in a connection error, outside a task's own failure; in an
        undated record also a bare exception line that names one (a pasted error alone)."""
        if "] raised" in body or "raised unexpected" in body or celery_family.application_traceback(lines):
            return None
        if "Traceback (most recent call last)" not in body + "\n".join(lines) and not (
                bare and (celery_family.EXCEPTION.match(body.strip()) or celery_family.exceptions(lines[1:]))):
            return None
        raised = celery_family.exceptions(lines[1:]) or [ln.strip() for ln in lines[:1]]
        last = raised[-1] if celery_family.EXCEPTION.match(raised[-1]) else next(
            (ln.strip() for ln in reversed(lines) if ln.strip()), "")
        if not signatures.CONNECTION_ERROR.search(last):
            # a pasted traceback on its own is what stopped the process (the known-bug rules read it)
            # (or its library frames without the header: a paste cut above them, an error tracker's layout)
            return Kind.WORKER_CRASH if bare and ("Traceback (most recent call last)" in "\n".join(lines)
                                                  or any(FRAME.match(ln) for ln in lines)) else None
        return Kind.CANNOT_CONNECT if signatures.REFUSED.search(last) else Kind.CONNECTION_LOST

    def feed_records(self, buf: bytes) -> None:
        """Read a whole small input record by record (records.py: every line classified in
        order), for what people paste: cut headers, bare tracebacks, standalone lines."""
        from celery_doctor.ingest import records

        for piece in records.split(buf, self.state.prefix, self.state.family, self.state.year):
            record = Record(start=piece.start, lines=piece.lines, service=piece.service,
                            prefix_ts=piece.prefix_ts if isinstance(piece.prefix_ts, datetime) else None,
                            family=piece.family.name if piece.family else None, head=piece.head)
            if piece.family is not None and piece.service and piece.head.ts is not None:
                self.state.services.setdefault(piece.service, piece.family.name)
            event = self._event(record, self.line_base + piece.number, buf)
            if event is not None:
                self._add(event)
        if self.client_like:
            self._activity(buf, 0, len(buf))
        self.line_base += buf.count(b"\n")
        self._split_sides()

    def _split_sides(self) -> None:
        """A paste that holds worker and broker lines with no collector prefix to tell them apart
        becomes one source per family, so each side gets its own clock (zone) offset."""
        if self.state.prefix is not None or len({e.side for e in self.state.events if e.ts is not None}) < 2:
            return
        name = self.state.info.name
        events = []
        for e in self.state.events:
            family = (e.signature or "").split(".", 1)[0]
            family = family if family in ("rabbitmq", "redis") else "celery"
            self.state.services[family] = family
            events.append(replace(e, source=f"{name}:{family}"))
        self.state.events = events

    # -- task activity -------------------------------------------------------------------------
    def _task_lines_before(self, buf: Buffer, pos: int
                           ) -> Iterator[tuple[datetime, str, str, str, float | None]]:
        """(ts, 'received'|'done', task id, name, runtime), newest first, up to LOOKBACK_TASKS lines.
        Decodes a small window before ``pos`` once (widened when it holds too few task lines)."""
        floor = max(0, pos - LOOKBACK_BYTES)
        # a stretch already scanned and found without task lines need not be decoded again:
        # 20,000 reconnects in a log without tasks rescanned LOOKBACK_BYTES each (quadratic)
        start, end = self._taskless
        scan_floor = end if start <= floor <= end <= pos else floor
        size = 32 * 1024
        while True:
            low = max(scan_floor, pos - size)
            found = list(itertools.islice(self._task_lines_in(buf, low, pos), LOOKBACK_TASKS))
            if len(found) >= LOOKBACK_TASKS or low == scan_floor:
                break
            size *= 4
        if not found and low == scan_floor:
            self._taskless = (start if scan_floor == end else floor, pos)
        yield from found

    def _task_lines_in(self, buf: Buffer, low: int, pos: int
                       ) -> Iterator[tuple[datetime, str, str, str, float | None]]:
        lines = buf[low:pos].decode("utf-8", errors="replace").split("\n")
        if low > 0 and buf[low - 1:low] != b"\n":
            lines = lines[1:]  # the window began mid-line
        for raw in reversed(lines):
            if "] received" in raw or "Received task" in raw:
                state = "received"
            elif " succeeded in " in raw or "] raised " in raw:
                state = "done"
            else:
                continue
            line, _, _ = self._split(raw.rstrip("\r"))
            m = TASK_ID.search(line)
            ts = self._task_ts(line) if m else None
            if ts is None or m is None:
                continue
            runtime = RUNTIME.search(line) if state == "done" else None
            yield ts, state, m.group(2), m.group(1), float(runtime.group(1)) if runtime else None

    def _task_ts(self, line: str) -> datetime | None:
        """A task line's time. In the default layout (``[2026-11-01 00:00:00,123: ...``) the
        second is parsed once per distinct second (neighbouring lines share it) and the
        milliseconds added; any other layout goes through the family's header parser."""
        if line[:1] == "[" and line[20:21] in (",", ".") and line[24:25] == ":" and line[21:24].isdigit():
            second = line[:20]
            base = self._ts_cache.get(second)
            if base is None:
                head = CELERY.start(line, 0)
                if head is None or head.ts is None:
                    return None
                base = head.ts.replace(microsecond=0)
                if len(self._ts_cache) > 4096:
                    self._ts_cache.clear()
                self._ts_cache[second] = base
            return base + timedelta(milliseconds=int(line[21:24]))
        head = CELERY.start(line, 0)
        return head.ts if head else None

    def _task_context(self, buf: Buffer, pos: int, ts: datetime) -> dict[str, Any]:
        """What the worker was doing before this event: last activity, recent load, and the
        tasks that were running (still, or until just now: a broker may have closed earlier)."""
        last: datetime | None = None
        recent = 0
        done: dict[str, tuple[datetime, float | None]] = {}
        running: list[dict[str, str]] = []
        long_tasks: list[dict[str, str]] = []
        window = ts - timedelta(seconds=LOAD_WINDOW_S)
        for task_ts, state, task_id, name, runtime in self._task_lines_before(buf, pos):
            last = last or task_ts
            if task_ts >= window:
                recent += 1
            if state == "done":
                done.setdefault(task_id, (task_ts, runtime))
                if runtime and runtime >= 1.0 and len(long_tasks) < 5:
                    try:
                        since = task_ts - timedelta(seconds=runtime)
                    except (OverflowError, ValueError):  # "succeeded in 1e400s": no moment to start from
                        continue
                    long_tasks.append({"name": name, "id": task_id, "since": since.isoformat(),
                                       "until": task_ts.isoformat()})
            elif task_id not in done:
                running.append({"name": name, "id": task_id, "since": task_ts.isoformat()})
        last = last or self.state.last_task
        out: dict[str, Any] = {"tasks_before_60s": recent}
        if last is not None:
            out["last_activity_ts"] = last.isoformat()
        if running:
            out["running_tasks"] = running[:5]
        if long_tasks:
            out["recent_long_tasks"] = long_tasks
        return out

    def _activity(self, buf: Buffer, start: int, end: int) -> None:
        """The load curve: task arrivals (or connections accepted) per slice of the window, counted
        in a sample of each slice (exact for small windows) and dated by the slice's first line and
        its last counted line. Counted, never stored: memory does not grow with the log."""
        arrivals = self.arrival_literal
        if not arrivals or self.activity_family is None:
            return
        slice_len = min(1024 * 1024, max(4096, (end - start) // 8))  # 1 MB slices of an 8 MB window
        for offset in range(start, end, slice_len):
            stop = min(end, offset + slice_len)
            sample_end = min(stop, offset + SAMPLE)
            count = buf.count(arrivals, offset, sample_end) * (stop - offset) / max(1, sample_end - offset)
            if not count:
                continue
            first = self._first_ts(buf, offset, stop)
            last = self._last_counted_ts(buf, offset, stop)
            if first and last:
                self.state.activity.append((first, max(first, last), round(count)))
                if self.client_like:
                    self.state.last_task = max(self.state.last_task or last, last)

    def _count_repeats(self, buf: Buffer, start: int, end: int, counted: dict[int, int],
                       kinds: dict[int, Kind]) -> None:
        """The window's hits past the ones kept, counted by the kind their expression's kept hits
        made, over the window's time span. Two expressions of one record (a refused connect and its
        "Trying again") count it once: per kind, the largest count. Hits whose kept ones made no event
        are no events either."""
        per_kind: dict[Kind, int] = {}
        for ident, n in counted.items():
            kind = kinds.get(ident)
            if kind is not None:
                per_kind[kind] = max(per_kind.get(kind, 0), n)
        if not per_kind:
            return
        family = self.activity_family or CELERY
        # a layout the family's parser does not date: the last event's time
        first = self._first_ts(buf, start, end, family) or self.state.last_ts
        last = self._last_ts(buf, start, end, family)
        if first is not None:
            for kind, n in per_kind.items():
                self.state.counted.append((first, max(first, last or first), n, kind.value))

    def _head_ts(self, raw: Buffer, family: Any = None) -> datetime | None:
        family = family or self.activity_family
        assert family is not None
        line, _, _ = self._split(self._decode(raw))
        head = family.start(line, self.state.year)
        return head.ts if head else None

    def _first_ts(self, buf: Buffer, start: int, end: int, family: Any = None) -> datetime | None:
        """The time of the first dated line of ``buf[start:end]`` (within its first 20 lines)."""
        pos = start if start == 0 or buf[start - 1:start] == b"\n" else buf.find(b"\n", start, end) + 1
        for _ in range(20):
            if pos <= 0 and start != 0:
                return None
            nl = buf.find(b"\n", pos, end)
            if nl < 0:
                return None
            ts = self._head_ts(buf[pos:nl], family)
            if ts:
                return ts
            pos = nl + 1
        return None

    def _last_ts(self, buf: Buffer, start: int, end: int, family: Any = None) -> datetime | None:
        """The time of the last dated line of ``buf[start:end]`` (within its last 20 lines)."""
        stop = end - 1 if buf[end - 1:end] == b"\n" else end
        for _ in range(20):
            nl = buf.rfind(b"\n", start, stop)
            if nl < 0 and start != 0:
                return None  # the window's first line may have begun before it: not a whole line
            ts = self._head_ts(buf[nl + 1:stop], family)
            if ts or nl < 0:
                return ts
            stop = nl
        return None

    def _last_counted_ts(self, buf: Buffer, start: int, end: int) -> datetime | None:
        lits = signatures.TASK_LITERALS if self.client_like else (self.arrival_literal,)
        at = max(buf.rfind(lit, max(start, end - SAMPLE), end) for lit in lits)
        if at < 0:
            return None
        s, e = self._line_at(buf, at)
        return self._head_ts(buf[s:e])

    # -- driving ------------------------------------------------------------------------------
    def feed(self, buf: Buffer, start: int = 0, end: int | None = None) -> None:
        """Scan the bytes ``buf[start:end]`` of the source, which follow the bytes scanned before.
        What lies before ``start`` is look-back (a record may begin there), what lies after ``end``
        look-ahead (a record may end there); ``start`` need not be at a line start."""
        end = len(buf) if end is None else end
        self._taskless = (0, -1)  # offsets into the last window's buffer mean nothing in this one
        self._own[:] = [-1, False]
        # the connection-error words: over the whole window when tracebacks are many (an app that
        # logs exceptions), else only after each traceback (the same first word either way)
        self.errors = None
        # an expression with more than REPEAT_KEEP hits in the window repeats: the matcher lists the
        # input's keep of them (fewer in a bigger input) and counts the rest; an expression under
        # REPEAT_KEEP (a real failure's lines, a few a window) keeps every hit, whatever the size
        keep = self.state.keep
        cap = REPEAT_KEEP if keep is not None else None
        counted: dict[int, int] = {}  # per expression: its hits past keep (never decoded)
        traceback_id, mark_id = self._traceback_id, -3
        # the bytes around the window are scanned too, so that a line across its edge is found whole:
        # the window owns the hits inside it, its neighbours the others
        low, high = max(0, start - EDGE), min(len(buf), end + EDGE)
        owned = (start - low, end - low)
        if self.dense and self.with_marks is not None:  # one pass for both
            mark_id = self.mark_id
            groups = self.with_marks.grouped(buf, low, high, cap, counted,
                                             frozenset({traceback_id, mark_id, self._raised_id}), owned, keep)
        else:
            groups = self.matcher.grouped(buf, low, high, cap, counted, frozenset({traceback_id, self._raised_id}),
                                          owned, keep)
        if mark_id >= 0:
            self.errors = [low + at for at in groups.pop(mark_id, ())]
        if groups.pop(self._report_id, None):
            self.state.report = True
        found_tracebacks = _unraised(buf, [low + at for at in groups.pop(traceback_id, [])],
                                     [low + at for at in groups.pop(self._raised_id, [])])
        if self.marks is not None and self.state.family != "json":
            if len(found_tracebacks) > WINDOW_MARKS and self.errors is None:
                self.errors = [start + at for at in self.marks.grouped(buf, start, end).get(0, ())]
            self.dense = len(found_tracebacks) > WINDOW_MARKS
        hits = [(low + at, ident, False) for ident, ats in groups.items() for at in ats]
        judged = self._worth_judging(buf, found_tracebacks, end)
        hits += [(at, traceback_id, False) for at in judged]
        hits.sort()
        if self.first_chunk:  # the head of a file: the whole catalogue (readiness, the first accepts)
            stop = min(end, start + HEAD_SCAN)
            extra = [(start + at, ident, True) for at, ident in self.full.hits(buf, start, stop)
                     if ident in self.lifecycle][:HEAD_LIFECYCLE]
            hits = sorted(hits + extra)
        self.first_chunk = False
        self._end = end
        self.near_budget = NEAR_BUDGET
        self.churn_near = self._churn_near
        self._pos, self._no = start, self.line_base + 1  # the line number of the line holding byte _pos
        is_json = self.state.family == "json"
        traceback_ids = (self._traceback_id, self._full_traceback_id)  # the literal's index in each matcher
        errors = self.errors
        kinds: dict[int, Kind] = {}  # the kind of the last event an expression's hit made
        for hit, ident, full in hits:
            if is_json:
                made = self._json_line(buf, hit)
                if made is not None:
                    kinds[ident] = made
                continue
            if ident == traceback_ids[full]:  # an application's traceback is rejected before decoding
                if errors is not None and hit + TRACEBACK_WINDOW <= end:
                    # where the window's marks are known, _worth_judging kept only the tracebacks a
                    # connection error follows in the same record: left, a task's own failure
                    if _tasks_own(buf, hit, self.broker_words, self._own):
                        continue
                elif self._dull_traceback(buf, hit):
                    continue
            made = self._emit(buf, hit, start)
            if made is not None and not full:
                kinds[ident] = made
        self._activity(buf, start, end)
        if counted:
            self._count_repeats(buf, start, end, counted, kinds)
        self.seen.clear()
        self.line_base = self._line_no(buf, end) - 1  # one newline pass over the window in all

    def _worth_judging(self, buf: Buffer, tracebacks: list[int], end: int) -> list[int]:
        """Of a window's tracebacks (ascending offsets), those that may be a connection failure.
        Where the window's connection-error marks are known, a traceback is kept only if its first
        mark is closer than TRACEBACK_WINDOW and no record starts between them (then only the line
        above it, a task's own failure, is left to look at): a step per traceback (the marks after
        the last one's), and one look back for a record start per mark that several share. Those
        whose window runs past ``end`` are all kept, for the one-by-one judgement."""
        marks = self.errors
        if marks is None or not tracebacks:
            return tracebacks
        cut = bisect.bisect_left(tracebacks, end - TRACEBACK_WINDOW + 1)
        kept: list[int] = []
        k, count, shared, record = 0, len(marks), -1, -1
        for at in tracebacks[:cut]:
            k = bisect.bisect_right(marks, at, k)
            if k == count:
                break
            mark = marks[k]
            if mark - at >= TRACEBACK_WINDOW:
                continue
            if mark != shared:  # the first traceback this mark follows: the last record start before it
                shared, record = mark, buf.rfind(b"\n[", at, mark + 1)
            if at > record:
                kept.append(at)
        return kept + tracebacks[cut:]

    def _line_no(self, buf: Buffer, pos: int) -> int:
        """The number of the line holding byte ``pos`` (counting from the last position asked)."""
        if pos >= self._pos:
            self._no += counting.newlines(buf, self._pos, pos)
        else:
            self._no -= counting.newlines(buf, pos, self._pos)
        self._pos = pos
        return self._no

    def _emit(self, buf: Buffer, hit: int, start: int, near: bool = False) -> Kind | None:
        """Turn the record holding ``hit`` into an Event (once); its kind, when it made one."""
        record = self._record(buf, hit)
        if record is None:
            return None
        if record.start in self.seen:
            return self.seen[record.start]
        self.seen[record.start] = None
        if record.start < start and any(ident not in self._not_events for _, ident in self.matcher.hits(
                buf, record.start, min(len(buf), start + EDGE), owned=(0, start - record.start))):
            return None  # it began in the bytes before this window, whose scan saw it
        event = self._event(record, self._line_no(buf, record.start), buf)
        if event is None:
            return None
        self.seen[record.start] = event.kind
        if near:  # ahead of the scan by design (finish sorts them in): not a clock going backwards
            self.state.events.append(event)
            self.near_left -= 1
            self.near_budget -= 1
            return event.kind
        self._add(event)
        if event.side == Side.BROKER and event.kind not in LIFECYCLE_KINDS:
            # churn: the window's first few
            if event.kind == Kind.CLIENT_CLOSED_ABRUPTLY and self.state.keep is not None:
                self.churn_near -= 1
                if self.churn_near < 0:
                    return event.kind
            self._near(buf, record.end + 1, start)
        return event.kind

    def _near(self, buf: Buffer, pos: int, start: int) -> None:
        """The lifecycle lines just after a broker-side incident become events (the reconnect that
        pairs with the client's ``Connected to``), a few at most."""
        self.near_left = min(NEAR_EVENTS, self.near_budget)
        if self.near_left <= 0:
            return
        stop = min(len(buf), pos + NEAR_BYTES)
        # a few lines usually hold them: search 4 KB, then 4x more each time, cut at line ends
        # (no expression spans lines, so the hits are those of one search over it all)
        step, low = NEAR_FIRST, pos
        while low < stop and self.near_left > 0:
            high = stop if low + step >= stop else (buf.find(b"\n", low + step, stop) + 1 or stop)
            for at, ident in self.full.hits(buf, low, high):
                if self.near_left <= 0:
                    break
                if ident in self.lifecycle:
                    self._emit(buf, low + at, start, near=True)
            low, step = high, step * 4

    def _dull_traceback(self, buf: Buffer, hit: int) -> bool:
        """Whether a traceback cannot be a connection failure, judged on raw bytes: a task's own
        failure (``raised unexpected``), or no connection error named before the next record."""
        stop = min(len(buf), hit + TRACEBACK_WINDOW)
        marked = stop <= self._end
        if marked:  # the marks say where the next connection error is
            if self.errors is not None:
                k = bisect.bisect_left(self.errors, hit)
                error = self.errors[k] if k < len(self.errors) else stop
            elif self.marks is not None:
                first = self.marks.hits(buf, hit, stop)
                error = hit + first[0][0] if first else stop
            else:
                error = stop
            if error >= stop:
                return True
            stop = error + 1
        nxt = buf.find(b"\n[", hit, stop)
        if marked and nxt >= 0:
            return True  # the next record begins before that error: not this traceback's
        if _tasks_own(buf, hit, self.broker_words, self._own):
            return True
        if marked:
            return False
        return signatures.CONNECTION_ERROR_BYTES.search(buf, hit, stop if nxt < 0 else nxt) is None

    def _json_line(self, buf: Buffer, hit: int) -> Kind | None:
        """The JSON line holding ``hit`` read (once); the kind of the last event it made."""
        line_start, line_end = self._line_at(buf, hit)
        if line_start in self.seen:
            return self.seen[line_start]
        before = len(self.state.events)
        text = buf[line_start:line_end].decode("utf-8", errors="replace").rstrip("\r")  # whole: JSON
        scan_json(iter([(self._line_no(buf, line_start), text)]), self.state, _classify)
        for event in self.state.events[before:]:
            self._check_order(event)
        made = self.state.events[-1].kind if len(self.state.events) > before else None
        self.seen[line_start] = made
        return made

    def _add(self, event: Event) -> None:
        self.state.events.append(event)
        self._check_order(event)

    def _check_order(self, event: Event) -> None:
        if event.ts is None:
            return
        if self.state.last_ts and event.ts < self.state.last_ts - timedelta(seconds=1):
            self.state.out_of_order += 1
        self.state.last_ts = event.ts

    def finish(self) -> None:
        self.state.events.sort(key=lambda e: e.line)  # near-incident lines were added out of order
        self.state.info.lines = self.line_base
        self.state.info.events = len(self.state.events)
        self.state.activity = downsample(self.state.activity)
        if self.state.out_of_order:
            self.state.info.warnings.append(
                f"timestamps go backwards {self.state.out_of_order} time(s); events were re-sorted")


def _unraised(buf: Buffer, tracebacks: list[int], raised: list[int]) -> list[int]:
    """The tracebacks (ascending offsets) that are not a task failure's, told apart before the
    connection-error marks are looked for: those on the line right below the failure's header
    (``raised``: the offsets of RAISED_LINE, ascending; one bisect and two short searches), and
    the chained ones whose predecessor (the traceback before it) was one. A 3.1 app's failing
    tasks log 400,000 a GB. (Those under a task logger's header wait for the marks: most name no
    connection error, and the marks drop them at no cost; _tasks_own reads the others.)"""
    if not raised:
        return tracebacks
    kept: list[int] = []
    previous, previous_raised = 0, False
    for at in tracebacks:
        k = bisect.bisect_left(raised, at)
        header_end = buf.find(b"\n", raised[k - 1], at) if k else -1
        is_raised = header_end >= 0 and buf.rfind(b"\n", header_end + 1, at) < 0
        if not is_raised and previous_raised:  # the chain's sentence, over a blank line, right above
            is_raised = buf.find(CHAIN_WORDS, max(previous, at - CHAIN_REACH), at) >= 0
        if not is_raised:
            kept.append(at)
        previous, previous_raised = at, is_raised
    return kept


def _tasks_own(buf: Buffer, hit: int, broker_words: matcher.Matcher, memo: list[int | bool]) -> bool:
    """Whether the traceback at ``hit`` is the application's own, judged on raw bytes as
    celery_family.application_traceback judges the decoded record: the line above it is a task's
    failure (``Task x[id] raised unexpected: ...``, 3.1's and 4+'s); or the traceback holds no word
    of the broker's client code and either the task logger's header is above it (``x[id]:
    message``, a task's ``logger.exception``) or, under Celery's default header (behind a
    collector's prefix or not), it runs through another service's client. A
    chained traceback (Python 3's "During handling of the above exception ...", a blank line, then
    its own header) is part of the record of the one before it, and is judged as that one is: an
    application whose tasks fail on a lost HTTP connection logs two or three per failure."""
    first = hit
    for _ in range(MAX_CHAIN):
        line_start = buf.rfind(b"\n", 0, first) + 1
        header = buf.rfind(b"\n", 0, max(0, line_start - 1)) + 1
        if buf.find(RAISED_LINE, header, line_start) >= 0 or buf.find(b"raised unexpected", header, line_start) >= 0:
            return True
        above = buf.rfind(b"\n", 0, max(0, header - 1)) + 1  # the chain's sentence, over its blank line
        if not any(buf.find(sentence, above, line_start) >= 0 for sentence in CHAIN_BYTES):
            break
        first = buf.rfind(signatures.TRACEBACK, max(0, above - TRACEBACK_WINDOW), above)
        if first < 0:
            return False
    else:
        return False
    if memo[0] != header:  # the chain's next traceback asks again: its header's answer is kept
        memo[:] = [header, _own_record(buf, header, line_start, first, broker_words)]
    return bool(memo[1])


def _own_record(buf: Buffer, header: int, line_start: int, first: int, broker_words: matcher.Matcher) -> bool:
    """_tasks_own for the record whose header line starts at ``header`` and whose first traceback
    is at ``first`` (its line at ``line_start``): its bytes are those to the next line holding a
    Celery header, else the TRACEBACK_WINDOW after it (a wider net for the broker's words, too wide
    to say which service the record's own frames are of)."""
    logged = TASK_LOGGER_BYTES.search(buf, header, line_start) is not None
    if not logged and HEADER_BYTES.search(buf, header, line_start) is None:
        return False
    stop = min(len(buf), first + TRACEBACK_WINDOW)
    after = NEXT_HEADER.search(buf, first, stop)
    end = after.start() if after else stop
    if broker_words.found(buf, header, end):
        return False
    return logged or (after is not None and APP_CODE_BYTES.search(buf, header, end) is not None)


def note_counted(state: SourceState) -> None:
    """Say what was counted and not kept: the source's meta (totals, and per window) and a warning."""
    if not state.counted:
        return
    totals: dict[str, int] = {}
    for _, _, n, kind in state.counted:
        totals[kind] = totals.get(kind, 0) + n
    state.info.meta["counted"] = totals
    state.info.meta["counted_by_window"] = [[a.isoformat(), b.isoformat(), n, kind]
                                            for a, b, n, kind in sorted(state.counted)][:200]
    said = ", ".join(f"{n} {kind}" for kind, n in sorted(totals.items()))
    state.info.warnings.append(
        f"lines repeated more than {REPEAT_KEEP} times in {CHUNK >> 20} MB were counted past the first {state.keep}, "
        f"not read one by one (the timeline shows the rest): {said}")


def downsample(buckets: list[tuple[datetime, datetime, int]]) -> list[tuple[datetime, datetime, int]]:
    """Merge neighbouring buckets until at most MAX_BUCKETS remain (the curve's shape stays)."""
    while len(buckets) > MAX_BUCKETS:
        buckets = [(a[0], b[1], a[2] + b[2]) for a, b in zip(buckets[::2], buckets[1::2], strict=False)] + (
            [buckets[-1]] if len(buckets) % 2 else [])
    return buckets


def scan_banner(sample: str, info: SourceInfo) -> None:
    """The worker's startup banner: version, transport, pool and concurrency."""
    for key, pattern in BANNER.items():
        m = pattern.search(sample)
        if m and key not in info.meta:
            info.meta[key] = m.group(1)


def scan_json(lines: Iterator[tuple[int, str]], state: SourceState,
              classify: Callable[[str], tuple[str, Any] | None]) -> None:
    """JSON-lines sources (python-json-logger, RabbitMQ's JSON, the fault proxy): small, read whole."""
    for number, line in lines:
        if not line.strip():
            continue
        parsed = json_family.parse_line(line)
        if parsed is None:
            continue
        ts, level, message, obj = parsed
        found = classify(message) if obj.get("source") != "proxy" else None
        if obj.get("source") == "proxy":
            try:
                kind = Kind(str(obj.get("kind")))
            except ValueError:
                kind = Kind.OTHER
            event = Event(ts=ts, source=state.info.name, line=number, side=Side.PROXY, kind=kind,
                          text=line.strip(), peer=str(obj.get("client") or "") or None, level=level or None,
                          signature="celery-doctor.proxy",
                          detail={k: obj[k] for k in ("fault", "message", "upstream") if k in obj})
        elif found is not None:
            family, sig = found
            side = Side.CLIENT if family == "celery" else Side.BROKER
            error = json_family.exception_text(obj).strip().splitlines()[-1:] or None
            peer_match = PEER.search(message)
            event = Event(ts=ts, source=state.info.name, line=number, side=side, kind=sig.kind,
                          text=line.strip()[:MAX_TEXT], peer=peer_match.group(1) if peer_match else None,
                          error=error[0] if error else None, signature=sig.id, level=level or None)
        else:
            continue
        if event is not None:
            state.events.append(event)
    state.info.events = len(state.events)


def _classify(message: str) -> tuple[str, signatures.Signature] | None:
    """A JSON line's message against the line families' catalogue entries."""
    for family in families.LINE_FAMILIES:
        sig = family.match(message)
        if sig is not None:
            return family.name, sig
    return None
