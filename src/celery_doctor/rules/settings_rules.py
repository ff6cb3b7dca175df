"""Settings -> Findings: names Celery ignores or rejects, removed settings, changed defaults,
and values that are risky for long-lived broker connections."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from celery_doctor.middleboxes import Middlebox
from celery_doctor.model import Category, Evidence, Finding, Fix, Severity
from celery_doctor.settings import analysis as an
from celery_doctor.settings import catalogue
from celery_doctor.settings.interface import Dynamic

CONNECTION_SETTINGS = frozenset({
    "broker_url", "broker_read_url", "broker_write_url", "broker_heartbeat", "broker_heartbeat_checkrate",
    "broker_pool_limit", "broker_connection_timeout", "broker_connection_retry", "broker_connection_max_retries",
    "broker_connection_retry_on_startup", "broker_transport_options", "broker_use_ssl", "broker_login_method",
    "broker_failover_strategy", "broker_channel_error_retry", "result_backend", "result_backend_transport_options",
    "worker_prefetch_multiplier", "task_acks_late", "worker_cancel_long_running_tasks_on_connection_loss",
    "redis_socket_keepalive", "redis_socket_timeout", "redis_socket_connect_timeout", "redis_retry_on_timeout",
    "redis_backend_health_check_interval", "broker_pool_acquire_timeout", "worker_concurrency", "worker_pool",
})
DEFAULT_BROKER = "amqp://guest@localhost:5672//"
# kombu 5.7 kombu/transport/__init__.py TRANSPORT_ALIASES (plus the old 'django' ORM transport, gone in 4.0)
TRANSPORTS = frozenset({"SLMQ", "SQS", "amqp", "amqps", "azureservicebus", "azurestoragequeues", "confluentkafka",
                        "consul", "etcd", "filesystem", "gcpubsub", "kafka", "librabbitmq", "memory", "mongodb", "pgmq",
                        "pyamqp", "pyro", "qpid", "redis", "rediss", "sentinel", "slmq", "sqla", "sqlalchemy", "sqs",
                        "zookeeper"})
REMOVED_TRANSPORTS = {"django": "4.0", "couchdb": "4.0", "beanstalk": "4.0", "zeromq": "4.0", "sqlite": "4.0"}

# Defaults that changed between releases, and what a user upgrading across them sees.
CHANGED_DEFAULTS: dict[str, str] = {
    "broker_heartbeat": "Celery 3.1 sent no AMQP heartbeats; 4.0 asks for 120 s. A worker that is busy "
                        "(a long task in the solo pool, a blocked event loop) now misses heartbeats and "
                        "the broker closes it: 'missed heartbeats from client', then 'Connection reset by peer'.",
    "accept_content": "4.0.1 accepts only JSON: messages published with pickle by old clients are rejected "
                      "('Refusing to deserialize untrusted content of type pickle').",
    "task_serializer": "4.0 publishes JSON instead of pickle: tasks whose arguments are not JSON-serialisable "
                       "fail at .delay() ('Object of type X is not JSON serializable').",
    "result_serializer": "4.0 stores results as JSON instead of pickle.",
    "broker_connection_retry_on_startup": "New in 5.3: whether the worker retries its first broker "
                                          "connection. Unset, it follows broker_connection_retry and warns that "
                                          "6.0 will stop retrying at startup.",
    "worker_cancel_long_running_tasks_on_connection_loss": "New in 5.1: with acks_late, tasks still running "
                                                           "when the connection drops are redelivered and run twice "
                                                           "unless this is True (the 6.0 default).",
    "control_queue_exclusive": "5.7 declares the remote-control reply queues exclusive: they die with the "
                               "connection that made them (RabbitMQ 4.3 dropped transient non-exclusive queues).",
    "event_queue_exclusive": "5.7 declares event queues exclusive (same reason as control_queue_exclusive).",
    "broker_channel_error_retry": "New in 5.3 (False): channel errors are not retried.",
    "worker_enable_prefetch_count_reduction": "New in 5.4 (True): after a connection loss the worker restores "
                                              "prefetch gradually.",
}


def _ev(row: an.Row) -> Evidence:
    return Evidence(source=row.item.source, line=row.item.line, text=row.item.text)


def _spell(setting: str, analysis: an.Analysis, value: Any = None, *, with_value: bool = True) -> str:
    """``name = value`` in the target's names (the Django namespace form when one is in use)."""
    facts = analysis.facts
    name = setting
    if not catalogue.new_style(analysis.target):
        name = catalogue.canonical(setting, analysis.target) or setting.upper()
    elif facts.namespace:
        name = f"{facts.namespace}_{setting.upper()}"
    elif facts.django:
        # Django keeps upper-case names only: without a namespace the old name is the one Celery reads
        old = catalogue.table(analysis.target).get(setting, {}).get("old") or [setting.upper()]
        name = old[0] if facts.namespace_known else f"CELERY_{setting.upper()}"
    return f"{name} = {value!r}" if with_value else name


