"""requirements.txt / constraints files and ``pip freeze`` output (the same grammar)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from celery_doctor.pins.interface import Environment, Pin, PinsError, canonical
from celery_doctor.userfiles import read_text

# pip options that take no requirement: skipped, not errors
_SKIPPED_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
                    "--no-binary", "--only-binary", "--prefer-binary", "--pre", "--require-hashes",
                    "--no-index", "--use-feature")
_INCLUDE = re.compile(r"(-r|--requirement|-c|--constraint)\s*=?\s*(\S+)$")
_EGG = re.compile(r"#egg=([A-Za-z0-9_.-]+)")


def pin_from_requirement(req: Requirement, line: int, text: str) -> Pin:
    """A parsed requirement as a Pin: exact when its only clause is ``==X`` (no wildcard) or ``===X``."""
    specs = list(req.specifier)
    version = None
    if len(specs) == 1 and specs[0].operator in ("==", "===") and not specs[0].version.endswith("*"):
        version = specs[0].version
    for spec in specs:
        try:
            Version(spec.version.rstrip(".*"))
        except (InvalidVersion, ValueError):  # ValueError: more digits than int() takes
            if spec.operator != "===":
                raise PinsError(f"{text[:60]!r}: {spec.version[:24]}{'...' if len(spec.version) > 24 else ''} "
                                "is not a version number") from None
    return Pin(name=canonical(req.name), version=version,
               specifier="" if version else str(req.specifier), extras=tuple(sorted(req.extras)),
               line=line, text=text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        stripped = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def read_requirements(path: Path, text: str, env: Environment | None = None,
                      _seen: set[Path] | None = None) -> Environment:
    env = env or Environment(origin=str(path), format="requirements.txt")
    seen = _seen if _seen is not None else set()
    seen.add(path.resolve())
    freeze_like = True
    for number, line in _logical_lines(text):
        include = _INCLUDE.match(line)
        if include:
            target = include.group(2)
            if "\x00" in target:
                raise PinsError(f"{path}:{number}: the included file name holds a NUL byte")
            included = (path.parent / target).resolve()
            if included in seen:
                continue
            try:
                sub = read_text(included, PinsError, "requirement file")
            except PinsError as exc:
                raise PinsError(f"{path}:{number}: cannot read included file {target}: {exc}") from None
            read_requirements(included, sub, env, seen)
            continue
        if line.startswith(("-e ", "--editable ")):
            egg = _EGG.search(line)
            if egg:
                env.add(Pin(name=canonical(egg.group(1)), line=number, text=line))
            continue
        if line.startswith(_SKIPPED_OPTIONS) or line.startswith("-"):
            continue
        body = re.split(r"\s+--hash[= ]", line)[0].strip()
        try:
            req = Requirement(body)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise PinsError(f"{path}:{number}: not a requirement line: {line[:80]!r} ({reason})") from exc
        try:
            pin = pin_from_requirement(req, number, line)
        except PinsError as exc:
            raise PinsError(f"{path}:{number}: {exc}") from None
        if req.marker is not None:
            try:
                applies = req.marker.evaluate()
            except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker, InvalidVersion) as exc:
                env.notes.append(f"{path}:{number}: marker {str(req.marker)!r} cannot be evaluated ({exc}); "
                                 "the requirement is kept")
                applies = True
            if not applies:
                # a marker for another platform: keep it, the checks may still care
                pin.text += "  (marker false here)"
        if not pin.version:
            freeze_like = False
        env.add(pin)
    if freeze_like and env.pins and env.format == "requirements.txt":
        env.format = "pip-freeze"
    return env
