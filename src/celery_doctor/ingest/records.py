"""Split a whole (small) input into records, line by line, the way a person reads a paste.

The chunk scanner (reader.py) finds the rare interesting lines of a large log by literal search
and walks back to their header. What people paste into a ticket needs more: headers cut at the
front, Markdown or HTML left in, lines hard-wrapped by a mail client, bare exceptions and
tracebacks with no header at all, and header-less lines that are records of their own. Here
every line is classified once, in order, so those rules can use what came before:

- a header (any family's, dated) starts a record; so does a cut or time-less Celery header,
  which starts an *undated* record;
- a header-less standalone line (``worker: Warm shutdown``, the banner, a warning printed to
  stderr) is a record of its own, never glued to the one before;
- ``Traceback (most recent call last):`` continues the record just above it (a logged
  exception), but after a blank line, at the top of the file or after a finished traceback it
  starts an undated record (a bare pasted traceback); chained tracebacks stay one record;
- an exception line at column 0 outside a traceback is a record of its own (``amqp.exceptions.
  AccessRefused: ...`` pasted alone);
- other header-less lines continue the open record; with none open they form undated records
  split at blank lines and at lines that do not read as a continuation.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from celery_doctor.ingest import families, prefixes
from celery_doctor.ingest.families.celery import CHAIN, EXCEPTION
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Side

MAX_RECORD_LINES = 60
KEEP_HEAD = 20  # a record past MAX_RECORD_LINES keeps its first lines and its last ones
ELIDED = "  ..."
MAX_TEXT = 16 * 1024

# Markup a paste picks up on its way into an issue or forum post.
TAGS = re.compile(r"</?(?:font|span|b|i|em|strong|code|pre|br|div|p|samp|kbd)\b[^>]*>", re.I)
QUOTE = re.compile(r"^(?:\s{0,3}>\s?)+")
HEADING = re.compile(r"^#{1,6} ")
BOX = re.compile(r"^[│┃|]\s")
EMPHASIS = re.compile(r"^\*\*(?=\S)|(?<=\S)\*\*\s*$")
FENCE = re.compile(r"^\s*(?:```|~~~)")
TRACEBACK = "Traceback (most recent call last)"
INNER_HEADER = re.compile(r"\[\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d{1,6})?: ?[A-Z]+/[^\]]*\] ")
CONTINUES = re.compile(r"^(?:Trying again|Will retry using next failover|Trying to re-establish|\(\d+/\d+\)|"
                       r"client unexpectedly closed|missed heartbeats from client|[{}]|\[\{|<<)")  # Erlang terms


def clean(line: str) -> str:
    """A line without the Markdown or HTML a paste picked up (quotes, emphasis, headings, tags)."""
    if "<" in line:
        line = TAGS.sub("", line)
    if "&" in line:
        line = html.unescape(line)
    line = QUOTE.sub("", line)
    line = HEADING.sub("", line)
    line = BOX.sub("", line)
    if "**" in line:  # emphasis around the line or its start, never the "**" of a masked password
        line = EMPHASIS.sub("", line)
    if line.startswith("`") and not line.startswith("```"):  # inline code opened on this line
        line = line[1:]
    if line.rstrip().endswith("`") and not line.rstrip().endswith("```"):  # ... and closed
        line = line.rstrip()[:-1]
    return line


@dataclass
class Line:
    offset: int  # byte offset of the physical line
    number: int  # 1-based physical line number
    text: str  # prefix, markup and common indentation removed
    service: str | None
    prefix_ts: object  # datetime | None (the collector's time)


@dataclass
class Piece:
    """A record as the splitter found it (reader.Record is built from it)."""

    start: int
    number: int
    lines: list[str]
    service: str | None
    prefix_ts: object
    family: Family | None  # None: header-less; the catalogue decides (client text first)
    head: Start


def physical_lines(buf: bytes, prefix: str | None) -> Iterator[Line]:
    """Decoded lines with the collector prefix and paste markup removed, partial lines joined."""
    offset, number = 0, 0
    pending: Line | None = None
    cri = prefix == "cri"
    for raw in buf.split(b"\n"):
        number += 1
        start = offset
        offset += len(raw) + 1
        text = raw[:MAX_TEXT].decode("utf-8", errors="replace").rstrip("\r")
        if cri and (partial := prefixes.cri_partial(text)) is not None:  # CRI "P": the line goes on
            body, service, ts = prefixes.strip(text, prefix)
            if pending is None:
                pending = Line(start, number, body, service, ts)
            else:
                pending.text += body
            if partial:
                continue
            line, pending = pending, None
            line.text = clean(line.text)
            yield line
            continue
        body, service, ts = prefixes.strip(clean(text) if "<" in text or ">" in text[:4] else text, prefix)
        if FENCE.match(body):  # a Markdown code fence: a record boundary
            yield Line(start, number, "", service, ts)
            continue
        body = clean(body)
        yield Line(start, number, body.replace("\t", "    ") if body.startswith("\t") else body, service, ts)
    if pending is not None:
        yield pending


# Django's technical 500 page, "copy-and-paste view" and its plain-text twin (django/views/templates/
# technical_500.html, technical_500.txt): "Exception Type: {{ exception_type }}[ at {{ request.path_info }}]"
# then "Exception Value: {{ exception_value }}" end the frames instead of Python's "Type: value" line
DJANGO_TYPE = re.compile(r"^Exception Type: ([A-Za-z_][\w.]*)(?: at \S.*)?$")
DJANGO_VALUE = "Exception Value:"


def django_exception(lines: list[Line]) -> None:
    """Read Django's two lines as the exception line Python would have printed ("Type: value"),
    kept at the value's line number; the type's line becomes a blank (the traceback above ends)."""
    for i, ln in enumerate(lines[:-1]):
        if ln.text.startswith("Exception Type: ") and (m := DJANGO_TYPE.match(ln.text.rstrip())):
            after = lines[i + 1]
            if after.text.startswith(DJANGO_VALUE):
                value = after.text[len(DJANGO_VALUE):].strip()
                after.text = f"{m.group(1)}: {value}" if value else m.group(1)
                ln.text = ""


def common_indent(lines: list[Line]) -> int:
    """The indentation every non-blank line shares (a paste indented as a Markdown code block)."""
    widths = [len(ln.text) - len(ln.text.lstrip(" ")) for ln in lines if ln.text.strip()]
    return min(widths) if widths else 0


def split(buf: bytes, prefix: str | None, family: str, year: int) -> Iterator[Piece]:
    """Every record of ``buf`` (a whole small input), in order."""
    lines = list(physical_lines(buf, prefix))
    indent = common_indent(lines)
    if indent:
        for ln in lines:
            ln.text = ln.text[indent:]
    django_exception(lines)
    known = families.get(family)
    # the sniffed family first, then the others: a paste mixes what a person copied together
    candidates = families.LINE_FAMILIES if known is None or not known.line_based else (
        known, *(f for f in families.LINE_FAMILIES if f is not known))
    current: Piece | None = None
    in_traceback = False  # the open record has a traceback still waiting for its exception line
    finished_traceback = False
    after_chain = False  # the last line read was a chain marker ("During handling of ...")
    blank_before = True
    for ln in lines:
        text = ln.text
        if not text.strip():
            blank_before = True
            continue
        if blank_before and current is not None and current.family is None and not (
                text.strip().startswith(CHAIN) or (after_chain and text.startswith(TRACEBACK))):
            yield current  # a header-less record ends at a blank line (unless a chained traceback goes on)
            current = None
        found = _start(text, candidates, year)
        if found is None and (inner := INNER_HEADER.search(text, 1, 160)) is not None:
            # an unknown prefix in front of a default Celery header (a pod name glued on, a CSV
            # quote, spaces): the record starts at the header
            text = text[inner.start():].rstrip('"')
            found = _start(text, candidates, year)
        if found is not None:
            fam, head = found
            if current is not None and head.key and current.head.key == head.key and fam is current.family:
                current.lines.append(text[fam.message_start(text):])  # RabbitMQ 3.9+: same ts+pid goes on
                blank_before = False
                continue
            if current is not None and _split_traceback(current, fam, head, text):
                # stdout redirected into the log: every traceback line became a WARNING record
                current.lines.append(text[fam.message_start(text):])
                blank_before = False
                continue
            if current is not None:
                yield current
            current = Piece(ln.offset, ln.number, [text], ln.service, ln.prefix_ts, fam, head)
            in_traceback = TRACEBACK in text
            finished_traceback = False
            if head.standalone:
                yield current
                current = None
            blank_before = False
            continue
        stripped = text.strip()
        chain = stripped.startswith(CHAIN)
        starts_traceback = text.startswith(TRACEBACK)
        is_exception = text[:1] not in (" ", "\t") and bool(EXCEPTION.match(stripped))
        # docker compose: another service's line never continues a record (an unprefixed one may)
        joins = current is not None and (current.service == ln.service or None in (current.service, ln.service)
                                         or prefix != "docker-compose")
        if joins and current is not None and (len(current.lines) < MAX_RECORD_LINES or in_traceback or chain
                                              or (starts_traceback and after_chain)) and (
                chain or (starts_traceback and after_chain) or (in_traceback and not starts_traceback)
                or (starts_traceback and not blank_before and not finished_traceback and current.family is not None)
                or (not starts_traceback and not is_exception and (current.family is not None or _goes_on(
                    current.lines[-1], text)))
                or (is_exception and not blank_before and current.family is not None and not finished_traceback)
                # a paste that starts inside a traceback: its frames, then the exception that ends it
                or (is_exception and not blank_before and current.family is None and not finished_traceback
                    and current.lines[-1][:1] in (" ", "\t"))):
            current.lines.append(text)
            if len(current.lines) > MAX_RECORD_LINES:
                elide_a_frame(current.lines)
        else:
            if current is not None:
                yield current
            current = Piece(ln.offset, ln.number, [text], ln.service, ln.prefix_ts, None,
                            Start(None, "", naive=True))
        if starts_traceback:
            in_traceback, finished_traceback, after_chain = True, False, False
        elif chain:
            in_traceback, after_chain = False, True
        elif is_exception and in_traceback:
            in_traceback, finished_traceback = False, True
        blank_before = False
    if current is not None:
        yield current


def elide_a_frame(lines: list[str]) -> None:
    """Keep a long (chained) traceback one record with bounded memory: its head, every exception
    and chain line, and its last frames stay; the oldest frame line past the head goes."""
    if lines[KEEP_HEAD] != ELIDED:
        lines.insert(KEEP_HEAD, ELIDED)
    for i in range(KEEP_HEAD + 1, len(lines) - 8):
        if lines[i][:1] in (" ", "\t"):
            del lines[i]
            return


def _start(text: str, candidates: tuple[Family, ...], year: int) -> tuple[Family, Start] | None:
    for fam in candidates:
        head = fam.start(text, year)
        if head is not None:
            return fam, head
    for fam in candidates:
        head = fam.undated_start(text)
        if head is not None:
            return fam, head
    return None


def _split_traceback(current: Piece, fam: Family, head: Start, text: str) -> bool:
    """Whether a header line carries the next line of a traceback that the record above began
    (worker_redirect_stdouts logs each printed line as its own record, same level and process)."""
    if fam is not current.family or fam.side != Side.CLIENT or head.ts is None or current.head.ts is None:
        return False
    first = current.lines[0]
    if not first[fam.message_start(first):].startswith(TRACEBACK) or head.level != current.head.level:
        return False
    if (head.ts - current.head.ts).total_seconds() > 5:
        return False
    body = text[fam.message_start(text):].strip()
    return body.startswith(('File "', TRACEBACK, *CHAIN)) or bool(EXCEPTION.match(body))


def _goes_on(previous: str, text: str) -> bool:
    """Whether a header-less line continues the header-less line above it."""
    # a paste cut above its "Traceback" line: the next frame goes on the frames (and code lines) above it
    frames = text.startswith('File "') and (previous[:1] in (" ", "\t") or previous.startswith('File "'))
    return previous.rstrip().endswith((":", ",", "(", "\\")) or text[:1] in (" ", "\t") or bool(
        CONTINUES.match(text)) or frames
