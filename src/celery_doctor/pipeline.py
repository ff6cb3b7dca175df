"""Orchestration: the pipelines the commands run, stage by stage (inputs -> evidence ->
findings). ``cli.py`` calls these and hands the Report to ``report/``; ``diagnose`` and
``repro`` reuse them.
"""

from __future__ import annotations

import dataclasses
import glob
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from celery_doctor import incidents as incident_stage
from celery_doctor import timeline as timeline_stage
from celery_doctor.middleboxes import parse_idle_timeout
from celery_doctor.model import Category, DoctorError, Evidence, Finding, Kind, Report, Role, Severity, Side
from celery_doctor.rules import registry
from celery_doctor.rules.context import LogContext, context_for

if TYPE_CHECKING:  # the broker, config, diagnose, repro and migrate stages load only in the functions
    # of their commands (imported there), the log rules while the scan of the logs runs (analyse_logs):
    # `logs` on a gigabyte is a few tenths of a second, and these imports cost ~15 ms of it
    from celery_doctor.broker import ProbeOptions
    from celery_doctor.repro.harness import RunOptions as ReproRunOptions
    from celery_doctor.rules import combine
    from celery_doctor.settings.interface import ConfigFacts
    from celery_doctor.settings.migrate import Migration
    from celery_doctor.settings.runtime_report import RuntimeReport


CONFIG_AUDIT = "CD-C00"
BROKER_SILENT = "CD-B00"
registry.register(registry.RuleInfo(
    CONFIG_AUDIT, "config_audit", "config",
    (Category.OLD_SETTING_NAMES_IGNORED, Category.VERSION_INCOMPATIBILITY, Category.HEARTBEAT_MISCONFIG,
     Category.POOL_EXHAUSTION_OR_MISUSE, Category.REDIS_SERVER_TIMEOUT, Category.NETWORK_IDLE_TIMEOUT),
    "The config audit (rules/settings_rules.py): old, mixed, removed and misspelt names, changed defaults, "
    "values that cut connections; intended against effective values.", "celery_doctor.rules.settings_rules"))
registry.register(registry.RuleInfo(
    BROKER_SILENT, "broker_unreachable", "broker", (Category.UNKNOWN,),
    "The probe got no answer from the broker within its timeout: evidence in diagnose, not a usage error.",
    __name__))


def _stamped(findings: list[Finding], rule_id: str) -> list[Finding]:
    for f in findings:
        f.rule_id = f.rule_id or rule_id
    return findings


def analyse_logs(paths: list[str], format_hint: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 reported: dict[str, tuple[str, Evidence]] | None = None) -> Report:
    """The `logs` command: read, merge onto one clock, find incidents, name first causes.
    ``reported``: the versions a `celery report` given beside the logs names (diagnose reads the
    reports itself; the `logs` command looks for one pasted inside the files)."""
    from celery_doctor.ingest import read_logs  # the heavy reader only when logs are given

    inside: dict[str, RuntimeReport] = {}

    def meanwhile() -> None:  # what needs no scan result, done while the pool scans
        _load_log_rules()

    result = read_logs(paths, format_hint=format_hint, progress=progress, meanwhile=meanwhile)
    if reported is None:  # a big file the scan read whole is looked into only if it saw the report's line
        inside.update({p: r for p in paths if p != "-" and not p.endswith(".gz") and p not in result.without_report
                       and Path(p).is_file() and (r := _report_in(p)) is not None})
    notes = [f"{p}: a `celery report` (lines {r.first_line}-{r.last_line}): its versions are used"
             for p, r in inside.items()]
    if reported is None:
        reported = _reported(list(inside.values()))
    timeline = timeline_stage.build(result)
    banner = next((str(s.meta["celery_version"]) for s in timeline.sources if s.meta.get("celery_version")), None)
    if banner and "celery" in reported and reported["celery"][0] != banner:
        notes.append(f"the worker banner says Celery {banner}, the report {reported['celery'][0]}: the report may "
                     "come from another host or environment; the banner's version is used for these logs")
        reported = {k: v for k, v in reported.items() if k != "celery"}
    found = incident_stage.detect(timeline)
    ctx = context_for(timeline, found.incidents, reported)
    findings = _load_log_rules().evaluate(ctx)
    warnings = notes + [f"{s.name}: {w}" for s in result.sources for w in s.warnings]
    shown, left_out = timeline_stage.for_report(timeline.events, found.incidents)
    data: dict[str, Any] = {"activity": {name: [[a.isoformat(), b.isoformat(), n] for a, b, n in curve]
                                         for name, curve in timeline.activity.items()},
                      "versions": _versions_seen(ctx)}
    if left_out:
        data["timeline_left_out"] = left_out
    return Report(
        command="logs", findings=findings, incidents=found.incidents, events=shown,
        undated=timeline.undated,
        sources=result.sources, summary=found.summary, warnings=warnings, data=data,
    )


def _load_log_rules() -> ModuleType:
    """The log rules (30 modules, ~35 ms to import) and the data they read (the known-bad catalogue
    and the line index, ~15 ms): `logs` loads them while its pool scans."""
    from celery_doctor.rules import logs_rules
    from celery_doctor.rules.logs.known_bugs import catalogue_entries
    from celery_doctor.rules.logs.versions import line_index

    catalogue_entries()
    line_index()
    return logs_rules


def _versions_seen(ctx: LogContext) -> dict[str, dict[str, object]]:
    """The releases the logs were written by (banner, paths, layouts, traceback lines, a report)."""
    from celery_doctor.rules.logs.versions import seen_in

    return {name: {"version": s.describe(), "how": s.how[:3],
                   "lines": [f"{e.source}:{e.line}" for e in s.evidence[:3]]}
            for name, s in sorted(seen_in(ctx).items()) if name != "transport"}


def check_broker(url: str, options: ProbeOptions | None = None) -> Report:
    """The `broker` command: probe one broker, judge what it enforces."""
    from celery_doctor.broker import probe_broker
    from celery_doctor.rules.broker_rules import broker_findings

    facts = probe_broker(url, options)
    return Report(
        command="broker",
        findings=broker_findings(facts),
        summary={"broker": facts.kind, "version": facts.version,
                 "login": {True: "ok", False: "refused", None: "not tried"}[facts.logged_in],
                 "probe_s": facts.elapsed_s},
        data={"broker": dataclasses.asdict(facts)},
        warnings=list(facts.notes),
    )


