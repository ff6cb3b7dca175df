"""Markdown output, for pasting into a ticket: the answer first, then each input's own section."""

from __future__ import annotations

from celery_doctor.model import Report
from celery_doctor.report.interface import Renderer, summary_items
from celery_doctor.report.sections import Block, input_sections

EVIDENCE_LINES = 12  # lines of one record (a traceback keeps its exception line at the end)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _table(block: Block) -> list[str]:
    out = [f"**{block.title}**", ""] if block.title else []
    width = max([len(block.header)] + [len(r) for r in block.rows])
    header = block.header or [""] * width
    out.append("| " + " | ".join(_cell(h) for h in header) + " |")
    out.append("|" + "---|" * width)
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    return [*out, ""]


def _record(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > EVIDENCE_LINES:
        lines = [*lines[:EVIDENCE_LINES - 2], f"... {len(lines) - EVIDENCE_LINES + 1} more lines", lines[-1]]
    return lines


ROLE_HEADINGS = {"cause": "Causes", "risk": "Risks", "context": "Notes", "config": "Also found in the config"}


class MarkdownRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        out = [f"# celery-doctor {report.command}", ""]
        if report.findings:
            top = report.findings[0]
            out += [f"**{top.title}** ({top.category.value}, {top.severity.value}, {top.confidence:.0%})", ""]
        out += [f"> warning: {w}" for w in report.warnings]
        if report.warnings:
            out.append("")
        out += [f"- **{label}**: {value}" for label, value in summary_items(report.summary)]
        if report.summary:
            out.append("")
        out += ["## Findings, most important first" if len(report.findings) > 1 else "## Findings", ""]
        if not report.findings:
            out += ["No findings.", ""]
        role = None
        for f in report.findings:
            if (f.role != role) if role is not None else f.role.value != "cause":
                out += [f"## {ROLE_HEADINGS[f.role.value]}", ""]
            role = f.role
            rule = f" `{f.rule_id}`" if f.rule_id else ""
            out += [f"### {f.severity.value.upper()} {f.category.value}: {f.title}{rule}", "",
                    f"Confidence {f.confidence:.0%}.", "", f.explanation.strip(), ""]
            for label, items in (("Evidence", f.evidence), ("Against", f.contradicting)):
                if not items:
                    continue
                out += [f"{label}:", "", "```text"]
                for e in items[:10]:
                    where = f"{e.source}:{e.line}" if e.line else e.source
                    record = _record(e.text)
                    out += [f"{where}: {record[0] if record else ''}", *(f"    {ln}" for ln in record[1:])]
                if len(items) > 10:
                    out.append(f"... {len(items) - 10} more (--format json)")
                out += ["```", ""]
            if f.fix:
                out += [f"**Fix:** {_cell(f.fix.text)}", ""]
                if f.fix.snippet:
                    out += ["```python", f.fix.snippet, "```", ""]
                if f.fix.verify:
                    out += [f"**Verify:** `{f.fix.verify}`", ""]
        if report.incidents:
            out += ["## Incidents", "", "| # | time (UTC) | closed by | phase | idle before | first evidence |",
                    "|---|---|---|---|---|---|"]
            for inc in report.incidents:
                first = inc.events[0]
                idle = "" if inc.idle_before_s is None else f"{inc.idle_before_s:.1f} s"
                when = "" if inc.ts is None else f"{inc.ts:%Y-%m-%d %H:%M:%S}"
                out.append(f"| {inc.id} | {when} | {inc.closed_by.value} | {inc.phase.value} | {idle} | "
                           f"`{first.source}:{first.line}` {first.kind.value} |")
            out.append("")
        for section in input_sections(report):
            out += [f"## {section.title}", ""]
            for block in section.blocks:
                out += _table(block) if block.rows else ["```text", block.text, "```", ""]
        if report.sources:
            out += ["## Sources", "", "| source | format | lines | events | note |", "|---|---|---|---|---|"]
            for src in report.sources:
                out.append(f"| `{src.name}` | {src.format} | {src.lines} | {src.events} | "
                           f"{_cell('; '.join(src.warnings))} |")
            out.append("")
        return "\n".join(out).rstrip() + "\n"
