"""What does not fit in an environment: declared-requirement violations, known-bad combinations,
unsupported Pythons, missing or unusable transports.

The result is plain evidence (:class:`Problem`); ``rules/pins_rules.py`` turns it into Findings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from celery_doctor.pins.catalogue import Catalogue, KnownBad
from celery_doctor.pins.interface import TRACKED, Environment, PinsError, canonical
from celery_doctor.pins.resolver import Request, Unsatisfiable, resolve

PYTHONS = ("2.7", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
BROKER_SCHEMES = {"amqp": "amqp", "amqps": "amqp", "pyamqp": "amqp", "librabbitmq": "amqp",
                  "redis": "redis", "rediss": "redis", "sentinel": "redis", "redis+socket": "redis"}


@dataclass
class Problem:
    kind: str  # declared | known_bad | python | transport | yanked | unsatisfiable
    severity: str  # model.Severity values
    title: str
    explanation: str
    packages: dict[str, str] = field(default_factory=dict)  # name -> version involved
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line, text) in the input
    fix: str = ""
    sources: list[str] = field(default_factory=list)
    confidence: float = 0.8


@dataclass
class Assessment:
    """The versions the checks looked at, and what is wrong with them."""

    env: Environment
    versions: dict[str, str]  # tracked name -> version (pinned, installed or resolved)
    resolved: dict[str, str]  # the subset a fresh install would pick (not pinned in the input)
    pythons: list[str]  # the X.Y (or exact) Pythons checked
    broker: str | None
    problems: list[Problem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"versions": self.versions, "resolved": self.resolved, "pythons": self.pythons,
                "broker": self.broker}


def broker_family(url: str | None) -> str | None:
    if not url:
        return None
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in BROKER_SCHEMES:
        raise PinsError(f"--broker: unsupported URL scheme {scheme!r} (amqp://, pyamqp://, librabbitmq://, "
                        "redis://, rediss:// or sentinel://)")
    return BROKER_SCHEMES[scheme]


def pythons_for(env: Environment, python: str | None) -> list[str]:
    """The interpreter versions to check: the exact one when known, else each X.Y the declared range allows."""
    if python:
        return [python]
    if env.python:
        return [env.python]
    if env.python_spec:
        try:
            spec = SpecifierSet(env.python_spec.replace(" ", ""))
        except InvalidSpecifier:
            return []
        return [p for p in PYTHONS if spec.contains(p + ".99", prereleases=True) or spec.contains(p)]
    return []


def _validate(env: Environment, catalogue: Catalogue) -> None:
    """Bad input is an error, not a finding: a tracked version that never existed, a misspelt name."""
    for name, pin in env.pins.items():
        if name in TRACKED:
            if pin.version and catalogue.release(name, pin.version) is None:
                known = catalogue.versions(name)
                try:
                    Version(pin.version)
                except InvalidVersion as exc:
                    raise PinsError(f"{_where(env, pin.line)}{name}=={pin.version}: not a version") from exc
                if known and Version(pin.version) < Version(known[0]):
                    continue  # older than the data covers (e.g. celery 3.0): checked as far as possible
                raise PinsError(f"{_where(env, pin.line)}{name} {pin.version} does not exist "
                                f"(known releases {known[0]} .. {known[-1]})")
            continue
        if env.installed:
            continue
        close = difflib.get_close_matches(name, TRACKED, n=1, cutoff=0.8)
        if close and abs(len(close[0]) - len(name)) <= 2:
            raise PinsError(f"{_where(env, pin.line)}unknown package {name!r} (did you mean {close[0]}?)")


def _where(env: Environment, line: int) -> str:
    return f"{env.origin}:{line}: " if line else f"{env.origin}: "


def _present_version(env: Environment, versions: dict[str, str], name: str) -> str | None:
    name = canonical(name)
    if name in versions:
        return versions[name]
    pin = env.pins.get(name)
    return pin.version if pin else None


def _line(env: Environment, name: str) -> list[tuple[int, str]]:
    pin = env.pins.get(name)
    return [(pin.line, pin.text)] if pin else []


def assess(env: Environment, catalogue: Catalogue, python: str | None = None,
           broker_url: str | None = None) -> Assessment:
    _validate(env, catalogue)
    broker = broker_family(broker_url)
    tracked = env.tracked()
    if "celery" not in tracked and "kombu" not in tracked:
        raise PinsError(f"{env.origin}: neither celery nor kombu is in it: nothing to check")
    pythons = pythons_for(env, python)
    one_python = pythons[0] if len(pythons) == 1 else None

    versions = {n: p.version for n, p in tracked.items() if p.version}
    resolved: dict[str, str] = {}
    problems: list[Problem] = []
    if not env.installed:
        request = Request(specs={n: (f"=={p.version}" if p.version else p.specifier) for n, p in tracked.items()},
                          extras={n: set(p.extras) for n, p in tracked.items() if p.extras},
                          python=one_python)
        try:
            full = resolve(request, catalogue)
            resolved = {n: v for n, v in full.items() if n not in versions}
            versions.update(resolved)
        except Unsatisfiable as exc:
            if all(p.version for p in tracked.values()):
                pass  # every version is pinned: the declared-range checks below say what contradicts
            else:
                problems.append(Problem(
                    kind="unsatisfiable", severity="high", title="pip cannot install this set",
                    explanation=f"{exc}: the declared requirements of these releases contradict each other.",
                    lines=[ln for n in tracked for ln in _line(env, n)],
                    fix="Pin the set from a ladder step (celery-doctor pins --to VERSION)."))
    assessment = Assessment(env=env, versions=versions, resolved=resolved, pythons=pythons, broker=broker,
                            problems=problems)
    _declared(assessment, catalogue)
    _python_support(assessment, catalogue)
    _known_bad(assessment, catalogue)
    _yanked(assessment, catalogue)
    _transport(assessment)
    return assessment


def _declared(a: Assessment, catalogue: Catalogue) -> None:
    env = a.env
    python = a.pythons[0] if len(a.pythons) == 1 else None
    for name, version in a.versions.items():
        rel = catalogue.release(name, version)
        if rel is None:
            continue
        pin = env.pins.get(name)
        asked = tuple(pin.extras) if pin else ()
        base = {str(r) for r in rel.dependencies(python, asked)}
        every_extra = tuple(sorted({e for r in rel.parsed if r.marker for e in _extras_of(str(r.marker))}))
        for req in rel.dependencies(python, every_extra):
            dep = canonical(req.name)
            have = _present_version(env, a.versions, dep)
            if have is None:
                if env.installed and str(req) in base and dep in TRACKED and not req.marker:
                    a.problems.append(Problem(
                        kind="declared", severity="high", title=f"{name} {version} needs {req}, which is not installed",
                        explanation=f"{name} {version} declares '{req}', but the interpreter has no {dep}.",
                        packages={name: version}, lines=_line(env, name), fix=f"pip install '{req}'"))
                continue
            try:
                inside = req.specifier.contains(have, prereleases=True)
            except InvalidVersion:
                continue
            if inside:
                continue
            via_extra = str(req) not in base
            extra_name = _extras_of(str(req.marker))[0] if via_extra and req.marker else ""
            if via_extra and a.broker not in (None, dep if dep == "redis" else "amqp"):
                continue
            severity = "medium" if via_extra else "high"
            whose = f"{name}[{extra_name}]" if via_extra else name
            a.problems.append(Problem(
                kind="declared", severity=severity,
                title=f"{dep} {have} is outside the range {whose} {version} declares ({req.specifier})",
                explanation=(f"{whose} {version} requires '{req.name}{req.specifier}', but {dep} {have} is "
                             + ("installed: pip was overridden (a direct pin or a --no-deps install)."
                                if env.installed else "pinned: pip would refuse this set, or it was forced.")
                             + (" This range belongs to the extra that the broker transport uses." if via_extra
                                else "")),
                packages={name: version, dep: have}, lines=_line(env, dep) + _line(env, name),
                fix=f"Keep {dep} inside {req.specifier} while {name} is {version}, or move both together "
                    "to a ladder step.",
                confidence=0.9 if not via_extra else 0.7))


def _extras_of(marker: str) -> list[str]:
    import re

    return re.findall(r'extra\s*==\s*["\']([^"\']+)["\']', marker)


def _python_support(a: Assessment, catalogue: Catalogue) -> None:
    if not a.pythons:
        return
    for name, version in a.versions.items():
        rel = catalogue.release(name, version)
        if rel is None:
            continue
        exact = len(a.pythons) == 1
        refused = [p for p in a.pythons if rel.supports_python(p) is False]
        untested = [p for p in a.pythons if exact and rel.supports_python(p) is not False
                    and rel.classified_for(p) is False
                    and rel.python_classifiers
                    and Version(p).release[:2] > Version(rel.python_classifiers[-1]).release[:2]]
        if refused:
            a.problems.append(Problem(
                kind="python", severity="high" if exact else "medium",
                title=f"{name} {version} does not support Python {', '.join(refused)}",
                explanation=f"{name} {version} declares Requires-Python '{rel.requires_python}'; pip refuses it "
                            f"on Python {', '.join(refused)}.",
                packages={name: version}, lines=_line(a.env, name),
                fix=f"Use a Python that {name} {version} supports, or a {name} release that supports yours."))
        elif untested:
            a.problems.append(Problem(
                kind="python", severity="low",
                title=f"{name} {version} was never released for Python {', '.join(untested)}",
                explanation=f"{name} {version} lists Python {', '.join(rel.python_classifiers)} in its classifiers; "
                            f"nothing newer than {rel.python_classifiers[-1]} was tested with it.",
                packages={name: version}, lines=_line(a.env, name), confidence=0.5,
                fix=f"Move {name} to a release that lists Python {untested[-1]}."))


def _matches(spec: str, version: str) -> bool:
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


def known_bad_hits(versions: dict[str, str], pythons: list[str], broker: str | None,
                   entries: list[KnownBad]) -> list[tuple[KnownBad, list[str]]]:
    """Entries whose every package range matches; with the Pythons they hit (empty: any)."""
    hits = []
    for entry in entries:
        if entry.broker and broker and entry.broker != broker:
            continue
        if not entry.when:  # known from log evidence only (no version range to check)
            continue
        if not all(n in versions and _matches(spec, versions[n]) for n, spec in entry.when.items()):
            continue
        hit_pythons: list[str] = []
        if entry.python:
            hit_pythons = [p for p in pythons if _matches(entry.python, p if p.count(".") > 1 else p + ".0")
                           or _matches(entry.python, p + ".99")]
            if not hit_pythons:
                continue
        hits.append((entry, hit_pythons))
    return hits


def _known_bad(a: Assessment, catalogue: Catalogue) -> None:
    versions = dict(a.versions)
    for name, pin in a.env.pins.items():  # non-tracked packages (click, importlib-metadata) count too
        if pin.version and name not in versions:
            versions[name] = pin.version
    for entry, hit_pythons in known_bad_hits(versions, a.pythons, a.broker, catalogue.known_bad):
        involved = {n: versions[n] for n in entry.when}
        combo = " + ".join(f"{n} {v}" for n, v in involved.items())
        if hit_pythons:
            combo += f" on Python {', '.join(hit_pythons)}"
        unresolved = [n for n in involved if n in a.resolved]
        confidence = 0.9 if not unresolved else 0.7
        if entry.broker and not a.broker:
            confidence -= 0.2
        explanation = f"Known to break: {entry.symptom}"
        if unresolved:
            explanation += (f" ({', '.join(unresolved)} is not pinned in {a.env.origin}: a fresh install today "
                            f"picks {', '.join(f'{n} {a.resolved[n]}' for n in unresolved)}.)")
        if entry.broker and not a.broker:
            explanation += f" Only with the {entry.broker} transport (pass --broker to be sure)."
        a.problems.append(Problem(
            kind="known_bad", severity=entry.severity, title=f"{combo}: {_headline(entry.symptom)} [{entry.id}]",
            explanation=explanation, packages=involved,
            lines=[ln for n in involved for ln in _line(a.env, n)],
            fix=f"Fixed in: {entry.fixed_in}." + (
                " Pin " + ", ".join(f"{n}{s}" for n, s in entry.avoid.items()) + "." if entry.avoid else ""),
            sources=list(entry.source), confidence=max(confidence, 0.3)))


def _headline(symptom: str, width: int = 90) -> str:
    first = symptom.split(": ", 1)[-1] if symptom.startswith(("Unrecoverable", "Known")) else symptom
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def _yanked(a: Assessment, catalogue: Catalogue) -> None:
    for name, version in a.versions.items():
        rel = catalogue.release(name, version)
        if rel is not None and rel.yanked:
            a.problems.append(Problem(
                kind="yanked", severity="medium", title=f"{name} {version} was yanked from PyPI",
                explanation=f"The maintainers withdrew {name} {version}; pip installs it only when pinned exactly.",
                packages={name: version}, lines=_line(a.env, name),
                fix=f"Move to the next {name} release."))


def _transport(a: Assessment) -> None:
    env, broker = a.env, a.broker
    if broker == "redis" and "redis" not in a.versions and "redis" not in env.pins:
        a.problems.append(Problem(
            kind="transport", severity="high", title="the Redis transport's client library (redis) is missing",
            explanation="The broker URL is redis:// but the redis package is not "
                        + ("installed: kombu.transport.redis cannot import it and the worker cannot connect."
                           if env.installed else "in the requirement set: install celery[redis] or add redis."),
            fix="pip install 'celery[redis]' (keeps redis inside the range kombu declares)."))
    if broker == "amqp" and "librabbitmq" in a.versions:
        a.problems.append(Problem(
            kind="transport", severity="low", title="amqp:// will use librabbitmq, not py-amqp",
            explanation="kombu picks the librabbitmq transport for amqp:// URLs whenever librabbitmq imports "
                        "(kombu.connection: transport 'amqp' -> 'librabbitmq' if supports_librabbitmq()). "
                        "Its heartbeat and connection handling differ from py-amqp's, and it is unmaintained.",
            packages={"librabbitmq": a.versions["librabbitmq"]}, lines=_line(env, "librabbitmq"),
            fix="Uninstall librabbitmq, or use pyamqp:// to force py-amqp.", confidence=0.9))
    check = env.probe.get("transport") if env.installed else None
    if check and not check.get("ok"):
        a.problems.append(Problem(
            kind="transport", severity="critical",
            title=f"the {check.get('url_scheme')}:// transport does not import in {env.origin}",
            explanation=f"Importing the kombu transport for the broker URL failed: {check.get('error')}. "
                        "The worker cannot connect at all.",
            fix="Install the transport's client library inside kombu's declared range.", confidence=0.95))
