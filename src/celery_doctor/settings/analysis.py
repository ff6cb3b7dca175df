"""What Celery makes of the settings the static reader found, for one target release.

Follows Celery's own rules (celery/app/utils.py): ``detect_settings`` picks the majority style
(a tie goes to the new one; a namespace forces the new one and skips the check) and raises
``ImproperlyConfigured`` for the minority names unless both spellings are given; under a
namespace the lookup tries ``CELERY_KEY``, then ``key``, then the old name; keys given to
``Celery(...)`` and ``conf.update()`` before the config loads are converted silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from celery_doctor.settings import catalogue
from celery_doctor.settings.interface import Assignment, ConfigFacts, Dynamic

# Keys Celery reads with conf.get() without declaring them (celery 5.7 source: backends/*,
# app/base.py, fixups/django.py): not typos.
UNDECLARED_KEYS = frozenset({
    "redis_backend_health_check_interval", "redis_backend_credential_provider", "redis_client_name",
    "result_backend_thread_safe", "override_backends", "CELERY_DB_REUSE_MAX", "cassandra_secure_bundle_path",
    "firestore_project", "gcs_threadpool_maxsize",
})
SETTING_PREFIXES = ("CELERY", "BROKER_", "CELERYD_", "CELERYBEAT_", "CELERYMON_", "broker_", "worker_",
                    "task_", "result_", "beat_", "redis_", "celery_", "celeryd_", "event_", "control_")

# celery/app/utils.py, unchanged 4.0 -> 5.7
E_MIX_OLD_INTO_NEW = ("\n\nCannot mix new and old setting keys, please rename the\n"
                      "following settings to the new format:\n\n{renames}\n\n")
E_MIX_NEW_INTO_OLD = ("\n\nCannot mix new setting names with old setting names, please\n"
                      "rename the following settings to use the old format:\n\n{renames}\n\n"
                      "Or change all of the settings to use the new format :)\n\n")

# status of one written name
OK, OLD, IGNORED_NO_NAMESPACE, NEW_IN_OLD_RELEASE, REMOVED, NOT_YET, UNKNOWN, DROPPED_BY_DJANGO = (
    "ok", "old_name", "ignored_no_namespace", "ignored_by_3x", "removed", "not_in_target", "unknown",
    "dropped_by_django")
IGNORED = frozenset({IGNORED_NO_NAMESPACE, NEW_IN_OLD_RELEASE, REMOVED, NOT_YET, UNKNOWN, DROPPED_BY_DJANGO})
# where the names of the config object itself are written (Celery reads them as one mapping)
SOURCE_VIAS = ("module", "yaml", "class", "dict_literal")
CODE_VIAS = ("conf_update", "conf_attr", "conf_item", "celery_kwarg")


@dataclass
class Row:
    item: Assignment
    status: str
    setting: str | None  # the target release's canonical (new) name, when there is one
    suggestion: str | None = None  # the name to write instead
    note: str = ""


@dataclass
class Analysis:
    target: str
    source_version: str | None
    facts: ConfigFacts
    rows: list[Row] = field(default_factory=list)
    mix_error: str | None = None  # the exact ImproperlyConfigured text Celery would raise
    mix_style: str | None = None  # "new" | "old": the style Celery picks
    mix_names: list[Row] = field(default_factory=list)
    mix_source: str | None = None  # what Celery checked: "the class X", "the module", "the pre-configuration"
    effective: dict[str, tuple[Any, str]] = field(default_factory=dict)  # setting -> (value, origin)
    # when a Django file's namespace is not known: the same files read with the other namespace
    alternative: Analysis | None = None

    def value(self, setting: str) -> tuple[Any, str]:
        if setting in self.effective:
            return self.effective[setting]
        found = catalogue.default(setting, self.target)
        return (found[0] if found else None), "default"


def _prefixed(facts: ConfigFacts) -> str | None:
    return f"{facts.namespace}_" if facts.namespace else None


def _celery_like(name: str) -> bool:
    return name.startswith(SETTING_PREFIXES)


def _close(name: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85)
    return matches[0] if matches else None


def classify(item: Assignment, target: str, facts: ConfigFacts) -> Row | None:
    """One written name against the target release; None when it is not a Celery setting."""
    name = item.name
    names = catalogue.table(target)
    prefix = _prefixed(facts) if item.prefixed and item.via in SOURCE_VIAS else None
    if not catalogue.new_style(target):
        return _classify_3x(item, target, names)
    to_new = catalogue.to_new(target)
    if facts.django and item.via in ("module", "yaml"):
        django = _classify_django(item, target, facts)
        if django is not None:
            return django if isinstance(django, Row) else None

    def spelled(setting: str) -> str:
        return f"{prefix}{setting.upper()}" if prefix else setting

    if prefix and name.startswith(prefix) and name == name.upper() and name[len(prefix):].lower() in names:
        return Row(item, OK, name[len(prefix):].lower())
    if name in names:
        return Row(item, OK, name)
    if name in to_new:
        new = to_new[name]
        return Row(item, OLD, new, spelled(new))
    if name in UNDECLARED_KEYS:
        return Row(item, OK, name)
    if name in catalogue.known_old_names() and name not in catalogue.any_to_new():
        # a 3.x name that 4.0+ never maps (CELERYD_FORCE_EXECV, CELERY_ENABLE_UTC): silently ignored
        last = catalogue.last_release_with(name)
        guess = name[7:].lower() if name.startswith("CELERY_") and name[7:].lower() in names else None
        return Row(item, REMOVED, guess, spelled(guess) if guess else None,
                   note=f"last in Celery {last}" if last else "")
    if not prefix and name.startswith("CELERY_") and name[7:].lower() in names:
        setting: str | None = name[7:].lower()
        old = catalogue.table(target)[name[7:].lower()].get("old", [name[7:]])[0]
        note = "namespace" if facts.django or facts.celery_py else "prefix"
        # a Django file without the namespace keeps only upper-case names: the old one is what works there
        return Row(item, IGNORED_NO_NAMESPACE, setting, old if facts.django else setting, note=note)
    mapped = catalogue.any_to_new().get(name)
    if name in catalogue.known_old_names() or mapped:
        last = catalogue.last_release_with(name) or (mapped and catalogue.last_release_with(mapped))
        return Row(item, REMOVED, mapped, note=f"last in Celery {last}" if last else "")
    if name.islower() and catalogue.first_release_with(name):
        first = catalogue.first_release_with(name)
        last = catalogue.last_release_with(name)
        if last and catalogue.releases().index(last) < catalogue.releases().index(target):
            return Row(item, REMOVED, name, note=f"last in Celery {last}")
        return Row(item, NOT_YET, name, note=f"new in Celery {first}")
    if item.via == "module" and not _celery_like(name) and not (prefix and name.startswith(prefix)):
        return None
    if not prefix and name.startswith("CELERY_") and (facts.django or facts.celery_py):
        near = _close(name[7:].lower(), list(names))
        if near:
            old = catalogue.table(target)[near].get("old", [near.upper()])[0]
            return Row(item, UNKNOWN, near, old, note="namespace")
    pool = [spelled(n) for n in names] + ([*to_new] if name.isupper() and not prefix else [])
    probe = name
    suggestion = _close(probe, pool)
    if suggestion is None and not _celery_like(name) and item.via == "module":
        return None
    setting = None
    if suggestion:
        setting = suggestion[len(prefix):].lower() if prefix and suggestion.startswith(prefix) else \
            to_new.get(suggestion, suggestion)
    return Row(item, UNKNOWN, setting, suggestion)


def _classify_django(item: Assignment, target: str, facts: ConfigFacts) -> Row | bool | None:
    """A Django settings module holds Django's names and the app's too: only names Celery reads are
    Celery settings, and Django itself keeps only the upper-case ones. False: not a Celery setting;
    None: judge it like any config module."""
    name = item.name
    names = catalogue.table(target)
    if not name.isupper():
        bare = name.lower()
        if bare in names or bare in UNDECLARED_KEYS:
            spelled = f"{facts.namespace or 'CELERY'}_{bare.upper()}"
            return Row(item, DROPPED_BY_DJANGO, bare, spelled,
                       note="Django keeps only upper-case names in settings")
        return False
    celery_prefixed = name.startswith(("CELERY", "BROKER_")) or (
        facts.namespace is not None and name.startswith(f"{facts.namespace}_"))
    if not celery_prefixed and name not in catalogue.to_new(target):
        return False  # ADMINS, EMAIL_TIMEOUT, TIME_ZONE...: Django's (Celery 3.1 shared some of the names)
    return None


def _classify_3x(item: Assignment, target: str, names: dict[str, Any]) -> Row | None:
    name = item.name
    if name in names:
        return Row(item, OK, name)
    back = {new: old for old, new in catalogue.any_to_new().items() if old in names}
    if name in back:
        return Row(item, NEW_IN_OLD_RELEASE, back[name], back[name])
    if not _celery_like(name):
        return None
    suggestion = _close(name, list(names))
    return Row(item, UNKNOWN, suggestion, suggestion)


def _mappings(analysis: Analysis) -> list[tuple[str, list[Row]]]:
    """What celery.app.utils.detect_settings looks at, one mapping at a time: the config object
    (a module, a class with its bases, a dict, the Django settings), or, when the app has none,
    the keys given in code before the first read of app.conf (module level only: a def may run
    after the configuration is loaded, when nothing is checked)."""
    facts = analysis.facts
    rows = analysis.rows
    if facts.config_object:
        mro = set(facts.class_mro(facts.config_object))
        chosen = [r for r in rows if r.item.via == "class" and r.item.scope in mro]
        return [(f"the class {facts.config_object}", chosen)]
    leaves = [c for c in facts.classes if not any(c in o.bases for o in facts.classes.values())]
    out: list[tuple[str, list[Row]]] = []
    for leaf in leaves:
        mro = set(facts.class_mro(leaf))
        out.append((f"the class {leaf}", [r for r in rows if r.item.via == "class" and r.item.scope in mro]))
    source = [r for r in rows if r.item.via in ("module", "yaml", "dict_literal") and r.status != DROPPED_BY_DJANGO]
    if source or any(r.item.via in ("module", "yaml") for r in rows):
        out.append(("the config module", source))
    if out or facts.loader_calls:
        return out  # a config source exists (read or not): the pre-configuration is not checked
    code = [r for r in rows if r.item.via in ("conf_update", "conf_attr", "conf_item") and not r.item.in_function]
    return [("the settings given in code before the app is configured", code)]


def _detect_mix(analysis: Analysis) -> None:
    """Predict celery.app.utils.detect_settings for the config source."""
    facts = analysis.facts
    if not catalogue.new_style(analysis.target) or facts.namespace:
        return
    for label, config_rows in _mappings(analysis):
        if _detect_one(analysis, config_rows):
            analysis.mix_source = label
            return


def _detect_one(analysis: Analysis, config_rows: list[Row]) -> bool:
    have = {r.item.name for r in config_rows}
    names = set(catalogue.table(analysis.target))
    to_new = catalogue.to_new(analysis.target)
    to_old = {new: old for old, new in to_new.items()}
    is_new = have & names
    is_old = have & set(to_new)
    style = "new"
    left = is_old
    if is_old and (not is_new or len(is_old) > len(is_new)):
        style, left = "old", is_new
    convert = to_new if style == "new" else to_old
    really = sorted(k for k in left if convert.get(k) not in have)
    analysis.mix_style = analysis.mix_style or style
    if not really:
        return False
    analysis.mix_style = style
    template = E_MIX_OLD_INTO_NEW if style == "new" else E_MIX_NEW_INTO_OLD
    analysis.mix_error = template.format(renames="\n".join(f"{k:<36} -> {convert[k]}" for k in really))
    analysis.mix_names = [r for r in config_rows if r.item.name in really]
    return True


def _effective(analysis: Analysis) -> None:
    """Setting -> (value as written, origin) for the names Celery will actually read: the config
    object first (a class: its bases, then the class), then what code sets (Celery(...) keywords,
    conf.update, conf.X), which Celery keeps on top of it."""
    facts = analysis.facts
    mro = list(reversed(facts.class_mro(facts.config_object))) if facts.config_object else None

    def rank(row: Row) -> tuple[int, int]:
        if row.item.via == "class":
            return 0, mro.index(row.item.scope) if mro and row.item.scope in mro else 0
        return (1 if row.item.via in CODE_VIAS else 0), 0

    for row in sorted(analysis.rows, key=rank):
        if row.item.via == "class" and mro is not None and row.item.scope not in mro:
            continue  # a class Celery is not configured from
        if row.status in (OK, OLD, NEW_IN_OLD_RELEASE) and row.setting:
            setting = catalogue.any_to_new().get(row.setting, row.setting) if not catalogue.new_style(
                analysis.target) else row.setting
            origin = f"{row.item.source}:{row.item.line}"
            current = analysis.effective.get(setting)
            # under a namespace the prefixed name wins over the old one, whatever the order
            if current and row.status == OLD and current[1].endswith("(namespaced)"):
                continue
            if analysis.facts.namespace and row.status == OK and row.item.via in SOURCE_VIAS:
                origin += " (namespaced)"
            if row.item.in_function:
                origin += " (in a function)"
            analysis.effective[setting] = (row.item.value, origin)
    _broker_from_parts(analysis)


def _broker_from_parts(analysis: Analysis) -> None:
    """No broker_url, but BROKER_HOST & co.: Celery hands them to kombu's Connection (app/base.py
    _connection), which builds the URL from them."""
    effective = analysis.effective
    if "broker_url" in effective or "broker_host" not in effective:
        return
    parts = {k: effective[k][0] for k in ("broker_host", "broker_port", "broker_user", "broker_vhost",
                                           "broker_transport") if k in effective}
    if any(isinstance(v, Dynamic) for v in parts.values()):
        return
    transport = parts.get("broker_transport") or "amqp"
    user = parts.get("broker_user") or "guest"
    port = parts.get("broker_port") or (6379 if transport == "redis" else 5672)
    vhost = parts.get("broker_vhost") or "/"
    url = f"{transport}://{user}@{parts['broker_host']}:{port}/{vhost if vhost != '/' else '/'}"
    effective["broker_url"] = (url, f"{effective['broker_host'][1]} (built from broker_host, broker_user...)")


def analyse(facts: ConfigFacts, target: str | None = None, source_version: str | None = None) -> Analysis:
    """The files as Celery reads them; a Django file whose namespace is not known is read both ways,
    the reading its names point to first (CELERY_ names: the namespace the docs use)."""
    if facts.namespace_known or not facts.django:
        return _analyse(facts, target, source_version)
    prefixed = any(a.name.startswith("CELERY_") and a.via in ("module", "yaml") for a in facts.assignments)
    first = dataclasses.replace(facts, namespace="CELERY" if prefixed else None)
    other = dataclasses.replace(facts, namespace=None if prefixed else "CELERY")
    analysis = _analyse(first, target, source_version)
    analysis.alternative = _analyse(other, target, source_version)
    return analysis


def _analyse(facts: ConfigFacts, target: str | None, source_version: str | None) -> Analysis:
    version = catalogue.resolve(target)
    analysis = Analysis(target=version, source_version=catalogue.resolve(source_version) if source_version else None,
                        facts=facts)
    for item in facts.assignments:
        row = classify(item, version, facts)
        if row is not None:
            analysis.rows.append(row)
    _detect_mix(analysis)
    _effective(analysis)
    return analysis


def guess_source_version(analysis: Analysis) -> str | None:
    """--from when the user gave none: 3.1 when the file is written in 3.x names."""
    old = sum(1 for r in analysis.rows if r.status == OLD)
    new = sum(1 for r in analysis.rows if r.status == OK and r.setting and r.item.name == r.setting)
    return catalogue.resolve("3.1") if old > new else None


def show(value: Any) -> str:
    """A value for the report: dynamic values say where they come from."""
    if isinstance(value, Dynamic):
        where = f"environment variable {value.env_var}" if value.env_var else value.origin
        fallback = f", default {value.fallback!r}" if value.fallback is not None else ""
        return f"unknown (from {where}{fallback})"
    text = repr(value)
    return re.sub(r"\s+", " ", text)[:120]