def _project_celery_pin(paths: list[str]) -> tuple[str, str] | None:
    """(Celery release, 'file:line') from the requirement or lock file of the project the config
    belongs to: the version it runs today, i.e. the --from of the upgrade."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    from celery_doctor.pins.readers import read_file as read_requirements
    from celery_doctor.settings import catalogue as settings_catalogue
    from celery_doctor.settings.loader import project_root

    first = next((Path(p) for p in paths if Path(p).exists()), None)
    if first is None:
        return None
    root = project_root(first if first.is_file() else first / "x.py")
    names = ("poetry.lock", "uv.lock", "Pipfile.lock", "requirements.txt", "requirements/base.txt",
             "requirements/production.txt", "requirements/prod.txt", "pyproject.toml", "requirements.in")
    for directory in dict.fromkeys([root, root.parent]):
        for name in names:
            candidate = directory / name
            if not candidate.is_file():
                continue
            try:
                pin = read_requirements(str(candidate)).pins.get("celery")
            except DoctorError:
                continue
            if pin is None:
                continue
            where = f"{candidate}:{pin.line}" if pin.line else str(candidate)
            if pin.version:
                try:
                    return settings_catalogue.resolve(pin.version), where
                except DoctorError:
                    continue
            try:
                spec = SpecifierSet(pin.specifier)
            except InvalidSpecifier:
                continue
            allowed = [v for v in settings_catalogue.releases() if Version(v) in spec]
            if allowed:
                return allowed[-1], where
    return None


def _runtime_facts(report: RuntimeReport) -> ConfigFacts:
    """A running Celery's settings as a config source (names as it printed them)."""
    from celery_doctor.settings.interface import Assignment, ConfigFacts
    facts = ConfigFacts(files=[report.source])
    for key, value in report.settings.items():
        if key == "deprecated_settings" or key.startswith("_"):  # Celery's bookkeeping, object internals
            continue
        facts.assignments.append(Assignment(name=key, value=value, source=report.source,
                                            line=report.lines.get(key, 0), text=report.texts.get(key, key),
                                            via="report", prefixed=False))
    return facts


def _runtime_data(report: RuntimeReport) -> dict[str, object]:
    return {"kind": report.kind, "source": report.source, "versions": report.versions,
            "transport": report.transport, "results": report.results, "workers": report.workers}


def check_config(paths: list[str], to_version: str | None = None, from_version: str | None = None,
                 idle_timeout: str | None = None, reports: list[RuntimeReport] | None = None) -> Report:
    """The static `config PATH` pipeline: read (ast, never executing), analyse against the target, judge.
    A pasted `celery report` / `inspect conf` output among the paths (or in ``reports``, read by
    diagnose) is what Celery really runs with: alone it is audited like a config; beside the files
    it is their effective side."""
    from celery_doctor.rules import settings_rules
    from celery_doctor.settings import analysis as settings_analysis
    from celery_doctor.settings import catalogue as settings_catalogue
    from celery_doctor.settings import runtime_report, static_reader

    middlebox = parse_idle_timeout(idle_timeout)
    runtime = [*(reports or []),
               *(runtime_report.read_runtime(p) for p in paths if runtime_report.is_runtime_report(p))]
    files = [p for p in paths if not runtime_report.is_runtime_report(p)]
    warnings: list[str] = [n for r in runtime for n in r.notes]
    warnings += [f"{r.source}: the report lists no settings (Celery printed {', '.join(r.settings) or 'none'}): "
                 "the effective values below are Celery's defaults, not what the workers run with"
                 for r in runtime if not [k for k in r.settings if k != "deprecated_settings" and k[:1] != "_"]]
    running = next((r.celery for r in runtime if r.celery), None)
    if running and not from_version:
        try:
            from_version = settings_catalogue.resolve(running)
            warnings.append(f"--from not given: Celery {running}, from "
                            f"{next(r.source for r in runtime if r.celery)}")
        except DoctorError:
            warnings.append(f"the report says Celery {running}, older than the settings data "
                            f"({settings_catalogue.releases()[0]}): give --from")
    if not files and not runtime:
        raise DoctorError("no config file or report to audit")
    facts = static_reader.read(files) if files else _runtime_facts(runtime[0])
    source = from_version
    if not from_version:
        pinned = _project_celery_pin(files)
        if pinned:
            source = pinned[0]
            warnings.append(f"--from not given: Celery {pinned[0]}, pinned in {pinned[1]}")
    analysis = settings_analysis.analyse(facts, to_version, source)
    source = analysis.source_version
    if source is None:
        source = settings_analysis.guess_source_version(analysis)
        if source:
            warnings.append(f"--from not given and no pin found: assumed Celery {source} because the settings "
                            "use 3.x names (say --from VERSION)")
    warnings += list(facts.notes)
    findings = settings_rules.settings_findings(analysis, middlebox, source)
    data: dict[str, object] = {"config": settings_rules.config_data(analysis, source)}
    if runtime:
        data["runtime"] = _runtime_data(runtime[0])
    if runtime and files:
        doc = {"celery": runtime[0].celery or "", "settings": {
            settings_catalogue.any_to_new().get(k, k): {"value": v, "origin": runtime[0].kind}
            for k, v in runtime[0].settings.items() if k != "deprecated_settings"}, "env": []}
        judged, rows = settings_rules.effective_findings(analysis, doc, runtime[0].celery or analysis.target)
        findings += judged
        data["effective"] = rows
    findings = sorted(findings, key=lambda f: -f.severity.rank)
    return Report(command="config", findings=_stamped(findings, CONFIG_AUDIT), warnings=warnings,
                  summary={"files": ", ".join(facts.files), "target": analysis.target, "from": source,
                           "namespace": facts.namespace, "settings": len(analysis.rows),
                           "celery_running": running,
                           "idle_timeout": f"{middlebox.name} ({middlebox.idle_timeout_s} s)" if middlebox else None},
                  data=data)


