"""requirements.txt / constraints files and ``pip freeze`` output (the same grammar)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from celery_doctor.pins.interface import Environment, Pin, PinsError, canonical

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
            included = (path.parent / target).resolve()
            if included in seen:
                continue
            try:
                sub = included.read_text(encoding="utf-8")
            except OSError as exc:
                raise PinsError(f"{path}:{number}: cannot read included file {target}: {exc.strerror}") from exc
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
        pin = pin_from_requirement(req, number, line)
        if req.marker is not None and not req.marker.evaluate():
            # a marker for another platform: keep it, the checks may still care
            pin.text += "  (marker false here)"
        if not pin.version:
            freeze_like = False
        env.add(pin)
    if freeze_like and env.pins and env.format == "requirements.txt":
        env.format = "pip-freeze"
    return env
