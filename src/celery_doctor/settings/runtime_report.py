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
# setting names are lower or upper snake case (old names, Django's CELERY_ prefix); an exception
# line (`KeyError: 'async'`) is neither, so it ends a report pasted above a traceback
_SETTING_NAME = re.compile(r"^_?[a-z][a-z0-9_]*$|^[A-Z][A-Z0-9_]*$")
_EMBEDDED = re.compile(r"^software -> celery:\d", re.M)
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
    first_line: int = 0  # celery report: the lines of the input the report spans (1-based)
    last_line: int = 0
    software_text: str = ""  # the `software -> ...` line, the versions' evidence

    @property
    def celery(self) -> str | None:
        return self.versions.get("celery")

    def named(self) -> dict[str, tuple[str, int, str]]:
        """package (and ``python``, ``transport``) -> (version, line, the line's text): the evidence
        the rules use. The versions stand on the software line, the transport on the settings line."""
        out = {name: (version, self.first_line, self.software_text) for name, version in self.versions.items()}
        if self.transport and self.kind == "celery report":
            out["transport"] = (self.transport, self.first_line, self.software_text)
        return out


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


def _read_report(text: str, source: str, start: int | None = None) -> RuntimeReport:
    """The `celery report` block that starts at line index ``start`` (the first one when None).

    Celery prints (celery/app/utils.py ``BUGREPORT_INFO``, then ``conf.humanize(censored=True)``)::

        software -> celery:{celery_v} kombu:{kombu_v} py:{py_v}
                    billiard:{billiard_v} {driver_v}
        platform -> system:{system} arch:{arch}
                    kernel version:{kernel_version} imp:{py_i}
        loader   -> {loader}
        settings -> transport:{transport} results:{results}

        key: pretty(value)

    The block ends at the first line that is neither a setting, its continuation nor blank, so a
    report pasted above a log (or inside one) is read without the log's lines.
    """
    out = RuntimeReport(kind="celery report", source=source)
    lines = text.splitlines()
    if start is None:
        start = next((i for i, line in enumerate(lines) if line.startswith("software -> ")), None)
    if start is None:
        raise SettingsError(f"{source}: no 'software ->' line: not `celery report` output")
    out.first_line = out.last_line = start + 1
    out.software_text = lines[start].strip()
    software = [lines[start][len("software -> "):]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 4):
            break
        software.append(line.strip())
    for name, version in re.findall(r"([A-Za-z][\w-]*):(\S+)", " ".join(software)):
        key = PACKAGE_NAMES.get(name.lower())
        if key:
            out.versions[key] = version
    settings_at = None
    for number in range(start + 1, min(len(lines), start + 12) + 1):  # the header is 6-8 lines
        line = lines[number - 1]
        if line.startswith("settings -> "):
            for name, value in re.findall(r"(transport|results):(\S+)", line):
                setattr(out, name, value)
            settings_at = number
            break
    if settings_at is None:
        out.notes.append(f"{source}: the report has no 'settings ->' line; only its versions were read")
        return out
    out.last_line = settings_at
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

    blank = 0
    for number in range(settings_at + 1, len(lines) + 1):
        line = lines[number - 1]
        match = _SETTING_LINE.match(line)
        if match and _SETTING_NAME.match(match["key"]):
            flush()
            current, parts = (match["key"], number), [match["value"]]
        elif current is not None and line.startswith(" ") and line.strip():
            parts.append(line)
        elif not line.strip():
            blank += 1
            if blank > 2 and current is not None:
                break  # the report ended; what follows is something else
            continue
        else:
            break  # a log line, a prompt, a closing fence: the report ended
        blank = 0
        out.last_line = number
    flush()
    if "celery" not in out.versions:
        out.notes.append(f"{source}: the software line names no celery version")
    return out


def find_report(text: str, source: str) -> RuntimeReport | None:
    """A `celery report` pasted anywhere in ``text`` (a log paste, an issue's text), or None."""
    match = _EMBEDDED.search(text)
    if match is None:
        return None
    start = text.count("\n", 0, match.start())
    return _read_report(text, source, start)


def find_report_in_file(path: str) -> RuntimeReport | None:
    """The `celery report` inside a pasted file given as a log, if any (pastes are small: larger
    files are looked at in their first megabytes only)."""
    if not _holds_report_line(path):  # a log of a gigabyte: 2 ms instead of decoding 8 MB (80 ms)
        return None
    try:
        with Path(path).open("r", encoding="utf-8", errors="replace") as handle:
            text = handle.read(MAX_BYTES)
    except OSError:
        return None
    return find_report(text, path)


_EMBEDDED_BYTES = b"software -> celery:"  # in the raw bytes of every text _EMBEDDED matches


def _holds_report_line(path: str) -> bool:
    """Whether the bytes that the text read of find_report_in_file covers (MAX_BYTES characters)
    hold _EMBEDDED's literal. Decoding cannot make it where the bytes lack it (a replacement
    character is not ASCII; newline translation only turns \\r into \\n). A character is at most
    4 bytes, and exactly one in a block of ASCII without \\r: the bytes past those characters are
    not looked at."""
    keep = len(_EMBEDDED_BYTES) - 1
    block = bytearray(1 << 20)
    view = memoryview(block)
    chars = 0  # at least this many characters in the bytes read so far
    try:
        with Path(path).open("rb", buffering=0) as handle:
            got = handle.readinto(view[keep:]) or 0  # the first block, after room for the last one's tail
            while got:
                if block.find(_EMBEDDED_BYTES, 0, keep + got) >= 0:
                    return True
                # (the whole buffer is tested for ASCII: stale bytes past a short read only lower the count)
                chars += got if block.isascii() and block.find(b"\r", keep, keep + got) < 0 else got // 4
                if chars >= MAX_BYTES:
                    return False
                block[:keep] = block[got : got + keep]  # a literal cut by the block's end is whole next time
                got = handle.readinto(view[keep:]) or 0
    except OSError:
        return True  # let the text read say why
    return False


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
