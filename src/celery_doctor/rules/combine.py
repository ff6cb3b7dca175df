"""Rank causes across inputs: `diagnose` hands every stage's findings to :func:`rank`.

The evidence model (docs/incident-rules.md, "How diagnose combines inputs"):

- Hypotheses are categories; each input (logs, config, broker probe, pins, repro) gives
  evidence for or against them. Many findings of *one* input about one category are one piece
  of evidence (their confidence is the strongest of them, not a sum); independent inputs
  combine (noisy-OR, so a 0.6 from the logs and a 0.6 from the probe give 0.84).
- A cause must explain the observed failures. When the logs show incidents, only the
  categories the logs support (or that a cross-input rule ties to them) are causes; config
  hygiene no incident ties to is "also found in the config" (Role.CONFIG), with its own
  severity, never the answer. With no failure observed, what the config or the probe found is
  a risk (Role.RISK), said as one.
- Contradictions lower confidence and are shown: a heartbeat short enough to survive the
  observed idle time; a probe whose own login failed while the worker logs show logins that
  succeed (a finding about the probe URL, not about the workers).
- One fix per cause: the heartbeat every finding proposes is the one the top cause derived.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from celery_doctor.middleboxes import Middlebox
from celery_doctor.model import Category, Evidence, Finding, Fix, Role, Severity
from celery_doctor.rules import registry
from celery_doctor.rules.fixes import worst_silence_s

# Causes of a lost connection; the other categories are verdicts of their own.
CAUSES = {c for c in Category} - {Category.NO_INCIDENT, Category.UNKNOWN, Category.BENIGN_CLIENT_DISCONNECT}
VERDICTS = {Category.NO_INCIDENT, Category.BENIGN_CLIENT_DISCONNECT}
registry.register(registry.RuleInfo(
    "CD-X01", "probe_url_mismatch", "diagnose", (Category.AUTH_OR_PERMISSIONS,),
    "The probe's own login was refused while the worker logs show successful logins: a finding about the "
    "probe URL (context), never a cause.", __name__))
registry.register(registry.RuleInfo(
    "CD-X00", "nothing_given", "diagnose", (Category.UNKNOWN,), "Nothing was given to judge.", __name__))
MIN_CAUSE_CONFIDENCE = 0.5  # below this a cause is "possible", not "the" answer
UNTIED_SCALE = 0.6  # a probe finding no log line ties to, beside failures the logs cannot explain


@dataclass(frozen=True)
class Setting:
    """One setting as the config audit read it: its value (Python source) and where it stands."""

    value: str
    evidence: Evidence


@dataclass
class Observed:
    """What the logs showed, for the rules that weigh the other inputs against it."""

    logs_given: bool = False
    incidents: int = 0
    logins_ok: list[Evidence] = field(default_factory=list)  # successful connects / logins
    auth_failures: int = 0  # refused logins seen in the logs

    @property
    def failures(self) -> bool:
        return self.incidents > 0


def _source(f: Finding) -> str:
    return str(f.facts.get("source") or "logs")


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """One Finding per cause category; within one input the strongest finding counts, across
    inputs confidences combine. Other categories keep one finding per title."""
    groups: dict[tuple[Category, str], list[Finding]] = {}
    for f in findings:
        key = (f.category, "" if f.category in CAUSES or f.category == Category.UNKNOWN else f.title)
        if f.category in CAUSES and _source(f) == "config":
            key = (f.category, f"config:{f.title}")  # config hygiene is listed item by item
        groups.setdefault(key, []).append(f)
    out = []
    for members in groups.values():
        best_by_input: dict[str, float] = {}
        for f in members:
            best_by_input[_source(f)] = max(best_by_input.get(_source(f), 0.0), f.confidence)
        lead = max(members, key=lambda f: (f.confidence, f.severity.rank))
        into = replace(lead, evidence=list(lead.evidence), contradicting=list(lead.contradicting),
                       facts=dict(lead.facts))
        missing = 1.0
        for c in best_by_input.values():
            missing *= 1 - c
        into.confidence = 1 - missing
        into.facts["inputs"] = sorted(best_by_input)
        for f in members:
            if f is lead:
                continue
            into.evidence += [e for e in f.evidence if e not in into.evidence]
            into.contradicting += [e for e in f.contradicting if e not in into.contradicting]
            if f.severity.rank > into.severity.rank:
                into.severity = f.severity
            if into.fix is None or (f.fix and f.fix.snippet and not into.fix.snippet):
                into.fix = f.fix
            if f.explanation not in into.explanation:
                into.explanation += "\n" + f.explanation
            # the incidents each finding explains stay explained by the merged one
            theirs = f.facts.get("incidents")
            if theirs:
                into.facts["incidents"] = sorted({*into.facts.get("incidents", ()), *theirs})
        out.append(into)
    return out


def _find(findings: list[Finding], category: Category) -> Finding | None:
    return next((f for f in findings if f.category == category and _source(f) != "config"), None)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# settings whose value bears on a cause the logs can show
BEARS_ON = {
    "broker_heartbeat": {Category.NETWORK_IDLE_TIMEOUT, Category.HEARTBEAT_MISCONFIG,
                         Category.LONG_TASK_BLOCKS_HEARTBEAT, Category.NETWORK_PATH_LOSS},
    "broker_heartbeat_checkrate": {Category.NETWORK_IDLE_TIMEOUT, Category.HEARTBEAT_MISCONFIG},
    "broker_transport_options": {Category.REDIS_SERVER_TIMEOUT, Category.NETWORK_IDLE_TIMEOUT},
    "broker_pool_limit": {Category.POOL_EXHAUSTION_OR_MISUSE},
    "broker_url": {Category.AUTH_OR_PERMISSIONS, Category.OLD_SETTING_NAMES_IGNORED,
                   Category.BROKER_RESTART_OR_FAILOVER},
    "worker_pool": {Category.LONG_TASK_BLOCKS_HEARTBEAT},
}


def _bears_on(f: Finding, categories: set[Category]) -> bool:
    setting = str(f.facts.get("setting") or "").split(".")[0]
    if not setting and f.facts.get("ignored"):
        setting = "broker_url" if f.facts.get("effective_broker_url") else ""
    return bool(BEARS_ON.get(setting, set()) & categories)


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
            for f in findings:  # the config's own "heartbeats are off" is this cause's evidence now
                if _source(f) == "config" and f.facts.get("setting") == "broker_heartbeat":
                    f.facts["absorbed_into"] = idle.category.value
        elif isinstance(estimate, int | float) and worst_silence_s(beat_s) < estimate:
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
    url = settings.get("broker_url") or settings.get("broker_url.written")
    default_url = _find(findings, Category.OLD_SETTING_NAMES_IGNORED)
    if default_url is not None and url is not None and default_url.facts.get("default_url") \
            and not re.search(r"localhost|127\.0\.0\.1", url.value):
        default_url.confidence = min(0.9, default_url.confidence + 0.3)
        default_url.evidence.append(url.evidence)
        default_url.explanation += ("\nThe configuration names a broker, but the worker tried Celery's default: "
                                    "the line below is not what the worker ran with.")


def _probe_vs_logs(findings: list[Finding], observed: Observed) -> None:
    """The probe's own refused login beside worker logs full of good logins is about the probe URL."""
    if not observed.logins_ok or observed.auth_failures:
        return
    for f in findings:
        if _source(f) != "broker" or f.category != Category.AUTH_OR_PERMISSIONS:
            continue
        f.title = "The probe's own login was refused, but the workers log in fine"
        f.explanation = (
            "The broker refused the credentials in the URL given to --broker, while the worker logs show "
            f"{len(observed.logins_ok)} successful connection(s) and no refused login: the probe used other "
            "credentials (or another vhost) than the workers. This is about the probe URL, not a cause of the "
            "failures; probe again with the URL the workers use to check the broker's limits.")
        f.contradicting = observed.logins_ok[:3]
        f.severity = Severity.LOW
        f.confidence = 0.9
        f.rule_id = "CD-X01"
        f.fix = Fix(text="Give --broker the URL from the workers' configuration (celery-doctor config "
                         "--app shows the effective broker_url).")
        f.facts["probe_url_mismatch"] = True


