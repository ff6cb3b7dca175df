"""Markdown output, for pasting into a ticket."""

from __future__ import annotations

from celery_doctor.model import Report
from celery_doctor.report.interface import Renderer, plain


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


class MarkdownRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        out = [f"# celery-doctor {report.command}", ""]
        out += [f"> warning: {w}" for w in report.warnings]
        if report.summary:
            out += [f"- **{k.replace('_', ' ')}**: {plain(v)}" for k, v in report.summary.items()
                    if k != "events_by_kind" and v not in (None, {}, [])]
            out.append("")
        if report.incidents:
            out += ["## Incidents", "", "| # | time (UTC) | closed by | phase | idle before (s) | evidence |",
                    "|---|---|---|---|---|---|"]
            for inc in report.incidents:
                first = inc.events[0]
                idle = "" if inc.idle_before_s is None else f"{inc.idle_before_s:.1f}"
                out.append(f"| {inc.id} | {inc.ts:%Y-%m-%d %H:%M:%S} | {inc.closed_by.value} | "
                           f"{inc.phase.value} | {idle} | `{first.source}:{first.line}` |")
            out.append("")
        out += ["## Findings", ""]
        if not report.findings:
            out.append("No findings.")
        for f in report.findings:
            out += [f"### {f.category.value}: {f.title}", "",
                    f"Severity **{f.severity.value}**, confidence {f.confidence:.0%}"
                    + (f", role {f.role.value}" if f.role.value != "cause" else "")
                    + (f", rule `{f.rule_id}`" if f.rule_id else "") + ".", "", f.explanation, ""]
            if f.evidence:
                out += ["Evidence:", "", "```"]
                out += [f"{e.source}:{e.line}: {e.text.splitlines()[0]}" for e in f.evidence[:10]]
                out += ["```", ""]
            if f.fix:
                out += [f"**Fix:** {_cell(f.fix.text)}", ""]
                if f.fix.snippet:
                    out += ["```python", f.fix.snippet, "```", ""]
                if f.fix.verify:
                    out += [f"**Verify:** `{f.fix.verify}`", ""]
        return "\n".join(out) + "\n"
