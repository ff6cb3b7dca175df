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

from celery_doctor import userfiles
from celery_doctor.settings import catalogue, guard
from celery_doctor.settings.interface import ConfigFacts, SettingsError


@dataclass
class Migration:
    path: str
    original: str
    migrated: str
    renamed: list[tuple[int, str, str]] = field(default_factory=list)  # (line, old, new)
    unconvertible: list[tuple[int, str, str]] = field(default_factory=list)  # (line, name, why)
    notes: list[str] = field(default_factory=list)
    encoding: str = "utf-8"  # the file's own (a coding cookie, a BOM), used to write it back

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

    def __init__(self, classes: frozenset[str] = frozenset()) -> None:
        self.assigned: set[str] = set()
        self.classes = classes
        self.class_assigned: dict[str, set[str]] = {}  # config class -> names assigned in its body
        self.lines: dict[tuple[str | None, str], int] = {}

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Name):
            scope = self.get_metadata(cst.metadata.ScopeProvider, node.target, None)
            if isinstance(scope, cst.metadata.GlobalScope):
                self.assigned.add(node.target.value)
            elif isinstance(scope, cst.metadata.ClassScope) and isinstance(scope.node, cst.ClassDef) and \
                    scope.node.name.value in self.classes:
                self.class_assigned.setdefault(scope.node.name.value, set()).add(node.target.value)


class _Renamer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (cst.metadata.PositionProvider, cst.metadata.ScopeProvider)

    def __init__(self, names: _Names, module_renames: dict[str, str], migration: Migration,
                 class_renames: dict[tuple[str, str], str] | None = None) -> None:
        self.names = names
        self.module_renames = module_renames
        self.class_renames = class_renames or {}
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
        if self.class_renames and id(original) not in self._not_references:
            scope = self.get_metadata(cst.metadata.ScopeProvider, original, None)
            if isinstance(scope, cst.metadata.ClassScope) and isinstance(scope.node, cst.ClassDef):
                renamed = self.class_renames.get((scope.node.name.value, original.value))
                if renamed is not None:
                    self._record(original, original.value, renamed)
                    return updated.with_changes(value=renamed)
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

    # f"{BROKER_URL=}" prints the expression's own text: renaming the name would change that text,
    # so the debug text is kept as written and the renamed value follows it (repr, as "=" does)
    def leave_FormattedStringExpression(
            self, original: cst.FormattedStringExpression,
            updated: cst.FormattedStringExpression) -> cst.BaseFormattedStringContent | cst.FlattenSentinel[
                cst.BaseFormattedStringContent]:
        if original.equal is None or original.deep_equals(updated):
            return updated
        code = cst.Module(body=[]).code_for_node(original)[1:-1]
        equal = code.index("=", len(cst.Module(body=[]).code_for_node(original.expression)))
        rest = code[equal + 1:]
        text = code[:equal + 1] + rest[:len(rest) - len(rest.lstrip())]
        conversion = updated.conversion if updated.conversion or updated.format_spec else "r"
        return cst.FlattenSentinel([
            cst.FormattedStringText(value=text.replace("{", "{{").replace("}", "}}")),
            updated.with_changes(equal=None, conversion=conversion,
                                 whitespace_before_expression=cst.SimpleWhitespace(""),
                                 whitespace_after_expression=cst.SimpleWhitespace(""))])

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
        if isinstance(original.value, cst.Name):  # TheConfigClass.OLD_NAME read elsewhere in the file
            renamed = self.class_renames.get((original.value.value, original.attr.value))
            if renamed is not None:
                self._record(original, original.attr.value, renamed)
                return updated.with_changes(attr=updated.attr.with_changes(value=renamed))
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
                   django: bool = False, classes: frozenset[str] = frozenset()) -> Migration:
    """Rename in ``source``; ``classes`` are the config classes whose bodies hold settings."""
    target = catalogue.resolve(to_version)
    if not catalogue.new_style(target):
        raise SettingsError(f"--to {target}: migrate converts to the 4.0+ names; {target} uses the old ones")
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise SettingsError(f"{path}:{exc.raw_line}: syntax error (is this a Python 2 file? "
                            "convert it with 2to3 first)") from None
    except cst.CSTValidationError as exc:  # valid tokens, invalid Python: 'a' b'b'
        raise SettingsError(f"{path}: not valid Python: {exc}") from None
    except RecursionError:
        raise SettingsError(f"{path}: nested too deeply to rewrite safely") from None
    wrapper = cst.metadata.MetadataWrapper(module)
    collector = _Collector(classes)
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
    class_renames: dict[tuple[str, str], str] = {}
    for cls, assigned in sorted(collector.class_assigned.items()):
        for name in sorted(assigned):
            new = names.new_key(name)
            if new is None:
                if names.removed(name):
                    line = next((i for i, text in enumerate(source.splitlines(), 1)
                                 if text.lstrip().startswith(name)), 0)
                    migration.unconvertible.append(
                        (line, name, f"removed after Celery {catalogue.last_release_with(name)}; "
                                     f"no {target} equivalent"))
                continue
            if new in assigned:
                migration.notes.append(f"{cls}: {name} and {new} are both set: Celery uses {new}; delete {name} "
                                       "by hand (not renamed, to keep the value Celery uses now)")
                continue
            class_renames[(cls, name)] = new
    renamed = wrapper.visit(_Renamer(names, module_renames, migration, class_renames))
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
    """Migrate one file the way the audit reads it: the classes Celery is configured from are
    renamed too, and a Django settings file gets the names Django and Celery will both keep."""
    from celery_doctor.settings import static_reader

    raw = userfiles.read_bytes(Path(path), SettingsError, "config file")
    encoding = userfiles.source_encoding(raw, path, SettingsError, python=True)
    source = userfiles.decode_text(raw, path, SettingsError, python=True)
    guard.check_for_libcst(source, path)  # libcst recurses, or crashes, where CPython does not
    facts = static_reader.read([path])
    classes = frozenset(facts.class_mro(facts.config_object) if facts.config_object else facts.classes)
    switched = None
    if facts.django and not django:
        plain = migrate_source(source, path, to_version, False, classes).changed
        namespaced = migrate_source(source, path, to_version, True, classes).changed
        no_namespace = facts.namespace_known and facts.loader is not None and facts.namespace != "CELERY"
        if plain or (namespaced and not no_namespace):
            switched = _django_mode(path, facts)
            django = True
    migration = migrate_source(source, path, to_version, django, classes)
    migration.encoding = encoding  # written back as read: latin-1 stays latin-1, a BOM stays
    if switched:
        migration.notes.append(switched)
    if django:
        migration.notes.extend(_namespace_advice(facts))
    return migration


