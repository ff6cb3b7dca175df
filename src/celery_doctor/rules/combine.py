"""Rank causes across inputs: `diagnose` hands every stage's findings to :func:`rank`.

Findings of one category from several inputs are one cause seen several ways: their
confidences combine (noisy-OR, so two independent 0.6s give 0.84) and their evidence is
pooled. Cross-input rules then raise or lower a cause where one input confirms or contradicts
another (a regular idle cut in the logs *and* heartbeats disabled in the config).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from celery_doctor.model import Category, Evidence, Finding, Severity

# Causes of a lost connection; the other categories are context or verdicts of their own.
CAUSES = {c for c in Category} - {Category.NO_INCIDENT, Category.UNKNOWN, Category.BENIGN_CLIENT_DISCONNECT}
MIN_CAUSE_CONFIDENCE = 0.5  # below this a cause is "possible", not "the" answer


@dataclass
class Inputs:
    """Which kinds of evidence diagnose was given (to say what would raise confidence)."""

    logs: bool = False
    broker_log: bool = False
    config: bool = False
    effective_config: bool = False
    broker: bool = False
    repro: bool = False
    missing: list[str] = field(default_factory=list)


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One Finding per category (config hygiene findings with other titles stay separate)."""
    merged: dict[tuple[Category, str], Finding] = {}
    for f in findings:
        key = (f.category, "" if f.category in CAUSES or f.category == Category.UNKNOWN else f.title)
        if key not in merged:
            merged[key] = replace(f, evidence=list(f.evidence), contradicting=list(f.contradicting))
            continue
        into = merged[key]
        into.confidence = 1 - (1 - into.confidence) * (1 - f.confidence)
        into.evidence += [e for e in f.evidence if e not in into.evidence]
        into.contradicting += [e for e in f.contradicting if e not in into.contradicting]
        if f.severity.rank > into.severity.rank:
            into.severity = f.severity
        if into.fix is None or (f.fix and f.fix.snippet and not into.fix.snippet):
            into.fix = f.fix
        if f.explanation not in into.explanation:
            into.explanation += "\n" + f.explanation
    return list(merged.values())


def _find(findings: list[Finding], category: Category) -> Finding | None:
    return next((f for f in findings if f.category == category), None)


def _text(findings: list[Finding], category: Category) -> str:
    return "\n".join(f.title + " " + f.explanation + " " + " ".join(e.text for e in f.evidence)
                     for f in findings if f.category == category)


def cross_check(findings: list[Finding]) -> None:
    """Raise or lower causes where one input confirms or contradicts another (in place)."""
    idle = _find(findings, Category.NETWORK_IDLE_TIMEOUT)
    heartbeat_cfg = _text(findings, Category.HEARTBEAT_MISCONFIG)
    if idle is not None and re.search(r"heartbeat[^\n]*(disabled|\b0\b|off|None)", heartbeat_cfg, re.I):
        idle.confidence = min(0.97, idle.confidence + 0.15)
        hb = _find(findings, Category.HEARTBEAT_MISCONFIG)
        if hb is not None:
            idle.evidence += [e for e in hb.evidence if e not in idle.evidence][:3]
            idle.explanation += ("\nThe configuration disables heartbeats, so nothing crosses an idle "
                                 "connection and the middlebox's idle timer runs out.")
    old = _find(findings, Category.OLD_SETTING_NAMES_IGNORED)
    if old is not None and any(f.category in CAUSES - {Category.OLD_SETTING_NAMES_IGNORED} for f in findings) \
            and re.search(r"HEARTBEAT|BROKER_URL|BROKER_TRANSPORT|BROKER_POOL|BROKER_CONNECTION",
                          _text(findings, Category.OLD_SETTING_NAMES_IGNORED)):
        old.confidence = min(0.9, old.confidence + 0.1)
        old.explanation += ("\nThe ignored names govern the broker connection: the failures in the logs "
                            "run with Celery's defaults, not with the values you set.")


def rank(findings: Iterable[Finding], inputs: Inputs) -> list[Finding]:
    """Merge, cross-check and order: causes first by confidence, then the rest by severity."""
    merged = merge(findings)
    cross_check(merged)
    causes = sorted((f for f in merged if f.category in CAUSES), key=lambda f: -f.confidence)
    if causes and causes[0].confidence < MIN_CAUSE_CONFIDENCE:
        for f in causes:
            f.title = f"possible: {f.title}"
    rest = sorted((f for f in merged if f.category not in CAUSES),
                  key=lambda f: (-f.severity.rank, -f.confidence))
    unknown = [f for f in rest if f.category == Category.UNKNOWN]
    if unknown and causes and causes[0].confidence >= MIN_CAUSE_CONFIDENCE:
        # a confident cause was found elsewhere: the unexplained incidents are context, not the verdict
        for f in unknown:
            f.severity = Severity.LOW
    ordered = causes + rest if causes and causes[0].confidence >= MIN_CAUSE_CONFIDENCE else rest + causes
    if inputs.missing:
        note = Finding(
            category=Category.UNKNOWN if not causes else causes[0].category, severity=Severity.INFO,
            title="More evidence would raise the confidence",
            explanation="Not given: " + "; ".join(inputs.missing) + ".",
            confidence=0.0,
        )
        if not causes:
            ordered.append(note)
        else:
            ordered[0].explanation += "\nMore evidence would raise the confidence — " + note.explanation
    return ordered


def evidence_lines(findings: Iterable[Finding]) -> list[Evidence]:
    return [e for f in findings for e in f.evidence]
