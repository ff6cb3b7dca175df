"""Which releases the logs were written by: the worker banner (``celery@host v5.3.4``), egg and
site-packages paths (``kombu-3.0.35-py2.7.egg``, ``python2.7/site-packages``), modules that exist
only in some releases (``kombu/async/`` before 4.2, ``celery/worker/consumer.py`` before 4.0),
``celery report`` lines (``software -> celery:4.4.0 (cliffs) kombu:4.6.5 py:3.6.9``) and
traceback frames matched against the line index generated from the released wheels
(data/line_index.json, scripts/build_line_index.py).

The known-bug rule uses these to confirm or contradict a match; ``logs`` reports them.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from celery_doctor.model import Event, Evidence, Side
from celery_doctor.rules.context import LogContext, all_events
from celery_doctor.rules.logs.traceback import parse

EGG = re.compile(r"/(celery|kombu|amqp|redis|billiard|vine|librabbitmq)-(\d+(?:\.\d+)+(?:\.post\d+)?)-py\d")
PYTHON_PATH = re.compile(r"/python(\d\.\d+)/(?:site|dist)-packages/")
REPORT = re.compile(r"\b(celery|kombu|billiard|amqp|redis|py|vine):(\d+(?:\.\d+)+\w*)")
BANNER = re.compile(r"celery@\S+ v(\d+(?:\.\d+)+\w*) \(")
# module layouts that only some releases have
LAYOUT = (
    (re.compile(r"/kombu/async/"), "kombu", "<4.2"),
    (re.compile(r"/kombu/asynchronous/"), "kombu", ">=4.2"),
    (re.compile(r"/celery/worker/consumer\.py"), "celery", "<4.0"),
    (re.compile(r"/celery/worker/consumer/consumer\.py"), "celery", ">=4.0"),
)


@dataclass
class Seen:
    """What the logs say about one package's version: an exact one, or a range."""

    package: str
    exact: str | None = None
    spec: SpecifierSet = field(default_factory=SpecifierSet)
    candidates: set[str] | None = None  # releases whose code matches the traceback frames
    evidence: list[Evidence] = field(default_factory=list)
    how: list[str] = field(default_factory=list)
    narrowed: set[str] = field(default_factory=set)  # the ranges ``spec`` already holds

    def allows(self, spec: str) -> bool | None:
        """Whether the versions seen fit ``spec``; None when the logs say nothing decisive."""
        try:
            wanted = SpecifierSet(spec)
        except InvalidSpecifier:
            return None
        if self.exact:
            try:
                return Version(self.exact) in wanted
            except InvalidVersion:
                return None
        candidates = [v for v in _versions(self.package) if v in self.spec
                      and (self.candidates is None or str(v) in self.candidates)]
        if not candidates:
            return None
        inside = [v in wanted for v in candidates]
        return True if all(inside) else False if not any(inside) else None

    def describe(self) -> str:
        if self.exact:
            return f"{self.package} {self.exact}"
        if self.candidates is not None:
            ordered = sorted((Version(v) for v in self.candidates), key=lambda v: v)
            if ordered:
                return f"{self.package} {ordered[0]}..{ordered[-1]} ({len(ordered)} releases)"
        return f"{self.package} {self.spec}"


@functools.cache
def line_index() -> dict[str, Any]:
    try:
        text = resources.files("celery_doctor").joinpath("data", "line_index.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"packages": {}}
    return dict(json.loads(text))


@functools.cache
def _versions(package: str) -> tuple[Version, ...]:
    out = []
    for v in line_index()["packages"].get(package, {}).get("versions", []):
        try:
            out.append(Version(v))
        except InvalidVersion:
            continue
    return tuple(out)


@functools.lru_cache(maxsize=4096)  # an app's tracebacks repeat the same frames hundreds of times
def releases_for_frame(package: str, module: str, function: str, line: int) -> tuple[str, ...]:
    """Releases of ``package`` whose ``function`` in ``module`` spans ``line`` (the line index)."""
    pkg = line_index()["packages"].get(package)
    if not pkg:
        return ()
    rows = pkg["files"].get(module, {}).get(function, [])
    versions = pkg["versions"]
    return tuple(versions[i] for first, last, lo, hi in rows if first <= line <= last for i in range(lo, hi + 1))


def _narrow(seen: Seen, spec: str, evidence: Evidence, how: str) -> None:
    if f"{how}: {spec}" not in seen.narrowed:  # a layout every traceback shows narrows once
        seen.narrowed.add(f"{how}: {spec}")
        seen.spec &= SpecifierSet(spec)
    seen.evidence.append(evidence)
    seen.how.append(how)


def seen_in(ctx: LogContext) -> dict[str, Seen]:
    """The fingerprint of a context's logs (its events, banner and report), taken once: the
    known-bug rule and the report's versions both read it, and it parses every event's traceback."""
    if ctx.versions is None:
        ctx.versions = fingerprint(all_events(ctx), {"celery": ctx.celery_version} if ctx.celery_version else None,
                                   ctx.reported)
    return ctx.versions


def fingerprint(events: list[Event], meta_versions: dict[str, str] | None = None,
                reported: dict[str, tuple[str, Evidence]] | None = None) -> dict[str, Seen]:
    """Versions per package, from every event's text (banner versions from the sources' meta;
    ``reported``: what a `celery report` pasted beside the logs names, with its software line)."""
    out: dict[str, Seen] = {}

    def get(package: str) -> Seen:
        seen = out.get(package)
        if seen is None:  # not setdefault: a Seen (and its SpecifierSet) built per call cost 1,700 a report
            seen = out[package] = Seen(package)
        return seen

    for package, (version, evidence) in (reported or {}).items():
        get(package).exact = version
        get(package).how.append("celery report")
        get(package).evidence.append(evidence)
    for package, version in (meta_versions or {}).items():
        if get(package).exact:
            continue  # the report names the release already
        get(package).exact = version
        get(package).how.append("worker banner")
    for e in events:
        if e.side == Side.BROKER:  # a RabbitMQ or Redis server's own line names no Python package
            continue
        ev = Evidence.of(e)
        found = [(m.group(1), m.group(2), "egg path") for m in EGG.finditer(e.text)]
        found += [("python" if m.group(1) == "py" else m.group(1), m.group(2), "celery report")
                  for m in REPORT.finditer(e.text)]
        found += [("celery", m.group(1), "worker banner") for m in BANNER.finditer(e.text)]
        found += [("python", m.group(1), "site-packages path") for m in PYTHON_PATH.finditer(e.text)]
        for package, version, how in found:
            seen = get(package)
            if not seen.exact:
                seen.exact = version
                seen.evidence.append(ev)
                seen.how.append(how)
        for pattern, package, spec in LAYOUT:
            if pattern.search(e.text):
                _narrow(get(package), spec, ev, "module layout")
        for frame in parse(e.text).frames if 'File "' in e.text else ():
            path = frame.file.replace("\\", "/")
            for package in ("celery", "kombu", "amqp", "redis"):
                marker = f"/{package}/"
                if marker not in path:
                    continue
                module = package + "/" + path.rsplit(marker, 1)[1]
                releases = releases_for_frame(package, module, frame.function, frame.line)
                if releases:
                    seen = get(package)
                    seen.candidates = set(releases) if seen.candidates is None else seen.candidates & set(releases)
                    seen.evidence.append(ev)
                    seen.how.append(f"traceback line {module}:{frame.line} in {frame.function}")
    return {k: v for k, v in out.items() if v.exact or str(v.spec) or v.candidates is not None}
