"""Tracebacks that identify a known bug of one celery / kombu / py-amqp / redis-py release.

The catalogue is the one `pins` ships (data/known_bad.json): each entry's ``log`` says how the
bug shows in a traceback (exception type, a pattern on its text, a frame that must appear).
A match names the entry, the releases it hits and the fix, with the traceback as evidence.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from celery_doctor.model import Category, Event, Evidence, Finding, Fix, Kind, Severity
from celery_doctor.pins.catalogue import Catalogue, KnownBad
from celery_doctor.rules.context import LogContext, all_events
from celery_doctor.rules.logs.traceback import KNOWN_MESSAGES, Traceback, parse
from celery_doctor.rules.logs.versions import fingerprint
from celery_doctor.rules.registry import rule


@functools.cache
def _entries() -> tuple[tuple[KnownBad, tuple[tuple[re.Pattern[str], re.Pattern[str], str, str], ...]], ...]:
    out = []
    for entry in Catalogue.shipped().known_bad:
        sigs = tuple((re.compile(rf"^(?:{s['exception']})$"), re.compile(s.get("text", "")),
                      s.get("frame", ""), s.get("function", "")) for s in entry.log)
        if sigs:
            out.append((entry, sigs))
    return tuple(out)


def _matches(tb: Traceback, sigs: tuple[tuple[re.Pattern[str], re.Pattern[str], str, str], ...]) -> bool:
    """Every frame named must be there; one exception of the entry's kind must carry its text."""
    for name, text, frame, function in sigs:
        if frame and not tb.has_frame(frame, function or None):
            continue
        if any(name.match(r.name) and text.search(r.text) for r in tb.raised):
            return True
    return False


def match(event: Event) -> KnownBad | None:
    """The catalogue entry this event's traceback shows, if any."""
    if "Error" not in event.text and "error" not in event.text and "Mismatch" not in event.text and not any(
            pattern.search(event.text) for pattern, _ in KNOWN_MESSAGES):
        return None
    tb = parse(event.text)
    if not tb.raised:
        return None
    return next((entry for entry, sigs in _entries() if _matches(tb, sigs)), None)


@rule("CD-K01", "logs", Category.VERSION_INCOMPATIBILITY)
def known_bug(ctx: LogContext) -> Iterable[Finding]:
    """A traceback in the logs matches a known bug of one release (data/known_bad.json, the
    catalogue `pins` uses): the fix is a version, not a setting."""
    hits: dict[str, tuple[KnownBad, list[Event]]] = {}
    for e in all_events(ctx):
        if e.kind in (Kind.TASK_SUCCEEDED, Kind.TASK_RECEIVED, Kind.CONNECTED):
            continue
        entry = match(e)
        if entry is not None:
            hits.setdefault(entry.id, (entry, []))[1].append(e)
    out = []
    seen = fingerprint(all_events(ctx), {"celery": ctx.celery_version} if ctx.celery_version else None)
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
