"""Stream one log source and turn its rare interesting lines into Events.

A worker log of a gigabyte is mostly task lines. Parsing every line would cost minutes, so the
reader walks the file in large chunks, finds the catalogue's literals with ``bytes.find``, and
parses only the records around those hits (plus a bounded look back at the task lines before a
client-side failure, to tell idle from busy). Memory is one chunk plus a bounded tail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery_doctor.ingest import families, prefixes, signatures
from celery_doctor.ingest.families import celery as celery_family
from celery_doctor.ingest.families import json as json_family
from celery_doctor.ingest.families.celery import FAMILY as CELERY
from celery_doctor.ingest.families.rabbitmq import PEER
from celery_doctor.ingest.interface import Start
from celery_doctor.model import Event, Kind, Side, SourceInfo

CHUNK = 16 * 1024 * 1024
SAMPLE = 64 * 1024  # the load curve counts task lines in this much of each slice, then scales
MAX_RECORD_LINES = 60
MAX_TEXT = 16 * 1024
HEAD_SCAN = 256 * 1024  # the start of a file is searched for the whole catalogue (banner, readiness)
LOOKBACK_TASKS = 50
LOOKBACK_BYTES = 256 * 1024
LOAD_WINDOW_S = 60.0
MAX_BUCKETS = 400

RUNTIME = re.compile(r" succeeded in (\d+(?:\.\d+)?)s")
TASK_ID = re.compile(r"(?:Task |Received task: )([\w.:\-]+)\[([^\]\s]+)\]")
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

    def services_family(self, source: str) -> str:
        service = source.rsplit(":", 1)[-1]
        return f"{self.services.get(service, 'unknown')} (docker-compose)"


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


strip_prefix = prefixes.strip


def record_start(family: str, line: str, year: int) -> Start | None:
    found = families.get(family)
    return found.start(line, year) if found is not None and found.line_based else None


def family_of(line: str, year: int) -> str | None:
    """For multi-service files: which family a (prefix-stripped) line belongs to."""
    found = families.family_of(line, year)
    return found.name if found else None


class Scanner:
    """Scans one source's chunks; ``feed`` per chunk, ``finish`` at the end."""

    def __init__(self, state: SourceState) -> None:
        self.state = state
        names = tuple(f.name for f in families.LINE_FAMILIES) if state.family == "multi" else (state.family,)
        self.full_scan = signatures.scan_for(names, None)
        self.scan = signatures.scan_for(names, state.info.meta.get("layout"))
        self.first_chunk = True
        # 3.1 logs "Received task: x[id]", 4.0+ "Task x[id] received"
        self.arrival_literal = b"Received task" if state.info.meta.get("layout") == "celery-3.1" else b"] received"
        self.client_like = "celery" in names
        self.tail = b""
        self.line_base = 0  # physical line number of the first byte of the current chunk
        self.seen: set[int] = set()

    # -- helpers over raw bytes ---------------------------------------------------------------
    @staticmethod
    def _line_at(buf: bytes, pos: int) -> tuple[int, int]:
        start = buf.rfind(b"\n", 0, pos) + 1
        end = buf.find(b"\n", pos)
        return start, len(buf) if end < 0 else end

    @staticmethod
    def _decode(raw: bytes) -> str:
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
    def _record(self, buf: bytes, pos: int) -> Record | None:
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
        while 0 <= cursor < len(buf) - 1 and len(lines) < MAX_RECORD_LINES:
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
            lines.append(raw)
            cursor = nxt_end
        return Record(start=start, lines=lines, service=service, prefix_ts=pts)

    def _continues(self, family: str, head: Start, buf: bytes, start: int) -> bool:
        """RabbitMQ 3.9+: a line with the same ts+pid as the one before continues it."""
        if family != "rabbitmq" or not head.key or start == 0:
            return False
        prev_start, prev_end = self._line_at(buf, start - 1)
        prev, _, _ = self._split(self._decode(buf[prev_start:prev_end]))
        return prev.startswith(head.key)

    def _event(self, record: Record, line_no: int, buf: bytes) -> Event | None:
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
        signature = sig.id if sig else ("celery.traceback.connection_error" if "Traceback (most recent" in message
                                        else "python.exception.connection_error")
        return Event(ts=ts, source=source, line=line_no, side=side, kind=kind, text=text, peer=peer,
                     error=error, signature=signature, level=head.level or None, detail=detail)

    @staticmethod
    def _traceback_kind(body: str, lines: list[str], bare: bool = False) -> Kind | None:
        """A logged traceback ending in a connection error, outside a task's own failure; in an
        undated record also a bare exception line that names one (a pasted error alone)."""
        if "] raised" in body or "raised unexpected" in body:
            return None
        if "Traceback (most recent call last)" not in body + "\n".join(lines) and not (
                bare and celery_family.EXCEPTION.match(body.strip())):
            return None
        last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
        if not signatures.CONNECTION_ERROR.search(last):
            return None
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
            self._activity(buf)
        self.line_base += buf.count(b"\n")

    # -- task activity -------------------------------------------------------------------------
    def _task_lines_before(self, buf: bytes, pos: int
                           ) -> Iterator[tuple[datetime, str, str, str, float | None]]:
        """(ts, 'received'|'done', task id, name, runtime), newest first, up to LOOKBACK_TASKS lines."""
        floor = max(0, pos - LOOKBACK_BYTES)
        nexts = {lit: buf.rfind(lit, floor, pos) for lit in signatures.TASK_LITERALS}
        for _ in range(LOOKBACK_TASKS):
            lit, at = max(nexts.items(), key=lambda kv: kv[1])
            if at < 0:
                return
            start, end = self._line_at(buf, at)
            nexts[lit] = buf.rfind(lit, floor, start)
            line, _, _ = self._split(self._decode(buf[start:end]))
            head = CELERY.start(line, 0)
            m = TASK_ID.search(line)
            if head is None or head.ts is None or m is None:
                continue
            state = "received" if lit in (b"] received", b"Received task") else "done"
            runtime = RUNTIME.search(line)
            yield head.ts, state, m.group(2), m.group(1), float(runtime.group(1)) if runtime else None

    def _task_context(self, buf: bytes, pos: int, ts: datetime) -> dict[str, Any]:
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
                    since = task_ts - timedelta(seconds=runtime)
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

    def _activity(self, chunk: bytes) -> None:
        """The load curve: task arrivals per slice of the chunk, counted in a sample of each slice
        (exact for small files) and dated by the slice's first and last task lines."""
        arrivals = self.arrival_literal
        slice_len = min(1024 * 1024, max(4096, len(chunk) // 16))
        for offset in range(0, len(chunk), slice_len):
            end = min(len(chunk), offset + slice_len)
            sample_end = min(end, offset + SAMPLE)
            count = chunk.count(arrivals, offset, sample_end) * (end - offset) / max(1, sample_end - offset)
            if not count:
                continue
            first = self._first_ts(chunk, offset, end)
            last = self._last_task_ts(chunk, offset, end)
            if first and last:
                self.state.activity.append((first, max(first, last), round(count)))
                self.state.last_task = max(self.state.last_task or last, last)

    def _first_ts(self, chunk: bytes, start: int, end: int) -> datetime | None:
        pos = start if start == 0 else chunk.find(b"\n", start, end) + 1
        for _ in range(20):
            if pos <= 0 and start != 0:
                return None
            nl = chunk.find(b"\n", pos, end)
            if nl < 0:
                return None
            line, _, _ = self._split(self._decode(chunk[pos:nl]))
            head = CELERY.start(line, 0)
            if head and head.ts:
                return head.ts
            pos = nl + 1
        return None

    def _last_task_ts(self, chunk: bytes, start: int, end: int) -> datetime | None:
        at = max(chunk.rfind(lit, max(start, end - SAMPLE), end) for lit in signatures.TASK_LITERALS)
        if at < 0:
            return None
        s, e = self._line_at(chunk, at)
        line, _, _ = self._split(self._decode(chunk[s:e]))
        head = CELERY.start(line, 0)
        return head.ts if head else None

    # -- driving ------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Scan one chunk that ends at a line boundary."""
        # the first chunk is searched for the whole catalogue (readiness), the rest with the fast scan
        hits = [m.start() for m in self.scan.finditer(chunk)]
        line_pos, line_no = 0, self.line_base + 1  # line_no is the number of the line at line_pos
        if self.first_chunk and self.full_scan is not self.scan:
            hits = sorted(set(hits) | {m.start() for m in self.full_scan.finditer(chunk, 0, HEAD_SCAN)})
        self.first_chunk = False
        for hit in hits:
            # look back into the previous chunk only for hits near this one's start (saves a copy)
            near_start = hit < LOOKBACK_BYTES and bool(self.tail)
            buf = self.tail + chunk[: hit + LOOKBACK_BYTES] if near_start else chunk
            shift = len(self.tail) if near_start else 0
            record = self._record(buf, hit + shift)
            if record is None or record.start - shift in self.seen or record.start < shift:
                continue
            self.seen.add(record.start - shift)
            if record.start - shift < line_pos:  # a record that began before the last one
                line_pos, line_no = 0, self.line_base + 1
            line_no += chunk.count(b"\n", line_pos, record.start - shift)
            line_pos = record.start - shift
            event = self._event(record, line_no, buf)
            if event is not None:
                self._add(event)
        if self.client_like:
            self._activity(chunk)
            self.tail = chunk[-LOOKBACK_BYTES:]
        self.seen.clear()
        self.line_base = line_no - 1 + chunk.count(b"\n", line_pos)  # one newline pass per chunk in all

    def _add(self, event: Event) -> None:
        if event.ts is None:
            self.state.events.append(event)
            return
        if self.state.last_ts and event.ts < self.state.last_ts - timedelta(seconds=1):
            self.state.out_of_order += 1
        self.state.last_ts = event.ts
        self.state.events.append(event)

    def finish(self) -> None:
        self.state.info.lines = self.line_base
        self.state.info.events = len(self.state.events)
        self.state.activity = downsample(self.state.activity)
        if self.state.out_of_order:
            self.state.info.warnings.append(
                f"timestamps go backwards {self.state.out_of_order} time(s); events were re-sorted")


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
            error = str(obj.get("exc_info") or "").strip().splitlines()[-1:] or None
            peer_match = PEER.search(message)
            event = Event(ts=ts, source=state.info.name, line=number, side=side, kind=sig.kind,
                          text=line.strip()[:MAX_TEXT], peer=peer_match.group(1) if peer_match else None,
                          error=error[0] if error else None, signature=sig.id, level=level or None)
        else:
            continue
        if event is not None:
            state.events.append(event)
    state.info.events = len(state.events)