def check_effective(app: str, python: str | None, paths: list[str], to_version: str | None,
                    from_version: str | None, idle_timeout: str | None, timeout: float) -> Report:
    """`config --app MODULE`: import the app in the user's interpreter, read the files it was
    configured from, and judge intended against effective values."""
    from celery_doctor.rules import settings_rules
    from celery_doctor.settings import analysis as settings_analysis
    from celery_doctor.settings import catalogue as settings_catalogue
    from celery_doctor.settings import static_reader
    from celery_doctor.settings.effective import read_effective

    middlebox = parse_idle_timeout(idle_timeout)
    doc = read_effective(app, python, timeout)
    version = doc.get("celery") or ""
    try:
        target = settings_catalogue.resolve(to_version or version)
    except DoctorError:  # a release newer than the data: judge against the newest known
        target = settings_catalogue.newest()
    files = paths or [f for f in [doc.get("module_file"), *doc.get("config_files", [])] if f]
    findings: list[Finding] = []
    analysis = None
    if files:
        facts = static_reader.read([f[:-1] if f.endswith(".pyc") else f for f in files])
        analysis = settings_analysis.analyse(facts, target, from_version)
        findings += settings_rules.settings_findings(analysis, middlebox, analysis.source_version)
    judged, rows = settings_rules.effective_findings(analysis, doc, version)
    findings = _stamped(sorted(findings + judged, key=lambda f: -f.severity.rank), CONFIG_AUDIT)
    return Report(command="config", findings=findings,
                  summary={"app": app, "python": doc.get("python"), "celery": version, "target": target,
                           "files": ", ".join(files) or None, "env_overrides": ", ".join(doc.get("env", [])) or None},
                  data={"effective": rows, **({"config": settings_rules.config_data(analysis, analysis.source_version)}
                                              if analysis else {})})


class LogPathError(DoctorError):
    """A log pattern or folder that names no file: said by name, not as 'nothing readable'."""


