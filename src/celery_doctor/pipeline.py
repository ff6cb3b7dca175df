"""Orchestration: the pipelines the commands run, stage by stage (inputs -> evidence ->
findings). ``cli.py`` calls these and hands the Report to ``report/``; ``diagnose`` and
``repro`` reuse them.
"""

from __future__ import annotations

from collections.abc import Callable

from celery_doctor import incidents as incident_stage
from celery_doctor import timeline as timeline_stage
from celery_doctor.ingest import read_logs
from celery_doctor.model import Report
from celery_doctor.rules import logs_rules


def analyse_logs(paths: list[str], format_hint: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> Report:
    """The `logs` command: read, merge onto one clock, find incidents, name first causes."""
    result = read_logs(paths, format_hint=format_hint, progress=progress)
    timeline = timeline_stage.build(result)
    found = incident_stage.detect(timeline)
    findings = logs_rules.evaluate(logs_rules.context_for(timeline, found.incidents))
    warnings = [f"{s.name}: {w}" for s in result.sources for w in s.warnings]
    return Report(
        command="logs", findings=findings, incidents=found.incidents, events=timeline.events,
        sources=result.sources, summary=found.summary, warnings=warnings,
        data={"activity": {name: [[a.isoformat(), b.isoformat(), n] for a, b, n in curve]
                           for name, curve in timeline.activity.items()}},
    )
