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

from celery_doctor import userfiles
from celery_doctor.settings import catalogue, guard, loader
from celery_doctor.settings.interface import Assignment, ClassInfo, ConfigFacts, Dynamic, Loader, SettingsError

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
    raw = userfiles.read_bytes(path, SettingsError, "config file")
    # the encoding Python itself would use: a UTF-8 BOM, a PEP 263 coding cookie (latin-1...)
    text = userfiles.decode_text(raw, path, SettingsError, python=True, lenient=True)
    try:
        tree = guard.parse(text, path)
    except SyntaxError as exc:
        hint = ""
        if re.search(r"^\s*print\s+[^(\s=]", text, re.M) or re.search(r"except\s+\w+\s*,\s*\w+\s*:", text) \
                or "Missing parentheses" in (exc.msg or ""):
            hint = " (this looks like a Python 2 file; run it through 2to3 or pyupgrade first)"
        where = f"{path}:{exc.lineno}" if exc.lineno else path  # a NUL byte has no line
        raise SettingsError(f"{where}: syntax error: {exc.msg}{hint}") from None
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


def _setting_like(name: str) -> bool:
    """A name some Celery release declared (old or new spelling), or one with a Celery prefix."""
    return name.startswith(("CELERY", "BROKER_")) or name in catalogue.known_old_names() or \
        catalogue.first_release_with(name) is not None


