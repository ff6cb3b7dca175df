"""Terminal output with rich: what the on-call engineer reads first comes first."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Finding, Incident, Report, Severity
from celery_doctor.report.interface import Renderer

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


def finding_panel(finding: Finding) -> Panel:
    body: list[RenderableType] = [Text(finding.explanation)]
    if finding.evidence:
        body.append(Text("\nEvidence:", style="bold"))
        for ev in finding.evidence[:6]:
            body.append(Text(f"  {ev.source}:{ev.line}  {ev.text.splitlines()[0][:160]}"))
    if finding.contradicting:
        body.append(Text("\nAgainst:", style="bold"))
        for ev in finding.contradicting[:3]:
            body.append(Text(f"  {ev.source}:{ev.line}  {ev.text.splitlines()[0][:160]}"))
    if finding.fix:
        body.append(Text("\nFix: ", style="bold green") + Text(finding.fix.text))
        if finding.fix.snippet:
            body.append(Text(finding.fix.snippet, style="green"))
        if finding.fix.verify:
            body.append(Text("Verify: ", style="bold") + Text(finding.fix.verify))
    title = (
        f"[{SEVERITY_STYLE[finding.severity]}]{finding.severity.value.upper()}[/] "
        f"{finding.category.value} ({finding.confidence:.0%}) — {finding.title}"
    )
    return Panel(Group(*body), title=title, title_align="left")


def summary_text(report: Report) -> Text:
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in report.summary.items() if v not in (None, {}, [])]
    return Text(" | ".join(parts))


class TextRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=width, force_terminal=color, no_color=not color,
                          highlight=False, soft_wrap=False)
        for warning in report.warnings:
            console.print(Text(f"warning: {warning}", style="yellow"))
        if report.sources:
            console.print(sources_table(report))
        for section in SECTIONS.get(report.command, lambda r: [])(report):
            console.print(section)
        if report.incidents:
            console.print(incidents_table(report))
        if report.summary:
            console.print(summary_text(report))
        if report.findings:
            console.print(Text("Findings", style="bold underline"))
            for finding in report.findings:
                console.print(finding_panel(finding))
        else:
            console.print(Text("No findings.", style="green"))
        return buffer.getvalue()

from celery_doctor.report.broker_text import broker_sections  # noqa: E402  (registration)

SECTIONS["broker"] = broker_sections
from celery_doctor.report.repro_text import sections as repro_sections  # noqa: E402  (registration)

SECTIONS["repro"] = repro_sections
from celery_doctor.report.pins_text import pins_sections  # noqa: E402  (registration)

SECTIONS["pins"] = pins_sections
from celery_doctor.report.config_text import config_sections  # noqa: E402  (registration)

SECTIONS["config"] = config_sections