def _role(f: Finding, observed: Observed, log_causes: set[Category]) -> Role:
    if f.category in VERDICTS or f.facts.get("probe_url_mismatch") or f.facts.get("other_client"):
        return Role.CONTEXT
    source = _source(f)
    if source == "repro":
        return Role.CAUSE  # a reproduction's own failure is observed, with its ground truth
    if not observed.failures:
        if f.category == Category.UNKNOWN and source == "logs":
            return Role.CAUSE  # connection errors the logs could not date: still the unanswered failure
        return Role.RISK if source != "logs" else Role.CAUSE
    if "logs" in f.facts.get("inputs", [source]) or source in ("logs", "repro"):
        return Role.CAUSE
    if source == "config":
        return Role.CONFIG
    if f.category in log_causes:
        return Role.CAUSE
    return Role.CAUSE if not log_causes else Role.CONTEXT


def _heartbeat_of(snippet: str | None) -> str | None:
    m = re.search(r"^(broker_heartbeat|BROKER_HEARTBEAT)\s*=\s*(\S+)", snippet or "", re.M)
    return m.group(2) if m else None


def _one_heartbeat(ordered: list[Finding]) -> None:
    """Every finding that proposes a heartbeat proposes the one the top cause derived."""
    lead = next((f for f in ordered if f.role == Role.CAUSE and f.fix and _heartbeat_of(f.fix.snippet)), None)
    if lead is None or lead.fix is None:
        return
    value = _heartbeat_of(lead.fix.snippet)
    for f in ordered:
        if f is lead or f.fix is None or not f.fix.snippet:
            continue
        other = _heartbeat_of(f.fix.snippet)
        if other is not None and other != value:
            f.fix = replace(f.fix, snippet=re.sub(r"^((?:broker_heartbeat|BROKER_HEARTBEAT)\s*=\s*)\S+",
                                                  rf"\g<1>{value}", f.fix.snippet, flags=re.M),
                            text=f.fix.text + f" (the value follows from the observed failure: see "
                                              f"'{lead.title}')")


