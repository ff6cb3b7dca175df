"""Terminal output with rich: what the on-call engineer reads first comes first."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Column, Table
from rich.text import Text

from celery_doctor.model import Finding, Incident, Kind, Report, Severity
from celery_doctor.report.interface import Renderer, short_names, summary_items

if TYPE_CHECKING:
    from celery_doctor.report.sections import Section

SEVERITY_STYLE = {
    Severity.INFO: "dim",
    Severity.LOW: "cyan",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
    Severity.CRITICAL: "bold white on red",
}

# Commands with a payload of their own register a section builder here (command -> builder).
SECTIONS: dict[str, Callable[[Report], list[RenderableType]]] = {}


def _short_ts(incident: Incident) -> str:
    return incident.ts.strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 120:
        return f"{value / 60:.1f}m"
    return f"{value:.1f}s"


def _names(report: Report) -> tuple[str, dict[str, str]]:
    """Every input name shortened the same way in the strip, the incidents and the sources."""
    names = [s.name for s in report.sources] + [e.source for i in report.incidents for e in i.events[:1]]
    return short_names(names)


def sources_table(report: Report) -> Table:
    prefix, short = _names(report)
    table = Table(title=f"Sources (in {prefix})" if prefix else "Sources", title_justify="left", expand=False)
    table.add_column("source", overflow="fold", ratio=3)
    for col in ("format", "lines", "events", "clock offset"):
        table.add_column(col, overflow="fold")
    for src in report.sources:
        offset = f"{src.offset_s:+.1f}s" if src.offset_s else "0"
        if src.offset_basis:
            offset += f" ({src.offset_basis})"
        table.add_row(short.get(src.name, src.name), src.format, str(src.lines), str(src.events), offset)
    return table


def incidents_table(report: Report, width: int = 110, limit: int = 30) -> Table:
    """One row per incident; on a narrow terminal the uptime column goes first, then the date
    (kept in the title when every incident is on one day), so that no cell splits a word."""
    _prefix, short = _names(report)
    days = {inc.ts.date() for inc in report.incidents if inc.ts is not None}
    one_day = len(days) == 1
    title = f"Incidents ({len(report.incidents)})" + (f" on {next(iter(days))}" if one_day else "")
    table = Table(title=title, title_justify="left")
    columns = ["#", "time (UTC)", "closed by", "phase", "idle before", "uptime", "first evidence"]
    if width < 100:
        columns.remove("uptime")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "closed by", "phase"))
    for inc in report.incidents[:limit]:
        first = inc.events[0]
        when = "" if inc.ts is None else inc.ts.strftime("%H:%M:%S" if one_day else "%Y-%m-%d %H:%M:%S")
        row = {"#": str(inc.id), "time (UTC)": when, "closed by": inc.closed_by.value, "phase": inc.phase.value,
               "idle before": _seconds(inc.idle_before_s), "uptime": _seconds(inc.uptime_s),
               "first evidence": f"{short.get(first.source, first.source)}:{first.line} {first.kind.value}"}
        table.add_row(*(row[c] for c in columns))
    if len(report.incidents) > limit:
        table.caption = f"... {len(report.incidents) - limit} more (use --format json for all)"
    return table


def evidence_line(text: str, limit: int = 220) -> str:
    """First line of a record, plus its last line when that is where the reason is."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    shown = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


# what each event kind looks like on the timeline strip (most telling first)
STRIP_MARKS = (
    ({Kind.PROXY_CUT, Kind.PROXY_BLACKHOLE}, "#"),
    ({Kind.CONNECTION_LOST, Kind.HEARTBEAT_MISSED_BROKER, Kind.CANNOT_CONNECT, Kind.AUTH_REFUSED}, "x"),
    ({Kind.HEARTBEAT_MISSED_CLIENT, Kind.CLIENT_CLOSED_ABRUPTLY, Kind.BROKER_FORCED_CLOSE, Kind.SERVER_CLOSED_IDLE,
      Kind.SERVER_CLOSED_LIMIT, Kind.ACCESS_REFUSED, Kind.CONSUMER_TIMEOUT, Kind.CHANNEL_ERROR}, "!"),
    ({Kind.BROKER_STOP, Kind.BROKER_START, Kind.ALARM_SET, Kind.FAILOVER}, "B"),
    ({Kind.CONNECTED, Kind.CONNECTION_ACCEPTED}, "+"),
)


