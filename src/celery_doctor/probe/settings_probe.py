# ruff: noqa: UP030, UP032, B904, RUF005, SIM105, SIM108, SIM118
# (runs on Python 2.7 / 3.5+: no f-strings, no annotations, no `raise from`)
"""Import a Celery app and print its effective settings, with where each came from, as JSON.

Runs inside the user's interpreter (Python 2.7 or 3.5+, Celery 3.1 to 5.x), stdlib only:

    python settings_probe.py MODULE[:ATTRIBUTE]

The last stdout line is the JSON document; anything the app prints while importing goes to
stderr. The caller runs this in a subprocess with a timeout, so a hanging import is killed.
"""

import json
import os
import sys
import traceback

MARK = "CELERY-DOCTOR-SETTINGS "
# settings whose value an environment variable replaces (celery/app/utils.py Settings properties)
ENV_OVERRIDES = {
    "broker_url": "CELERY_BROKER_URL",
    "broker_read_url": "CELERY_BROKER_READ_URL",
    "broker_write_url": "CELERY_BROKER_WRITE_URL",
    "result_backend": "CELERY_RESULT_BACKEND",
}
# stored in app.conf by Celery itself, not settings
NOT_SETTINGS = frozenset(["deprecated_settings"])
# keys Celery reads with conf.get() without declaring them (celery 5.7 backends/*, app/base.py, fixups/django.py)
READ_UNDECLARED = frozenset(["redis_backend_health_check_interval", "redis_backend_credential_provider",
                             "redis_client_name", "result_backend_thread_safe", "override_backends",
                             "CELERY_DB_REUSE_MAX", "cassandra_secure_bundle_path", "firestore_project",
                             "gcs_threadpool_maxsize"])
# the 5.x `celery` command reads these for --broker / --result-backend
CLI_ENV = {"broker_url": "BROKER_URL", "result_backend": "RESULT_BACKEND"}


def emit(doc):
    sys.stdout.write(MARK + json.dumps(doc, default=repr) + "\n")
    sys.stdout.flush()


def plain(value):
    """A JSON-ready copy of a setting value (reprs for what JSON cannot hold)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    try:
        text_types = (str, unicode)
    except NameError:
        text_types = (str,)
    if isinstance(value, text_types):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return dict((str(k), plain(v)) for k, v in value.items())
    return {"repr": repr(value)}


def is_app(value):
    # class attributes only: touching app.tasks or app.conf would load (and judge) the config
    return value is not None and not isinstance(value, type) and \
        hasattr(type(value), "config_from_object") and hasattr(type(value), "conf")


def find_app(spec):
    import importlib

    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
        return module, obj
    for name in ("app", "celery"):
        candidate = getattr(module, name, None)
        if is_app(candidate):
            return module, candidate
    for value in list(vars(module).values()):
        if is_app(value):
            return module, value
    # proj -> proj.celery, as `celery -A proj` does
    try:
        sub = importlib.import_module(module_name + ".celery")
    except ImportError:
        raise LookupError("no Celery app found in module {0} (give MODULE:ATTRIBUTE)".format(module_name))
    return find_app_in(sub)


def find_app_in(module):
    for name in ("app", "celery"):
        candidate = getattr(module, name, None)
        if is_app(candidate):
            return module, candidate
    raise LookupError("no Celery app found in module {0}".format(module.__name__))


def settings_of(app, celery_version):
    """(setting -> {value, origin}, defaults module keys)."""
    conf = app.conf
    new_style = int(celery_version.split(".")[0]) >= 4
    from celery.app import defaults as celery_defaults

    defaults = dict(
        (key, opt.default) for key, opt in celery_defaults.flatten(celery_defaults.NAMESPACES))
    non_default_maps = list(getattr(conf, "maps", [])[:-1]) + [getattr(conf, "changes", {})]
    out = {}
    keys = set(defaults)
    for mapping in non_default_maps:
        try:
            keys.update(k for k in mapping.keys() if isinstance(k, str) and not k.startswith("_"))
        except Exception:
            pass
    for key in sorted(keys):
        try:
            if key in ENV_OVERRIDES or key in ("timezone",):
                value = getattr(conf, key)
            else:
                value = conf.get(key)
        except Exception as exc:
            out[key] = {"value": None, "origin": "error", "error": "{0}: {1}".format(type(exc).__name__, exc)}
            continue
        origin = "default"
        set_for = getattr(conf, "value_set_for", None)
        if set_for is not None:
            try:
                origin = "config" if set_for(key) else "default"
            except Exception:
                origin = "default"
        elif any(key in m for m in non_default_maps if hasattr(m, "__contains__")):
            origin = "config"
        env = ENV_OVERRIDES.get(key) if new_style else None
        if env and os.environ.get(env) and value == os.environ.get(env):
            origin = "env:" + env
        if key not in defaults and (origin == "default" or callable(value) or type(value).__name__ == "module"
                                    or key in NOT_SETTINGS or key not in READ_UNDECLARED):
            continue  # Celery's bookkeeping and the config source's other names (imports, helpers) are not settings
        out[key] = {"value": plain(value), "origin": origin}
    return out


def main(argv):
    if len(argv) < 2:
        emit({"error": "usage: settings_probe.py MODULE[:ATTRIBUTE]", "kind": "usage"})
        return 2
    spec = argv[1]
    sys.path.insert(0, os.getcwd())
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # the app may print while importing
    doc = {"python": sys.version.split()[0], "executable": sys.executable, "module": spec}
    try:
        try:
            import celery
        except ImportError as exc:
            doc.update(error="celery is not importable in {0}: {1}".format(sys.executable, exc), kind="no_celery")
            return 2
        doc["celery"] = celery.__version__
        try:
            module, app = find_app(spec)
        except Exception as exc:
            doc.update(error="cannot import {0}: {1}: {2}".format(spec, type(exc).__name__, exc), kind="import",
                       where=traceback.format_exc().strip().splitlines()[-3:])
            return 2
        doc["module_file"] = getattr(module, "__file__", None)
        try:
            app.conf.get("broker_url" if int(celery.__version__.split(".")[0]) >= 4 else "BROKER_URL")
        except Exception as exc:
            doc.update(error="{0}: {1}".format(type(exc).__name__, exc), kind="config")
            return 1
        source = getattr(app, "_config_source", None)
        doc["config_source"] = source if isinstance(source, str) else (
            getattr(source, "__name__", None) or type(source).__name__ if source is not None else None)
        files = []
        if isinstance(source, str):
            name = source.split(":")[0]
            if name == "django.conf":
                name = os.environ.get("DJANGO_SETTINGS_MODULE") or ""
            mod = sys.modules.get(name)
            if mod is not None and getattr(mod, "__file__", None):
                files.append(mod.__file__)
        elif source is not None and getattr(source, "__file__", None):
            files.append(source.__file__)
        doc["config_files"] = files
        doc["namespace"] = getattr(app, "namespace", None)
        doc["settings"] = settings_of(app, celery.__version__)
        doc["env"] = sorted(k for k in list(ENV_OVERRIDES.values()) + list(CLI_ENV.values()) if os.environ.get(k))
        return 0
    finally:
        sys.stdout = real_stdout
        emit(doc)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