def rank(findings: Iterable[Finding], missing: list[str], middlebox: Middlebox | None = None,
         settings: dict[str, Setting] | None = None, observed: Observed | None = None) -> list[Finding]:
    """Merge, cross-check and order: causes of the observed failures first by confidence, then
    context, then what the config also shows (or, with no failure, the risks by severity);
    ``missing`` names the inputs that were not given (said on the top finding)."""
    observed = observed or Observed()
    findings = list(findings)
    url = (settings or {}).get("broker_url") or (settings or {}).get("broker_url.written")
    # before merging: the failover finding is judged against the nodes broker_url lists (the log
    # rules load here, not with this module: `logs` loads them while its scan runs)
    from celery_doctor.rules.logs.failover import with_config as failover_with_config

    failover_with_config(findings, url.value if url else None, url.evidence if url else None)
    merged = merge(findings)
    cross_check(merged, middlebox, settings)
    _probe_vs_logs(merged, observed)
    merged = [f for f in merged if not f.facts.get("absorbed_into")]
    log_causes = {f.category for f in merged if _source(f) == "logs" and f.category in CAUSES}
    for f in merged:
        f.role = _role(f, observed, log_causes)
        if f.role == Role.CAUSE and _source(f) not in ("logs", "repro") and observed.failures \
                and f.category not in log_causes:
            f.confidence *= UNTIED_SCALE  # it may explain what the logs could not, but no line ties it
    causes = sorted((f for f in merged if f.role == Role.CAUSE and f.category != Category.UNKNOWN),
                    key=lambda f: -f.confidence)
    unknown = [f for f in merged if f.role == Role.CAUSE and f.category == Category.UNKNOWN]
    confident = bool(causes) and causes[0].confidence >= MIN_CAUSE_CONFIDENCE
    if causes and not confident:
        for f in causes:
            f.title = f"possible: {f.title}"
    if confident:
        for f in unknown:  # a confident cause was found: the unexplained incidents are context
            f.severity = Severity.LOW
    for f in merged:
        if f.role == Role.CONFIG and _bears_on(f, log_causes):
            f.facts["bears_on_failure"] = True
            f.explanation += ("\nIt bears on the failures in the logs: they ran with what this setting really "
                              "is, not with what the file meant.")

    def by_severity(f: Finding) -> tuple[bool, int, float]:
        return (not f.facts.get("bears_on_failure"), -f.severity.rank, -f.confidence)

    context = sorted((f for f in merged if f.role == Role.CONTEXT), key=by_severity)
    config = sorted((f for f in merged if f.role == Role.CONFIG), key=by_severity)
    risks = sorted((f for f in merged if f.role == Role.RISK), key=by_severity)
    head = causes + unknown if confident else unknown + causes
    verdicts = [f for f in context if f.category in VERDICTS]
    notes = [f for f in context if f.category not in VERDICTS]
    ordered = (head + verdicts + notes + risks + config) if head else (verdicts + risks + notes + config)
    _one_heartbeat(ordered)
    if missing:
        more = "More evidence would raise the confidence — not given: " + "; ".join(missing) + "."
        if ordered:
            ordered[0].explanation += "\n" + more
        else:
            ordered.append(Finding(category=Category.UNKNOWN, severity=Severity.INFO, title="Nothing to judge yet",
                                   explanation=more, confidence=0.0, role=Role.CONTEXT, rule_id="CD-X00"))
    return ordered
