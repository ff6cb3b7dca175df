"""What a running Celery says about itself: ``celery report`` output and ``celery inspect conf``.

Both are pasted into issues all the time, and both are better evidence than the files: they show
the settings after Celery loaded them (namespace, environment, code all applied), and ``celery
report`` names the versions in use (the ``software ->`` line). Nothing is imported or executed:
values are read with ``ast.literal_eval`` / ``json``; censored values (``********``) stay censored.

    software -> celery:5.7.0 (collider) kombu:5.7.0 py:3.11.7
                billiard:4.3.2 py-amqp:5.4.2
    ...
    settings -> transport:amqp results:redis://127.0.0.1:6379/3

    broker_url: 'amqp://guest:********@127.0.0.1:5672//'
    broker_transport_options:
     'password': '********', 'visibility_timeout': 3600}

``inspect conf`` comes as ``--json`` (``{"worker@host": {...}}``) or as text (``->  worker@host: OK``
followed by the indented JSON of its settings).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery_doctor.settings.interface import SettingsError

# `celery report` names -> PyPI project names (the pins stage's vocabulary)
PACKAGE_NAMES = {"celery": "celery", "kombu": "kombu", "billiard": "billiard", "py-amqp": "amqp", "amqp": "amqp",
                 "redis": "redis", "librabbitmq": "librabbitmq", "vine": "vine", "py": "python"}
MAX_BYTES = 8 * 1024 * 1024  # a pasted report is kilobytes; anything much bigger is not one

_SOFTWARE = re.compile(r"^software -> (?P<first>.*)$", re.M)
_SETTING_LINE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*): ?(?P<value>.*)$")
_INSPECT_NODE = re.compile(r"^->\s+(?P<node>\S+?):\s+OK\s*$", re.M)


@dataclass
class RuntimeReport:
    """A running Celery's own account of its versions and settings."""

    kind: str  # "celery report" | "inspect conf"
    source: str
    versions: dict[str, str] = field(default_factory=dict)  # PyPI name (and "python") -> version
    transport: str | None = None  # the `settings -> transport:` word (amqp, redis...)
    results: str | None = None  # the result backend as reported (disabled, redis://...)
    settings: dict[str, Any] = field(default_factory=dict)  # name as printed -> value
    lines: dict[str, int] = field(default_factory=dict)  # name -> 1-based line in the input
    texts: dict[str, str] = field(default_factory=dict)  # name -> the input's own line
    workers: list[str] = field(default_factory=list)  # inspect conf: the nodes that answered
    notes: list[str] = field(default_factory=list)

    @property
    def celery(self) -> str | None:
        return self.versions.get("celery")


def sniff(text: str) -> str | None:
    """'celery report', 'inspect conf' or None, from the first few kilobytes."""
    head = text[:20000]
    if _SOFTWARE.search(head) and re.search(r"\bcelery:\d", head):
        return "celery report"
    if _INSPECT_NODE.search(head):
        return "inspect conf"
    stripped = head.lstrip()
    if stripped.startswith("{") and re.search(r'"[^"]+@[^"]+"\s*:\s*\{', head) and (
            "broker_url" in head or "BROKER_URL" in head or "deprecated_settings" in head):
        return "inspect conf"
    return None


