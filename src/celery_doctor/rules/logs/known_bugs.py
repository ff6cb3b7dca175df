"""Tracebacks that identify a known bug of one celery / kombu / py-amqp / redis-py release, and
the releases a `celery report` names that the catalogue knows to be bad together.

The catalogue is the one `pins` ships (data/known_bad.json): each entry's ``log`` says how the
bug shows in a traceback (exception type, a pattern on its text, a frame that must appear), its
``when`` which releases it hits. A traceback match names the entry, the releases and the fix,
with the traceback as evidence (CD-K01); the versions a report names are matched against
``when`` as `pins` matches an environment (CD-K02), and tied to the logs when they show the
entry's symptom.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import datetime

from celery_doctor.model import Category, Event, Evidence, Finding, Fix, Kind, Severity, Side
from celery_doctor.pins.catalogue import Catalogue, KnownBad
from celery_doctor.pins.checks import known_bad_hits
from celery_doctor.rules.context import LogContext, all_events
from celery_doctor.rules.logs.traceback import Traceback, known_messages, parse
from celery_doctor.rules.logs.versions import seen_in
from celery_doctor.rules.registry import rule

# (exception name, its text, frame path, frame function, source line under that frame or None, the frame's
# line number or None: a regression of one release is named by where its frame sits, as its neighbours
# put the same code on other lines)
LogSig = tuple[re.Pattern[str], re.Pattern[str], str, str, re.Pattern[str] | None, int | None]


@functools.cache
def catalogue_entries() -> tuple[tuple[KnownBad, tuple[LogSig, ...]], ...]:
    out = []
    for entry in Catalogue.shipped().known_bad:
        sigs = tuple((re.compile(rf"^(?:{s['exception']})$"), re.compile(s.get("text", "")),
                      s.get("frame", ""), s.get("function", ""),
                      re.compile(s["code"]) if s.get("code") else None,
                      int(s["line"]) if s.get("line") else None) for s in entry.log)
        if sigs:
            out.append((entry, sigs))
    return tuple(out)


@functools.cache
def _codes() -> tuple[re.Pattern[str], ...]:
    return tuple(sig[4] for _, sigs in catalogue_entries() for sig in sigs if sig[4] is not None)


def _matches(tb: Traceback, text: str, sigs: tuple[LogSig, ...]) -> bool:
    """Every frame named must be there; one exception of the entry's kind must carry its text. An
    entry that names the source line of the raise (``code``) also matches a traceback cut before
    its exception line (pastes stop short): the frame and that line are the bug's fingerprint."""
    for name, said, frame, function, code, line in sigs:
        if frame and not tb.has_frame(frame, function or None, line):
            continue
        if any(name.match(r.name) and said.search(r.text) for r in tb.raised):
            return True
        if code is not None and code.search(text):
            return True
    return False


def match(event: Event) -> KnownBad | None:
    """The catalogue entry this event's traceback shows, if any."""
    text = event.text
    worded = "Error" in text or "error" in text or "Mismatch" in text  # the cheap test first
    coded = any(pattern.search(text) for pattern in _codes())
    if not worded and not coded and not known_messages(text):
        return None
    tb = parse(text)
    if not tb.raised and not coded:
        return None
    # only the entries that name one of its exceptions, or that a source line alone can match, in
    # the catalogue's order (an app's 341 tracebacks were each tried against every entry)
    entries = catalogue_entries()
    named = set(_coded_entries()).union(*(_entries_naming(r.name) for r in tb.raised))
    return next((entries[k][0] for k in sorted(named) if _matches(tb, event.text, entries[k][1])), None)


@functools.lru_cache(maxsize=1024)
def _entries_naming(exception: str) -> tuple[int, ...]:
    """The catalogue entries one of whose signatures names ``exception``."""
    return tuple(k for k, (_, sigs) in enumerate(catalogue_entries()) if any(sig[0].match(exception) for sig in sigs))


@functools.cache
def _coded_entries() -> tuple[int, ...]:
    return tuple(k for k, (_, sigs) in enumerate(catalogue_entries()) if any(sig[4] is not None for sig in sigs))


# lines that never carry a traceback (a broker's accepts and clean closes are most of its events)
_NO_TRACEBACK = frozenset({Kind.TASK_SUCCEEDED, Kind.TASK_RECEIVED, Kind.CONNECTED, Kind.CONNECTION_ACCEPTED,
                           Kind.CONNECTION_CLOSED_CLEAN})