def expand_log_paths(patterns: list[str]) -> list[str]:
    """Globs and directories (every file inside, recursively) into a list of files, in the order given.

    A quoted glob that matches nothing and a folder that holds no file are errors by name: the
    user mistyped a path, and "no log files given" would not say which one.
    """
    paths: list[str] = []
    for pattern in patterns:
        if pattern == "-":
            paths.append(pattern)
            continue
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise LogPathError(f"nothing matches {pattern}")
        else:
            matches = [pattern]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                inside = [str(p) for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
                if not inside:
                    raise LogPathError(f"{match}: no log files in this folder")
                paths.extend(inside)
            else:
                paths.append(match)
    return list(dict.fromkeys(paths))  # a file named twice (a.log and *.log) is read once


@dataclass
class DiagnoseOptions:
    logs: list[str] = field(default_factory=list)
    config: str | None = None
    app: str | None = None
    python: str | None = None
    broker: str | None = None
    repro: str | None = None  # a fault spec to reproduce against the broker
    from_version: str | None = None
    to_version: str | None = None
    idle_timeout: str | None = None  # seconds or a middlebox profile name
    timeout: float = 5.0
    reports: list[str] = field(default_factory=list)  # `celery report` / `inspect conf` outputs (--report)
    stdin_head: str | None = None  # the start of `--logs -` (read by cli.py), for a report pasted into it


def reproduce_fault(options: DiagnoseOptions) -> Report:
    """diagnose --repro FAULT: the same failure on a minimal bench, with the user's config on top."""
    from celery_doctor.repro import harness
    from celery_doctor.repro.proxy import parse_fault

    fault = parse_fault(options.repro or "")
    run_options = harness.RunOptions(scenario="idle", fault=fault, broker_url=options.broker,
                                     config=Path(options.config) if options.config else None,
                                     python=options.python or harness.RunOptions.python)
    return reproduce([run_options])


ReproProgress = Callable[[str, float], None]


def reproduce(runs: list[ReproRunOptions], progress: ReproProgress | None = None,
              verify_fix: bool = False) -> Report:
    """The `repro` command: run each reproduction (minimal, then the user's config for
    --compare), judge each run's facts (its logs through the logs engine, its ground truth
    through rules/repro_rules), and with ``verify_fix`` rerun the same fault with the fix the
    verdict proposes and say whether the failure is gone."""
    from celery_doctor.repro import harness

    def say(what: str, done: float) -> None:
        if progress is not None:
            progress(what, done)

    judged: list[_Judged] = []
    for number, options in enumerate(runs, 1):
        prefix = f"[{number}/{len(runs)} {options.label}] " if len(runs) > 1 else ""

        def step(what: str, done: float, prefix: str = prefix) -> None:
            say(prefix + what, done)

        judged.append(_judge(harness.run(options, progress=step)))
    if verify_fix:
        judged += _verify(judged[-1], runs[-1], say)
    return _repro_report(judged)


if TYPE_CHECKING:
    from celery_doctor.repro.facts import RunFacts


@dataclass
class _Judged:
    facts: RunFacts
    findings: list[Finding]
    engine: Report | None
    data: dict[str, Any]


def _judge(facts: RunFacts) -> _Judged:
    """One run's verdict: the logs engine on its logs, the repro rules on its ground truth."""
    from celery_doctor.repro import harness, ledger, scenarios
    from celery_doctor.rules import combine, repro_rules

    warnings: list[str] = []
    engine: Report | None = None
    try:
        engine = analyse_logs([str(p) for p in facts.logs if p.exists()])
    except DoctorError as exc:
        warnings.append(f"the logs engine failed on this run's logs: {exc}")
    summary = ledger.summarise(facts.tasks, facts.leftovers, exclude=facts.canary_ids)
    own = repro_rules.evaluate(facts, summary)
    from_logs = list(engine.findings) if engine is not None else []
    repro_rules.cut_fix(facts, from_logs)
    repro_rules.long_task_fix(facts, from_logs)
    repro_rules.duplicate_note(summary, from_logs)
    cuts = _ground_truth_counts(facts, engine, from_logs)
    # the run's ground truth is an observed failure too: a repro rule's finding is a cause, not a risk
    failures = len(engine.incidents) if engine is not None else 0
    failures += sum(1 for f in own if f.category in combine.CAUSES)
    findings = combine.rank([*own, *from_logs], [], observed=combine.Observed(logs_given=True, incidents=failures))
    if any(f.category in combine.CAUSES for f in findings):
        findings = [f for f in findings if f.category != Category.NO_INCIDENT]
    # the publisher's path counts when it cost a task: a cut its retry absorbed did no harm
    publisher_hurt = bool(summary.get("publish_failed") or summary.get("publish_interrupted"))
    expected, why = scenarios.expected_categories(facts.fault, facts.scenario, facts.plan, facts.worker_events,
                                                  facts.publisher_events if publisher_hurt else [],
                                                  facts.target.kind)
    if any(incident_stage.text_family(line) in ("auth", "vhost") for line in facts.worker.errors):
        # a wrong password or vhost in the run's URL: the broker refused the worker, whatever the fault
        expected, why = {Category.AUTH_OR_PERMISSIONS}, "the broker refused the run's login, so no fault was tested"
    top = findings[0].category if findings else None
    engine_top = engine.findings[0].category if engine is not None and engine.findings else None
    names = sorted(c.value for c in expected)
    check: dict[str, Any] = {"expected": names, "why": why, "top_finding": top.value if top else None,
                             "ok": top in expected, "logs_engine_top": engine_top.value if engine_top else None,
                             "logs_engine_ok": engine_top in expected}
    if not check["ok"]:
        check["message"] = (f"self-check failed: the top finding is {top.value if top else 'missing'}, but the "
                            f"run should show {' or '.join(names)} ({why})")
    data = _run_data(facts, summary, engine, check, warnings)
    data["cuts"] = cuts
    data["findings"] = [{"category": f.category.value, "severity": f.severity.value, "title": f.title,
                         "confidence": round(f.confidence, 2), "rule": f.facts.get("rule")} for f in findings]
    data["categories"] = [f.category.value for f in findings]
    harness.discard(facts)
    return _Judged(facts=facts, findings=findings, engine=engine, data=data)


def _ground_truth_counts(facts: RunFacts, engine: Report | None, findings: list[Finding]) -> dict[str, Any]:
    """One count of the cuts for the whole report. The middlebox knows every cut; the logs
    engine sees those that broke a connection the worker had (each an incident). A cut that
    hit a connection still in its handshake is retried without a 'lost' line: it is counted
    apart, so the finding, the table and the engine never disagree silently."""
    connections = sum(1 for e in facts.worker_events if e.kind.value == "connected")
    cut_events = [e for e in facts.worker_events if e.kind.value == "proxy_cut"]
    pub_cuts = sum(1 for e in facts.publisher_events if e.kind.value == "proxy_cut")
    incidents = list(engine.incidents) if engine is not None else []
    in_incidents = {(e.source, e.line) for i in incidents for e in i.events if e.kind.value == "proxy_cut"}
    seen = sum(1 for e in cut_events if any(src.endswith("proxy-events.jsonl") and line == e.line
                                            for src, line in in_incidents))
    counts = {"worker_cuts": len(cut_events), "worker_connections": connections,
              "cuts_in_incidents": seen, "cuts_not_seen_by_worker": len(cut_events) - seen,
              "incidents": len(incidents), "publisher_cuts": pub_cuts}
    if not cut_events and not pub_cuts:
        return counts
    line = (f"The middlebox's own record for this run: {len(cut_events)} of the worker's {connections} "
            f"connection(s) cut; {seen} of those cuts are in the {len(incidents)} incident(s) above")
    if len(cut_events) - seen:
        line += (f", {len(cut_events) - seen} hit a connection the worker had not finished opening "
                 "(it retried without logging a lost connection)")
    line += (f"; the publisher's connections were cut {pub_cuts} time(s)" if pub_cuts else "") + "."
    for finding in findings:
        if finding.category in (Category.NETWORK_IDLE_TIMEOUT, Category.NETWORK_PATH_LOSS, Category.TLS_OR_PROXY):
            finding.explanation += "\n" + line
            finding.facts["proxy_cuts"] = len(cut_events)
    return counts


def _harm(judged: _Judged) -> str | None:
    """What the fault cost in this run, in words; None when it cost nothing: every planned
    task executed exactly once, the worker consumed after the fault, and the worker never saw
    its broker connection fail (a pooled connection redis-py silently reopens is no harm)."""
    states = judged.data["ledger"]["states"]
    bad = {k: v for k, v in states.items() if k != "executed" and v}
    if bad:
        return "the ledger shows " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items())
    if not judged.facts.canary.executed:
        return "the worker did not consume a new task after the fault"
    incidents = [i for i in (judged.engine.incidents if judged.engine is not None else [])
                 if any(e.side.value == "client" for e in i.events)]  # seen by the worker itself
    if incidents:
        return f"the worker's connection failed {len(incidents)} time(s) (see its log)"
    return None


def _verify(judged: _Judged, options: ReproRunOptions, say: ReproProgress) -> list[_Judged]:
    """Rerun the same scenario and fault with each fix the verdict proposes; record whether it
    made the fault harmless, and take back a fix when it did not."""
    from celery_doctor.repro import harness

    proposed = next((f for f in judged.findings if f.fix is not None and f.facts.get("repro_fix")), None)
    if proposed is None:
        unproven = next((f for f in judged.findings if f.fix is not None and f.facts.get("repro_fix_unproven")),
                        None)
        judged.data["verify_fix"] = {
            "proven": None, "why": (f"the fix proposed is {unproven.facts['repro_fix_unproven']}" if unproven else
                                    "the verdict proposes no fix a rerun can apply")}
        return []
    fixes: list[dict[str, Any]] = [dict(proposed.facts["repro_fix"]),
                                   *(dict(x) for x in proposed.facts.get("repro_fix_also", []))]
    before = _harm(judged)
    reruns: list[_Judged] = []
    verdicts: list[dict[str, Any]] = []
    for applied in fixes:
        fixed = dataclasses.replace(options, label="fixed", heartbeat=applied.get("heartbeat", options.heartbeat),
                                    pool=applied.get("pool", options.pool),
                                    transport_options={**options.transport_options,
                                                       **applied.get("transport_options", {})})

        def step(what: str, done: float) -> None:
            say("[verify-fix] " + what, done)

        facts = harness.run(fixed, progress=step)
        rerun = _judge(facts)
        after = _harm(rerun)
        proven = after is None
        cuts = sum(1 for e in facts.worker_events if e.kind.value == "proxy_cut")
        why = (f"without the fix {before or 'the fault did no visible harm'}; with it every planned task ran "
               f"exactly once, the worker kept consuming and never lost its connection"
               + (f" (the middlebox still cut {cuts} idle pooled connection(s))" if cuts else "")
               if proven else f"with the fix {after}")
        verdict = {"proven": proven, "why": why, "fix": applied, "category": proposed.category.value,
                   "fixed_wall_s": facts.wall_s}
        rerun.data["verify_fix"] = verdict
        reruns.append(rerun)
        verdicts.append(verdict)
    proven = all(v["proven"] for v in verdicts)
    summary = dict(verdicts[0], proven=proven)
    if len(verdicts) > 1:
        summary["each"] = verdicts
        summary["why"] = "; ".join(f"{_fix_words(v['fix'])}: {'proven' if v['proven'] else 'NOT proven'} "
                                   f"({v['why']})" for v in verdicts)
    judged.data["verify_fix"] = summary
    if proposed.fix is not None:
        why = summary["why"]
        proposed.fix = dataclasses.replace(
            proposed.fix, verify=("verified: the same fault with this fix did no harm (" + why + ")" if proven else
                                  None),
            text=proposed.fix.text if proven else
            "NOT PROVEN, do not rely on it: the rerun with this fix still failed (" + why + "). " + proposed.fix.text)
    return reruns


