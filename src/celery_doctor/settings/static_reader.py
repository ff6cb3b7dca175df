"""Read Celery settings out of Python source with ``ast``: nothing of the user's code runs.

Where settings are written: module-level assignments (celeryconfig.py, Django settings.py),
``app.conf.update(...)``, ``app.conf.X = ...``, ``app.conf['X'] = ...``, ``Celery(...)``
keyword arguments, and dict literals handed to ``config_from_object``. The app module
(celery.py) also says which namespace the Django settings are read with.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from celery_doctor.settings.interface import Assignment, ConfigFacts, Dynamic, SettingsError

# Celery(...) arguments that are settings under another name (app/base.py __autoset calls)
CELERY_KWARG_SETTINGS = {"broker": "broker_url", "backend": "result_backend", "include": "include"}
# Celery(...) arguments that are not settings at all
CELERY_KWARG_OTHER = {"main", "loader", "amqp", "events", "log", "control", "set_as_current", "tasks",
                      "changes", "config_source", "fixups", "task_cls", "autofinalize", "namespace",
                      "strict_typing", "config_source_silent"}
ENV_FUNCS = {"getenv", "get", "env", "config", "str", "int", "bool", "float", "list", "json"}
APP_FILE_NAMES = ("celery.py", "celery_app.py", "celeryapp.py", "tasks.py", "app.py", "worker.py")
SKIP_DIRS = {".git", "node_modules", "site-packages", ".venv", "venv", "env", ".tox", "__pycache__"}


def _parse(path: Path) -> tuple[ast.Module, list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SettingsError(f"{path}: is a directory") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        hint = ""
        if re.search(r"^\s*print\s+[^(\s=]", text, re.M) or re.search(r"except\s+\w+\s*,\s*\w+\s*:", text) \
                or "Missing parentheses" in (exc.msg or ""):
            hint = " (this looks like a Python 2 file; run it through 2to3 or pyupgrade first)"
        raise SettingsError(f"{path}:{exc.lineno}: syntax error: {exc.msg}{hint}") from None
    except ValueError as exc:  # null bytes
        raise SettingsError(f"{path}: not a Python source file ({exc})") from None
    return tree, text.splitlines()


def _literal(node: ast.AST) -> Any:
    """A literal value, or a Dynamic that says where the value comes from."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    text = ast.unparse(node)
    env = _env_lookup(node)
    if env is not None:
        return env
    return Dynamic(origin=text)


def _env_lookup(node: ast.AST) -> Dynamic | None:
    """os.environ['X'], os.environ.get('X', d), os.getenv('X', d), env('X', default=d), config(...)."""
    text = ast.unparse(node)
    if isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return Dynamic(origin=text, env_var=key.value)
    if isinstance(node, ast.BoolOp):  # os.environ.get('X') or 'default'
        first = _env_lookup(node.values[0])
        if first is not None:
            tail = node.values[-1]
            fallback = ast.literal_eval(tail) if isinstance(tail, ast.Constant) else None
            return Dynamic(origin=text, env_var=first.env_var, fallback=fallback)
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        envish = "environ" in owner or name == "getenv" or (name in ENV_FUNCS and owner in ("", "env", "config"))
        if envish and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            fallback = None
            if len(node.args) > 1:
                try:
                    fallback = ast.literal_eval(node.args[1])
                except ValueError:
                    fallback = None
            for kw in node.keywords:
                if kw.arg == "default":
                    try:
                        fallback = ast.literal_eval(kw.value)
                    except ValueError:
                        fallback = None
            return Dynamic(origin=text, env_var=node.args[0].value, fallback=fallback)
        if node.args:  # int(os.environ.get(...)) and similar wrappers
            inner = _env_lookup(node.args[0])
            if inner is not None:
                return Dynamic(origin=text, env_var=inner.env_var, fallback=inner.fallback)
    return None


def _is_conf(node: ast.AST) -> bool:
    """``app.conf`` / ``celery_app.conf`` / ``current_app.conf`` / plain ``conf``."""
    return (isinstance(node, ast.Attribute) and node.attr == "conf") or (
        isinstance(node, ast.Name) and node.id == "conf")


