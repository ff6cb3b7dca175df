"""Which call hands a config file to Celery: found in the project when the user gives only the file.

A config file means nothing alone: whether ``CELERY_BROKER_URL`` is read depends on the
``namespace=`` of the ``config_from_object`` call in the project's app module, a class is used only
when that call names it, and a Django settings fragment star-imported by ``settings.py`` loses
its lower-case names. This module finds that call by reading (never importing) the app modules
under the project's root, and resolves dotted names to files the way ``sys.path`` would.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SKIP_DIRS = {".git", "node_modules", "site-packages", ".venv", "venv", "env", ".tox", "__pycache__", "build",
             "dist", ".mypy_cache", ".pytest_cache"}
ROOT_MARKERS = ("manage.py", "setup.py", "setup.cfg", "pyproject.toml", "requirements.txt")
MAX_FILES = 3000  # a project tree bigger than this is searched only this far
MAX_DEPTH = 6


def project_root(path: Path) -> Path:
    """The directory that would be on sys.path: above the top package holding ``path``, or a
    directory a little higher that has a project marker (manage.py, pyproject.toml...)."""
    top = path.parent.resolve()
    while (top / "__init__.py").is_file() and top.parent != top:
        top = top.parent
    for candidate in (top, top.parent, top.parent.parent):
        if any((candidate / marker).is_file() for marker in ROOT_MARKERS):
            return candidate
    return top


def python_files(root: Path) -> list[Path]:
    """The project's .py files, sorted, at most MAX_FILES: virtualenvs, VCS and build folders are
    pruned before they are walked (a .venv inside the project holds tens of thousands of files)."""
    import os

    out: list[Path] = []
    for current, dirs, files in os.walk(root):
        depth = len(Path(current).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and depth < MAX_DEPTH)
        out.extend(Path(current) / f for f in sorted(files) if f.endswith(".py"))
        if len(out) >= MAX_FILES:
            break
    return sorted(out[:MAX_FILES])


def app_modules(root: Path) -> list[Path]:
    """Python files under ``root`` that create or configure a Celery app (by a literal search)."""
    found: list[Path] = []
    for candidate in python_files(root):
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(r"config_from_object\s*\(|\bCelery\s*\(", text):
            found.append(candidate)
    return found


def django_settings_files(root: Path) -> list[Path]:
    """Django settings modules under ``root`` (settings.py, settings/*.py with Django's own names)."""
    out = []
    for candidate in python_files(root):
        if candidate.name == "settings.py" or candidate.parent.name == "settings":
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if re.search(r"^(INSTALLED_APPS|MIDDLEWARE|ROOT_URLCONF|DATABASES)\s*=", text, re.M):
                out.append(candidate)
    return out[:50]


def _roots(app_file: Path, root: Path) -> list[Path]:
    """Where ``import x.y`` may start: the project root, then the app module's own ancestors."""
    out = [root]
    current = app_file.parent.resolve()
    while current != current.parent and (current == root or root in current.parents):
        if current not in out:
            out.append(current)
        current = current.parent
    return out


def resolve_module(dotted: str, roots: list[Path]) -> Path | None:
    if not re.fullmatch(r"[\w.]{1,255}", dotted):  # not a module name (a mangled or generated string)
        return None
    for base in roots:
        stem = base.joinpath(*dotted.split("."))
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            try:
                if candidate.is_file():
                    return candidate.resolve()
            except (OSError, ValueError):  # a name too long for the file system
                continue
    return None


def resolve_target(target: str, app_file: Path, root: Path) -> tuple[Path | None, str | None]:
    """'pkg.mod', 'pkg.mod:Class' or 'pkg.mod.Class' -> (file, class name or None)."""
    roots = _roots(app_file, root)
    if ":" in target:
        module, _, attr = target.partition(":")
        return resolve_module(module, roots), attr.split(".")[0] or None
    found = resolve_module(target, roots)
    if found is not None:
        return found, None
    module, _, attr = target.rpartition(".")
    if module:
        return resolve_module(module, roots), attr
    return None, None


def star_imports(settings_file: Path, root: Path, depth: int = 0) -> list[Path]:
    """The settings file and every module it pulls in with ``from x import *``, recursively."""
    out = [settings_file.resolve()]
    if depth > 5:
        return out
    try:
        tree = ast.parse(settings_file.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return out
    package = settings_file.parent  # for a package's __init__.py too: its own directory
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not any(alias.name == "*" for alias in node.names):
            continue
        if node.level:
            base = package
            for _ in range(node.level - 1):
                base = base.parent
            found = resolve_module(node.module, [base]) if node.module else (
                base / "__init__.py" if (base / "__init__.py").is_file() else None)
        else:
            found = resolve_module(node.module or "", [root, *_roots(settings_file, root)])
        if found is not None and found.resolve() not in out:
            out.extend(p for p in star_imports(found, root, depth + 1) if p not in out)
    return out
