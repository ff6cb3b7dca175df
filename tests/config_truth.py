"""Ground truth for the config audit: what the real Celery (and Django) do with a project's files.

Run as a script in a fresh interpreter (Django settings and imported project modules are
process-global), one project per run:

    python config_truth.py ROOT SPEC_JSON

SPEC keys: ``app`` ("module:attr", imported the way `celery -A` would), ``env`` (variables the
project's own scripts set), ``config_module`` / ``config_object`` (the module or class Celery is
configured from: every public value in it is replaced by a unique marker before the app reads it,
so we see which setting, if any, each written name lands in), ``django_settings`` (the settings
module Django loads; markers are put into it before Django copies its upper-case names).

Prints one JSON line: ``error`` (ImproperlyConfigured text or null), ``honoured`` (written name ->
the setting it fills, or null when Celery never reads it), ``values`` (every Celery setting ->
its effective value, repr'd when not JSON), ``stored`` (keys Celery stored from code, preconf
and changes, each with the setting it is, or null).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import types
from typing import Any

MARK = "@@truth:"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return {"repr": repr(value)}


def _markable(name: str, value: Any) -> bool:
    return not name.startswith("_") and not isinstance(value, types.ModuleType) and not inspect.isclass(value) \
        and not callable(value)


def _marker(name: str, value: Any) -> Any:
    """A marker of the value's own kind (Django checks that some settings are lists)."""
    text = f"{MARK}{name}"
    if isinstance(value, list):
        return [text]
    if isinstance(value, tuple):
        return (text,)
    if isinstance(value, dict):
        return {text: 1}
    return text


def _marked(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    elif isinstance(value, dict) and len(value) == 1:
        value = next(iter(value))
    return value[len(MARK):] if isinstance(value, str) and value.startswith(MARK) else None


def _mark(target: Any, skip: frozenset[str] = frozenset()) -> list[str]:
    """Replace each public value of a module or class (and its bases' values) by a marker."""
    marked = []
    names = dir(target) if inspect.isclass(target) else list(vars(target))
    for name in names:
        value = getattr(target, name)
        if _markable(name, value) and name not in skip:
            marked.append(name)
            setattr(target, name, _marker(name, value))
    return marked


def main(root: str, spec: dict[str, Any], mark: bool = True) -> dict[str, Any]:
    sys.path.insert(0, root)
    os.chdir(root)
    for key in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "BROKER_URL", "CELERY_CONFIG_MODULE"):
        os.environ.pop(key, None)
    os.environ.update(spec.get("env", {}))
    from celery.app.defaults import _TO_NEW_KEY, SETTING_KEYS
    from celery.exceptions import ImproperlyConfigured

    marked: list[str] = []
    unmarked: list[str] = []
    if spec.get("django_settings"):
        from django.conf import global_settings

        os.environ["DJANGO_SETTINGS_MODULE"] = spec["django_settings"]
        # Django's own names keep their values (Django validates some of them on load); whether
        # Celery reads one of them is answered from Celery's own tables below
        own = frozenset(n for n in vars(global_settings) if n.isupper())
        module = importlib.import_module(spec["django_settings"])
        marked += _mark(module, own) if mark else []
        unmarked += [n for n in vars(module) if n in own]
    if spec.get("config_module"):
        target: Any = importlib.import_module(spec["config_module"])
        if spec.get("config_object"):
            target = getattr(target, spec["config_object"])
        marked += _mark(target) if mark else []
    if spec.get("app"):
        module_name, _, attr = spec["app"].partition(":")
        app = getattr(importlib.import_module(module_name), attr or "app")
    else:  # the project configures its app with exactly this call (see the fixture's README)
        from celery import Celery

        app = Celery("truth", set_as_current=False)
        app.config_from_object(spec["config_from_object"], namespace=spec.get("namespace"))
    out: dict[str, Any] = {"error": None, "honoured": {}, "values": {}, "stored": {}}
    try:
        conf = app.conf
        conf.get("broker_url")
    except ImproperlyConfigured as exc:
        out["error"] = str(exc)
        return out
    for key in sorted(SETTING_KEYS):
        value = conf.get(key)
        name = _marked(value)
        if name is not None:
            out["honoured"][name] = key
        else:
            out["values"][key] = _plain(value)
    for name in marked:
        out["honoured"].setdefault(name, None)
    if not mark:  # the URL the worker connects to, as kombu builds it (nothing is opened)
        try:
            out["connection"] = app.connection_for_write().as_uri()
        except (KeyError, ValueError) as exc:  # no such transport, a port that is not a number: no start
            out["connection"] = f"error: {exc}"
    prefix = f"{app.namespace}_" if app.namespace else ""
    for name in unmarked:
        bare = name[len(prefix):].lower() if prefix and name.startswith(prefix) else name
        out["honoured"][name] = bare if bare in SETTING_KEYS else _TO_NEW_KEY.get(name)
    # keys set from code (Celery(**kw), conf.update, conf.X before or after configuration)
    from celery.app.defaults import _TO_OLD_KEY

    raw = dict(getattr(app, "_preconf", {}))
    # changes holds the preconf keys converted to the config's style: keep the names as written
    converted = {_TO_NEW_KEY.get(k, _TO_OLD_KEY.get(k, k)) for k in raw}
    stored = {**raw, **{k: v for k, v in dict(conf.changes).items() if k not in converted}}
    for key in stored:
        new = key if key in SETTING_KEYS else _TO_NEW_KEY.get(key)
        out["stored"][key] = new
    return out


