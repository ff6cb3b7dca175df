"""Read a logged traceback: its frames (file, line, function) and the exceptions it ends in.

Celery logs ``Unrecoverable error: Name('text')`` before the traceback, and a chained traceback
has one exception line per link ("During handling of the above exception..."); both count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<function>[\w<>.]+)')
# "ExcName: text" or a bare "ExcName" line at the end of a traceback (dotted names allowed)
EXC_LINE = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?P<name>(?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Mismatch|Failed"
                      r"|Refused|Forced|Exit|Interrupt|Warning)|KeyError|error|timeout)(?::\s?(?P<text>.*))?$")
UNRECOVERABLE = re.compile(r"Unrecoverable error: (?P<name>\w+)\((?P<q>[ub]?['\"])(?P<text>.*?)(?P=q)?[,)]")
COULDNT_ACK = re.compile(r"Couldn't ack \d+, reason:(?P<name>\w+)\((?P<text>.*)\)")


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

    def has_frame(self, path_part: str, function: str | None = None) -> bool:
        return any(path_part in f.file.replace("\\", "/") and (not function or f.function == function)
                   for f in self.frames)


def parse(text: str) -> Traceback:
    frames = tuple(Frame(m["file"], int(m["line"]), m["function"]) for m in FRAME.finditer(text))
    raised: list[Raised] = []
    for line in text.splitlines():
        for pattern in (UNRECOVERABLE, COULDNT_ACK):
            m = pattern.search(line)
            if m:
                raised.append(Raised(m["name"].split(".")[-1], m["text"].strip()))
        m = EXC_LINE.match(line)
        if m and not FRAME.search(line):
            raised.append(Raised(m["name"].split(".")[-1], (m["text"] or "").strip()))
    return Traceback(frames, tuple(raised))
