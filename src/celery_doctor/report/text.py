"""Terminal output with rich: what the on-call engineer reads first comes first."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Finding, Incident, Kind, Report, Severity
from celery_doctor.report.interface import Renderer, plain

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


def sources_table(report: Report) -> Table:
    table = Table(title="Sources", title_justify="left", expand=False)
    for col in ("source", "format", "lines", "events", "clock offset"):
        table.add_column(col)
    for src in report.sources:
        offset = f"{src.offset_s:+.1f}s" if src.offset_s else "0"
        if src.offset_basis:
            offset += f" ({src.offset_basis})"
        table.add_row(src.name, src.format, str(src.lines), str(src.events), offset)
    return table


def incidents_table(report: Report, limit: int = 30) -> Table:
    table = Table(title=f"Incidents ({len(report.incidents)})", title_justify="left")
    for col in ("#", "time (UTC)", "closed by", "phase", "idle before", "uptime", "evidence"):
        table.add_column(col, overflow="fold")
    for inc in report.incidents[:limit]:
        first = inc.events[0]
        table.add_row(
            str(inc.id),
            _short_ts(inc),
            inc.closed_by.value,
            inc.phase.value,
            _seconds(inc.idle_before_s),
            _seconds(inc.uptime_s),
            f"{first.source}:{first.line} {first.kind.value}",
        )
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
    label = min(28, max(len(n) for n in names))
    cols = max(20, width - label - 4)
    out = Text(f"Timeline {start:%Y-%m-%d %H:%M:%S} .. {end:%H:%M:%S} UTC "
               "(x client failure, ! broker close, # proxy cut, + connect, B broker, - tasks)\n", style="bold")
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
        short = name if len(name) <= label else "…" + name[-(label - 1):]
        out.append(f"{short:>{label}} |{''.join(row)}|\n")
    return out


def _col(start: datetime, span: float, cols: int, when: str) -> int | None:
    try:
        ts = datetime.fromisoformat(when)
    except ValueError:
        return None
    return min(cols - 1, max(0, int((ts - start).total_seconds() / span * (cols - 1))))


def finding_panel(finding: Finding) -> Panel:
    body: list[RenderableType] = [Text(finding.explanation)]
    if finding.evidence:
        body.append(Text("\nEvidence:", style="bold"))
        for ev in finding.evidence[:6]:
            body.append(Text(f"  {ev.source}:{ev.line}  {evidence_line(ev.text)}"))
        if len(finding.evidence) > 6:
            body.append(Text(f"  ... {len(finding.evidence) - 6} more (--format json)", style="dim"))
    if finding.contradicting:
        body.append(Text("\nAgainst:", style="bold"))
        for ev in finding.contradicting[:3]:
            body.append(Text(f"  {ev.source}:{ev.line}  {evidence_line(ev.text)}"))
    if finding.fix:
        body.append(Text("\nFix: ", style="bold green") + Text(finding.fix.text))
        if finding.fix.snippet:
            body.append(Text(finding.fix.snippet, style="green"))
        if finding.fix.verify:
            body.append(Text("Verify: ", style="bold") + Text(finding.fix.verify))
    title = (
        f"[{SEVERITY_STYLE[finding.severity]}]{finding.severity.value.upper()}[/] "
        f"{finding.category.value} ({finding.confidence:.0%}) — {finding.title}"
        + (f" [{finding.rule_id}]" if finding.rule_id else "")
    )
    return Panel(Group(*body), title=title, title_align="left")


def summary_text(report: Report) -> Text:
    parts = [f"{k.replace('_', ' ')}: {plain(v)}" for k, v in report.summary.items()
             if v not in (None, {}, []) and k != "events_by_kind"]
    return Text(" | ".join(parts))


class TextRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=color, no_color=not color,
                          highlight=False, soft_wrap=False)
        for warning in report.warnings:
            console.print(Text(f"warning: {warning}", style="yellow"))
        for section in SECTIONS.get(report.command, lambda r: [])(report):
            console.print(section)
        if report.summary:
            console.print(summary_text(report))
        # the answer first: the top causes in full, the rest one line each
        for finding in report.findings[:3]:
            console.print(finding_panel(finding))
        for finding in report.findings[3:]:
            lead = "also found in the config" if finding.role.value == "config" else "also"
            console.print(Text(f"  {lead}: {finding.severity.value} {finding.category.value} "
                               f"({finding.confidence:.0%}) {finding.title}"
                               + (f" [{finding.rule_id}]" if finding.rule_id else "")))
        if not report.findings:
            console.print(Text("No findings.", style="green"))
        strip = timeline_strip(report, width)
        if strip is not None:
            console.print(strip)
        if report.incidents:
            console.print(incidents_table(report))
        if report.sources:
            console.print(sources_table(report))
        return buffer.getvalue()


def _register() -> None:
    """Commands with a payload of their own add a section builder (imported late: they use this module)."""
    from celery_doctor.report.broker_text import broker_sections
    from celery_doctor.report.config_text import config_sections
    from celery_doctor.report.pins_text import pins_sections
    from celery_doctor.report.repro_text import sections as repro_sections

    SECTIONS.update(broker=broker_sections, config=config_sections, pins=pins_sections, repro=repro_sections)


_register()