def _names_findings(analysis: an.Analysis) -> list[Finding]:
    out: list[Finding] = []
    target = analysis.target
    mixed = {id(r) for r in analysis.mix_names}
    for row in analysis.rows:
        name = row.item.name
        relevant = (row.setting or "") in CONNECTION_SETTINGS
        if row.status in an.IGNORED and name in analysis.facts.loaded_names:
            continue  # a variable the file uses to build a real setting (BROKER_URL from CELERY_BROKER_USER...)
        if row.status == an.DROPPED_BY_DJANGO:
            out.append(Finding(
                category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.HIGH if relevant else Severity.MEDIUM,
                title=f"{name} never reaches Celery: Django keeps only upper-case settings",
                explanation=f"{row.item.source} is part of the Django settings "
                            f"({analysis.facts.django_settings or 'DJANGO_SETTINGS_MODULE'}); django.conf.settings "
                            f"drops every name that is not upper case, so Celery uses the default of {row.setting}.",
                evidence=[_ev(row)], confidence=0.95,
                fix=Fix(text=f"Write it as {row.suggestion} (the CELERY namespace form).",
                        snippet=f"{row.suggestion} = {an.show(row.item.value)}"),
                facts={"setting": row.setting, "written": name, "suggestion": row.suggestion, "honoured": False}))
            continue
        if row.status == an.OLD and id(row) not in mixed:
            out.append(Finding(
                category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.LOW,
                title=f"{name} is the old name of {row.suggestion}",
                explanation=f"Celery {target} still reads {name} (converted to {row.setting}) but warns that old "
                            "names go away in 6.0; mixed with new names it refuses the whole config.",
                evidence=[_ev(row)], confidence=0.95,
                fix=Fix(text=f"Rename it (celery-doctor config migrate {row.item.source})." if row.item.via != "report"
                        else "Rename it in the config file the workers load (celery-doctor config migrate FILE).",
                        snippet=f"{row.suggestion} = {an.show(row.item.value)}" if not isinstance(
                            row.item.value, Dynamic) else row.suggestion),
                facts={"setting": row.setting, "old": name, "new": row.suggestion, "honoured": True}))
        elif row.status == an.UNKNOWN:
            hint = f" Did you mean {row.suggestion}?" if row.suggestion else ""
            why = (" (and without namespace='CELERY' a CELERY_ prefix is not read either)"
                   if row.note == "namespace" else "")
            out.append(Finding(
                category=Category.OLD_SETTING_NAMES_IGNORED,
                severity=Severity.HIGH if relevant else Severity.MEDIUM,
                title=f"{name} is not a Celery {target} setting: silently ignored",
                explanation=f"Celery ignores keys it does not know, without a warning.{hint}{why}",
                evidence=[_ev(row)], confidence=0.8 if row.suggestion else 0.5,
                fix=Fix(text=f"Use {row.suggestion}." if row.suggestion else "Remove it or use a real setting name.",
                        snippet=f"{row.suggestion} = {an.show(row.item.value)}" if row.suggestion else None),
                facts={"setting": row.setting, "written": name, "suggestion": row.suggestion, "honoured": False}))
        elif row.status == an.REMOVED:
            detail = f" ({row.note})" if row.note else ""
            alt = f" Celery {target} reads {row.suggestion} instead." if row.suggestion else ""
            out.append(Finding(
                category=Category.VERSION_INCOMPATIBILITY, severity=Severity.HIGH if relevant else Severity.MEDIUM,
                title=f"{name} no longer exists in Celery {target}: silently ignored",
                explanation=f"{name} was removed{detail}; keeping it changes nothing.{alt}",
                evidence=[_ev(row)], confidence=0.9,
                fix=Fix(text=f"Use {row.suggestion}." if row.suggestion else
                        "Delete the line (or find what replaced it in the release notes).",
                        snippet=f"{row.suggestion} = {an.show(row.item.value)}" if row.suggestion else None),
                facts={"setting": row.setting, "written": name, "honoured": False}))
        elif row.status == an.NOT_YET:
            out.append(Finding(
                category=Category.VERSION_INCOMPATIBILITY, severity=Severity.MEDIUM,
                title=f"{name} does not exist in Celery {target} ({row.note})",
                explanation=f"Celery {target} does not know {name} and ignores it.", evidence=[_ev(row)],
                confidence=0.9, facts={"setting": name, "honoured": False}))
        elif row.status == an.NEW_IN_OLD_RELEASE:
            out.append(Finding(
                category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.HIGH if relevant else Severity.MEDIUM,
                title=f"{name} is a 4.0+ name: Celery {target} ignores it",
                explanation=f"Celery {target} reads only the old upper-case names; write {row.suggestion}.",
                evidence=[_ev(row)], confidence=0.9,
                fix=Fix(text=f"Use {row.suggestion} until you run Celery 4 or later.",
                        snippet=f"{row.suggestion} = {an.show(row.item.value)}"),
                facts={"setting": row.setting, "written": name, "honoured": False}))
    return out