def _value(text: str) -> Any:
    """A printed setting value: Python literal when it is one, else the text itself (reprs of objects)."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _read_report(text: str, source: str) -> RuntimeReport:
    out = RuntimeReport(kind="celery report", source=source)
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("software -> ")), None)
    if start is None:
        raise SettingsError(f"{source}: no 'software ->' line: not `celery report` output")
    software = [lines[start][len("software -> "):]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 4):
            break
        software.append(line.strip())
    for name, version in re.findall(r"([A-Za-z][\w-]*):(\S+)", " ".join(software)):
        key = PACKAGE_NAMES.get(name.lower())
        if key:
            out.versions[key] = version
    for number, line in enumerate(lines, 1):
        if line.startswith("settings -> "):
            for name, value in re.findall(r"(transport|results):(\S+)", line):
                setattr(out, name, value)
            start = number
            break
    else:
        start = len(lines)
    # `key: value` lines; a dict or list value continues on lines that start with a space
    current: tuple[str, int] | None = None
    parts: list[str] = []

    def flush() -> None:
        if current is None:
            return
        key, line_no = current
        joined = "".join(parts).strip()
        if joined and not joined.startswith(("{", "[", "(")) and joined.endswith("}"):
            joined = "{" + joined  # `celery report` prints a dict's opening brace on the key's line, then drops it
        out.settings[key] = _value(joined)
        out.lines[key] = line_no
        out.texts[key] = lines[line_no - 1]

    for number in range(start + 1, len(lines) + 1):
        line = lines[number - 1]
        match = _SETTING_LINE.match(line)
        if match and not line.startswith(" "):
            flush()
            current, parts = (match["key"], number), [match["value"]]
        elif current is not None and line.startswith(" "):
            parts.append(line)
        elif not line.strip():
            continue
    flush()
    if "celery" not in out.versions:
        out.notes.append(f"{source}: the software line names no celery version")
    return out


def _read_inspect(text: str, source: str) -> RuntimeReport:
    out = RuntimeReport(kind="inspect conf", source=source)
    nodes: dict[str, Any] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            nodes = json.loads(stripped)
        except ValueError as exc:
            raise SettingsError(f"{source}: `inspect conf --json` output that is not JSON ({exc})") from None
    else:
        marks = list(_INSPECT_NODE.finditer(text))
        for mark, following in zip(marks, [*marks[1:], None], strict=True):
            body = text[mark.end(): following.start() if following else len(text)]
            body = body[: body.rfind("}") + 1] if "}" in body else ""
            try:
                nodes[mark["node"]] = json.loads(body)
            except ValueError:
                out.notes.append(f"{source}: the answer of {mark['node']} is not JSON; skipped")
    if not isinstance(nodes, dict) or not nodes:
        raise SettingsError(f"{source}: no worker's settings in this `inspect conf` output")
    out.workers = sorted(nodes)
    first = nodes[out.workers[0]]
    if not isinstance(first, dict):
        raise SettingsError(f"{source}: {out.workers[0]} answered with something other than its settings")
    out.settings = dict(first)
    differ = [w for w in out.workers[1:] if nodes[w] != first]
    if differ:
        out.notes.append(f"{source}: {', '.join(differ)} run with settings other than {out.workers[0]}'s; "
                         f"judged: {out.workers[0]}")
    text_lines = text.splitlines()
    for key in out.settings:
        number = next((i for i, line in enumerate(text_lines, 1) if f'"{key}"' in line), 0)
        out.lines[key] = number
        out.texts[key] = text_lines[number - 1].strip() if number else f"{key}: {out.settings[key]!r}"
    return out


def read_runtime_text(text: str, source: str) -> RuntimeReport:
    kind = sniff(text)
    if kind == "celery report":
        return _read_report(text, source)
    if kind == "inspect conf":
        return _read_inspect(text, source)
    raise SettingsError(f"{source}: neither `celery report` output nor `celery inspect conf` output")


def read_runtime(path: str) -> RuntimeReport:
    """One pasted `celery report` or `inspect conf` output (file path)."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_BYTES:
            raise SettingsError(f"{path}: {file.stat().st_size} bytes is too big for a Celery report")
        text = file.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    return read_runtime_text(text, path)


def is_runtime_report(path: str) -> bool:
    """True for a file (not .py) whose text is `celery report` or `inspect conf` output."""
    file = Path(path)
    if file.suffix in (".py", ".yml", ".yaml") or not file.is_file():
        return False
    try:
        with file.open("r", encoding="utf-8", errors="replace") as handle:
            head = handle.read(20000)
    except OSError:
        return False
    return sniff(head) is not None