def timeline_strip(report: Report, width: int) -> Text | None:
    """One row per source: x client-side failure, ! broker-side close, # proxy cut, + (re)connect,
    B broker stop/start/alarm, - task activity."""
    if not report.events:
        return None
    start, end = report.events[0].at, report.events[-1].at
    span = max((end - start).total_seconds(), 1.0)
    names = [s.name for s in report.sources if any(e.source == s.name for e in report.events)] or \
        sorted({e.source for e in report.events})
    _prefix, short = _names(report)
    label = min(28, max(len(short.get(n, n)) for n in names))
    cols = max(20, width - label - 4)
    out = Text(f"Timeline {start:%Y-%m-%d %H:%M:%S} .. {end:%H:%M:%S} UTC\n", style="bold")
    out.append("x client failure  ! broker close  # proxy cut  + connect  B broker  - tasks\n", style="dim")
    activity = report.data.get("activity", {}) if isinstance(report.data.get("activity"), dict) else {}
    for name in names:
        row = [" "] * cols
        for a, b, _count in activity.get(name, []):
            for col in (_col(start, span, cols, a), _col(start, span, cols, b)):
                if col is not None:
                    row[col] = "-"
        for marks, char in reversed(STRIP_MARKS):
            for e in report.events:
                if e.source == name and e.kind in marks:
                    col = _col(start, span, cols, e.at.isoformat())
                    if col is not None:
                        row[col] = char
        shown = short.get(name, name)
        shown = shown if len(shown) <= label else "…" + shown[-(label - 1):]
        out.append(f"{shown:>{label}} |{''.join(row)}|\n")
    return out


def _col(start: datetime, span: float, cols: int, when: str) -> int | None:
    try:
        ts = datetime.fromisoformat(when)
    except ValueError:
        return None
    return min(cols - 1, max(0, int((ts - start).total_seconds() / span * (cols - 1))))


def _evidence(ev_source: str, ev_line: int, text: str, inner: int) -> list[RenderableType]:
    """Where, then what: side by side when both fit, else the place on its own line and the
    text indented under it (a path is never broken to make room)."""
    where = f"{ev_source}:{ev_line}" if ev_line else ev_source
    line = evidence_line(text)
    if len(where) + len(line) + 4 <= inner:
        return [Text(f"  {where}  {line}")]
    return [Text(f"  {where}", style="bold"), Padding(Text(line), (0, 0, 0, 4))]


def finding_panel(finding: Finding, width: int = 110) -> Panel:
    inner = width - 4
    head = f"{finding.severity.value.upper()} {finding.category.value} ({finding.confidence:.0%})"
    rule = len(finding.rule_id) + 3 if finding.rule_id else 0
    full_title = len(head) + len(finding.title) + rule + 8 <= width
    body: list[RenderableType] = [] if full_title else [Text(finding.title, style="bold")]
    body.append(Text(finding.explanation.rstrip()))
    if finding.evidence:
        body.append(Text("\nEvidence:", style="bold"))
        for ev in finding.evidence[:6]:
            body += _evidence(ev.source, ev.line, ev.text, inner)
        if len(finding.evidence) > 6:
            body.append(Text(f"  ... {len(finding.evidence) - 6} more (--format json)", style="dim"))
    if finding.contradicting:
        body.append(Text("\nAgainst:", style="bold"))
        for ev in finding.contradicting[:3]:
            body += _evidence(ev.source, ev.line, ev.text, inner)
    if finding.fix:
        body.append(Text("\nFix: ", style="bold green") + Text(finding.fix.text))
        if finding.fix.snippet:
            body.append(Text(finding.fix.snippet, style="green"))
        if finding.fix.verify:
            body.append(Text("Verify: ", style="bold") + Text(finding.fix.verify))
    title = (f"[{SEVERITY_STYLE[finding.severity]}]{finding.severity.value.upper()}[/] "
             f"{finding.category.value} ({finding.confidence:.0%})")
    if full_title:
        title += f" — {finding.title}"
    if finding.rule_id:
        title += f" [{finding.rule_id}]"
    return Panel(Group(*body), title=title, title_align="left")