def _module_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, looking inside if/try/with blocks (settings often sit there)."""
    out: list[ast.stmt] = []
    for stmt in body:
        out.append(stmt)
        if isinstance(stmt, ast.If):
            out.extend(_module_statements(stmt.body + stmt.orelse))
        elif isinstance(stmt, ast.Try):
            out.extend(_module_statements(stmt.body + stmt.orelse + stmt.finalbody))
            for handler in stmt.handlers:
                out.extend(_module_statements(handler.body))
        elif isinstance(stmt, ast.With):
            out.extend(_module_statements(stmt.body))
    return out


class _Reader:
    def __init__(self, path: Path, facts: ConfigFacts, module_settings: bool) -> None:
        self.path = path
        self.name = str(path)
        self.facts = facts
        self.module_settings = module_settings
        self.tree, self.lines = _parse(path)

    def line(self, node: ast.AST) -> tuple[int, str]:
        lineno = getattr(node, "lineno", 1)
        return lineno, self.lines[lineno - 1].rstrip() if 0 < lineno <= len(self.lines) else ""

    def add(self, name: str, value_node: ast.AST | None, node: ast.AST, via: str, *, prefixed: bool = True,
            value: Any = None) -> None:
        lineno, text = self.line(node)
        self.facts.assignments.append(Assignment(
            name=name, value=_literal(value_node) if value_node is not None else value, source=self.name,
            line=lineno, text=text, via=via, prefixed=prefixed))

    def read(self) -> None:
        if self.module_settings:
            for stmt in _module_statements(self.tree.body):
                targets: list[ast.expr] = []
                value: ast.AST | None = None
                if isinstance(stmt, ast.Assign):
                    targets, value = stmt.targets, stmt.value
                elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    targets, value = [stmt.target], stmt.value
                for target in targets:
                    if isinstance(target, ast.Name) and not target.id.startswith("_") and value is not None:
                        self.add(target.id, value, stmt, "module")
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    self.conf_target(target, node.value, node)

    def conf_target(self, target: ast.AST, value: ast.AST, node: ast.AST) -> None:
        if isinstance(target, ast.Attribute) and _is_conf(target.value):
            self.add(target.attr, value, node, "conf_attr", prefixed=False)
        elif isinstance(target, ast.Subscript) and _is_conf(target.value):
            key = target.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.add(key.value, value, node, "conf_item", prefixed=False)

    def dict_items(self, node: ast.AST, via: str, anchor: ast.AST) -> None:
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    self.add(key.value, value, key, via, prefixed=False)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            for kw in node.keywords:
                if kw.arg:
                    self.add(kw.arg, kw.value, kw, via, prefixed=False)

    def call(self, node: ast.Call) -> None:
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if fname == "update" and isinstance(func, ast.Attribute) and _is_conf(func.value):
            for arg in node.args:
                self.dict_items(arg, "conf_update", node)
            for kw in node.keywords:
                if kw.arg:
                    self.add(kw.arg, kw.value, kw, "conf_update", prefixed=False)
        elif fname == "config_from_object":
            lineno, text = self.line(node)
            target = ast.unparse(node.args[0]) if node.args else ""
            if node.args and isinstance(node.args[0], ast.Constant):
                target = str(node.args[0].value)
            self.facts.config_from_object.append((target, lineno, text))
            if "django.conf" in target:
                self.facts.django = True
            for kw in node.keywords:
                if kw.arg == "namespace" and isinstance(kw.value, ast.Constant):
                    self.facts.namespace = str(kw.value.value) if kw.value.value else None
                    self.facts.namespace_line = (self.name, lineno, text)
            if node.args:
                self.dict_items(node.args[0], "dict_literal", node)
        elif fname in ("Celery", "Celery_app") and (isinstance(func, ast.Name) or ast.unparse(func).endswith("Celery")):
            for kw in node.keywords:
                if kw.arg is None:
                    continue
                if kw.arg == "namespace" and isinstance(kw.value, ast.Constant):
                    lineno, text = self.line(kw)
                    self.facts.namespace = str(kw.value.value) if kw.value.value else None
                    self.facts.namespace_line = (self.name, lineno, text)
                elif kw.arg in CELERY_KWARG_SETTINGS:
                    self.add(CELERY_KWARG_SETTINGS[kw.arg], kw.value, kw, "celery_kwarg", prefixed=False)
                elif kw.arg not in CELERY_KWARG_OTHER:
                    self.add(kw.arg, kw.value, kw, "celery_kwarg", prefixed=False)
        if any(kw.arg in ("countdown", "eta") for kw in node.keywords):
            lineno, text = self.line(node)
            self.facts.uses_countdown_or_eta.append((self.name, lineno, text))


def _is_django_settings(text: str) -> bool:
    return bool(re.search(r"^(INSTALLED_APPS|MIDDLEWARE|ROOT_URLCONF|DATABASES)\s*=", text, re.M))


def _is_app_module(text: str) -> bool:
    return bool(re.search(r"\bCelery\s*\(|config_from_object\s*\(", text))


def discover(paths: list[str]) -> list[Path]:
    """The files to read: the ones given, the app module beside a Django settings file, or, for a
    directory, its celeryconfig / settings / app modules (not inside virtualenvs)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*.py")):
                if SKIP_DIRS.intersection(candidate.parts) or len(candidate.relative_to(path).parts) > 4:
                    continue
                if candidate.name in ("celeryconfig.py", "settings.py", *APP_FILE_NAMES) or \
                        candidate.parent.name == "settings":
                    found.append(candidate)
            if not found:
                raise SettingsError(f"{path}: no celeryconfig.py, settings.py or celery.py inside")
        elif not path.exists():
            raise SettingsError(f"{path}: no such file")
        else:
            found.append(path)
            if path.name != "celery.py" and (path.parent / "celery.py").is_file() and len(paths) == 1:
                found.append(path.parent / "celery.py")
    return list(dict.fromkeys(found))


def read(paths: list[str]) -> ConfigFacts:
    """Every setting assignment in ``paths`` (files or project directories), with file and line."""
    facts = ConfigFacts()
    for path in discover(paths):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
        app_module = _is_app_module(text)
        django = _is_django_settings(text)
        facts.django = facts.django or django
        # an app module's top-level names are code, not settings, unless it is also the config
        module_settings = not app_module or django or path.name == "celeryconfig.py"
        reader = _Reader(path, facts, module_settings)
        start = len(facts.assignments)
        reader.read()
        facts.assignments[start:] = sorted(facts.assignments[start:], key=lambda a: a.line)
        facts.files.append(str(path))
        if app_module:
            facts.celery_py = str(path)
    return facts