def _mix_finding(analysis: an.Analysis) -> list[Finding]:
    if not analysis.mix_error:
        return []
    style = "new (lower-case)" if analysis.mix_style == "new" else "old (upper-case)"
    snippet = "\n".join(f"{r.suggestion or r.setting} = {an.show(r.item.value)}" for r in analysis.mix_names) \
        if analysis.mix_style == "new" else None
    return [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.CRITICAL,
        title=f"Celery {analysis.target} will refuse this config: old and new setting names mixed",
        explanation=f"The {style} names are the majority, so Celery picks that style and raises at the first "
                    "access to app.conf (the worker does not start):\n\n"
                    f"celery.exceptions.ImproperlyConfigured: {analysis.mix_error}",
        evidence=[_ev(r) for r in analysis.mix_names], confidence=0.98,
        fix=Fix(text="Write every setting in one style (celery-doctor config migrate FILE).", snippet=snippet),
        facts={"error": analysis.mix_error, "style": analysis.mix_style,
               "names": [r.item.name for r in analysis.mix_names]})]


def _ignored_prefixed(analysis: an.Analysis) -> list[an.Row]:
    return [r for r in analysis.rows if r.status == an.IGNORED_NO_NAMESPACE
            and r.item.name not in analysis.facts.loaded_names]


def _broker_text(analysis: an.Analysis) -> str:
    broker, _ = analysis.value("broker_url")
    return an.show(broker) if broker is not None else f"{DEFAULT_BROKER} (Celery's default)"


def _harmless(analysis: an.Analysis, row: an.Row) -> bool:
    """The ignored name's value is in effect anyway (set under the right name elsewhere)."""
    current = analysis.effective.get(row.setting or "")
    return current is not None and not isinstance(current[0], Dynamic) and current[0] == row.item.value