def _alike(findings: list[Finding]) -> list[list[Finding]]:
    """Consecutive findings of one rule and severity, kept in the report's order."""
    groups: list[list[Finding]] = []
    for f in findings:
        key = (f.rule_id, f.category, f.severity, f.role)
        if groups and (groups[-1][0].rule_id, groups[-1][0].category, groups[-1][0].severity,
                       groups[-1][0].role) == key:
            groups[-1].append(f)
        else:
            groups.append([f])
    return groups


def summary_text(report: Report) -> Text:
    return Text(" | ".join(f"{label}: {value}" for label, value in summary_items(report.summary)))


def _plain_cell(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def fit_columns(table: Table, width: int) -> Table:
    """Make a table fit ``width`` without splitting words where it can: a column that mostly
    repeats its left neighbour is folded into it ('CELERY_ACKS_LATE → task_acks_late'), and every
    column is given the width of its longest word (up to a third of the screen), so rich wraps
    between words rather than inside names and paths."""
    def longest_word(column: Column) -> int:
        words = [w for cell in column._cells for w in _plain_cell(cell).split()] + str(column.header).split()
        return min(max((len(w) for w in words), default=1), max(8, width // 2))

    for column in table.columns:  # 'conf.py:2', 'conf.py:3' -> '2', '3', and 'where: conf.py' in the title
        if len(column._cells) > 1 and all(isinstance(c, str) for c in column._cells):
            cells = [str(c) for c in column._cells]
            prefix = os.path.commonprefix(cells)  # noqa: RUF071 - 'file.py:' is a text prefix, not a path
            prefix = prefix[:prefix.rfind(":") + 1] if ":" in prefix else ""
            if len(prefix) >= 8 and all(len(c) > len(prefix) for c in cells):
                column._cells = [c[len(prefix):] for c in cells]
                table.title = f"{table.title or ''} — {column.header}: {prefix.rstrip(':')}".lstrip(" —")

    def needed() -> int:  # the last column (values, free text) may fold: it counts for 10
        words = [longest_word(c) for c in table.columns]
        return sum(words[:-1]) + min(words[-1], 10) + 3 * len(table.columns) + 1

    def merge(index: int, sep: str) -> None:
        """Fold column ``index`` into its left neighbour, 'a → b' (or a, then → b on its own line)."""
        left, right = table.columns[index - 1], table.columns[index]
        pairs = list(zip(left._cells, right._cells, strict=False))
        left._cells = [a if _plain_cell(a) == _plain_cell(b) or _plain_cell(b) in ("", "-")
                       else f"{a}{sep}→ {_plain_cell(b)}" for a, b in pairs]
        left.header = f"{left.header}{sep}(→ {right.header})"
        table.columns.pop(index)

    def text_pair(index: int) -> list[tuple[object, object]] | None:
        left, right = table.columns[index - 1], table.columns[index]
        pairs: list[tuple[object, object]] = list(zip(left._cells, right._cells, strict=False))
        return pairs if pairs and all(isinstance(a, str) for a, _ in pairs) else None

    # 1. a column that mostly repeats its left neighbour adds nothing but width
    for index in range(len(table.columns) - 1, 0, -1):
        if needed() <= width:
            break
        pairs = text_pair(index)
        if pairs and sum(_plain_cell(a) == _plain_cell(b) or _plain_cell(b) in ("", "-")
                         for a, b in pairs) >= 0.6 * len(pairs):
            merge(index, " ")
    # 2. still too wide for whole words: stack the two neighbours whose words are longest
    if needed() > width and len(table.columns) > 2:
        candidates = [(longest_word(table.columns[i - 1]) + longest_word(table.columns[i]), i)
                      for i in range(1, len(table.columns) - 1) if text_pair(i)]
        if candidates:
            merge(max(candidates)[1], "\n")
    # explicit widths: each column at least its longest word, the rest shared by what each
    # would take unwrapped; when even the words do not fit, the widest words fold
    budget = width - 3 * len(table.columns) - 1
    natural = [max([len(line) for cell in c._cells for line in _plain_cell(cell).splitlines()] +
                   [len(str(c.header))], default=1) for c in table.columns]
    if sum(natural) <= budget:
        return table
    widths = [min(longest_word(c), n) for c, n in zip(table.columns, natural, strict=True)]
    while sum(widths) > budget and widths[-1] > 10:  # the last column (values, text) folds first
        widths[-1] -= 1
    while sum(widths) > budget and max(widths) > 4:
        widths[widths.index(max(widths))] -= 1
    spare = budget - sum(widths)
    wants = [n - w for n, w in zip(natural, widths, strict=True)]
    total = sum(wants) or 1
    widths = [w + spare * want // total for w, want in zip(widths, wants, strict=True)]
    for column, w in zip(table.columns, widths, strict=True):
        column.width = w
    return table


class TextRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=color, no_color=not color,
                          highlight=False, soft_wrap=False)
        for warning in report.warnings:
            console.print(Text(f"warning: {warning}", style="yellow"))
        from celery_doctor.report.sections import input_sections

        sections = input_sections(report)
        combined = report.command == "diagnose"  # its inputs come after the answer; a command's own facts first
        if not combined:
            self._sections(console, sections, width, titled=False)
        if report.summary:
            console.print(summary_text(report))
        # in full: the answer, and up to two more causes (or risks); what the config also shows and
        # the notes are one line each, so hygiene never looks like a cause
        full = [f for f in report.findings[:3] if f.role.value in ("cause", "risk")] or report.findings[:1]
        for finding in full:
            console.print(finding_panel(finding, width))
        for group in _alike([f for f in report.findings if not any(f is g for g in full)]):
            finding = group[0]
            lead = "also found in the config" if finding.role.value == "config" else "also"
            rule = f" [{finding.rule_id}]" if finding.rule_id else ""
            if len(group) < 3:
                for f in group:
                    console.print(Text(f"  {lead}: {f.severity.value} {f.category.value} "
                                       f"({f.confidence:.0%}) {f.title}" + rule))
                continue
            # many findings of one rule (one per old setting name): one line, then the list
            console.print(Text(f"  {lead}: {finding.severity.value} {finding.category.value}{rule}, "
                               f"{len(group)} of them:"))
            for f in group:
                console.print(Padding(Text(f"- {f.title}"), (0, 0, 0, 4)))
        if not report.findings:
            console.print(Text("No findings.", style="green"))
        strip = timeline_strip(report, width)
        if strip is not None:
            console.print(strip)
        if report.incidents:
            console.print(incidents_table(report, width))
        if report.sources:
            console.print(sources_table(report))
        if combined:
            self._sections(console, sections, width, titled=True)
        # rich pads wrapped lines and table cells to the width: trailing blanks only get in the way of
        # diff, grep and paste
        return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())

    @staticmethod
    def _sections(console: Console, sections: list[Section], width: int, titled: bool) -> None:
        for section in sections:
            if titled:
                console.rule(Text(section.title, style="bold"), align="left")
            for part in section.renderables:
                console.print(fit_columns(part, width) if isinstance(part, Table) else part)


def _register() -> None:
    """Commands with a payload of their own add a section builder (imported late: they use this module)."""
    from celery_doctor.report.broker_text import broker_sections
    from celery_doctor.report.config_text import config_sections, report_sections
    from celery_doctor.report.pins_text import pins_sections
    from celery_doctor.report.repro_text import sections as repro_sections

    SECTIONS.update(broker=broker_sections, config=config_sections, pins=pins_sections, repro=repro_sections,
                    report=report_sections)


_register()