class _Reader:
    def __init__(self, path: Path, facts: ConfigFacts, module_settings: bool) -> None:
        self.path = path
        self.name = str(path)
        self.facts = facts
        self.module_settings = module_settings
        self.tree, self.lines = _parse(path)
        # which nodes sit inside a def: their effect depends on when (and whether) it is called
        self.in_def: set[int] = set()
        self.enclosing: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                self.in_def.update(id(child) for child in ast.walk(node) if child is not node)
        for node in ast.walk(self.tree):  # outer defs come first in the walk: the innermost def wins
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for child in ast.walk(node):
                    if child is not node:
                        self.enclosing[id(child)] = node
        self.strings: dict[str, str] = {}  # module-level NAME = 'literal'
        self.django_names: set[str] = set()  # names bound to django.conf.settings
        self.yaml_names = {t.id for n in ast.walk(self.tree)
                           if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                           and "yaml" in ast.unparse(n.value.func) for t in n.targets if isinstance(t, ast.Name)}
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant) and \
                    isinstance(stmt.value.value, str):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.strings[target.id] = stmt.value.value
            elif isinstance(stmt, ast.ImportFrom) and stmt.module == "django.conf":
                self.django_names.update(a.asname or a.name for a in stmt.names if a.name == "settings")

    def line(self, node: ast.AST) -> tuple[int, str]:
        lineno = getattr(node, "lineno", 1)
        return lineno, self.lines[lineno - 1].rstrip() if 0 < lineno <= len(self.lines) else ""

    def add(self, name: str, value_node: ast.AST | None, node: ast.AST, via: str, *, prefixed: bool = True,
            value: Any = None, scope: str | None = None) -> None:
        lineno, text = self.line(node)
        self.facts.assignments.append(Assignment(
            name=name, value=_literal(value_node) if value_node is not None else value, source=self.name,
            line=lineno, text=text, via=via, prefixed=prefixed, scope=scope, in_function=id(node) in self.in_def))

    def read(self) -> None:
        self.facts.loaded_names.update(n.id for n in ast.walk(self.tree)
                                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
        statements = _module_statements(self.tree.body)
        if self.module_settings:
            for stmt in statements:
                for target, value in _assigned(stmt):
                    if isinstance(target, ast.Name) and not target.id.startswith("_"):
                        self.add(target.id, value, stmt, "module")
                self.namespace_update(stmt)
        for stmt in statements:
            if isinstance(stmt, ast.ClassDef):
                self.class_body(stmt)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self.call(node)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    self.conf_target(target, node.value, node)

    def class_body(self, node: ast.ClassDef) -> None:
        """Class attributes: the settings of ``config_from_object(TheClass)`` (bases resolved later)."""
        items = [(t.id, v, stmt) for stmt in node.body for t, v in _assigned(stmt)
                 if isinstance(t, ast.Name) and not t.id.startswith("_")]
        bases = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
        if not any(_setting_like(name) for name, _, _ in items) and not any(b in self.facts.classes for b in bases):
            return  # a class with no setting names is code, not configuration
        self.facts.classes[node.name] = ClassInfo(node.name, [b for b in bases if b != "object"], self.name,
                                                  node.lineno)
        for name, value, stmt in items:
            self.add(name, value, stmt, "class", scope=node.name)

    def namespace_update(self, stmt: ast.stmt) -> None:
        """``vars().update(yaml.safe_load(f))`` and the like: the YAML file's keys become module names."""
        node = stmt.value if isinstance(stmt, ast.Expr) else None
        if node is not None:
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                    and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                    and node.func.value.func.id in ("vars", "locals", "globals") and node.args):
                return
            arg = node.args[0]
            from_yaml = (isinstance(arg, ast.Call) and "yaml" in ast.unparse(arg.func)) or (
                isinstance(arg, ast.Name) and arg.id in self.yaml_names)
            if not from_yaml:
                return
            lineno, text = self.line(node)
            for yaml_file in _yaml_beside(self.path, "\n".join(self.lines)):
                for key, value, key_line, key_text in read_yaml_mapping(yaml_file):
                    self.facts.assignments.append(Assignment(
                        name=key, value=value, source=str(yaml_file), line=key_line, text=key_text, via="yaml",
                        at=lineno))
                self.facts.notes.append(f"{self.name}:{lineno}: `{text.strip()}` reads {yaml_file} (the names in "
                                        "it are read as this module's settings)")

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

    def source_kind(self, node: ast.AST) -> tuple[str, str]:
        """(target, kind) of what config_from_object was given."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            target = node.value
        elif isinstance(node, ast.Name) and node.id in self.strings:
            target = self.strings[node.id]
        elif isinstance(node, ast.Name) and node.id in self.django_names:
            return "django.conf:settings", "django"
        elif isinstance(node, ast.Name) and node.id in self.facts.classes:
            return node.id, "class"
        elif isinstance(node, ast.Name) and (passed := self.passed_class(node)) is not None:
            return passed, "class"  # def make_app(config): app.config_from_object(config); make_app(ProdConfig)
        elif isinstance(node, ast.Dict) or (isinstance(node, ast.Call) and ast.unparse(node.func) == "dict"):
            return "{...}", "dict"
        else:
            text = ast.unparse(node)
            return text, "django" if text in ("django.conf.settings", "settings") and self.django_names else "unknown"
        return target, "django" if target.startswith("django.conf") else "module"

    def passed_class(self, name: ast.Name) -> str | None:
        """The config class the file passes for a function parameter, when every call passes one."""
        func = self.enclosing.get(id(name))
        if func is None:
            return None
        params = [a.arg for a in [*func.args.posonlyargs, *func.args.args]]
        if name.id not in params:
            return None
        index = params.index(name.id)
        passed = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)) and \
                    (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == func.name:
                arg = next((k.value for k in node.keywords if k.arg == name.id), None)
                if arg is None and index < len(node.args):
                    arg = node.args[index]
                if isinstance(arg, ast.Name) and arg.id in self.facts.classes:
                    passed.add(arg.id)
        return passed.pop() if len(passed) == 1 else None

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
            target, kind = self.source_kind(node.args[0]) if node.args else ("", "unknown")
            self.facts.config_from_object.append((target, lineno, text))
            namespace = None
            for kw in node.keywords:
                if kw.arg == "namespace" and isinstance(kw.value, ast.Constant):
                    namespace = str(kw.value.value) if kw.value.value else None
                    self.facts.namespace = namespace
                    self.facts.namespace_line = (self.name, lineno, text)
            self.facts.loader_calls.append(Loader(self.name, lineno, text, target, kind, namespace))
            if kind == "django":
                self.facts.django = True
            if node.args:
                self.dict_items(node.args[0], "dict_literal", node)
        elif fname == "setdefault" and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and \
                node.args[0].value == "DJANGO_SETTINGS_MODULE" and isinstance(node.args[1], ast.Constant):
            self.facts.django_settings = self.facts.django_settings or str(node.args[1].value)
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


def _assigned(stmt: ast.stmt) -> list[tuple[ast.expr, ast.expr]]:
    if isinstance(stmt, ast.Assign):
        return [(t, stmt.value) for t in stmt.targets]
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        return [(stmt.target, stmt.value)]
    return []


def _yaml_beside(path: Path, text: str) -> list[Path]:
    """The YAML file a settings module loads: a literal path when it names one, else the YAML files
    beside it (the real path often comes from an environment variable)."""
    for literal in re.findall(r"""["']([^"'\n]+\.ya?ml)["']""", text):
        candidate = (path.parent / literal)
        if candidate.is_file():
            return [candidate]
    return sorted(p for p in path.parent.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())[:3]


def read_yaml_mapping(path: Path) -> list[tuple[str, Any, int, str]]:
    """Top-level keys of a YAML mapping: (key, value, line, line text); [] when it is not a mapping."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError, RecursionError) as exc:
        raise SettingsError(f"{path}: not readable YAML ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return []
    lines = text.splitlines()
    out = []
    for key_node, _ in root.value:
        key = key_node.value
        if isinstance(key, str) and key in data:
            line = key_node.start_mark.line + 1
            out.append((key, data[key], line, lines[line - 1] if line <= len(lines) else ""))
    return out


def _is_django_settings(text: str) -> bool:
    return bool(re.search(r"^(INSTALLED_APPS|MIDDLEWARE|ROOT_URLCONF|DATABASES|ALLOWED_HOSTS)\s*=", text, re.M))


def _is_app_module(text: str) -> bool:
    return bool(re.search(r"\bCelery\s*\(|config_from_object\s*\(", text))


def discover(paths: list[str]) -> list[Path]:
    """The files to read: the ones given, or, for a directory, its celeryconfig / settings / app
    modules (not inside virtualenvs). The app module that loads a given file is found later."""
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
                found.extend(loader.app_modules(path))
            if not found:
                raise SettingsError(f"{path}: no celeryconfig.py, settings.py, celery.py or Celery app inside")
        elif not path.exists():
            raise SettingsError(f"{path}: no such file")
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def _project_files(found: list[Path], roots: list[Path]) -> list[Path]:
    """A project directory: its app modules and the files their config_from_object calls load
    (a module, a class's module, the Django settings); the named files when no call resolves."""
    apps = list(dict.fromkeys([*[p for p in found if p.suffix == ".py" and _is_app_module(
        p.read_text(encoding="utf-8", errors="replace"))], *[a for r in roots for a in loader.app_modules(r)]]))
    loaded: list[Path] = []
    for app in apps:
        scratch = ConfigFacts()
        try:
            _Reader(app, scratch, False).read()
        except SettingsError:
            continue
        root = loader.project_root(app)
        for call in scratch.loader_calls:
            if call.kind in ("module", "class"):
                target, _ = loader.resolve_target(call.target, app, root)
                if target is not None and not _same(target, app):
                    loaded.append(target)
            elif call.kind == "django" and scratch.django_settings:
                target = loader.resolve_module(scratch.django_settings, [root])
                if target is not None:
                    loaded.append(target)
    if not loaded:
        return list(dict.fromkeys([*found, *apps]))
    django = [p for p in found if p.suffix == ".py" and _is_django_settings(
        p.read_text(encoding="utf-8", errors="replace"))]
    return list(dict.fromkeys(p.resolve() for p in [*loaded, *django, *apps]))


def _read_file(path: Path, facts: ConfigFacts, module_settings: bool | None = None) -> None:
    userfiles.check_regular(path, SettingsError, "config file")  # a FIFO or /dev/zero would never end
    if path.suffix in (".yml", ".yaml"):  # settings kept in YAML and pumped into a module or conf.update
        items = read_yaml_mapping(path)
        if not items:
            raise SettingsError(f"{path}: not a YAML mapping of setting names to values")
        for key, value, line, text in items:
            facts.assignments.append(Assignment(name=key, value=value, source=str(path), line=line, text=text,
                                                via="yaml"))
        facts.django = facts.django or any(k in ("INSTALLED_APPS", "DATABASES") for k, *_ in items)
        facts.files.append(str(path))
        return
    text = userfiles.decode_text(userfiles.read_bytes(path, SettingsError, "config file"), path, SettingsError,
                                 python=True, lenient=True)
    app_module = _is_app_module(text)
    django = _is_django_settings(text)
    if not django and not app_module and "import *" in text:  # settings/production.py on top of base.py
        root = loader.project_root(path)
        django = any(_is_django_settings(p.read_text(encoding="utf-8", errors="replace"))
                     for p in loader.star_imports(path, root)[1:])
    facts.django = facts.django or django
    if module_settings is None:
        # an app module's top-level names are code, not settings, unless it is also the config
        module_settings = not app_module or django or path.name == "celeryconfig.py"
    reader = _Reader(path, facts, module_settings)
    start = len(facts.assignments)
    reader.read()
    facts.assignments[start:] = sorted(facts.assignments[start:], key=lambda a: a.at or a.line)
    facts.files.append(str(path))
    if app_module:
        facts.celery_py = str(path)


def _same(a: Path | None, b: Path) -> bool:
    return a is not None and a.resolve() == b.resolve()


def _loads(call: Loader, app_file: Path, root: Path, app_facts: ConfigFacts, target: Path,
           facts: ConfigFacts) -> bool:
    """Does this config_from_object call (in app_file) hand ``target`` to Celery?"""
    if call.kind in ("module", "class"):
        found, attr = loader.resolve_target(call.target, app_file, root)
        if _same(found, target):
            if attr and attr in facts.classes:
                call.kind, facts.config_object = "class", attr
            return True
        return False
    if call.kind == "django":
        settings = app_facts.django_settings
        module = loader.resolve_module(settings, [root]) if settings else None
        if module is not None:
            if any(_same(p, target) for p in loader.star_imports(module, root)):
                facts.django_settings = settings
                return True
            return False
        # DJANGO_SETTINGS_MODULE comes from the environment: a Django settings file is the likely one
        if facts.django:
            facts.notes.append(f"{app_file} loads the Django settings; DJANGO_SETTINGS_MODULE is not set there, "
                               f"so {target.name} was taken to be that module")
            return True
    return False


def _locate(facts: ConfigFacts, given: list[Path]) -> None:
    """Find the call that loads the given config file: among the files read, else under the project root."""
    configs = [p for p in given if p.suffix == ".py" and str(p) != facts.celery_py]
    apps = [p for p in given if str(p) == facts.celery_py]
    # an app module given alone: read the config module it names, when it is in the project
    if apps and not configs:
        app = apps[0]
        root = loader.project_root(app)
        for call in list(facts.loader_calls):
            if call.kind in ("module", "class") and call.source == str(app):
                found, attr = loader.resolve_target(call.target, app, root)
                if found is not None and not _same(found, app) and str(found) not in facts.files:
                    _read_file(found, facts, module_settings=True)
                    facts.loader = call
                    if attr and attr in facts.classes:
                        call.kind, facts.config_object = "class", attr
                    return
            elif call.source == str(app):
                facts.loader = call
        if facts.loader is None and facts.loader_calls:
            facts.loader = facts.loader_calls[0]
        return
    if not configs:
        return
    target = configs[0]
    root = loader.project_root(target)
    for call in facts.loader_calls:
        if _loads(call, Path(call.source), root, facts, target, facts):
            facts.loader = call
            break
    if facts.loader is None:
        for app in loader.app_modules(root):
            if any(_same(app, p) for p in given):
                continue
            scratch = ConfigFacts(classes=facts.classes, django=facts.django)
            try:
                _Reader(app, scratch, False).read()
            except SettingsError:
                continue
            hit = next((c for c in scratch.loader_calls if _loads(c, app, root, scratch, target, facts)), None)
            if hit is None:
                continue
            facts.django_settings = facts.django_settings or scratch.django_settings
            _read_file(app, facts, module_settings=False)
            # the copy read into facts is the one to keep (the same hit, now with its resolved kind)
            kept = next((c for c in facts.loader_calls if c.source == str(app) and c.line == hit.line), hit)
            kept.kind = hit.kind
            facts.loader = kept
            break
    if facts.loader is None and not facts.django:
        # no app module loads it: still Django settings when a settings.py star-imports it
        for settings in loader.django_settings_files(root):
            if not _same(settings, target) and any(_same(p, target) for p in loader.star_imports(settings, root)):
                facts.django = True
                facts.notes.append(f"{target.name} is part of the Django settings: {settings} star-imports it")
                break
    if facts.loader is not None and facts.loader.kind == "django":
        facts.django = True  # a fragment star-imported by settings.py is Django settings too
    if facts.loader is None and facts.django:
        facts.namespace_known = False


def _choose_object(facts: ConfigFacts) -> None:
    """The class Celery is configured from, when the config is a class."""
    if not facts.classes:
        return
    if facts.config_object is None:
        for call in facts.loader_calls:
            name = re.split(r"[.:]", call.target)[-1]
            if name in facts.classes:
                facts.config_object = name
                break
    if facts.config_object is None:
        leaves = [c for c in facts.classes if not any(c in o.bases for o in facts.classes.values())]
        if len(leaves) == 1:
            facts.config_object = leaves[0]
        elif leaves:
            facts.notes.append(f"several config classes ({', '.join(leaves)}) and no config_from_object call that "
                               "names one: each is judged on its own; give the app module to say which is used")
    if facts.config_object is not None:
        source = facts.classes[facts.config_object].source
        # Celery reads the class only: the module's own top-level names are not settings then
        facts.assignments = [a for a in facts.assignments if not (a.via == "module" and a.source == source)]


def read(paths: list[str]) -> ConfigFacts:
    """Every setting assignment in ``paths`` (files or project directories), with file and line; the
    app module that loads them is searched for under the project root when not given."""
    facts = ConfigFacts()
    given = discover(paths)
    if any(Path(p).is_dir() for p in paths):
        given = _project_files(given, [Path(p) for p in paths if Path(p).is_dir()])
    for path in given:
        _read_file(path, facts)
    if facts.django:  # settings fragments pulled in with `from .x import *` are settings too
        for path in list(given):
            if path.suffix == ".py" and _is_django_settings(path.read_text(encoding="utf-8", errors="replace")):
                for fragment in loader.star_imports(path, loader.project_root(path))[1:]:
                    if not any(_same(fragment, p) for p in given) and str(fragment) not in facts.files:
                        _read_file(fragment, facts, module_settings=True)
    _locate(facts, given)
    _choose_object(facts)
    return facts