def _fix_words(applied: dict[str, Any]) -> str:
    """A rerun's fix as the options it set (for the verdict line)."""
    return ", ".join(f"{k}={v}" for k, v in applied.items())


def _events_summary(events: list[Any]) -> dict[str, Any]:
    from collections import Counter

    kinds = Counter(e.kind.value for e in events)
    return {"connections": kinds.get("connected", 0), "cuts": kinds.get("proxy_cut", 0),
            "blackholed": kinds.get("proxy_blackhole", 0), "healed": kinds.get("proxy_heal", 0),
            "refused": kinds.get("proxy_refuse", 0),
            "decisions": [{"ts": e.ts.isoformat(timespec="milliseconds"), "kind": e.kind.value,
                           "client": e.peer, "message": (e.detail or {}).get("message")}
                          for e in events if e.kind.value != "connected"][:100]}


def _run_data(facts: RunFacts, summary: dict[str, Any], engine: Report | None, check: dict[str, Any],
              warnings: list[str]) -> dict[str, Any]:
    """The JSON edge of one run: everything the report shows, as plain values."""
    from celery_doctor.repro import ledger

    outages = [i.outage_s for i in engine.incidents if i.outage_s is not None] if engine is not None else []
    effective = facts.effective
    hb = effective.get("broker_heartbeat", facts.plan.heartbeat) if facts.target.kind == "rabbitmq" else None
    from_config = bool(facts.config is not None and "broker_heartbeat" in effective
                       and float(effective["broker_heartbeat"] or 0) != facts.plan.heartbeat)
    return {
        "label": facts.label, "scenario": facts.scenario, "fault": facts.fault.spec if facts.fault else None,
        "broker": {"kind": facts.target.kind, "url": facts.target.url, "chosen_because": facts.target.chosen_because},
        "middlebox": {"kind": facts.middlebox, "why": facts.middlebox_why},
        "versions": facts.versions, "python": facts.python, "config": str(facts.config) if facts.config else None,
        "settings": {"heartbeat_s": float(hb) if hb is not None else None,
                     "heartbeat_why": ("from the config file" if from_config else facts.plan.heartbeat_why),
                     "acks_late": bool(effective.get("task_acks_late", facts.plan.acks_late)),
                     "pool": facts.plan.pool, "concurrency": facts.plan.concurrency,
                     "heartbeat_from_user_config": from_config, "effective": effective},
        "queue": facts.queue, "ledger": summary, "verdict": ledger.verdict_line(summary),
        "not_sent_reason": facts.not_sent_reason,
        "worker": {"ready_s": facts.worker.ready_s, "alive_at_end": facts.worker.alive_at_end,
                   "exit_status": facts.worker.exit_status, "consuming_at_end": facts.canary.executed,
                   "alive_but_not_consuming": bool(facts.worker.alive_at_end and facts.canary.published
                                                   and not facts.canary.executed),
                   "errors": facts.worker.errors},
        "canary": dataclasses.asdict(facts.canary),
        "proxy": _events_summary(facts.worker_events), "publisher_proxy": _events_summary(facts.publisher_events),
        "recovery": {"reconnects": engine.summary.get("reconnects") if engine is not None else None,
                     "incidents": len(engine.incidents) if engine is not None else 0,
                     "outages_s": [round(x, 2) for x in outages],
                     "longest_outage_s": round(max(outages), 2) if outages else None},
        "self_check": check, "wall_s": facts.wall_s, "timings": facts.timings,
        "publish_hangs": facts.publish_hangs, "notes": facts.notes, "warnings": warnings,
        "workdir": str(facts.directory) if facts.kept else None,
        "files": ({name: str(facts.file(name)) for name in ("worker.log", "ledger.jsonl", "proxy-events.jsonl",
                                                            "publisher-proxy-events.jsonl", "broker.log")}
                  if facts.kept else None),
    }


def _repro_report(judged: list[_Judged]) -> Report:
    """One Report: the findings of the last run that is the subject (the user's config with
    --compare; the unfixed run with --verify-fix), every run's data side by side."""
    subject = next((j for j in reversed(judged) if j.facts.label != "fixed"), judged[-1])
    warnings = list(subject.engine.warnings) if subject.engine is not None else []
    for j in judged:
        prefix = f"{j.data['label']}: " if len(judged) > 1 else ""
        check = j.data["self_check"]
        if not check["ok"]:
            warnings.append(prefix + check["message"])
        warnings += [prefix + w for w in j.data["warnings"]]
    if not subject.facts.kept:
        warnings.append("the run's files (worker.log, ledger.jsonl, ...) were removed with the run's "
                        "temporary folder: rerun with --workdir DIR to keep them")
    data: dict[str, Any] = dict(subject.data) if len(judged) == 1 else {"runs": [j.data for j in judged]}
    summary = {"scenario": subject.data["scenario"], "fault": subject.data["fault"],
               "broker": subject.facts.target.kind, "middlebox": subject.facts.middlebox,
               "ledger": subject.data["verdict"], "wall_s": subject.data["wall_s"]}
    if subject.data.get("verify_fix"):
        summary["fix_verified"] = subject.data["verify_fix"].get("proven")
    engine = subject.engine
    return Report(command="repro", findings=subject.findings, incidents=engine.incidents if engine else [],
                  events=engine.events if engine else [], sources=engine.sources if engine else [],
                  summary=summary, data=data, warnings=warnings)


