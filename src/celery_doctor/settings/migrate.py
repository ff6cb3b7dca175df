"""Rename old setting names with libcst: comments, strings and layout stay exactly as written.

Renamed: module-level assignment targets (and the places that read those module names),
keyword arguments and string keys of ``conf.update(...)`` / ``config_from_object({...})`` /
``Celery(...)``, ``conf.X`` and ``conf['X']``. Never touched: string contents, comments,
environment variable names, names that merely contain a setting name (``MY_BROKER_URL``).
Running it twice changes nothing the second time.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
import libcst.metadata

from celery_doctor.settings import catalogue
from celery_doctor.settings.interface import SettingsError


@dataclass
class Migration:
    path: str
    original: str
    migrated: str
    renamed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, old, new)
    unconvertible: list[tuple[int, str, str]] = field(default_factory=list)  # (line, name, why)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.original != self.migrated

    def diff(self) -> str:
        """A unified diff that `git apply` and `patch -p1` accept: a/ and b/ paths relative to
        the current directory, and git's marker for a last line without a newline."""
        name = _diff_path(self.path)
        lines = []
        for line in difflib.unified_diff(self.original.splitlines(keepends=True),
                                         self.migrated.splitlines(keepends=True),
                                         fromfile=f"a/{name}", tofile=f"b/{name}"):
            lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(lines)


def _diff_path(path: str) -> str:
    """The path as the patch should name it: relative to the current directory when inside it."""
    file = Path(path)
    if file.is_absolute():
        try:
            return file.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return file.as_posix()
    return Path(os.path.normpath(path)).as_posix()


class _Names:
    """Old name -> name to write, for one target release and style."""

    def __init__(self, target: str, django: bool) -> None:
        self.target = target
        self.django = django
        self.table = catalogue.table(target)
        self.to_new = catalogue.to_new(target)

    def new_key(self, name: str) -> str | None:
        """For keys that are never namespaced (conf.update, conf.X, Celery kwargs)."""
        if name in self.table:
            return None
        if name in self.to_new:
            return self.to_new[name]
        return self._unmapped_3x(name)

    def module_name(self, name: str) -> str | None:
        """For a config module's top-level names (Django: the CELERY_ namespace form)."""
        if self.django:
            if name.startswith("CELERY_") and name[7:].lower() in self.table and name == name.upper():
                return None  # already the namespaced form
            new = self.new_key(name) or (name if name in self.table else None)
            return f"CELERY_{new.upper()}" if new else None
        return self.new_key(name)

    def _unmapped_3x(self, name: str) -> str | None:
        """3.1 names Celery's own map forgot whose meaning is unchanged (CELERY_ENABLE_UTC)."""
        if name.startswith("CELERY_") and name in catalogue.known_old_names() and name[7:].lower() in self.table:
            return name[7:].lower()
        return None

    def removed(self, name: str) -> bool:
        return name in catalogue.known_old_names() and name not in self.to_new and self._unmapped_3x(name) is None


def _is_conf(node: cst.BaseExpression) -> bool:
    return (isinstance(node, cst.Attribute) and node.attr.value == "conf") or (
        isinstance(node, cst.Name) and node.value == "conf")


def _string_value(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _restring(node: cst.SimpleString, new: str) -> cst.SimpleString:
    quote_start = len(node.prefix)
    quote = node.value[quote_start]
    if node.value[quote_start:quote_start + 3] in ('"""', "'''"):
        quote = node.value[quote_start:quote_start + 3]
    return node.with_changes(value=f"{node.prefix}{quote}{new}{quote}")


class _Collector(cst.CSTVisitor):
    """Module-level names assigned in the config (also inside module-level if/try blocks)."""

    METADATA_DEPENDENCIES = (cst.metadata.ScopeProvider,)

    def __init__(self) -> None:
        self.assigned: set[str] = set()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Name):
            scope = self.get_metadata(cst.metadata.ScopeProvider, node.target, None)
            if isinstance(scope, cst.metadata.GlobalScope):
                self.assigned.add(node.target.value)