def _namespace_findings(analysis: an.Analysis) -> list[Finding]:
    facts = analysis.facts
    if analysis.alternative is not None:
        return _namespace_unknown(analysis, analysis.alternative)
    ignored = _ignored_prefixed(analysis)
    if not ignored:
        return []
    _, origin = analysis.value("broker_url")
    effective = _broker_text(analysis)
    harmful = [r for r in ignored if not _harmless(analysis, r)]
    relevant = any(r.setting in CONNECTION_SETTINGS for r in harmful)
    names = ", ".join(r.item.name for r in ignored)
    loader = facts.loader
    evidence = [_ev(r) for r in ignored] + (
        [Evidence(source=loader.source, line=loader.line, text=loader.text)] if loader else [])
    facts_out = {"ignored": [r.item.name for r in ignored], "effective_broker_url": effective,
                 "broker_origin": origin, "harmless": [r.item.name for r in ignored if r not in harmful]}
    severity = (Severity.CRITICAL if relevant else Severity.HIGH) if harmful else Severity.LOW
    if not facts.django:
        # a module or class config: the prefix is simply not part of Celery's names
        renames = "\n".join(f"{r.setting} = {an.show(r.item.value)}" for r in ignored if r.setting)
        return [Finding(
            category=Category.OLD_SETTING_NAMES_IGNORED, severity=severity,
            title=f"{len(ignored)} CELERY_-prefixed names are not Celery setting names here: ignored",
            explanation=f"Celery reads this config without a namespace, so CELERY_BROKER_URL means nothing to it "
                        f"(it reads broker_url, or the old BROKER_URL). Ignored: {names}. Effective broker URL: "
                        f"{effective}." + (" The same values are set elsewhere, so nothing changes today."
                                           if not harmful else ""),
            evidence=evidence, confidence=0.9,
            fix=Fix(text="Use Celery's own names.", snippet=renames or None), facts=facts_out)]
    where = f" ({loader.source}:{loader.line})" if loader else ""
    return [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=severity,
        title=f"{len(ignored)} CELERY_-prefixed settings are ignored: the app is configured without namespace='CELERY'",
        explanation=f"The app{where} loads the Django settings without a namespace, so Celery reads broker_url / "
                    f"BROKER_URL, never CELERY_BROKER_URL. Ignored: {names}. Effective broker URL: {effective}.",
        evidence=evidence, confidence=0.95,
        fix=Fix(text="Load the Django settings with the CELERY namespace in celery.py.",
                snippet="app.config_from_object('django.conf:settings', namespace='CELERY')"),
        facts=facts_out)]


def _namespace_unknown(analysis: an.Analysis, other: an.Analysis) -> list[Finding]:
    """No celery.py was found for a Django settings file: both readings, side by side."""
    readings: list[dict[str, Any]] = []
    for reading in (analysis, other):
        ignored = [r.item.name for r in reading.rows if r.status in an.IGNORED
                   and r.item.name not in reading.facts.loaded_names]
        label = f"namespace='{reading.facts.namespace}'" if reading.facts.namespace else "no namespace"
        readings.append({"namespace": reading.facts.namespace, "effective_broker_url": _broker_text(reading),
                         "ignored": ignored, "label": label})
    if readings[0]["ignored"] == readings[1]["ignored"] and \
            readings[0]["effective_broker_url"] == readings[1]["effective_broker_url"]:
        return []  # no setting depends on it
    text = " ".join(f"With {r['label']}: broker {r['effective_broker_url']}, ignored: "
                    f"{', '.join(r['ignored']) or 'nothing'}." for r in readings)
    return [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.MEDIUM,
        title="Which of these settings Celery reads depends on celery.py's namespace, and no celery.py was found",
        explanation=f"No app module under the project loads this Django settings file, so the namespace= of its "
                    f"config_from_object call is not known. {text} The table shows the first reading.",
        evidence=[], confidence=0.5,
        fix=Fix(text="Give the app module too (celery-doctor config settings.py proj/celery.py) or the project "
                     "directory: its config_from_object('django.conf:settings', namespace=...) settles it."),
        facts={"namespace": "unknown", "readings": readings})]


def _amqp_backend(analysis: an.Analysis) -> list[Finding]:
    value, _ = analysis.value("result_backend")
    text = value if isinstance(value, str) else (value.fallback if isinstance(value, Dynamic) else None)
    if not isinstance(text, str) or not (text == "amqp" or text.startswith("amqp://")) or \
            catalogue.releases().index(analysis.target) < catalogue.releases().index(catalogue.resolve("5.0")):
        return []
    row = next((r for r in analysis.rows if r.setting == "result_backend"), None)
    return [Finding(
        category=Category.VERSION_INCOMPATIBILITY, severity=Severity.HIGH,
        title=f"The amqp result backend was removed in Celery 5.0 (result_backend = {text!r})",
        explanation="Celery 5 raises ImproperlyConfigured: Unknown result backend: 'amqp' when a result is "
                    "first used. The rpc backend is its replacement (results travel back over AMQP too).",
        evidence=[_ev(row)] if row else [], confidence=0.95,
        fix=Fix(text="Use the rpc:// backend (or redis/database).", snippet=_spell("result_backend", analysis, "rpc://")),
        facts={"setting": "result_backend", "value": text})]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _row_for(analysis: an.Analysis, setting: str) -> list[Evidence]:
    rows = [r for r in analysis.rows if r.setting == setting and r.status in (an.OK, an.OLD, an.NEW_IN_OLD_RELEASE)]
    return [_ev(rows[-1])] if rows else []