REAL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "configs", "real")


def projects() -> dict[str, dict[str, Any]]:
    with open(os.path.join(REAL, "projects.json"), encoding="utf-8") as handle:
        data: dict[str, dict[str, Any]] = json.load(handle)
    return data


def truth_for(name: str, root: str | None = None, values: bool = False) -> dict[str, Any]:
    """The ground truth of one fixture project (or a copy of it at ``root``), from a fresh interpreter."""
    import subprocess

    spec = projects()[name]
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), root or os.path.join(REAL, name),
                           json.dumps(spec), *(["--values"] if values else [])],
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: loading it the project's way failed:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def read_by_celery(truth: dict[str, Any]) -> dict[str, str | None]:
    """Written name -> the setting Celery fills with it (config objects and code alike)."""
    return {**truth["stored"], **truth["honoured"]}


def score(name: str, report_data: dict[str, Any], findings: list[dict[str, Any]],
          truth: dict[str, Any], values: dict[str, Any] | None = None) -> dict[str, list[str]]:
    """Each claim of the audit against the truth: right, wrong, missed (names Celery reads that the
    audit does not list)."""
    from django.conf import global_settings

    django_own = {n for n in vars(global_settings) if n.isupper()}
    config = report_data["config"]
    read = read_by_celery(truth)
    out: dict[str, list[str]] = {"right": [], "wrong": [], "missed": []}
    flagged = {f.get("facts", {}).get("written") or f.get("facts", {}).get("old") for f in findings}
    seen = set()
    for row in config["settings"]:
        written = row["written"]
        seen.add(written)
        if written not in read:
            continue  # a name in code that never ran (a function body): no truth to compare with
        honoured = row["status"] in ("ok", "old_name")
        truly = read[written]
        if written in django_own and written in flagged and truly is None:
            out["wrong"].append(f"{written}: flagged as a Celery setting, but it is Django's own")
        elif honoured != (truly is not None):
            out["wrong"].append(f"{written}: said {'read' if honoured else 'ignored'}, Celery "
                                f"{'reads it as ' + str(truly) if truly else 'ignores it'}")
        elif honoured and row["setting"] != truly:
            out["wrong"].append(f"{written}: said it is {row['setting']}, Celery reads it as {truly}")
        else:
            out["right"].append(f"{written}: {'read as ' + str(truly) if truly else 'ignored'}")
    for written, truly in read.items():
        if truly and written not in seen and written != "deprecated_settings":
            out["missed"].append(f"{written}: Celery reads it as {truly}, the audit does not list it")
    if values is not None:  # the effective broker URL, when the audit states a literal one
        import ast

        from kombu import Connection

        said = config.get("effective_broker_url", "")
        if not said.startswith("unknown"):
            text = ast.literal_eval(said) if said[:1] in "'\"" else said
            try:
                ours = Connection(text).as_uri()
            except (KeyError, ValueError) as exc:
                ours = f"error: {exc}"
            real = values["connection"]
            out["right" if ours == real else "wrong"].append(f"effective broker: said {ours}, real {real}")
    predicted = config.get("mix_error")
    if predicted or truth["error"]:
        key = "right" if predicted == truth["error"] else "wrong"
        out[key].append(f"ImproperlyConfigured: predicted {bool(predicted)}, real {bool(truth['error'])}")
    else:
        out["right"].append("loads without ImproperlyConfigured")
    return out


def audit(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from celery_doctor.pipeline import check_config

    root = os.path.join(REAL, name)
    report = check_config([os.path.join(root, p) for p in projects()[name]["audit"]])
    findings = [{"title": f.title, "facts": f.facts, "severity": f.severity.value} for f in report.findings]
    return report.data, findings


if __name__ == "__main__":
    if sys.argv[1:] == ["--score"]:
        total = {"right": 0, "wrong": 0, "missed": 0}
        for project in projects():
            data, found = audit(project)
            result = score(project, data, found, truth_for(project), truth_for(project, values=True))
            for key in total:
                total[key] += len(result[key])
            print(f"{project:18} right {len(result['right']):3} wrong {len(result['wrong']):3} "
                  f"missed {len(result['missed']):3}")
            for line in result["wrong"] + result["missed"]:
                print(f"    {line}")
        print(f"{'total':18} right {total['right']:3} wrong {total['wrong']:3} missed {total['missed']:3}")
    else:
        result = main(sys.argv[1], json.loads(sys.argv[2]), mark="--values" not in sys.argv[3:])
        sys.stdout.write(json.dumps(result, default=repr) + "\n")