def _django_mode(path: str, facts: ConfigFacts) -> str:
    """A Django settings file migrated without --django: the namespaced form when the app reads it
    with namespace='CELERY'; otherwise refuse, since lower-case names never reach Celery."""
    loader = facts.loader
    where = f"{loader.source}:{loader.line}" if loader else None
    if facts.namespace_known and facts.namespace == "CELERY":
        return (f"{path} is Django settings loaded with namespace='CELERY' ({where}): writing the CELERY_ names "
                "(Django keeps only upper-case names, so the lower-case ones would be lost)")
    if facts.namespace_known and loader is not None:
        raise SettingsError(
            f"{path} is Django settings and {where} loads it without namespace='CELERY': lower-case names would "
            "be dropped by Django and CELERY_ names ignored by Celery; add namespace='CELERY' there, then run "
            f"`celery-doctor config migrate --django {path}`")
    raise SettingsError(
        f"{path} is Django settings and no celery.py that loads it was found under the project: the names to "
        "write depend on its namespace=; with namespace='CELERY' run `celery-doctor config migrate --django "
        f"{path}`, or give the project's celery.py a look first (nothing written)")


def _namespace_advice(facts: ConfigFacts) -> list[str]:
    loader = facts.loader
    if loader is not None and facts.namespace_known and facts.namespace != "CELERY":
        return [f"{loader.source}:{loader.line} loads the settings without namespace='CELERY': the CELERY_ names "
                "are ignored until it says app.config_from_object('django.conf:settings', namespace='CELERY')"]
    if loader is None:
        return ["make sure your celery.py loads the settings with "
                "app.config_from_object('django.conf:settings', namespace='CELERY')"]
    return []


def write(migration: Migration) -> str | None:
    """Write the migrated file; the first original is kept as FILE.orig and never overwritten."""
    if not migration.changed:
        return None
    path = Path(migration.path)
    backup = path.with_name(path.name + ".orig")
    if not backup.exists():
        backup.write_text(migration.original, encoding=migration.encoding)
    path.write_text(migration.migrated, encoding=migration.encoding)
    return str(backup)