def _broker_kind(analysis: an.Analysis) -> str | None:
    url, _ = analysis.value("broker_url")
    text = url if isinstance(url, str) else (url.fallback if isinstance(url, Dynamic) else None)
    if not isinstance(text, str):
        return "amqp" if url is None else None
    scheme = text.split("://", 1)[0].split("+")[0].lower()
    return "redis" if scheme in ("redis", "rediss", "sentinel") else "amqp" if scheme.startswith(
        ("amqp", "pyamqp", "librabbitmq")) else scheme


def _url_findings(analysis: an.Analysis) -> list[Finding]:
    """broker_url values kombu reads differently from what they say."""
    url, origin = analysis.value("broker_url")
    if origin == "default" or not isinstance(url, str) or not url or ";" in url:
        return []
    evidence = _row_for(analysis, "broker_url")
    scheme = url.split("://", 1)[0] if "://" in url else None
    base = (scheme or "").split("+")[-1]
    if scheme is None and url in TRANSPORTS:
        return [Finding(
            category=Category.VERSION_INCOMPATIBILITY, severity=Severity.HIGH,
            title=f"broker_url {url!r} has no '://': kombu connects to an AMQP host named {url!r}",
            explanation=f"kombu takes a URL without a scheme as a host name for the default transport, so {url!r} "
                        f"means amqp://guest@{url}:5672// (not the {url} transport): 'Cannot connect to "
                        f"amqp://guest:**@{url}:5672//: [Errno -2] Name or service not known'.",
            evidence=evidence, confidence=0.9,
            fix=Fix(text="Write the transport as a URL.", snippet=_spell("broker_url", analysis, f"{url}://")),
            facts={"setting": "broker_url", "value": url, "read_as": f"amqp://guest@{url}:5672//"})]
    if scheme and "." not in base and base not in TRANSPORTS:
        removed = REMOVED_TRANSPORTS.get(base)
        return [Finding(
            category=Category.VERSION_INCOMPATIBILITY, severity=Severity.HIGH,
            title=f"broker_url uses the {base!r} transport, which kombu does not have"
                  + (f" (removed in kombu {removed})" if removed else ""),
            explanation=f"The worker stops at startup with KeyError: 'No such transport: {base}'.",
            evidence=evidence, confidence=0.9,
            fix=Fix(text="Use a supported broker (RabbitMQ: amqp://, Redis: redis://)."),
            facts={"setting": "broker_url", "transport": base, "removed_in": removed})]
    return []