class _Renamer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (cst.metadata.PositionProvider, cst.metadata.ScopeProvider)

    def __init__(self, names: _Names, module_renames: dict[str, str], migration: Migration) -> None:
        self.names = names
        self.module_renames = module_renames
        self.migration = migration
        self._not_references: set[int] = set()  # attribute names and keyword names are not globals

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._not_references.add(id(node.attr))

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self._not_references.add(id(node.keyword))

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(cst.metadata.PositionProvider, node).start.line

    def _record(self, node: cst.CSTNode, old: str, new: str) -> None:
        self.migration.renamed.append((self._line(node), old, new))

    # module-level names: targets and every read of those globals
    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        new = self.module_renames.get(original.value)
        if new is None or id(original) in self._not_references:
            return updated
        scope = self.get_metadata(cst.metadata.ScopeProvider, original, None)
        if scope is None:
            return updated  # a keyword name or attribute: handled by the specific visitors
        if not isinstance(scope, cst.metadata.GlobalScope):
            assignments = scope.assignments[original.value] if original.value in scope else ()
            if any(a.scope is scope for a in assignments):
                return updated  # a local of the same name shadows the setting
        self._record(original, original.value, new)
        return updated.with_changes(value=new)

    # conf.update(KEY=...), Celery(KEY=...), config_from_object({'KEY': ...}), conf.update({'KEY': ...})
    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        func = original.func
        is_update = isinstance(func, cst.Attribute) and func.attr.value == "update" and _is_conf(func.value)
        is_cfo = (isinstance(func, cst.Attribute) and func.attr.value == "config_from_object") or (
            isinstance(func, cst.Name) and func.value == "config_from_object")
        is_celery = (isinstance(func, cst.Name) and func.value == "Celery") or (
            isinstance(func, cst.Attribute) and func.attr.value == "Celery")
        if not (is_update or is_cfo or is_celery):
            return updated
        args = []
        for orig_arg, arg in zip(original.args, updated.args, strict=True):
            keyword = arg.keyword
            if keyword is not None and (is_update or is_celery):
                new = self.names.new_key(keyword.value)
                if new:
                    self._record(orig_arg, keyword.value, new)
                    arg = arg.with_changes(keyword=keyword.with_changes(value=new))
                elif self.names.removed(keyword.value):
                    self._unconvertible(orig_arg, keyword.value)
            elif arg.keyword is None and (is_update or is_cfo) and isinstance(arg.value, cst.Dict):
                arg = arg.with_changes(value=self._dict(arg.value, orig_arg.value))
            args.append(arg)
        return updated.with_changes(args=args)

    def _dict(self, node: cst.Dict, original: cst.BaseExpression) -> cst.Dict:
        elements = []
        originals = original.elements if isinstance(original, cst.Dict) else node.elements
        for element, orig in zip(node.elements, originals, strict=True):
            if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
                key = _string_value(element.key)
                new = self.names.new_key(key) if key else None
                if key and new:
                    self._record(orig, key, new)
                    element = element.with_changes(key=_restring(element.key, new))
                elif key and self.names.removed(key):
                    self._unconvertible(orig, key)
            elements.append(element)
        return node.with_changes(elements=elements)

    # conf.KEY and conf['KEY']
    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        if _is_conf(original.value):
            new = self.names.new_key(original.attr.value)
            if new:
                self._record(original, original.attr.value, new)
                return updated.with_changes(attr=updated.attr.with_changes(value=new))
        return updated

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        if not _is_conf(original.value) or len(updated.slice) != 1:
            return updated
        element = updated.slice[0]
        index = element.slice
        if isinstance(index, cst.Index) and isinstance(index.value, cst.SimpleString):
            key = _string_value(index.value)
            new = self.names.new_key(key) if key else None
            if key and new:
                self._record(original, key, new)
                new_index = index.with_changes(value=_restring(index.value, new))
                return updated.with_changes(slice=[element.with_changes(slice=new_index)])
        return updated

    def _unconvertible(self, node: cst.CSTNode, name: str) -> None:
        last = catalogue.last_release_with(name)
        self.migration.unconvertible.append(
            (self._line(node), name, f"removed after Celery {last}; no {self.names.target} equivalent"))


