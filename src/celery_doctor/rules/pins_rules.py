"""pins Problems -> Findings. Every problem of a requirement set is a version incompatibility;
a missing or unusable transport is one too, but it is worded as the connection failure it causes."""

from __future__ import annotations

from celery_doctor.model import Category, Evidence, Finding, Fix, Severity
from celery_doctor.pins.checks import Assessment, Problem
from celery_doctor.rules.registry import rule


def _evidence(assessment: Assessment, problem: Problem) -> list[Evidence]:
    origin = assessment.env.origin
    evidence = [Evidence(source=origin, line=line, text=text) for line, text in problem.lines if text]
    if not evidence and problem.packages:
        text = ", ".join(f"{n}=={v}" for n, v in problem.packages.items())
        evidence.append(Evidence(source=origin, line=0, text=text))
    evidence += [Evidence(source="source", line=0, text=url) for url in problem.sources]
    return evidence


@rule("CD-P01", "pins", Category.VERSION_INCOMPATIBILITY)
def pins_findings(assessment: Assessment) -> list[Finding]:
    """An environment or requirement set with an incompatible or known-bad combination, or a
    missing transport dependency (pins/checks.py, data/known_bad.json)."""
    findings = []
    for problem in assessment.problems:
        findings.append(Finding(
            category=Category.VERSION_INCOMPATIBILITY,
            severity=Severity(problem.severity),
            title=problem.title,
            explanation=problem.explanation,
            evidence=_evidence(assessment, problem),
            fix=Fix(text=problem.fix) if problem.fix else None,
            confidence=problem.confidence,
        ))
    findings.sort(key=lambda f: (-f.severity.rank, -f.confidence))
    return findings