@rule("CD-K01", "logs", Category.VERSION_INCOMPATIBILITY)
def known_bug(ctx: LogContext) -> Iterable[Finding]:
    """A traceback in the logs matches a known bug of one release (data/known_bad.json, the
    catalogue `pins` uses): the fix is a version, not a setting."""
    hits: dict[str, tuple[KnownBad, list[Event]]] = {}
    for e in all_events(ctx):
        if e.kind in _NO_TRACEBACK:
            continue
        entry = match(e)
        if entry is not None:
            hits.setdefault(entry.id, (entry, []))[1].append(e)
    out = []
    seen = seen_in(ctx)
    for entry, events in hits.values():
        pins = ", ".join(f"{name} {spec}" for name, spec in entry.when.items())
        # the versions the logs show confirm the entry's range or speak against it
        confirm = [seen[n] for n, spec in entry.when.items() if n in seen and seen[n].allows(spec) is True]
        against = [seen[n] for n, spec in entry.when.items() if n in seen and seen[n].allows(spec) is False]
        confidence = 0.4 if against else 0.95 if confirm else 0.9
        versions_note = "".join(f" The logs show {s.describe()} ({', '.join(s.how[:2])}), inside that range."
                                for s in confirm)
        versions_note += "".join(f" Against it: the logs show {s.describe()} ({', '.join(s.how[:2])}), outside "
                                 "that range." for s in against)
        out.append(Finding(
            category=Category.VERSION_INCOMPATIBILITY,
            severity=Severity(entry.severity) if entry.severity in {s.value for s in Severity} else Severity.HIGH,
            title=f"A known bug of {pins}" if pins else "A known library or packaging bug",
            explanation=(f"The traceback is the known symptom of {entry.id}: {entry.symptom}"
                         + (f" It hits {pins}." if pins else "")
                         + " Nothing in the network or the broker is at fault; the versions are." + versions_note),
            evidence=[Evidence.of(e) for e in events[:8]] + [ev for s in confirm for ev in s.evidence[:1]]
                     + [Evidence(source="known_bad.json", line=0, text=url) for url in entry.source[:2]],
            fix=Fix(text=f"Fixed in: {entry.fixed_in}"
                         + (" — pin " + ", ".join(f"{n}{s}" for n, s in entry.avoid.items()) if entry.avoid else ""),
                    verify="celery-doctor pins (in the worker's environment) should no longer list "
                           f"{entry.id}"),
            contradicting=[e for s in against for e in s.evidence[:2]],
            confidence=confidence,
            facts={"known_bad": entry.id, "source": "logs",
                   "versions_seen": {s.package: s.describe() for s in confirm + against}},
        ))
    return out


# transports as `celery report` names them (``settings -> transport:``) -> the catalogue's broker family
_FAMILY = {"redis": "redis", "rediss": "redis", "sentinel": "redis", "amqp": "amqp", "amqps": "amqp",
           "pyamqp": "amqp", "librabbitmq": "amqp"}


def _task_arrivals(ctx: LogContext) -> list[tuple[str, datetime, datetime, int]]:
    """The workers' task-arrival buckets (source, first, last, count); the brokers' curves count
    accepted connections, not tasks, and are left out."""
    brokers = {s.name for s in ctx.timeline.sources if s.format.startswith(("rabbitmq", "redis"))}
    return [(name, a, b, n) for name, curve in ctx.timeline.activity.items() if name not in brokers
            for a, b, n in curve if n]


def _stall_after_reconnect(ctx: LogContext) -> tuple[list[Evidence], list[Evidence], str] | None:
    """kombu < 5.4 on Redis: the worker reconnects after a loss and then consumes nothing more."""
    events = ctx.timeline.events
    lost = [e for e in events if e.side == Side.CLIENT and e.kind == Kind.CONNECTION_LOST and e.ts is not None]
    if not lost:
        return None
    loss = lost[-1]
    back = next((e for e in events if e.side == Side.CLIENT and e.kind == Kind.CONNECTED and e.ts is not None
                 and loss.ts is not None and e.ts >= loss.ts), None)
    if back is None or back.ts is None or loss.ts is None:
        return None  # it never came back: that is another failure, not this bug
    arrivals = _task_arrivals(ctx)
    after = [(name, a, b, n) for name, a, b, n in arrivals if b > back.ts]
    if after:
        name, first, _, _ = after[0]
        count = sum(n for *_, n in after)
        return [], [Evidence(source=name, line=0, text=f"{count} task(s) received after the reconnect (the first "
                                                       f"at {max(first, back.ts):%H:%M:%S})")], (
            "tasks were received after the reconnect, which this bug prevents")
    if not any(a < loss.ts for _, a, _, _ in arrivals):
        return None  # no task seen at all: silence after the reconnect says nothing
    return ([Evidence.of(loss), Evidence.of(back)], [],
            "the worker received tasks, lost its connection, reconnected, and then received no task")


