"""Open an input (plain, .gz, stdin), sniff its family and collector prefix, stream it."""

from __future__ import annotations

import io
import re
import sys
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from celery_doctor.ingest import prefixes
from celery_doctor.ingest.families import celery
from celery_doctor.ingest.interface import IngestError
from celery_doctor.ingest.reader import CHUNK, family_of, strip_prefix
from celery_doctor.userfiles import check_regular

SNIFF_BYTES = 256 * 1024
RAW_CHUNK = 256 * 1024  # compressed bytes inflated at a time
UTF16_MAX_BYTES = 64 * 1024 * 1024  # transcoded in memory: larger UTF-16 files are read as bytes


def open_binary(path: str) -> tuple[BinaryIO, int]:
    """(stream, size or 0) for a path or '-'; raises IngestError with a readable reason."""
    if path == "-":
        return sys.stdin.buffer, 0
    file = Path(path)
    if file.is_dir():
        raise IngestError(f"{path}: is a directory (give the files inside, or use diagnose --logs DIR)")
    # a FIFO with no writer blocks open() forever, /dev/zero never ends: regular files only
    # (a pipe's text still comes in through "-")
    check_regular(file, IngestError, "log file")
    try:
        handle: BinaryIO = file.open("rb")
        size = file.stat().st_size
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror})") from None
    magic = handle.read(2)
    handle.seek(0)
    if magic == b"\x1f\x8b":
        return GzipStream(handle), size  # type: ignore[return-value]
    if magic in (b"\xff\xfe", b"\xfe\xff") and size <= UTF16_MAX_BYTES:
        # a log saved by Windows tools or PowerShell's Out-File (UTF-16 with a BOM): read as UTF-8
        with handle:
            text = handle.read().decode("utf-16", errors="replace")
        data = text.encode("utf-8")
        return io.BytesIO(data), len(data)
    return handle, size


