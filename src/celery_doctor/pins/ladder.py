"""The upgrade ladder: from the current Celery to the target in small steps, each a fully pinned set.

A step is the newest patch of a release line that the data, the declared ranges and the known-bad
list all allow. The sets are solved from ``requirements.json``; ``ladder.json`` only says where to
stop, what changes at each stop, and which contemporaneous client versions to try first.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from celery_doctor.pins.catalogue import Catalogue
from celery_doctor.pins.checks import PYTHONS, known_bad_hits
from celery_doctor.pins.interface import PinsError
from celery_doctor.pins.resolver import ORDER, Request, Unsatisfiable, deadline_after, newest_patch, resolve

LADDER_PACKAGES = ("celery", "kombu", "amqp", "billiard", "vine", "redis")


@dataclass
class Step:
    number: int
    celery: str
    pins: dict[str, str]
    pythons: list[str]  # X.Y every pinned release supports, with no known-bad hit
    python: str  # the one to use for this step
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def constraints(self) -> str:
        lines = [f"# celery-doctor ladder step {self.number}: celery {self.celery} on Python {self.python}",
                 f"# Python: {', '.join(self.pythons)}"]
        lines += [f"{name}=={version}" for name, version in self.pins.items()]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.number, "celery": self.celery, "pins": self.pins, "python": self.python,
                "pythons": self.pythons, "changes": self.changes, "notes": self.notes}


@functools.cache
def _stops() -> list[dict[str, Any]]:
    text = resources.files("celery_doctor").joinpath("data", "ladder.json").read_text(encoding="utf-8")
    return json.loads(text)["stops"]


def _line(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor}"


def supported_pythons(pins: dict[str, str], catalogue: Catalogue, broker: str | None = None) -> list[str]:
    """X.Y versions every pinned release accepts (Requires-Python and, where listed, classifiers of
    celery itself) and that no known-bad entry hits."""
    out = []
    for py in PYTHONS:
        ok = True
        for name, version in pins.items():
            rel = catalogue.release(name, version)
            if rel is None or rel.supports_python(py + ".0") is False:
                ok = False
                break
            if name == "celery" and rel.classified_for(py) is False:
                ok = False
                break
        if ok and known_bad_hits(pins, [py], broker, catalogue.known_bad):
            ok = False
        if ok:
            out.append(py)
    return out


def _accept(catalogue: Catalogue, python: str | None, broker: str | None):
    def accept(name: str, version: str, chosen: dict[str, str]) -> bool:
        trial = {**chosen, name: version}
        return not known_bad_hits(trial, [python] if python else [], broker, catalogue.known_bad)
    return accept


def solve_step(catalogue: Catalogue, celery: str, python: str | None, prefer: dict[str, str],
               broker: str | None = None, keep_librabbitmq: bool = False,
               deadline: float | None = None) -> dict[str, str]:
    """The pinned set for one celery release: declared ranges, no known-bad hit, preferences when possible."""
    base = {"celery": f"=={celery}", "redis": ""}
    if keep_librabbitmq:
        base["librabbitmq"] = ""
    extras = {"celery": {"redis"}, "kombu": {"redis"}}
    celery_line = Version(celery)
    # contemporaneous kombu first (celery 5.x and kombu 5.x share minor lines), then later lines
    kombu_lines: list[str | None] = []
    if celery_line.major >= 5:
        lines = sorted({_line(v) for v in catalogue.versions("kombu")}, key=Version)
        kombu_lines = [f"~={ln}.0" for ln in lines if Version(ln) >= Version(_line(celery))]
    attempts: list[dict[str, str]] = []
    for kombu in [*kombu_lines, None]:
        for use_prefer in (True, False):
            specs = dict(base)
            if use_prefer:
                specs.update({k: v for k, v in prefer.items() if k in ORDER})
            if kombu:
                specs["kombu"] = kombu
            attempts.append(specs)
    for specs in attempts:
        try:
            pins = resolve(Request(specs=specs, extras=extras, python=python, deadline=deadline,
                                   accept=_accept(catalogue, python, broker)), catalogue)
        except Unsatisfiable:
            continue
        return {n: pins[n] for n in ORDER if n in pins}
    raise Unsatisfiable(f"no pinned set for celery {celery}" + (f" on Python {python}" if python else ""))


def plan(catalogue: Catalogue, current: str, target: str, python: str | None = None,
         broker: str | None = None, keep_librabbitmq: bool = False,
         start: dict[str, str] | None = None) -> list[Step]:
    """Steps from ``current`` (a celery version) to ``target`` (a version or an X.Y line)."""
    versions = catalogue.versions("celery")
    if target.count(".") == 1 or catalogue.release("celery", target) is None:
        line_newest = newest_patch(catalogue, "celery", target) if target.count(".") == 1 else None
        if line_newest is None:
            raise PinsError(f"--to {target}: no such celery release (known {versions[0]} .. {versions[-1]})")
        target = line_newest
    if Version(target) <= Version(current):
        raise PinsError(f"--to {target}: not newer than the current celery {current}")
    if catalogue.release("celery", current) is None and Version(current) >= Version(versions[0]):
        raise PinsError(f"celery {current} does not exist")
    stops = []
    for stop in _stops():
        newest = newest_patch(catalogue, "celery", stop["line"])
        if newest is None:
            continue
        if Version(current) < Version(newest) < Version(target) and \
                Version(stop["line"]) >= Version(_line(current)):
            stops.append((newest, stop))
    target_stop = next((s for s in _stops() if s["line"] == _line(target)),
                       {"line": _line(target), "prefer": {}, "changes": []})
    stops.append((target, target_stop))

    steps: list[Step] = []
    py = python
    deadline = deadline_after()  # the whole ladder, however many sets it tries
    for number, (celery, stop) in enumerate(stops, 1):
        notes: list[str] = []
        # the Python of this step: stay where the user is while celery allows it, else the nearest newer
        pins, step_py = _solve_for_python(catalogue, celery, py, stop.get("prefer", {}), broker, keep_librabbitmq,
                                          deadline)
        pythons = supported_pythons(pins, catalogue, broker)
        if py and step_py and _xy(py) != step_py:
            notes.append(f"Python {_xy(py)} -> {step_py}: change the interpreter at this step "
                         f"(celery {celery} supports {', '.join(pythons)}).")
        py = step_py
        before = steps[-1].pins if steps else dict(start or {})
        changes = [c for c in stop.get("changes", []) if _move_happens(c, before, pins)]
        if before:
            moved = [_moved(n, before.get(n), v) for n, v in pins.items() if before.get(n) != v]
            if moved:
                changes.insert(0, "Moves " + "; ".join(moved) + ".")
        steps.append(Step(number=number, celery=celery, pins=pins, pythons=pythons, python=step_py or "",
                          changes=changes, notes=notes))
    return steps


# a ladder.json note that names a major move ("redis-py 2 -> 3 (...)") holds only when this step makes it
_MAJOR_MOVE = re.compile(r"^(?P<name>[A-Za-z][\w.-]*) (?P<old>\d+)(?:\.x)? -> (?P<new>\d+)\b")
_DIST = {"redis-py": "redis", "py-amqp": "amqp"}


def _major(version: str | None) -> int | None:
    try:
        return Version(version).major if version else None
    except InvalidVersion:
        return None


def _move_happens(note: str, before: dict[str, str], after: dict[str, str]) -> bool:
    match = _MAJOR_MOVE.match(note)
    if match is None or not before:
        return True
    name = _DIST.get(match["name"], match["name"])
    return _major(before.get(name)) == int(match["old"]) and _major(after.get(name)) == int(match["new"])


def _moved(name: str, old: str | None, new: str) -> str:
    """'redis 3.3.8 -> 3.5.3'; a step back is said so, since a ladder should only climb."""
    if not old:
        return f"{name} pinned at {new}"
    text = f"{name} {old} -> {new}"
    try:
        if old and Version(new) < Version(old):
            return text + " (a DOWNGRADE: the newer one does not fit this step's other pins)"
    except InvalidVersion:
        pass
    return text


def _celery_pythons(catalogue: Catalogue, celery: str) -> list[str]:
    rel = catalogue.release("celery", celery)
    assert rel is not None
    return [p for p in PYTHONS if rel.supports_python(p + ".0") is not False and rel.classified_for(p) is not False]


def _solve_for_python(catalogue: Catalogue, celery: str, current: str | None, prefer: dict[str, str],
                      broker: str | None, keep_librabbitmq: bool,
                      deadline: float | None = None) -> tuple[dict[str, str], str]:
    """Solve at the user's Python when celery supports it, else at the nearest newer one that works."""
    candidates = _celery_pythons(catalogue, celery)
    first = _choose_python(current, candidates)
    order = [first] + [p for p in candidates if Version(p) > Version(first)] + \
        [p for p in reversed(candidates) if Version(p) < Version(first)]
    for py in order:
        try:
            pins = solve_step(catalogue, celery, py, prefer, broker, keep_librabbitmq, deadline)
        except Unsatisfiable:
            continue
        if py in supported_pythons(pins, catalogue, broker):
            return pins, py
    raise Unsatisfiable(f"no pinned set for celery {celery} on any Python it supports")


def _xy(python: str) -> str:
    v = Version(python)
    return f"{v.major}.{v.minor}"


def _choose_python(current: str | None, pythons: list[str]) -> str:
    if not pythons:
        return _xy(current) if current else ""
    if current is None:
        return pythons[-1]
    cur = Version(_xy(current))
    if _xy(current) in pythons:
        return _xy(current)
    newer = [p for p in pythons if Version(p) > cur]
    return newer[0] if newer else pythons[-1]


def write_constraints(steps: list[Step], directory: str) -> list[str]:
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PinsError(f"--write-constraints {directory}: cannot create it: {exc.strerror}") from exc
    written = []
    for step in steps:
        path = out / f"step-{step.number:02d}-celery-{step.celery}.txt"
        try:
            path.write_text(step.constraints(), encoding="utf-8")
        except OSError as exc:
            raise PinsError(f"cannot write {path}: {exc.strerror}") from exc
        written.append(str(path))
    return written
