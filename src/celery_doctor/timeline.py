"""Merge events from many sources onto one clock.

Worker and broker usually run on different hosts or containers whose clocks (or time zones:
two hours apart is common in real reports) differ. Some events must coincide: a client's
``Connected to`` and the broker's ``accepting AMQP connection``, a client reset and the
broker's ``client unexpectedly closed TCP connection``, a refused login on both sides. Each
source's offset is estimated from such pairs before anything is matched across sources.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery_doctor.model import Event, Kind, Side, SourceInfo

if TYPE_CHECKING:
    from celery_doctor.ingest import IngestResult

# (client kind, broker kind): pairs of events that describe the same moment from both sides.
COINCIDING = (
    (Kind.CONNECTED, Kind.CONNECTION_ACCEPTED),
    (Kind.CONNECTION_LOST, Kind.CLIENT_CLOSED_ABRUPTLY),
    (Kind.CONNECTION_LOST, Kind.BROKER_FORCED_CLOSE),
    (Kind.CANNOT_CONNECT, Kind.AUTH_REFUSED),
    (Kind.CANNOT_CONNECT, Kind.ACCESS_REFUSED),
)
# Pairs whose lag can be long (the client notices a broker-side close when it next reads):
# trusted only for offsets that look like a time-zone difference.
ZONE_ONLY = (
    (Kind.CONNECTION_LOST, Kind.HEARTBEAT_MISSED_CLIENT),
    (Kind.HEARTBEAT_MISSED_BROKER, Kind.HEARTBEAT_MISSED_CLIENT),
)
# a client's "Cannot connect" pairs with the broker's refused login only when it says so: a
# connection refused or timed out never reached the broker (another client's wrong password would
# otherwise set the clock of a broker that many clients share)
REFUSED_AT_LOGIN = {Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED}
REFUSED_LOGIN = re.compile(r"ACCESS_REFUSED|\(403\)|login refused|\(530\)|NOT_ALLOWED|vhost|"
                           r"WRONGPASS|invalid password|invalid username-password", re.I)
MATCH_TOLERANCE_S = 1.5  # accept->Connected and reset->broker log lag is well under this
SAME_CLOCK_S = 1.5  # smaller estimated offsets are noise, not a clock difference
ZONE_STEP_S = 900  # time zones are whole quarter hours apart
MAX_OFFSET_S = 14 * 3600


@dataclass
class Timeline:
    events: list[Event]  # dated events of all sources, on the reference clock, in time order
    sources: list[SourceInfo]
    # events whose lines carry no time (a pasted bare traceback): by source, in input order;
    # rules that need no time may use them, with less confidence than dated evidence
    undated: list[Event] = field(default_factory=list)
    activity: dict[str, list[tuple[datetime, datetime, int]]] = field(default_factory=dict)
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    _times: dict[tuple[str, Kind], list[datetime]] | None = field(default=None, repr=False)
    _client_sources: set[str] | None = field(default=None, repr=False)

    def client_sources(self) -> set[str]:
        """The sources with client-side events (indexed once: rules ask per incident)."""
        if self._client_sources is None:
            self._client_sources = {e.source for e in self.events if e.side == Side.CLIENT}
        return self._client_sources

    def times(self, source: str, kind: Kind) -> list[datetime]:
        """When ``source`` logged events of ``kind``, in order (indexed once)."""
        if self._times is None:
            self._times = {}
            for e in self.events:
                self._times.setdefault((e.source, e.kind), []).append(e.at)
        return self._times.get((source, kind), [])

    def covers(self, source: str, ts: datetime, margin_s: float = 2.0) -> bool:
        """Whether ``source`` was logging at ``ts`` (so its silence then means something)."""
        span = self.spans.get(source)
        if span is None:
            return False
        margin = timedelta(seconds=margin_s)
        return span[0] - margin <= ts <= span[1] + margin

    def sides(self) -> set[Side]:
        return {e.side for e in self.events}


def build(result: IngestResult) -> Timeline:
    """Estimate clock offsets, shift every source onto the reference clock, sort."""
    by_source: dict[str, list[Event]] = {}
    undated: list[Event] = []
    for event in result.events:
        if event.ts is None:
            undated.append(event)
        else:
            by_source.setdefault(event.source, []).append(event)
    infos = {s.name: s for s in result.sources}
    offsets = _estimate_offsets(by_source, infos)

    events: list[Event] = []
    activity: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for name, evs in by_source.items():
        shift = timedelta(seconds=offsets.get(name, 0.0))
        events.extend(replace(e, ts=e.at + shift) if shift else e for e in evs)
    for name, curve in result.activity.items():
        shift = timedelta(seconds=offsets.get(name, 0.0))
        activity[name] = [(a + shift, b + shift, n) for a, b, n in curve]
    events.sort(key=lambda e: e.at)  # stable: same-time lines keep file order
    return Timeline(events=events, sources=result.sources, undated=undated, activity=activity,
                    spans=_spans(events, activity))


def _spans(events: list[Event], activity: dict[str, list[tuple[datetime, datetime, int]]]
           ) -> dict[str, tuple[datetime, datetime]]:
    spans: dict[str, tuple[datetime, datetime]] = {}

    def widen(name: str, first: datetime, last: datetime) -> None:
        old = spans.get(name)
        spans[name] = (first, last) if old is None else (min(old[0], first), max(old[1], last))

    for e in events:
        widen(e.source, e.at, e.at)
    for name, curve in activity.items():
        for a, b, _ in curve:
            widen(name, a, b)
    return spans


def _side_of(events: list[Event]) -> Side | None:
    sides = {e.side for e in events}
    return sides.pop() if len(sides) == 1 else None


def _estimate_offsets(by_source: dict[str, list[Event]], infos: dict[str, SourceInfo]
                      ) -> dict[str, float]:
    """Offsets (seconds to add) per source, relative to the first client source."""
    clients = [n for n, evs in by_source.items() if _side_of(evs) == Side.CLIENT]
    brokers = [n for n, evs in by_source.items() if _side_of(evs) == Side.BROKER]
    if not clients or not brokers:
        return {}
    offsets: dict[str, float] = {clients[0]: 0.0}
    pending = [n for n in clients[1:] + brokers]
    progress = True
    while pending and progress:
        progress = False
        for name in list(pending):
            for anchor in list(offsets):
                if _side_of(by_source[name]) == _side_of(by_source[anchor]):
                    continue  # only client<->broker pairs must coincide
                client, broker = (anchor, name) if name in brokers else (name, anchor)
                found = _pair_offset(by_source[client], by_source[broker])
                if found is None:
                    continue
                delta, basis = found  # broker clock minus client clock
                shift = -delta if name == broker else delta
                offsets[name] = offsets[anchor] + shift
                if abs(offsets[name]) >= SAME_CLOCK_S:
                    info = infos.get(name)
                    if info is not None:
                        info.offset_s = offsets[name]
                        info.offset_basis = basis
                pending.remove(name)
                progress = True
                break
    return {n: o for n, o in offsets.items() if abs(o) >= SAME_CLOCK_S}


def _pair_offset(client: list[Event], broker: list[Event]) -> tuple[float, str] | None:
    """Best (broker - client) clock difference from coinciding events, or None if unsure."""
    best: tuple[int, float, list[float], str] | None = None
    for client_kind, broker_kind in COINCIDING + ZONE_ONLY:
        c_ts = [e.at.timestamp() for e in client if e.kind == client_kind
                and (broker_kind not in REFUSED_AT_LOGIN or REFUSED_LOGIN.search(f"{e.error or ''} {e.text}"))][:500]
        b_ts = sorted(e.at.timestamp() for e in broker if e.kind == broker_kind)
        if not c_ts or not b_ts:
            continue
        candidates: set[float] = set()
        for c in c_ts[:100]:
            lo = bisect.bisect_left(b_ts, c - MAX_OFFSET_S)
            hi = bisect.bisect_right(b_ts, c + MAX_OFFSET_S)
            candidates.update(round((b - c) * 2) / 2 for b in b_ts[lo:hi][:200])
        for delta in candidates:
            if (client_kind, broker_kind) in ZONE_ONLY and not _zone_like(delta):
                continue
            matched = _matches(c_ts, b_ts, delta)
            key = (len(matched), -abs(delta))
            if best is None or key > (best[0], -abs(best[1])):
                basis = f"{len(matched)} x {client_kind.value}~{broker_kind.value}"
                best = (len(matched), delta, matched, basis)
    if best is None:
        return None
    count, _, matched, basis = best
    import statistics  # only here, where two sources' clocks are matched: its import costs ~4 ms

    delta = statistics.median(matched)
    if abs(delta) < SAME_CLOCK_S:
        return 0.0, basis
    if count >= 2 or _zone_like(delta):
        return delta, basis
    return None


def _zone_like(delta: float) -> bool:
    """A whole number of quarter hours (give or take the logging lag): a time-zone offset."""
    return abs(delta) >= ZONE_STEP_S - 3 and abs(delta - round(delta / ZONE_STEP_S) * ZONE_STEP_S) <= 3.0


def _matches(c_ts: list[float], b_ts: list[float], delta: float) -> list[float]:
    """The client events that have a broker event at client + delta (each counted once)."""
    found = []
    for c in c_ts:
        target = c + delta
        i = bisect.bisect_left(b_ts, target - MATCH_TOLERANCE_S)
        if i < len(b_ts) and b_ts[i] <= target + MATCH_TOLERANCE_S:
            found.append(b_ts[i] - c)
    return found


# The report's timeline: what a person reads. A log with thousands of events (a flapping worker, a
# broker's every accept near its incidents) gives the events of each incident and those close to
# them, and counts for the rest, so the report does not grow with the log.
REPORT_EVENTS = 2000
AROUND_S = 30.0


def for_report(events: list[Event], incidents: list[Any]) -> tuple[list[Event], dict[str, Any]]:
    """(the events a report shows, a summary of those left out: total and per kind)."""
    if len(events) <= REPORT_EVENTS:
        return events, {}
    evidence = {id(e) for inc in incidents for e in inc.events}
    spans = sorted((min(e.at for e in inc.events), max(e.at for e in inc.events))
                   for inc in incidents if any(e.ts is not None for e in inc.events))
    starts = [a for a, _ in spans]
    around = timedelta(seconds=AROUND_S)

    def near(e: Event) -> bool:
        k = bisect.bisect_right(starts, e.at + around)
        return any(a - around <= e.at <= b + around for a, b in spans[max(0, k - 3):k])

    first = [e for e in events if id(e) in evidence]
    if len(first) > REPORT_EVENTS:  # more incidents than a page holds: the first and the last ones
        first = first[:REPORT_EVENTS // 2] + first[-(REPORT_EVENTS // 2):]
    room = REPORT_EVENTS - len(first)
    context = [e for e in events if id(e) not in evidence and near(e)][:room] if room > 0 else []
    kept = {id(e) for e in first} | {id(e) for e in context}
    shown = [e for e in events if id(e) in kept]
    left = [e for e in events if id(e) not in kept]
    by_kind: dict[str, int] = {}
    for e in left:
        by_kind[e.kind.value] = by_kind.get(e.kind.value, 0) + 1
    return shown, {"events_left_out": len(left), "by_kind": dict(sorted(by_kind.items())),
                   "first": left[0].at.isoformat() if left else None,
                   "last": left[-1].at.isoformat() if left else None}