def _settings(config: Report | None, judged: RuntimeReport | None = None) -> dict[str, combine.Setting]:
    """The settings the config audit read, with the line each stands on (only those Celery uses:
    not the ignored names, not a class it is not configured from); a `celery report`'s values
    replace the files' (they are what the running app has in effect)."""
    from celery_doctor.rules import combine
    from celery_doctor.settings import catalogue as settings_catalogue
    data = (config.data.get("config") or {}) if config is not None else {}
    rows = data.get("in_effect", data.get("settings", []))
    out: dict[str, combine.Setting] = {}
    for row in rows:
        if not row.get("setting") or not row.get("source") or not row.get("line"):
            continue
        text = row.get("text") or f"{row['written']} = {row['value']}"
        out[row["setting"]] = combine.Setting(str(row.get("value")), Evidence(row["source"], row["line"], text))
    for row in data.get("settings", []):  # a broker the file names but Celery may not read (the default-URL rule)
        if row.get("setting") == "broker_url" and row.get("source") and row.get("line") and "broker_url" not in out:
            text = row.get("text") or f"{row['written']} = {row['value']}"
            out["broker_url.written"] = combine.Setting(str(row.get("value")),
                                                        Evidence(row["source"], row["line"], text))
    if judged is not None:
        from celery_doctor.rules.logs.failover import configured_nodes

        names = settings_catalogue.any_to_new()
        for key, value in judged.settings.items():
            setting = names.get(key, key)
            if key == "deprecated_settings" or key.startswith("_") or not judged.lines.get(key):
                continue
            if setting == "broker_url" and "broker_url" in out and len(configured_nodes(out["broker_url"].value)) > 1:
                continue  # `celery report` prints only the first URL of a failover list: the file's list stands
            out[setting] = combine.Setting(repr(value) if isinstance(value, str) else str(value),
                                           Evidence(judged.source, judged.lines[key], judged.texts.get(key, key)))
    return out


def _reports_in_logs(logs: Report, inside: dict[str, RuntimeReport]) -> None:
    """A pasted report is not a log: its file's "unknown format" warning says what it is instead."""
    for source in logs.sources:
        if source.name in inside and source.format == "unknown":
            source.warnings = [w for w in source.warnings if not w.startswith("unknown log format")]
            source.format = "celery report"
            logs.warnings = [w for w in logs.warnings if not (w.startswith(f"{source.name}: unknown log format"))]


def _running_celery(logs: Report | None) -> str | None:
    """The Celery release a worker banner in the logs names, resolved in the settings data."""
    from celery_doctor.settings import catalogue as settings_catalogue
    if logs is None:
        return None
    banner = next((str(s.meta["celery_version"]) for s in logs.sources if s.meta.get("celery_version")), None)
    if not banner:
        # no banner (a --logfile has none): the release range the traceback lines and paths fingerprint,
        # when it stays within one minor series (the settings do not change inside one)
        seen = logs.data.get("versions", {})
        said = str(seen.get("celery", {}).get("version", "")) if isinstance(seen, dict) else ""
        m = re.fullmatch(r"celery (\S+?)(?:\.\.(\S+) \(\d+ releases?\))?", said)
        if m is None or (m.group(2) and m.group(1).split(".")[:2] != m.group(2).split(".")[:2]):
            return None
        banner = m.group(2) or m.group(1)
    try:
        return settings_catalogue.resolve(banner)
    except DoctorError:
        return None


def _missing(options: DiagnoseOptions, parts: dict[str, Report]) -> list[str]:
    """The evidence diagnose was not given, in words, most useful first."""
    missing = []
    logs = parts.get("logs")
    if logs is None:
        missing.append("worker and broker logs (--logs) to see who closed the connection and when")
    elif not any(s.format.startswith(("rabbitmq", "redis")) for s in logs.sources):
        missing.append("the broker's own log for the same window (--logs rabbit@host.log)")
    if not (options.config or options.app or parts.get("config")):
        missing.append("the Celery config (--config, --app or --report) to check the settings in effect")
    if not options.broker:
        missing.append("a broker probe (--broker URL) to check its health and limits")
    return missing


AUTH_WORDS = re.compile(r"ACCESS_REFUSED|\(403\)|login refused|\(530\)|NOT_ALLOWED|WRONGPASS|invalid password", re.I)


def _observed(logs: Report | None) -> combine.Observed:
    """What the logs showed, for weighing the other inputs against it."""
    from celery_doctor.rules import combine
    if logs is None:
        return combine.Observed()
    logins = [Evidence.of(e) for e in logs.events
              if (e.kind == Kind.CONNECTED and e.side == Side.CLIENT)
              or (e.kind == Kind.CONNECTION_ACCEPTED and "authenticated" in e.text)
              # RabbitMQ 3.7+ logs the login on the line after "accepting AMQP connection": a connection
              # the broker later closes by name (vhost, user) had logged in
              or (e.kind in (Kind.CONNECTION_CLOSED_CLEAN, Kind.CLIENT_CLOSED_ABRUPTLY) and "user: '" in e.text)]
    logins.sort(key=lambda ev: "Connected to" not in ev.text)  # the workers' own words first
    refused_events = [e for e in logs.events if e.kind in (Kind.AUTH_REFUSED, Kind.ACCESS_REFUSED)
                      or (e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT and AUTH_WORDS.search(e.text))]
    # with the workers' own logs given, only their refusals count: a broker that many clients share logs
    # other applications' wrong passwords too
    if any(e.side == Side.CLIENT for e in logs.events):
        refused_events = [e for e in refused_events if e.side == Side.CLIENT]
    refused = len(refused_events)
    return combine.Observed(logs_given=True, incidents=len(logs.incidents), logins_ok=logins,
                            auth_failures=refused)