class GzipStream(io.RawIOBase):
    """gzip that keeps what it could decompress: GzipFile raises EOFError on a truncated file
    and drops the block it was decoding (a log cut by a full disk read as 'empty' where zcat
    recovers most lines). This one returns every byte that decompresses, then raises EOFError
    once, so the readers warn 'read up to the break'."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._buffer = bytearray()
        self._done = False
        self._truncated = False
        self._reported = False

    def readable(self) -> bool:
        return True

    def _fill(self, want: int) -> None:
        while (want < 0 or len(self._buffer) < want) and not self._done:
            raw = self._handle.read(RAW_CHUNK)  # a log inflates ~12x: 16 MB of it would be ~200 MB held here
            if not raw:
                self._done = True
                self._truncated = not self._inflate.eof
                break
            try:
                self._buffer += self._inflate.decompress(raw)
                while self._inflate.eof and self._inflate.unused_data:  # the next member of a multi-member file
                    rest = self._inflate.unused_data
                    self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    self._buffer += self._inflate.decompress(rest)
            except zlib.error:
                self._done = self._truncated = True

    def read(self, size: int | None = -1) -> bytes:
        want = -1 if size is None else size
        self._fill(want)
        count = len(self._buffer) if want < 0 else min(want, len(self._buffer))
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        if not out and want != 0 and self._truncated and not self._reported:
            self._reported = True
            raise EOFError("compressed data ends before the end-of-stream marker")
        return out

    def cut_short(self) -> bool:
        """True once, when everything was read and the file ended before its end marker."""
        if self._done and self._truncated and not self._buffer and not self._reported:
            self._reported = True
            return True
        return False

    def close(self) -> None:
        self._handle.close()
        super().close()


def chunks(stream: BinaryIO, first: bytes, warnings: list[str], limit: int | None = None) -> Iterator[bytes]:
    """Chunks that end at a line boundary (one copy per chunk); a truncated .gz yields what it
    could and warns. ``limit``: stop after that many bytes (a byte range of a split file)."""
    carry = first
    left = None if limit is None else limit - len(first)
    while True:
        want = CHUNK if left is None else min(CHUNK, left)
        try:
            block = stream.read(want) if want > 0 else b""
        except (EOFError, OSError, zlib.error) as exc:
            warnings.append(f"compressed data ends early ({exc.__class__.__name__}): read up to the break")
            block = b""
        if left is not None:
            left -= len(block)
        if not block:
            if carry:
                yield carry if carry.endswith(b"\n") else carry + b"\n"
            return
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # one enormous line: keep reading, but never hold more than 4 chunks of it
            carry = carry + block if len(carry) < 4 * CHUNK else (carry + block)[-CHUNK:]
            continue
        yield b"".join((carry, memoryview(block)[:cut]))
        carry = block[cut:]


def read_head(stream: BinaryIO, warnings: list[str]) -> bytes:
    try:
        head = stream.read(SNIFF_BYTES)
    except (EOFError, OSError, zlib.error) as exc:
        warnings.append(f"compressed data ends early ({exc.__class__.__name__})")
        return b""
    if isinstance(stream, GzipStream) and stream.cut_short():  # a small file: the head is all of it
        warnings.append("compressed data ends early: read up to the break")
    return head


def looks_binary(head: bytes) -> bool:
    if not head:
        return False
    sample = head[:8192]
    control = len(sample) - len(sample.translate(None, _CONTROL))  # in C: a loop in Python cost ~1 ms a file
    return sample.count(b"\x00") > 0 or control > len(sample) * 0.1


_CONTROL = bytes([*range(9), *range(14, 32)])


def sniff(head: bytes, hint: str | None, year: int) -> tuple[str | None, str | None, dict[str, str]]:
    """(family, prefix, service -> family) for the first lines of a file; family 'multi' for
    docker-compose output that interleaves services of different families."""
    from celery_doctor.ingest.records import clean  # pasted Markdown/HTML must not hide the layout

    lines = [clean(ln) for ln in head.decode("utf-8", errors="replace").splitlines()[:400] if ln.strip()]
    lines = [ln.replace("\t", "    ") for ln in lines if ln.strip() and not ln.lstrip().startswith(("```", "~~~"))]
    indent = min((len(ln) - len(ln.lstrip(" ")) for ln in lines), default=0)  # a Markdown code block
    lines = [ln[indent:] for ln in lines]
    if not lines:
        return None, None, {}
    prefix = None
    need = max(1, 0.6 * len(lines))
    for candidate in prefixes.PREFIXES:
        if _matches_at_least(candidate.pattern, lines, need):
            prefix = candidate.name
            break
    stripped = [strip_prefix(ln, prefix) for ln in lines]
    if hint:
        return hint, prefix, {}
    objects = sum(ln.lstrip().startswith("{") for ln, _, _ in stripped)
    if objects >= max(1, 0.6 * len(stripped)) or (objects and len(stripped) - objects <= 2):  # a line of prose around
        return "json", prefix, {}
    votes: dict[str, int] = {}
    services: dict[str, str] = {}
    for line, service, _ in stripped:
        family = family_of(line, year) or _untimed_family(line)
        if family:
            votes[family] = votes.get(family, 0) + 1
            services.setdefault(service or "", family)
    if not votes:
        return None, prefix, {}
    if prefix is not None and prefixes.BY_NAME[prefix].services and len(votes) > 1:
        return "multi", prefix, services
    if prefix is None and len(votes) > 1 and sorted(votes.values())[-2] >= 2:
        return "multi", prefix, services  # a paste of worker and broker lines one after the other
    return max(votes, key=lambda f: votes[f]), prefix, services


def _matches_at_least(pattern: re.Pattern[str], lines: list[str], need: float) -> bool:
    """Whether ``pattern`` matches at least ``need`` of ``lines`` (given up on as soon as it cannot:
    most files have no prefix, and each candidate was matched against all their lines)."""
    hits, left = 0, len(lines)
    for line in lines:
        if pattern.match(line):
            hits += 1
            if hits >= need:
                return True
        left -= 1
        if hits + left < need:
            return False
    return hits >= need


def _untimed_family(line: str) -> str | None:
    """A record start without a time (a cut header, a time-of-day layout) also says the family."""
    from celery_doctor.ingest.families import LINE_FAMILIES

    return next((f.name for f in LINE_FAMILIES if (h := f.undated_start(line)) is not None and not h.standalone), None)


def default_year(path: str) -> tuple[int, bool]:
    """The year for Redis lines that carry none: the file's mtime year (and say it was guessed)."""
    try:
        return datetime.fromtimestamp(Path(path).stat().st_mtime, tz=UTC).year, True
    except OSError:
        return datetime.now(tz=UTC).year, True


def text_lines(rest: Iterator[bytes]) -> Iterator[tuple[int, str]]:
    """Numbered decoded lines (for the small JSON sources)."""
    number = 0
    for block in rest:
        for raw in io.BytesIO(block):
            number += 1
            yield number, raw.decode("utf-8", errors="replace").rstrip("\r\n")


def celery_layout(sample: str) -> str:
    """'celery' (4.0+ default), 'celery-3.1' (default, 3.1 task lines) or 'custom'."""
    lines = [ln for ln in sample.splitlines() if ln.startswith("[")]
    if not lines or sum(bool(celery.HEADER.match(ln)) for ln in lines) < 0.9 * len(lines):
        return "custom"
    return "celery-3.1" if "Received task: " in sample else "celery"


def undated_errors(head: bytes, limit: int = 5) -> list[list[object]]:
    """[line, text] of connection errors in a file whose lines carry no timestamps."""
    from celery_doctor.ingest.signatures import CONNECTION_ERROR

    found: list[list[object]] = []
    for number, line in enumerate(head.decode("utf-8", errors="replace").splitlines(), 1):
        text = line.strip()
        if text and not text.startswith(("File ", "Traceback")) and CONNECTION_ERROR.search(text) and \
                re.match(r"^[\w.]*(Error|Exception|error|Forced|Refused)\b", text):
            found.append([number, text[:300]])
            if len(found) >= limit:
                break
    return found