def _value_findings(analysis: an.Analysis, middlebox: Middlebox | None) -> list[Finding]:
    out: list[Finding] = _url_findings(analysis)
    kind = _broker_kind(analysis)
    beat_value, beat_origin = analysis.value("broker_heartbeat")
    beat = _num(beat_value)
    if kind == "amqp" and beat is not None and beat == 0 and beat_origin != "default":
        sev = Severity.HIGH if middlebox else Severity.MEDIUM
        extra = (f" With {middlebox.label} ({middlebox.idle_timeout_s} s idle timeout) on the path, an idle "
                 "connection is cut and the worker finds out only when it next writes.") if middlebox else ""
        out.append(Finding(
            category=Category.HEARTBEAT_MISCONFIG, severity=sev,
            title="AMQP heartbeats are disabled (broker_heartbeat = 0)",
            explanation="Without heartbeats neither side notices a dead or silently dropped connection: the worker "
                        "sits on a half-open socket until TCP gives up, and the broker keeps its unacked "
                        "messages." + extra,
            evidence=_row_for(analysis, "broker_heartbeat"), confidence=0.8,
            fix=Fix(text="Enable heartbeats well under any idle timeout on the path.",
                    snippet=_spell("broker_heartbeat", analysis,
                                   min(60, middlebox.idle_timeout_s // 2) if middlebox else 60)),
            facts={"setting": "broker_heartbeat", "value": 0}))
    if kind == "amqp" and middlebox and beat and beat * 1.0 >= middlebox.idle_timeout_s / 2:
        out.append(Finding(
            category=Category.NETWORK_IDLE_TIMEOUT, severity=Severity.HIGH,
            title=f"broker_heartbeat {beat:g} s is too long for {middlebox.label} ({middlebox.idle_timeout_s} s idle)",
            explanation=f"With broker_heartbeat {beat:g} ({'the default' if beat_origin == 'default' else 'as set'}), "
                        f"an idle connection can stay silent past the {middlebox.idle_timeout_s} s idle timeout "
                        "(frames go out about every heartbeat/2 s), so the middlebox drops the flow: 'Connection "
                        "reset by peer' on the worker, 'client unexpectedly closed TCP connection' on RabbitMQ. "
                        f"Source: {middlebox.source}.",
            evidence=_row_for(analysis, "broker_heartbeat"), confidence=0.7,
            fix=Fix(text="Keep heartbeat/2 well below the idle timeout (or raise the middlebox's timeout).",
                    snippet=_spell("broker_heartbeat", analysis, max(10, middlebox.idle_timeout_s // 2))),
            facts={"setting": "broker_heartbeat", "value": beat, "idle_timeout_s": middlebox.idle_timeout_s}))
    limit_value, limit_origin = analysis.value("broker_pool_limit")
    pool_value, _ = analysis.value("worker_pool")
    conc = _num(analysis.value("worker_concurrency")[0])
    written = limit_origin != "default"
    if written and (limit_value is None or limit_value == 0):
        out.append(Finding(
            category=Category.POOL_EXHAUSTION_OR_MISUSE, severity=Severity.MEDIUM,
            title=f"The broker connection pool is disabled (broker_pool_limit = {limit_value!r})",
            explanation="Every publish (apply_async from web processes, retries, chords) opens and closes its own "
                        "broker connection: connection churn, slow publishes, and brokers that log every one of them.",
            evidence=_row_for(analysis, "broker_pool_limit"), confidence=0.7,
            fix=Fix(text="Keep a pool (10 is the default).", snippet=_spell("broker_pool_limit", analysis, 10)),
            facts={"setting": "broker_pool_limit", "value": limit_value}))
    limit = _num(limit_value)
    if limit and conc and isinstance(pool_value, str) and pool_value in ("threads", "gevent", "eventlet") \
            and limit < conc:
        out.append(Finding(
            category=Category.POOL_EXHAUSTION_OR_MISUSE, severity=Severity.MEDIUM,
            title=f"broker_pool_limit {limit:g} is below concurrency {conc:g} with the {pool_value} pool",
            explanation="With a thread or green pool all tasks share one process and one connection pool: tasks that "
                        "publish wait for a free connection (or fail with a pool-limit error) once more than "
                        f"{limit:g} publish at the same time.",
            evidence=_row_for(analysis, "broker_pool_limit") + _row_for(analysis, "worker_concurrency"), confidence=0.6,
            fix=Fix(text="Make the pool at least as large as the concurrency.",
                    snippet=_spell("broker_pool_limit", analysis, int(conc))),
            facts={"setting": "broker_pool_limit", "value": limit, "concurrency": conc, "pool": pool_value}))
    if kind == "redis":
        out.extend(_redis_findings(analysis, middlebox))
    return out


def _redis_findings(analysis: an.Analysis, middlebox: Middlebox | None) -> list[Finding]:
    out: list[Finding] = []
    options, _ = analysis.value("broker_transport_options")
    options = options if isinstance(options, dict) else {}
    visibility = _num(options.get("visibility_timeout")) or 3600.0
    countdowns = analysis.facts.uses_countdown_or_eta
    if countdowns:
        out.append(Finding(
            category=Category.REDIS_SERVER_TIMEOUT, severity=Severity.MEDIUM,
            title=f"ETA/countdown tasks with the Redis broker: visibility_timeout is {visibility:g} s",
            explanation="Redis redelivers an unacknowledged message after visibility_timeout. A task scheduled "
                        f"further ahead than {visibility:g} s is handed to another worker as well: it runs twice.",
            evidence=[Evidence(source=s, line=n, text=t) for s, n, t in countdowns[:5]] + _row_for(
                analysis, "broker_transport_options"), confidence=0.6,
            fix=Fix(text="Raise visibility_timeout above your longest ETA/countdown plus task runtime.",
                    snippet=_spell("broker_transport_options", analysis, {**options, "visibility_timeout": 43200})),
            facts={"setting": "broker_transport_options.visibility_timeout", "value": visibility}))
    missing = [k for k in ("socket_keepalive", "health_check_interval") if k not in options]
    if missing:
        out.append(Finding(
            category=Category.NETWORK_IDLE_TIMEOUT, severity=Severity.MEDIUM if middlebox else Severity.LOW,
            title=f"Redis broker connections have no {' / '.join(missing)}",
            explanation="An idle Redis connection dropped by a load balancer, NAT or the server's own `timeout` is "
                        "noticed only at the next command (ConnectionError: Connection closed by server / reset by "
                        "peer). A health check pings connections idle longer than the interval before using them."
                        + (f" {middlebox.label} drops flows idle for {middlebox.idle_timeout_s} s."
                           if middlebox else ""),
            evidence=_row_for(analysis, "broker_transport_options") or _row_for(analysis, "broker_url"),
            confidence=0.5,
            fix=Fix(text="Enable keepalive and a health check shorter than any idle timeout on the path.",
                    snippet=_spell("broker_transport_options", analysis,
                                   {**options, "socket_keepalive": True, "health_check_interval": 25})),
            facts={"setting": "broker_transport_options", "missing": missing}))
    return out


def _default_findings(analysis: an.Analysis, source: str | None) -> list[Finding]:
    if not source:
        return []
    out: list[Finding] = []
    kind = _broker_kind(analysis)
    for setting, story in CHANGED_DEFAULTS.items():
        if setting in analysis.effective:
            continue  # the user set it: the default does not matter
        if setting == "broker_heartbeat" and kind not in ("amqp", None):
            continue  # kombu sends AMQP heartbeats only on AMQP transports (Redis has none)
        before = catalogue.default(setting, source)
        after = catalogue.default(setting, analysis.target)
        if after is None or (before is not None and before == after):
            continue
        was = "not a setting yet" if before is None else repr(before[1] or before[0])
        now = repr(after[1] or after[0])
        heartbeat = setting == "broker_heartbeat"
        out.append(Finding(
            category=Category.HEARTBEAT_MISCONFIG if heartbeat else Category.VERSION_INCOMPATIBILITY,
            severity=Severity.MEDIUM if heartbeat or "connection" in setting else Severity.LOW,
            title=f"Default of {setting} changed: {was} in {source} -> {now} in {analysis.target}",
            explanation=story, confidence=0.7,
            fix=Fix(text=f"Set {setting} explicitly to the value you want.",
                    snippet=_spell(setting, analysis, after[0]) if after[1] is None else None),
            facts={"setting": setting, "from": before[0] if before else None, "to": after[0],
                   "from_version": source, "to_version": analysis.target}))
    return out


def settings_findings(analysis: an.Analysis, middlebox: Middlebox | None = None,
                      source_version: str | None = None) -> list[Finding]:
    """Every finding for one analysed config, most severe first."""
    findings = [*_mix_finding(analysis), *_namespace_findings(analysis), *_names_findings(analysis),
                *_amqp_backend(analysis), *_value_findings(analysis, middlebox),
                *_default_findings(analysis, source_version)]
    return sorted(findings, key=lambda f: -f.severity.rank)


def _in_effect(analysis: an.Analysis) -> list[dict[str, Any]]:
    out = []
    for setting, (value, origin) in sorted(analysis.effective.items()):
        where = origin.split(" ")[0]
        src, _, line = where.rpartition(":")
        row = next((r for r in analysis.rows if r.item.source == src and str(r.item.line) == line
                    and r.setting == setting), None)
        out.append({"setting": setting, "value": an.show(value), "source": src,
                    "line": int(line) if line.isdigit() else 0, "text": row.item.text if row else "",
                    "written": row.item.name if row else setting, "origin": origin})
    return out


def config_data(analysis: an.Analysis, source: str | None) -> dict[str, Any]:
    broker, origin = analysis.value("broker_url")
    return {
        "target": analysis.target, "from": source, "files": analysis.facts.files,
        "namespace": analysis.facts.namespace, "django": analysis.facts.django,
        "namespace_known": analysis.facts.namespace_known,
        "loader": dataclasses.asdict(analysis.facts.loader) if analysis.facts.loader else None,
        "config_object": analysis.facts.config_object,
        "mix_error": analysis.mix_error, "mix_source": analysis.mix_source,
        "alternative": {"namespace": analysis.alternative.facts.namespace,
                        "effective_broker_url": _broker_text(analysis.alternative),
                        "settings": [{"written": r.item.name, "status": r.status, "setting": r.setting}
                                     for r in analysis.alternative.rows]} if analysis.alternative else None,
        "effective_broker_url": an.show(broker) if broker is not None else DEFAULT_BROKER,
        "effective_broker_origin": origin,
        # what Celery will really use from the files: one row per setting, the winning line
        "in_effect": _in_effect(analysis),
        "settings": [{"written": r.item.name, "setting": r.setting, "status": r.status,
                      "value": an.show(r.item.value), "source": r.item.source, "line": r.item.line, "text": r.item.text,
                      "via": r.item.via, "suggestion": r.suggestion, "note": r.note} for r in analysis.rows],
    }


def _same(intended: Any, effective: Any) -> bool:
    if isinstance(intended, (tuple, list)) and isinstance(effective, list):
        return [_plain(v) for v in intended] == effective
    return _plain(intended) == effective or _censored_same(_plain(intended), effective)


_STARS = re.compile(r"\*{2,}")


def _censored_same(intended: Any, effective: Any) -> bool:
    """Equal once the secrets are hidden: `celery report` and `inspect conf` print passwords as
    ``**`` / ``********`` (kombu's as_uri, Celery's censored table), so the file's real password
    must not read as another value."""
    if isinstance(effective, str) and isinstance(intended, str) and "**" in effective:
        from celery_doctor.redact import redact

        return _STARS.sub("*", redact(intended)) == _STARS.sub("*", effective) or set(effective) == {"*"}
    if isinstance(effective, dict) and isinstance(intended, dict) and set(map(str, intended)) == set(effective):
        return all(_same(intended[k], effective[str(k)]) for k in intended)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _source_line(analysis: an.Analysis | None, setting: str) -> str | None:
    rows = [r for r in analysis.rows if r.setting == setting] if analysis else []
    return rows[-1].item.text if rows else None


def effective_findings(analysis: an.Analysis | None, doc: dict[str, Any], version: str
                       ) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Intended (the files) vs effective (what the imported app has): findings, and the rows to show."""
    findings: list[Finding] = []
    if doc.get("kind") == "config":
        findings.append(Finding(
            category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.CRITICAL,
            title=f"Celery {version} cannot load this app's configuration",
            explanation=f"Accessing app.conf raised {doc['error']}", confidence=1.0,
            facts={"error": doc["error"]}))
    effective: dict[str, dict[str, Any]] = doc.get("settings", {})
    rows = []
    for setting, entry in sorted(effective.items()):
        intended = analysis.effective.get(setting) if analysis else None
        row = {"setting": setting, "value": entry.get("value"), "origin": entry.get("origin"),
               "intended": an.show(intended[0]) if intended else None, "intended_at": intended[1] if intended else None}
        if entry.get("origin") != "default" or intended or setting in CONNECTION_SETTINGS:
            rows.append(row)
        if not intended or isinstance(intended[0], Dynamic) or _same(intended[0], entry.get("value")):
            continue
        src, _, line = intended[1].split(" ")[0].rpartition(":")
        origin = entry.get("origin", "")
        because = (f"the environment variable {origin[4:]} overrides the file" if origin.startswith("env:")
                   else "something later in the app's setup replaced it" if origin == "config" else
                   "Celery never read the name you wrote")
        findings.append(Finding(
            category=Category.OLD_SETTING_NAMES_IGNORED,
            severity=Severity.HIGH if setting in CONNECTION_SETTINGS else Severity.MEDIUM,
            title=f"{setting}: intended {an.show(intended[0])}, in effect {an.show(entry.get('value'))}",
            explanation=f"The value in effect comes from {origin}: {because}.",
            evidence=[Evidence(source=src, line=int(line) if line.isdigit() else 0,
                               text=_source_line(analysis, setting) or an.show(intended[0]))],
            confidence=0.95, facts={"setting": setting, "intended": _plain(intended[0]), "effective":
                                    entry.get("value"), "origin": origin}))
    if "BROKER_URL" in doc.get("env", []) and version[:1] >= "5":
        findings.append(Finding(
            category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.MEDIUM,
            title="BROKER_URL is set in the environment: the `celery` command uses it as --broker",
            explanation="Celery 5's command line reads BROKER_URL (and RESULT_BACKEND) from the environment for "
                        "its --broker option, which overrides broker_url from the config when the worker is started "
                        "with `celery -A ... worker`. Importing the app alone does not show this.", confidence=0.8,
            facts={"env": "BROKER_URL"}))
    return findings, rows