def _reports(options: DiagnoseOptions, log_paths: list[str]) -> tuple[list[RuntimeReport], dict[str, RuntimeReport]]:
    """The `celery report` / `inspect conf` outputs given with --report, and those pasted inside
    the log files (path -> the report found in it)."""
    from celery_doctor.settings import runtime_report

    given = [runtime_report.read_runtime(p) for p in options.reports]
    inside: dict[str, RuntimeReport] = {}
    if "-" in log_paths and options.stdin_head:
        piped = runtime_report.find_report(options.stdin_head, "stdin")
        if piped is not None:
            inside["-"] = piped
    for path in log_paths:
        if path == "-" or path.endswith(".gz") or not Path(path).is_file():
            continue
        found = runtime_report.find_report_in_file(path)
        if found is not None:
            inside[path] = found
    return given, inside


_LOG_LIKE = re.compile(r"\d{1,2}:\d{2}:\d{2}|Traceback|Error|WARNING|CRITICAL|ERROR")


def _only_report(path: str, report: RuntimeReport) -> bool:
    """True when nothing outside the report's lines looks like a log line (a prompt, a fence, notes)."""
    if path == "-":
        return False  # stdin is read once, by the log reader; a report alone there is said by its warning
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    outside = lines[:max(0, report.first_line - 1)] + lines[report.last_line:]
    return not any(_LOG_LIKE.search(line) for line in outside)


def _report_in(path: str) -> RuntimeReport | None:
    from celery_doctor.settings import runtime_report

    return runtime_report.find_report_in_file(path)


def _reported(reports: list[RuntimeReport]) -> dict[str, tuple[str, Evidence]]:
    """package -> (version, the report's line): the first report that names a package wins."""
    out: dict[str, tuple[str, Evidence]] = {}
    for report in reports:
        for name, (version, line, text) in report.named().items():
            out.setdefault(name, (version, Evidence(report.source, line, text)))
    return out


def _has_settings(report: RuntimeReport) -> bool:
    return any(k != "deprecated_settings" and not k.startswith("_") for k in report.settings)


def _report_data(reports: list[RuntimeReport], judged: RuntimeReport | None) -> dict[str, object]:
    return {"reports": [{**_runtime_data(r), "lines": [r.first_line, r.last_line] if r.first_line else None,
                         "settings": len([k for k in r.settings if k != "deprecated_settings"]),
                         "settings_judged": r is judged} for r in reports]}


def diagnose(options: DiagnoseOptions, progress: Callable[[str, int, int], None] | None = None) -> Report:
    """Every step the expert would take, on whatever evidence was given, ranked into causes."""
    from celery_doctor.rules import combine
    findings: list[Finding] = []
    parts: dict[str, Report] = {}
    unread: list[str] = []
    paths = expand_log_paths(options.logs) if options.logs else []
    given, inside = _reports(options, paths)
    runtime = [*given, *inside.values()]
    reported = _reported(runtime)
    # a file that holds only a report is not a log: reading it as one would count it as unreadable
    paths = [p for p in paths if p not in inside or not _only_report(p, inside[p])]
    if paths:
        try:
            parts["logs"] = analyse_logs(paths, progress=progress, reported=reported)
        except DoctorError as exc:
            if set(paths) <= set(inside):
                pass  # only reports were given as logs: they are read below, for versions and settings
            elif not (options.config or options.app or options.broker or options.repro or runtime):
                raise  # nothing else to judge: the documented exit 2 with its one line
            else:  # the other inputs can still be judged: the unreadable logs are a warning
                unread.append(f"logs not used: {exc}")
    if "logs" in parts:
        _reports_in_logs(parts["logs"], inside)
    unread += [f"{'stdin' if path == '-' else path}: a `celery report` (lines {r.first_line}-{r.last_line}): read "
               "for the versions and settings the running app reports" for path, r in inside.items()]
    judged = next((r for r in runtime if _has_settings(r)), None)
    running = _running_celery(parts.get("logs"))
    if running and not options.to_version and (options.config or options.app):
        # no upgrade named: the config is judged against the release the workers ran (their banner), not
        # against the newest one, whose names and defaults the workers never saw
        options = replace(options, to_version=running, from_version=options.from_version or running)
        unread.append(f"--to not given: the config is judged against Celery {running}, the version the worker "
                      "logs show (its banner or traceback lines; give --to for an upgrade)")
    if options.config or options.app:
        paths = [options.config] if options.config else []
        if options.app:
            parts["config"] = check_effective(options.app, options.python, paths, options.to_version,
                                              options.from_version, options.idle_timeout, 30.0)
            if judged is not None:
                unread.append(f"{judged.source}: its settings are not judged beside --app (the imported app's "
                              "effective settings are); its versions are")
                judged = None
        else:
            parts["config"] = check_config(paths, options.to_version, options.from_version, options.idle_timeout,
                                           reports=[judged] if judged else None)
    elif judged is not None:
        parts["config"] = check_config([], options.to_version, options.from_version, options.idle_timeout,
                                       reports=[judged])
    if runtime and "logs" not in parts:  # with logs, the log stage matched them (and tied them to symptoms)
        from celery_doctor.rules.logs.known_bugs import known_bad_versions

        findings += known_bad_versions(reported, None)
    if options.broker:
        from celery_doctor.broker import BrokerError, ProbeOptions

        try:
            parts["broker"] = check_broker(options.broker, ProbeOptions(timeout=options.timeout, churn_interval=2.0))
        except BrokerError as exc:
            # in diagnose an unreachable broker is evidence, not a usage error
            parts["broker"] = Report(command="broker", findings=[Finding(
                category=Category.UNKNOWN, severity=Severity.HIGH, title="The broker did not answer the probe",
                explanation=str(exc), evidence=[Evidence(source="broker probe", line=0, text=str(exc))],
                confidence=0.5, rule_id=BROKER_SILENT)])
    if options.repro:
        parts["repro"] = reproduce_fault(options)
    for name, part in parts.items():
        for finding in part.findings:
            finding.facts.setdefault("source", name)
        findings += part.findings
    logs_report = parts.get("logs")
    ranked = combine.rank(findings, _missing(options, parts), parse_idle_timeout(options.idle_timeout),
                          _settings(parts.get("config"), judged), _observed(logs_report))
    if _writes_old_names(parts.get("config")):
        _fixes_in_old_names(ranked)
    summary: dict[str, object] = {"inputs": sorted([*parts, *(["report"] if runtime else [])])}
    answer = next((f for f in ranked if f.role in (Role.CAUSE, Role.RISK)), None)
    if ranked and ranked[0].role == Role.CONTEXT and ranked[0].category == Category.NO_INCIDENT:
        answer = ranked[0]
    if answer is not None:
        # the answer: the top cause of the observed failures, or with none observed the worst risk
        summary["top_cause"] = answer.category.value
        summary["confidence"] = round(answer.confidence, 2)
        summary["answer"] = answer.role.value
    if logs_report is not None:
        summary.update({k: v for k, v in logs_report.summary.items() if k != "events_by_kind"})
    return Report(
        command="diagnose", findings=ranked,
        incidents=logs_report.incidents if logs_report else [],
        events=logs_report.events if logs_report else [],
        undated=logs_report.undated if logs_report else [],
        sources=logs_report.sources if logs_report else [],
        summary=summary,
        data={**{name: part.data for name, part in parts.items()},
              **({"report": _report_data(runtime, judged)} if runtime else {})},
        warnings=unread + [w for part in parts.values() for w in part.warnings],
    )