def migrate_source(source: str, path: str = "<config>", to_version: str | None = None,
                   django: bool = False) -> Migration:
    target = catalogue.resolve(to_version)
    if not catalogue.new_style(target):
        raise SettingsError(f"--to {target}: migrate converts to the 4.0+ names; {target} uses the old ones")
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise SettingsError(f"{path}:{exc.raw_line}: syntax error (is this a Python 2 file? "
                            "convert it with 2to3 first)") from None
    wrapper = cst.metadata.MetadataWrapper(module)
    collector = _Collector()
    wrapper.visit(collector)
    names = _Names(target, django)
    migration = Migration(path=path, original=source, migrated=source)
    module_renames: dict[str, str] = {}
    for name in sorted(collector.assigned):
        new = names.module_name(name)
        if new is None:
            continue
        if new in collector.assigned:
            migration.notes.append(f"{name} and {new} are both set: Celery uses {new}; delete {name} by hand "
                                   "(not renamed, to keep the value Celery uses now)")
            continue
        module_renames[name] = new
    renamed = wrapper.visit(_Renamer(names, module_renames, migration))
    migration.migrated = renamed.code
    # removed module-level settings: report, never pass through silently
    lines = source.splitlines()
    for name in sorted(collector.assigned):
        if names.removed(name) and name not in module_renames:
            line = next((i for i, text in enumerate(lines, 1) if text.lstrip().startswith(name)), 0)
            last = catalogue.last_release_with(name)
            migration.unconvertible.append((line, name, f"removed after Celery {last}; no {target} equivalent"))
    for line, old, new in migration.renamed:
        if old.startswith("CELERY_") and old in catalogue.known_old_names() and old not in catalogue.any_to_new():
            migration.notes.append(f"line {line}: {old} -> {new}: `celery upgrade settings` leaves it, and Celery "
                                   "4+ ignores the old spelling")
    if catalogue.releases().index(target) >= catalogue.releases().index(catalogue.resolve("5.0")):
        for number, text in enumerate(migration.migrated.splitlines(), 1):
            if re.match(r"\s*(CELERY_)?(result_backend|RESULT_BACKEND)\s*=\s*['\"]amqp(://[^'\"]*)?['\"]", text):
                migration.unconvertible.append((number, "result_backend = 'amqp'", "the amqp result backend was "
                                                "removed in Celery 5.0: use 'rpc://' (not changed automatically)"))
    migration.renamed.sort()
    migration.unconvertible.sort()
    return migration


def migrate_file(path: str, to_version: str | None = None, django: bool = False) -> Migration:
    file = Path(path)
    try:
        source = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from None
    migration = migrate_source(source, path, to_version, django)
    if django:
        migration.notes.extend(_namespace_advice(file))
    return migration


def _namespace_advice(settings_file: Path) -> list[str]:
    from celery_doctor.settings import static_reader

    for candidate in (settings_file.parent / "celery.py", settings_file.parent.parent / "celery.py"):
        if candidate.is_file():
            try:
                facts = static_reader.read([str(candidate)])
            except SettingsError:
                return []
            if facts.namespace != "CELERY":
                return [f"{candidate} loads the settings without namespace='CELERY': the CELERY_ names are "
                        "ignored until it says app.config_from_object('django.conf:settings', namespace='CELERY')"]
            return []
    return ["make sure your celery.py loads the settings with "
            "app.config_from_object('django.conf:settings', namespace='CELERY')"]


def write(migration: Migration) -> str | None:
    """Write the migrated file; the first original is kept as FILE.orig and never overwritten."""
    if not migration.changed:
        return None
    path = Path(migration.path)
    backup = path.with_name(path.name + ".orig")
    if not backup.exists():
        backup.write_text(migration.original, encoding="utf-8")
    path.write_text(migration.migrated, encoding="utf-8")
    return str(backup)
