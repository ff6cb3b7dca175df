"""Events -> Incidents: one per connection failure, with who closed it and in which phase.

The rules follow ARCHITECTURE.md ("How who closed it is decided"): what each side said at the
same moment, what it did *not* say while its log was running, and what the client was doing
(starting, idle, busy) just before.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from celery_doctor.model import ClosedBy, Event, Incident, Kind, Phase, Side
from celery_doctor.timeline import Timeline

# Events that start or extend an incident, per side.
ANCHORS = {
    Side.CLIENT: {Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT, Kind.HEARTBEAT_MISSED_BROKER,
                  Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED, Kind.TLS_ERROR, Kind.WORKER_CRASH},
    Side.BROKER: {Kind.HEARTBEAT_MISSED_CLIENT, Kind.CLIENT_CLOSED_ABRUPTLY,
                  Kind.BROKER_FORCED_CLOSE, Kind.SERVER_CLOSED_IDLE, Kind.SERVER_CLOSED_LIMIT,
                  Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED, Kind.CONSUMER_TIMEOUT, Kind.TLS_ERROR,
                  Kind.CHANNEL_ERROR},
    Side.PROXY: {Kind.PROXY_CUT, Kind.PROXY_BLACKHOLE, Kind.PROXY_REFUSE},
    Side.HARNESS: set(),
}
# Events that explain an incident when they happen just before or during it.
CONTEXT = {Kind.BROKER_STOP, Kind.BROKER_START, Kind.ALARM_SET, Kind.FAILOVER,
           Kind.WORKER_SHUTDOWN, Kind.PROXY_HEAL, Kind.BLOCKED}
REFUSALS = {Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED}
GAP_S = 5.0  # events closer than this belong to the same failure
SAME_MOMENT_S = 1.5  # closes of several connections this close together are one cut
CONTEXT_BEFORE_S = 30.0
IDLE_MIN_S = 2.0  # no task for this long before a failure (and none running) counts as idle
REGULAR_CV = 0.25  # intervals varying less than this (std/mean) make a period

# Error families, from the exception text the client logged (last traceback line).
ERROR_FAMILIES = (
    ("auth", re.compile(r"ACCESS_REFUSED|\(403\)|login refused|Couldn't log in|WRONGPASS|NOAUTH|"
                        r"invalid password|AuthenticationError|invalid username-password", re.I)),
    ("vhost", re.compile(r"\(530\)|NOT_ALLOWED|access to vhost|vhost .* not found", re.I)),
    ("forced", re.compile(r"CONNECTION_FORCED|\(320\)|broker forced connection closure", re.I)),
    ("heartbeat", re.compile(r"Too many heartbeats missed|heartbeat timeout", re.I)),
    ("tls", re.compile(r"SSL|certificate|TLS", re.I)),
    ("refused", re.compile(r"Connection refused|Errno 111\b|ECONNREFUSED|\b111\b.*refused", re.I)),
    ("dns", re.compile(r"Name or service not known|nodename nor servname|getaddrinfo|"
                       r"Temporary failure in name resolution|Errno -[23]\b", re.I)),
    ("unreachable", re.compile(r"No route to host|Errno 113\b|Network is unreachable|Errno 101\b", re.I)),
    ("reset", re.compile(r"reset by peer|Errno 104\b|ECONNRESET|\(104,|10054", re.I)),
    ("broken_pipe", re.compile(r"Broken pipe|Errno 32\b|EPIPE|\(32,", re.I)),
    ("eof", re.compile(r"Server unexpectedly closed|Connection closed by server|Socket closed|"
                       r"end-of-stream|Bad frame read|\bEOF\b|connection already closed", re.I)),
    # RabbitMQ's consumer_timeout, as the client quotes it: a broker-side close, not a socket timeout
    ("ack_timeout", re.compile(r"delivery acknowledgement on channel \d+ timed out|consumer ack timed out", re.I)),
    ("timeout", re.compile(r"timed out|Errno 110\b|ETIMEDOUT|Timeout (?:reading|writing)", re.I)),
)


def error_family(event: Event) -> str | None:
    """The failure family of a client event ('reset', 'eof', 'auth', ...), None if unknown."""
    return _family(event.error or "", event.text)


def text_family(text: str) -> str | None:
    """The failure family of a line of text (a worker's error line, not a parsed event)."""
    return _family("", text)


# The same patterns, matched on lower-cased text: Python's re.I compares every character both ways
# and is three times slower on the long records (tracebacks) these run on. No pattern holds an
# escape whose meaning lower-casing changes (\S, \D, \W, \B).
assert not any(re.search(r"\\[SDWBAZ]", p.pattern) for _, p in ERROR_FAMILIES)
_LOWERED = tuple((name, re.compile(pattern.pattern.lower())) for name, pattern in ERROR_FAMILIES)
# per family, words of which every match of its pattern holds one (lower-cased; test_logs_incidents checks
# it alternative by alternative): a family's pattern runs only where one is in the text. Most
# events name no family, and a traceback's record is searched thirteen times otherwise (38 us each)
FAMILY_WORDS = {
    "auth": ("access_refused", "403", "login refused", "couldn't log in", "wrongpass", "noauth", "invalid password",
             "authenticationerror", "invalid username-password"),
    "vhost": ("530", "not_allowed", "access to vhost", "not found"),
    "forced": ("connection_forced", "320", "broker forced connection closure"),
    "heartbeat": ("too many heartbeats missed", "heartbeat timeout"),
    "tls": ("ssl", "certificate", "tls"),
    "refused": ("connection refused", "errno 111", "econnrefused", "refused"),
    "dns": ("name or service not known", "nodename nor servname", "getaddrinfo",
            "temporary failure in name resolution", "errno -"),
    "unreachable": ("no route to host", "errno 113", "network is unreachable", "errno 101"),
    "reset": ("reset by peer", "errno 104", "econnreset", "(104,", "10054"),
    "broken_pipe": ("broken pipe", "errno 32", "epipe", "(32,"),
    "eof": ("server unexpectedly closed", "connection closed by server", "socket closed", "end-of-stream",
            "bad frame read", "eof", "connection already closed"),
    "ack_timeout": ("timed out",),
    "timeout": ("timed out", "errno 110", "etimedout", "timeout "),
}
_SEARCHED = tuple((name, FAMILY_WORDS[name], pattern) for name, pattern in _LOWERED)


@lru_cache(maxsize=65536)  # every rule asks of every event: a report's events all stay remembered
def _family(error: str, text: str) -> str | None:
    joined = f"{error}\n{text}".lower()
    for name, words, pattern in _SEARCHED:
        if any(word in joined for word in words) and pattern.search(joined):
            return name
    return None


@dataclass
class _Draft:
    events: list[Event] = field(default_factory=list)
    context: list[Event] = field(default_factory=list)
    reconnected_at: datetime | None = None

    @property
    def first(self) -> datetime:
        return self.events[0].at

    @property
    def last(self) -> datetime:
        return self.events[-1].at

    def has(self, side: Side, *kinds: Kind) -> bool:
        return any(e.side == side and (not kinds or e.kind in kinds) for e in self.events)


@dataclass
class IncidentSet:
    incidents: list[Incident]
    summary: dict[str, Any]


def detect(timeline: Timeline) -> IncidentSet:
    drafts = _group(timeline)
    last_connect = _last_connect_index(timeline)

    incidents = []
    for number, draft in enumerate(drafts, 1):
        verdict_id, closed_by, reason, confidence = _verdict(draft, timeline)
        uptime, idle = _uptime_and_idle(draft, last_connect)
        phase = _phase(draft, timeline, idle)
        outage = (draft.reconnected_at - draft.first).total_seconds() if draft.reconnected_at else None
        incidents.append(Incident(
            id=number, events=draft.context + draft.events, closed_by=closed_by, phase=phase,
            reason=reason, confidence=confidence, idle_before_s=idle, uptime_s=uptime,
            outage_s=outage, verdict_id=verdict_id,
        ))
    for inc in incidents:
        inc.events.sort(key=lambda e: e.at)
    _set_periods(incidents)
    return IncidentSet(incidents=incidents, summary=_summary(timeline, incidents))


def _group(timeline: Timeline) -> list[_Draft]:
    """Cluster anchor events in time; a client's retries stay with its open outage."""
    drafts: list[_Draft] = []
    open_outage: dict[str, _Draft] = {}  # client source -> incident not yet reconnected
    reconnected: dict[str, datetime] = {}  # client source -> its last "Connected to"
    gap = timedelta(seconds=GAP_S)
    events = timeline.events
    accepted = {key: e.at for e in events if e.kind == Kind.CONNECTION_ACCEPTED and (key := connection_key(e))}
    for index, e in enumerate(events):
        if e.kind == Kind.CONNECTED and e.side == Side.CLIENT:
            reconnected[e.source] = e.at
            draft = open_outage.pop(e.source, None)
            if draft is not None and draft.reconnected_at is None:
                draft.reconnected_at = e.ts
            continue
        if e.kind in CONTEXT:
            continue
        if e.kind not in ANCHORS[e.side]:
            continue
        target = None
        if e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT and e.source in open_outage:
            target = open_outage[e.source]
        elif drafts and _closes_of_its_own(drafts[-1], events, index, accepted):
            pass  # a failure of its own: a new incident
        elif drafts and e.at - drafts[-1].last <= gap and _same_failure(drafts[-1], e, reconnected):
            target = drafts[-1]
        elif e.side == Side.CLIENT:
            target = _late_notice(drafts, e)
        elif e.kind == Kind.HEARTBEAT_MISSED_CLIENT:
            target = _broker_notices_later(drafts, e, accepted)
        if target is None:
            target = _Draft()
            drafts.append(target)
        target.events.append(e)
        if e.side == Side.CLIENT:
            open_outage[e.source] = target
    _attach_context(drafts, timeline)
    return drafts


def _closes_of_its_own(draft: _Draft, events: list[Event], index: int, accepted: dict[str, datetime]) -> bool:
    """Whether the client failure at ``events[index]`` has broker-side closes of its own at the same
    moment, on connections ``draft`` does not hold and that were open before it began: then the
    draft (begun seconds earlier by another connection's close, on a broker that many clients
    share) is another failure, and the client's loss starts its own incident with the closes that
    came with it. A connection accepted after the draft began is the client's reconnect, dropped
    as it reacts to the failure: a consequence, not a failure of its own."""
    e = events[index]
    if e.side != Side.CLIENT or draft.has(Side.CLIENT) or not draft.has(Side.BROKER):
        return False
    if (e.at - draft.first).total_seconds() <= SAME_MOMENT_S:
        return False
    held = {connection_key(d) for d in draft.events}
    moment = timedelta(seconds=SAME_MOMENT_S)
    for other in (*events[max(0, index - 50):index], *events[index + 1:index + 50]):
        if (other.side == Side.BROKER and other.kind in ANCHORS[Side.BROKER]
                and abs(other.at - e.at) <= moment and (key := connection_key(other)) not in held | {None}
                and not (key in accepted and accepted[key] > draft.first)):
            return True
    return False


def connection_key(event: Event) -> str | None:
    """Which connection a broker-side event is about: RabbitMQ's connection pid, else the client
    address (ip:port, Redis addr=), None when the line names none."""
    return event.detail.get("conn") or event.peer


def _same_failure(draft: _Draft, event: Event, reconnected: dict[str, datetime]) -> bool:
    """Whether ``event`` belongs to the failure ``draft`` describes, not to the next one.

    One cut closes every connection of a worker at the same moment (consumer, pidbox, events),
    so closes of several connections within SAME_MOMENT_S are one incident; a close of another
    connection seconds later is another failure, however close in time. A client that has
    connected again since the draft started is failing anew."""
    if event.side == Side.CLIENT:
        since = reconnected.get(event.source)
        return since is None or since <= draft.first
    key = connection_key(event)
    if key is None or event.side != Side.BROKER:  # the fault proxy's own log follows the outage
        return True
    closes = [e for e in draft.events if e.side == event.side and connection_key(e) is not None]
    if not closes or any(connection_key(e) == key for e in closes):
        return True
    # a refused login is a new connection's own failure at connect: it is no part of another
    # connection's cut, nor is a cut part of it (another client's wrong password next to a close)
    if event.kind in REFUSALS or any(e.kind in REFUSALS for e in closes):
        return False
    # Measured from the cut itself or from the client's reaction to it (a worker that notices
    # the loss drops its other connections), never from the previous close: under churn, closes
    # of unrelated connections 1 s apart would otherwise chain into one endless incident.
    moments = [draft.first, *(e.at for e in draft.events if e.side == Side.CLIENT)]
    return any(abs((event.at - moment).total_seconds()) <= SAME_MOMENT_S for moment in moments)


def _before(draft: _Draft, kinds: set[Kind]) -> bool:
    """Context of these kinds that really came first (at or just before the failure); a shutdown
    or broker stop logged after the failure is what followed it, not its cause."""
    limit = draft.first + timedelta(seconds=SAME_MOMENT_S)
    return any(e.kind in kinds and e.at <= limit for e in draft.context)


HEARTBEAT_TIMEOUT = re.compile(r"missed heartbeats from client, timeout: (\d{1,9})s")  # a sane count of seconds


def _broker_notices_later(drafts: list[_Draft], event: Event, accepted: dict[str, datetime]) -> _Draft | None:
    """The broker's own detection of a dead flow the client gave up on first: a client that
    stopped hearing the broker's heartbeats reconnects at once, and the broker closes the old
    connection up to one heartbeat timeout later ("missed heartbeats from client, timeout: Ns").
    Join the client's heartbeat incident, if the closed connection was open before it began."""
    m = HEARTBEAT_TIMEOUT.search(event.text)
    if m is None:
        return None
    within = timedelta(seconds=int(m.group(1)) + SAME_MOMENT_S)
    key = connection_key(event)
    for draft in reversed(drafts[-3:]):
        if draft.has(Side.BROKER) or not draft.has(Side.CLIENT):
            continue
        if not any(error_family(c) == "heartbeat" for c in draft.events if c.side == Side.CLIENT):
            continue
        opened = accepted.get(key) if key else None
        if timedelta(0) <= event.at - draft.first <= within and (opened is None or opened <= draft.first):
            return draft
    return None


def _late_notice(drafts: list[_Draft], event: Event) -> _Draft | None:
    """A client noticing, late, a close the broker already made (after a long task, it reads
    again only when the task ends): join the broker-only heartbeat incident before it. A client
    that gave up on the broker's heartbeats noticed a dead flow by itself: not a late notice."""
    if event.kind not in (Kind.CONNECTION_LOST, Kind.HEARTBEAT_MISSED_BROKER) or error_family(event) == "heartbeat":
        return None
    for draft in reversed(drafts[-3:]):
        if draft.has(Side.CLIENT):
            return None
        if draft.has(Side.BROKER, Kind.HEARTBEAT_MISSED_CLIENT, Kind.CONSUMER_TIMEOUT,
                     Kind.SERVER_CLOSED_IDLE):
            return draft
    return None


def _attach_context(drafts: list[_Draft], timeline: Timeline) -> None:
    context = [e for e in timeline.events if e.kind in CONTEXT]
    before = timedelta(seconds=CONTEXT_BEFORE_S)
    gap = timedelta(seconds=GAP_S)
    for draft in drafts:
        draft.context = [e for e in context if draft.first - before <= e.at <= draft.last + gap]


def _verdict(draft: _Draft, timeline: Timeline) -> tuple[str, ClosedBy, str, float]:
    """Which branch decided (its id, listed in docs/incident-rules.md), who closed the
    connection, why we think so, and how sure we are."""
    kinds = Counter(e.kind for e in draft.events)
    client = [e for e in draft.events if e.side == Side.CLIENT]
    families = {error_family(e) for e in client} - {None}
    # a broker log that was running at that moment but logged no close of its own
    broker_watching = any(timeline.covers(name, draft.first) for name in _broker_source_names(timeline))

    if kinds[Kind.PROXY_CUT] or kinds[Kind.PROXY_BLACKHOLE]:
        return "V01", ClosedBy.NETWORK, "the fault proxy between worker and broker cut or stalled the flow", 0.95
    if kinds[Kind.AUTH_REFUSED] or kinds[Kind.ACCESS_REFUSED] or families & {"auth", "vhost"}:
        return "V02", ClosedBy.BROKER, "the broker refused the login or the vhost", 0.9
    if kinds[Kind.BROKER_FORCED_CLOSE] or "forced" in families or _before(draft, {Kind.BROKER_STOP}):
        return "V03", ClosedBy.BROKER, "the broker forced the connection closed (shutdown or admin)", 0.9
    if kinds[Kind.SERVER_CLOSED_IDLE] or kinds[Kind.SERVER_CLOSED_LIMIT]:
        return "V04", ClosedBy.BROKER, "the Redis server closed the client (idle timeout or limit)", 0.9
    if kinds[Kind.CHANNEL_ERROR]:
        return "V05", ClosedBy.BROKER, "the broker closed the channel (or connection) after a protocol error", 0.8
    if kinds[Kind.CONSUMER_TIMEOUT] or "ack_timeout" in families:
        return "V06", ClosedBy.BROKER, "the broker timed out waiting for a delivery acknowledgement", 0.85
    if kinds[Kind.HEARTBEAT_MISSED_CLIENT]:
        if kinds[Kind.HEARTBEAT_MISSED_BROKER] or "heartbeat" in families or "timeout" in families:
            return ("V07", ClosedBy.NETWORK, "both sides stopped hearing each other with no reset: "
                    "packets were dropped on the path", 0.8)
        return ("V08", ClosedBy.BROKER, "the broker saw no heartbeat from the client and closed the "
                "connection; the client only noticed later", 0.85 if client else 0.7)
    if kinds[Kind.CLIENT_CLOSED_ABRUPTLY]:
        if families & {"reset", "eof", "broken_pipe"}:
            return ("V09", ClosedBy.NETWORK, "the client saw a reset/EOF and the broker says the client "
                    "closed, at the same moment: something in between cut both sides", 0.85)
        if "heartbeat" in families:
            return "V10", ClosedBy.CLIENT, "the client gave up after missing broker heartbeats", 0.8
        if client:
            return "V11", ClosedBy.CLIENT, "the broker says the client closed the TCP connection", 0.6
        return ("V12", ClosedBy.CLIENT, "the broker says the client (or a middlebox) closed the TCP "
                "connection without an AMQP close; no client log covers that moment", 0.5)
    # Client-only evidence from here on.
    if "heartbeat" in families:
        return "V13", ClosedBy.CLIENT, "the client closed after missing the broker's heartbeats", 0.7
    if "timeout" in families:
        return "V14", ClosedBy.NETWORK, "the client's socket timed out: the path stopped carrying packets", 0.6
    if families & {"refused", "dns", "unreachable"}:
        if draft.reconnected_at is not None and _was_connected(draft, timeline):
            return ("V15", ClosedBy.BROKER, "the broker went away (refused or unresolvable) and came back: "
                    "a restart or failover", 0.5)
        return "V16", ClosedBy.UNKNOWN, "the client could not reach the broker (refused / name lookup)", 0.5
    if "tls" in families or kinds[Kind.TLS_ERROR]:
        return "V17", ClosedBy.UNKNOWN, "the TLS layer failed; broker or TLS proxy", 0.4
    if families & {"reset", "eof", "broken_pipe"}:
        if broker_watching:
            return ("V18", ClosedBy.NETWORK, "the client saw the connection drop while the broker log, "
                    "running at that time, recorded no close of its own", 0.6)
        if "eof" in families:
            return "V19", ClosedBy.BROKER, "the peer closed the socket in order (EOF/FIN): the broker or a proxy", 0.4
        return ("V20", ClosedBy.UNKNOWN, "the client saw a reset; without the broker's log either side could "
                "have cut it", 0.3)
    return "V21", ClosedBy.UNKNOWN, "the logs do not say which side closed the connection", 0.2


def _was_connected(draft: _Draft, timeline: Timeline) -> bool:
    """Whether the client had been running before this outage (not a worker still starting)."""
    client = next(e for e in draft.events if e.side == Side.CLIENT)
    if _startup_seen(timeline, client.source, client.at):
        return False
    retry = re.search(r"\((\d+)/\d+\)", client.text)
    return retry is None or int(retry.group(1)) > 1 or any(
        e.source == client.source and e.at < client.at for e in timeline.events)


def _startup_seen(timeline: Timeline, source: str, before: datetime) -> bool:
    """The log shows this worker starting (banner, or readiness only after ``before``)."""
    ready = timeline.times(source, Kind.WORKER_READY)
    if ready:
        return before < ready[0]
    connected = timeline.times(source, Kind.CONNECTED)
    info = next((s for s in timeline.sources if s.name == source), None)
    return bool(info and info.meta.get("celery_version")) and not (connected and connected[0] < before)


def _broker_source_names(timeline: Timeline) -> set[str]:
    # asked once per incident: computed once per timeline (20,000 incidents made it quadratic)
    cached: tuple[int, set[str]] | None = getattr(timeline, "_broker_sources", None)
    if cached is None or cached[0] != len(timeline.events):
        cached = (len(timeline.events), {e.source for e in timeline.events if e.side == Side.BROKER})
        timeline._broker_sources = cached  # type: ignore[attr-defined]
    return cached[1]


def _last_connect_index(timeline: Timeline) -> dict[str, list[datetime]]:
    connects: dict[str, list[datetime]] = {}
    for e in timeline.events:
        if e.kind == Kind.CONNECTED and e.side == Side.CLIENT:
            connects.setdefault(e.source, []).append(e.at)
    return connects


def _uptime_and_idle(draft: _Draft, connects: dict[str, list[datetime]]
                     ) -> tuple[float | None, float | None]:
    """Connection uptime and idle time before the failure, from the first client event."""
    client = next((e for e in draft.events if e.side == Side.CLIENT), None)
    if client is None:
        duration = next((e.detail.get("duration_s") for e in draft.events
                         if e.detail.get("duration_s") is not None), None)
        return (float(duration) if duration is not None else None), None
    times = connects.get(client.source, [])  # in timeline order: the last connect at or before
    index = bisect.bisect_right(times, client.at)
    connected_at = times[index - 1] if index else None
    uptime = (client.at - connected_at).total_seconds() if connected_at else None
    marks = [t for t in (connected_at, _parse_ts(client.detail.get("last_activity_ts"))) if t]
    # the broker may have closed earlier than the client noticed: measure idle up to that
    start = min(e.at for e in draft.events)
    idle = (start - max(marks)).total_seconds() if marks else None
    if idle is not None and idle < 0:
        idle = 0.0
    return uptime, idle


def _parse_ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _phase(draft: _Draft, timeline: Timeline, idle: float | None) -> Phase:
    kinds = {e.kind for e in draft.events}
    if kinds & {Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED, Kind.TLS_ERROR}:
        return Phase.STARTUP
    if _before(draft, {Kind.WORKER_SHUTDOWN}):
        return Phase.SHUTDOWN
    client = next((e for e in draft.events if e.side == Side.CLIENT), None)
    if client is not None:
        if _startup_seen(timeline, client.source, client.at):
            return Phase.STARTUP  # the worker was still starting (not ready, or never connected)
        if running_task_age(draft.events, draft.first) is not None:
            return Phase.LOAD
        if idle is not None and idle >= IDLE_MIN_S:
            return Phase.IDLE
        if client.detail.get("tasks_before_60s"):
            return Phase.LOAD
        return Phase.UNKNOWN
    if any(e.detail.get("state") in ("starting", "opening", "securing", "tuning") for e in draft.events):
        return Phase.STARTUP
    if kinds == {Kind.CLIENT_CLOSED_ABRUPTLY} and any(
            timeline.covers(s, draft.first) for s in timeline.client_sources()):
        return Phase.SHUTDOWN  # not the worker (its log says nothing): a process that exited
    return Phase.UNKNOWN


def running_task_age(events: list[Event], at: datetime) -> float | None:
    """Seconds the oldest task had been running at ``at``, from the client events' look-back."""
    ages = []
    for e in events:
        for task in e.detail.get("running_tasks") or []:
            since = _parse_ts(task.get("since"))
            if since is not None and since <= at:
                ages.append((at - since).total_seconds())
        for task in e.detail.get("recent_long_tasks") or []:
            since, until = _parse_ts(task.get("since")), _parse_ts(task.get("until"))
            if since is not None and until is not None and since <= at <= until:
                ages.append((at - since).total_seconds())
    return max(ages) if ages else None


def _set_periods(incidents: list[Incident]) -> None:
    """Failures of one kind that repeat at a regular interval get that interval as period_s."""
    series: dict[tuple[ClosedBy, Phase], list[Incident]] = {}
    for inc in incidents:
        series.setdefault((inc.closed_by, inc.phase), []).append(inc)
    for members in series.values():
        if len(members) < 3:
            continue
        # by hand, not with statistics (whose import, with random's and fractions', costs ~6 ms of every run)
        gaps = sorted((b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(members))
        mean = math.fsum(gaps) / len(gaps)
        spread = math.sqrt(math.fsum((g - mean) ** 2 for g in gaps) / len(gaps))
        if mean > 0 and spread / mean <= REGULAR_CV:
            half = len(gaps) // 2
            period = gaps[half] if len(gaps) % 2 else (gaps[half - 1] + gaps[half]) / 2
            for inc in members:
                inc.period_s = period


def _summary(timeline: Timeline, incidents: list[Incident]) -> dict[str, Any]:
    kinds = Counter(e.kind.value for e in timeline.events)
    connects = Counter(e.source for e in timeline.events
                       if e.kind == Kind.CONNECTED and e.side == Side.CLIENT)
    outages = [i.outage_s for i in incidents if i.outage_s is not None]
    return {
        "incidents": len(incidents),
        "closed_by": dict(Counter(i.closed_by.value for i in incidents)),
        "phase": dict(Counter(i.phase.value for i in incidents)),
        "reconnects": sum(max(0, n - 1) for n in connects.values()),
        "longest_outage_s": round(max(outages), 3) if outages else None,
        "events_by_kind": dict(sorted(kinds.items())),
    }