def _writes_old_names(config: Report | None) -> bool:
    """Whether the config file the user gave is written in Celery 3.x's upper-case names."""
    rows = (config.data.get("config", {}).get("settings") or []) if config is not None else []
    written = [r for r in rows if r.get("source") and r.get("written")]
    return bool(written) and all(r["written"] != r.get("setting") and r["written"].isupper() for r in written)


def _fixes_in_old_names(findings: list[Finding]) -> None:
    """The fixes for what the logs or the broker showed, in the names the user's file uses (the
    config's own findings propose the new names on purpose)."""
    from celery_doctor.rules.fixes import in_old_names

    for f in findings:
        if f.fix and f.fix.snippet and f.role != Role.CONFIG and f.facts.get("source") != "config":
            renamed = in_old_names(f.fix.snippet)
            if renamed != f.fix.snippet:
                f.fix = dataclasses.replace(f.fix, snippet=renamed + "\n# in the upper-case names your config uses: "
                                            "Celery refuses a file that mixes both styles")


def check_pins(requirement: str | None, python: str | None, to: str | None, constraints_dir: str | None,
               check_install: bool, broker_url: str | None) -> Report:
    """The `pins` command: read the environment or requirements, judge the set, plan the ladder."""
    from celery_doctor.pins import run_pins
    from celery_doctor.rules.pins_rules import pins_findings

    assessment, data = run_pins(requirement, python, to, constraints_dir, check_install, broker_url)
    findings = pins_findings(assessment)
    warnings = list(assessment.env.notes)
    own = _own_packages() if assessment.env.installed and "celery-doctor" in assessment.env.pins else set()
    if own:
        mine = sorted(own & set(assessment.env.pins))
        warnings.append("this environment also holds celery-doctor: " + ", ".join(mine) + " are here for "
                        "celery-doctor itself, not for your app (install celery-doctor with pipx or in its own "
                        "venv and pass --python to check only yours)")
        findings = [_as_ours(f, own) for f in findings]
        findings.sort(key=lambda f: -f.severity.rank)
    return Report(command="pins", findings=findings, data=data,
                  summary={"input": assessment.env.origin, "format": assessment.env.format,
                           "celery": assessment.versions.get("celery"),
                           "python": ", ".join(assessment.pythons) or None,
                           "ladder_steps": len(data.get("ladder", [])) or None},
                  warnings=warnings)


def _own_packages() -> set[str]:
    """celery-doctor's own dependencies, recursively, as canonical names (celery's family left out:
    those are the user's too)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    family = {"celery", "kombu", "amqp", "billiard", "vine", "redis", "librabbitmq", "click"}
    seen: set[str] = set()
    todo = ["celery-doctor"]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # test extras and the like
            dep = canonicalize_name(req.name)
            if dep not in seen and dep not in family:
                seen.add(dep)
                todo.append(dep)
    return seen


def _as_ours(finding: Finding, own: set[str]) -> Finding:
    """A finding about a package that only celery-doctor needs is not the user's problem."""
    from packaging.utils import canonicalize_name

    named = {canonicalize_name(e.text.split("=", 1)[0].split(" ", 1)[0]) for e in finding.evidence}
    if not named & own:
        return finding
    which = ", ".join(sorted(named & own))
    return dataclasses.replace(
        finding, severity=Severity.INFO, confidence=min(finding.confidence, 0.3),
        title=finding.title + " (celery-doctor's own dependency)",
        explanation=finding.explanation + f" {which} is installed for celery-doctor itself (not by your "
                    "requirements); check your own environment with --python PATH.")


def reproduce_runs(base: ReproRunOptions, compare: bool, progress: Callable[[str, float], None] | None = None,
                   verify_fix: bool = False) -> Report:
    """The `repro` command: one run, or with ``compare`` the minimal config and the user's side
    by side; with ``verify_fix`` the proposed fix rerun on the same fault (``reproduce``)."""
    runs = [dataclasses.replace(base, label="minimal", config=None)] if compare or base.config is None else []
    if base.config is not None:
        runs.append(dataclasses.replace(base, label="production"))
    return reproduce(runs, progress, verify_fix=verify_fix)


@dataclass
class MigrationResult:
    """What `config migrate` did: the migration, and whether and where it was written."""

    migration: Migration
    written: bool = False
    backup: str | None = None


def migrate_config(path: str, to_version: str | None, django: bool, write: bool) -> MigrationResult:
    """The `config migrate` command: rename old setting names, comments and layout kept."""
    from celery_doctor.settings import migrate as migrate_stage

    migration = migrate_stage.migrate_file(path, to_version, django)
    backup = migrate_stage.write(migration) if write else None
    return MigrationResult(migration, written=write and migration.changed, backup=backup)
