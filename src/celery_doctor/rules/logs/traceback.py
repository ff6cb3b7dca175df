"""Read a logged traceback: its frames (file, line, function) and the exceptions it ends in.

Celery logs ``Unrecoverable error: Name('text')`` before the traceback, and a chained traceback
has one exception line per link ("During handling of the above exception..."); both count.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>[\w<>.]+)')
# "ExcName: text" or a bare "ExcName" line at the end of a traceback (dotted names allowed)
EXC_LINE = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?P<name>(?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Mismatch|Failed"
                      r"|Refused|Forced|Exit|Interrupt|Warning)|KeyError|error|timeout)(?::\s?(?P<text>.*))?$")
# the repr's text runs to its closing quote (a message may hold "()" and ","), else to the first ")" or ","
UNRECOVERABLE = re.compile(r"Unrecoverable error: (?P<name>\w+)\([ub]?(?:(?P<q>['\"])(?P<text>.*?)(?P=q),?\)"
                           r"|['\"]?(?P<cut>[^,)]*))")
COULDNT_ACK = re.compile(r"Couldn't ack \d+, reason:(?P<name>\w+)\((?P<text>.*)\)")
# messages only one exception carries, quoted without their class (an error page, a chat paste):
# kombu/transport/redis.py raises this text only as kombu.exceptions.VersionMismatch
# (pattern, exception, a literal every match holds: tested first, since the rules run these on every
# event and a pattern that begins with [\w.]+ is tried at every word)
KNOWN_MESSAGES = (
    (re.compile(r"\b(?:Redis|Redis cluster) transport requires redis-py versions .*"), "VersionMismatch",
     " transport requires redis-py versions "),
    # CPython's own wording for a call with a keyword the callee lacks: only ever a TypeError (Flower's
    # "Failed to capture events: '...'" and error trackers quote it without the class)
    (re.compile(r"[\w.]+\(\) got an unexpected keyword argument '\w+'"), "TypeError",
     "() got an unexpected keyword argument '"),
)


def known_messages(text: str) -> list[tuple[re.Match[str], str]]:
    """(match, exception name) of each KNOWN_MESSAGES entry found in ``text``."""
    return [(m, name) for pattern, name, literal in KNOWN_MESSAGES
            if literal in text and (m := pattern.search(text)) is not None]
FRAME_OR_HEADER = re.compile(r'^\s*(?:File "|Traceback \(most recent|During handling|The above exception)')


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str


@dataclass(frozen=True)
class Raised:
    name: str  # short name: "KeyError", "VersionMismatch"
    text: str


@dataclass(frozen=True)
class Traceback:
    frames: tuple[Frame, ...]
    raised: tuple[Raised, ...]

    def has_frame(self, path_part: str, function: str | None = None, line: int | None = None) -> bool:
        return any(path_part in f.file.replace("\\", "/") and (not function or f.function == function)
                   and (line is None or f.line == line) for f in self.frames)


@functools.lru_cache(maxsize=4096)  # several rules and the versions fingerprint parse the same events
def parse(text: str) -> Traceback:
    frames = tuple(Frame(m["file"], int(m["line"]), m["function"]) for m in FRAME.finditer(text))
    raised: list[Raised] = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        for pattern in (UNRECOVERABLE, COULDNT_ACK):
            m = pattern.search(line)
            if m:
                said = m["text"] if m["text"] is not None else m["cut"] if "cut" in m.groupdict() else ""
                raised.append(Raised(m["name"].split(".")[-1], (said or "").strip()))
        m = EXC_LINE.match(line)
        if m and not FRAME.search(line):
            said = (m["text"] or "").strip()
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if not said and nxt and not FRAME_OR_HEADER.match(nxt) and not EXC_LINE.match(nxt):
                said = nxt  # an error page: the class on one line, its message on the next
            raised.append(Raised(m["name"].split(".")[-1], said))
    for pattern, name, literal in KNOWN_MESSAGES:
        for line in lines:
            found = pattern.search(line) if literal in line else None
            if found and not any(r.name == name and found.group(0)[:40] in r.text for r in raised):
                raised.append(Raised(name, found.group(0).strip()))
    return Traceback(frames, tuple(raised))
