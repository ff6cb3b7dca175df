"""Rank causes across inputs: `diagnose` hands every stage's findings to :func:`rank`.

Findings of one category from several inputs are one cause seen several ways: their
confidences combine (noisy-OR, so two independent 0.6s give 0.84) and their evidence is
pooled. Cross-input rules then raise or lower a cause where one input confirms or contradicts
another (a regular idle cut in the logs *and* heartbeats disabled in the config).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from celery_doctor.middleboxes import Middlebox
from celery_doctor.model import Category, Evidence, Finding, Severity

# Causes of a lost connection; the other categories are context or verdicts of their own.
CAUSES = {c for c in Category} - {Category.NO_INCIDENT, Category.UNKNOWN, Category.BENIGN_CLIENT_DISCONNECT}
MIN_CAUSE_CONFIDENCE = 0.5  # below this a cause is "possible", not "the" answer


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


# settings whose silent loss changes how the broker connection behaves
CONNECTION_SETTINGS = {"broker_url", "broker_heartbeat", "broker_heartbeat_checkrate", "broker_transport_options",
                       "broker_pool_limit", "broker_connection_timeout", "broker_connection_retry",
                       "broker_connection_max_retries", "broker_use_ssl", "broker_login_method"}


@dataclass(frozen=True)
class Setting:
    """One setting as the config audit read it: its value (Python source) and where it stands."""

    value: str
    evidence: Evidence


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def cross_check(findings: list[Finding], middlebox: Middlebox | None = None,
                settings: dict[str, Setting] | None = None) -> None:
    """Raise or lower causes where one input confirms or contradicts another (in place)."""
    settings = settings or {}
    idle = _find(findings, Category.NETWORK_IDLE_TIMEOUT)
    estimate = idle.facts.get("idle_timeout_s") if idle is not None else None
    if idle is not None and middlebox is not None and isinstance(estimate, int | float):
        if abs(estimate - middlebox.idle_timeout_s) <= 0.2 * middlebox.idle_timeout_s + 2:
            idle.confidence = min(0.97, idle.confidence + 0.1)
            idle.explanation += (f"\nThe cuts come after the idle timeout of {middlebox.label} "
                                 f"({middlebox.idle_timeout_s} s) that you named.")
        else:
            idle.confidence = max(0.2, idle.confidence - 0.1)
            idle.explanation += (f"\nAgainst it: the cuts come after ~{estimate:.0f} s, not after the "
                                 f"{middlebox.idle_timeout_s} s of {middlebox.label}: look for another device.")
    beat = settings.get("broker_heartbeat")
    beat_s = _number(beat.value) if beat else None
    if idle is not None and beat is not None and beat_s is not None:
        if beat_s == 0:
            idle.confidence = min(0.97, idle.confidence + 0.15)
            idle.evidence.append(beat.evidence)
            idle.explanation += ("\nThe configuration disables heartbeats, so nothing crosses an idle "
                                 "connection and the middlebox's idle timer runs out.")
        elif isinstance(estimate, int | float) and beat_s / 2 < estimate:
            # heartbeats at that rate should have kept the flow busy: something else is going on
            idle.confidence = max(0.2, idle.confidence - 0.2)
            idle.contradicting.append(beat.evidence)
            idle.explanation += ("\nAgainst it: the configured heartbeat should keep the flow busy more often "
                                 "than the observed idle time; check that the worker really sends heartbeats.")
    long_task = _find(findings, Category.LONG_TASK_BLOCKS_HEARTBEAT)
    pool = settings.get("worker_pool")
    if long_task is not None and pool is not None and pool.value.strip("'\"") in ("solo", "threads"):
        long_task.confidence = min(0.95, long_task.confidence + 0.15)
        long_task.evidence.append(pool.evidence)
        long_task.explanation += ("\nThe configuration runs tasks in the thread that also sends heartbeats "
                                  f"(worker_pool = {pool.value}).")
    ignored = [f for f in findings if f.category == Category.OLD_SETTING_NAMES_IGNORED
               and f.facts.get("honoured") is False and f.facts.get("setting") in CONNECTION_SETTINGS]
    failures = any(f.category in CAUSES and f.facts.get("source") == "logs" for f in findings)
    for f in ignored:
        if failures:
            f.confidence = min(0.9, f.confidence + 0.1)
            f.explanation += ("\nIt governs the broker connection: the failures in the logs ran with "
                              "Celery's default for it, not with the value you set.")


def rank(findings: Iterable[Finding], missing: list[str], middlebox: Middlebox | None = None,
         settings: dict[str, Setting] | None = None) -> list[Finding]:
    """Merge, cross-check and order: causes first by confidence, then the rest by severity;
    ``missing`` names the inputs that were not given (said on the top finding)."""
    merged = merge(findings)
    cross_check(merged, middlebox, settings)
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
    if missing:
        more = "More evidence would raise the confidence — not given: " + "; ".join(missing) + "."
        if ordered:
            ordered[0].explanation += "\n" + more
        else:
            ordered.append(Finding(category=Category.UNKNOWN, severity=Severity.INFO, title="Nothing to judge yet",
                                   explanation=more, confidence=0.0))
    return ordered