# entries whose symptom the logs can show without a traceback: id -> the check
SYMPTOMS = {"kombu-lt-5.4_redis-reconnect": _stall_after_reconnect}


@rule("CD-K02", "pins", Category.VERSION_INCOMPATIBILITY)
def known_bad_versions(reported: dict[str, tuple[str, Evidence]], transport: str | None,
                       ctx: LogContext | None = None) -> Iterable[Finding]:
    """The releases a `celery report` names are a known-bad combination (data/known_bad.json, the
    catalogue `pins` uses); tied to the logs when they show the entry's symptom.

    ``reported``: package -> (version, the report's software line); ``python`` and ``transport``
    (the report's ``settings -> transport:``) ride along under those names."""
    if not reported:
        return []
    versions = {name: version for name, (version, _) in reported.items() if name not in ("python", "transport")}
    python = reported.get("python", ("", None))[0]
    transport = transport or reported.get("transport", ("", None))[0]
    family = _FAMILY.get((transport or "").split("+")[0].lower())
    shown = {k.id for e in all_events(ctx) if (k := match(e)) is not None} if ctx is not None else set()
    out = []
    for entry, pythons in known_bad_hits(versions, [python] if python else [], family,
                                         Catalogue.shipped().known_bad):
        if entry.id in shown:
            continue  # the traceback is in the logs: CD-K01 names it, with these versions as confirmation
        combo = " + ".join(f"{n} {versions[n]}" for n in entry.when)
        if pythons:
            combo += f" on Python {', '.join(pythons)}"
        lines = [ev for n in entry.when if n in reported for ev in [reported[n][1]]][:1]
        tie = SYMPTOMS[entry.id](ctx) if ctx is not None and entry.id in SYMPTOMS else None
        tied = bool(tie and tie[0])
        explanation = (f"The running app reports {combo}, which the catalogue knows as {entry.id}: {entry.symptom}")
        if entry.broker and not family:
            explanation += f" It hits the {entry.broker} transport only; the report names no transport."
        confidence = 0.9 if not entry.broker or family else 0.6
        if tie:
            explanation += (" The logs show it: " if tied else " Against it: ") + tie[2] + "."
            confidence = 0.9 if tied else 0.4
        elif ctx is not None:
            explanation += " The logs do not show its symptom; it is a risk of these versions, not the cause seen."
        out.append(Finding(
            category=Category.VERSION_INCOMPATIBILITY,
            severity=Severity(entry.severity) if entry.severity in {s.value for s in Severity} else Severity.HIGH,
            title=f"{combo}: a known bug ({entry.id})",
            explanation=explanation,
            evidence=lines + (tie[0] if tie else []) + [Evidence(source="known_bad.json", line=0, text=url)
                                                        for url in entry.source[:2]],
            contradicting=tie[1] if tie else [],
            fix=Fix(text=f"Fixed in: {entry.fixed_in}"
                         + (" — pin " + ", ".join(f"{n}{s}" for n, s in entry.avoid.items()) if entry.avoid else ""),
                    verify=f"celery-doctor pins (in the worker's environment) should no longer list {entry.id}"),
            confidence=confidence,
            # tied to a symptom in the logs it explains the failures seen; beside logs that do not show it,
            # it is listed with what the running config also shows (never merged into the cause the logs
            # found); with no logs it is the report's risk
            facts={"known_bad": entry.id, "source": "logs" if tied else "config" if ctx is not None else "report",
                   "versions_seen": {n: versions[n] for n in entry.when if n in versions}},
        ))
    return out


def reported_known_bad(ctx: LogContext) -> Iterable[Finding]:
    """The log-stage entry point of CD-K02: the versions of a report given beside the logs."""
    return known_bad_versions(ctx.reported, None, ctx) if ctx.reported else []
