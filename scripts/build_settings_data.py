#!/usr/bin/env python3
"""Regenerate src/celery_doctor/data/settings.json from the released Celery packages.

One command:  python scripts/build_settings_data.py  [--cache DIR] [--jobs N]

For every final Celery release from 3.1.0 to the newest, ``pip download --no-deps`` fetches the
wheel (or sdist) and ``celery/app/defaults.py`` is read with ``ast`` -- never imported: 3.1 does
not import on a modern Python, and importing would only ever show the installed release.

What is evaluated from the AST: module-level constant assignments, the ``NAMESPACES`` tree of
``Option(...)`` / ``Namespace(...)`` / dict literals, ``old_ns()`` and the ``**_BROKER_OLD``
style keyword merges. Old names follow Celery's own ``_to_compat`` rule (the option's ``old``
templates, else the upper-cased full name). Defaults that are not literals (``timedelta(days=1)``)
are kept as source text under ``expr``.

The output groups consecutive releases whose settings are identical and stores each group as a
delta against the previous one, so the shipped file stays small.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "celery_doctor" / "data" / "settings.json"
DEFAULT_CACHE = Path.home() / ".cache" / "celery-doctor-releases"
OLDEST = Version("3.1.0")


class Opaque:
    """A value the evaluator will not compute; keeps its source text."""

    def __init__(self, text: str) -> None:
        self.text = text


class Opt:
    def __init__(self, default: Any = None, **kwargs: Any) -> None:
        self.default = default
        kind = kwargs.pop("type", None) or "string"
        self.type = kind.text if isinstance(kind, Opaque) else kind  # 5.7: type=int (a name)
        old = kwargs.pop("old", None)
        self.old: list[str] = sorted(old) if isinstance(old, (set, list, tuple)) else []
        self.extra = {k: v for k, v in kwargs.items() if k in ("deprecate_by", "remove_by", "alt")}


def _namespace(old: Any = None, **options: Any) -> dict[str, Any]:
    if isinstance(old, (set, list, tuple)):
        for key, opt in options.items():
            if isinstance(opt, Opt) and not opt.old:
                opt.old = sorted(o.format(key) for o in old)
    return options


class Evaluator:
    """Just enough of Python to evaluate defaults.py's tables."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.env: dict[str, Any] = {}

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    def run(self) -> dict[str, Any]:
        tree = ast.parse(self.source)
        namespaces: Any = None
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                value = self.eval(stmt.value)
                if name not in self.env:  # first (unconditional) value wins: DEFAULT_POOL
                    self.env[name] = value
                if name == "NAMESPACES":
                    namespaces = value
        if not isinstance(namespaces, dict):
            raise ValueError("no NAMESPACES table found")
        return namespaces

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.eval(e) for e in node.elts]
            if isinstance(node, ast.Set):
                return set(items) if all(isinstance(i, str) for i in items) else Opaque(self.text(node))
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    merged = self.eval(v)
                    if isinstance(merged, dict):
                        out.update(merged)
                    continue
                out[self.eval(k)] = self.eval(v)
            return out
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return self.env[node.id]
            return {"None": None, "True": True, "False": False}.get(node.id, Opaque(node.id))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.eval(node.operand)
            return -inner if isinstance(inner, (int, float)) else Opaque(self.text(node))
        if isinstance(node, ast.Call):
            return self.call(node)
        return Opaque(self.text(node))

    def call(self, node: ast.Call) -> Any:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else None
        if isinstance(func, ast.Attribute) and func.attr == "strip" and not node.args:
            inner = self.eval(func.value)
            return inner.strip() if isinstance(inner, str) else Opaque(self.text(node))
        if name not in ("Option", "Namespace", "old_ns", "dict"):
            return Opaque(self.text(node))
        args = [self.eval(a) for a in node.args]
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            value = self.eval(kw.value)
            if kw.arg is None:
                if isinstance(value, dict):
                    kwargs.update(value)
            else:
                kwargs[kw.arg] = value
        if name == "Option":
            return Opt(*args[:1], **kwargs)
        if name == "Namespace":
            old = kwargs.pop("__old__", None)
            return _namespace(old, **kwargs)
        if name == "old_ns":
            return {f"{args[0]}_{{0}}"}
        if args and not isinstance(args[0], dict):
            return Opaque(self.text(node))
        return dict(*args, **kwargs)


def _json_default(value: Any) -> tuple[Any, str | None]:
    """(JSON value, source text when the default is not a plain literal)."""
    if isinstance(value, Opaque):
        return None, value.text
    if isinstance(value, set):
        return sorted(value), None
    if isinstance(value, tuple):
        return [_json_default(v)[0] for v in value], None
    if isinstance(value, list):
        parts = [_json_default(v) for v in value]
        if any(p[1] for p in parts):
            return None, repr(value)
        return [p[0] for p in parts], None
    if isinstance(value, dict):
        parts2 = {str(k): _json_default(v) for k, v in value.items()}
        if any(p[1] for p in parts2.values()):
            return None, repr(value)
        return {k: p[0] for k, p in parts2.items()}, None
    return value, None


def settings_of(source: str, new_style: bool) -> dict[str, dict[str, Any]]:
    """Flatten NAMESPACES the way the release itself does, with old names for 4.0+."""
    table = Evaluator(source).run()
    out: dict[str, dict[str, Any]] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", table)]
    while stack:
        prefix, space = stack.pop(0)
        for key, opt in space.items():
            if isinstance(opt, dict):
                stack.append((prefix + key + "_", opt))
                continue
            if not isinstance(opt, Opt):
                continue
            name = prefix + key
            default, expr = _json_default(opt.default)
            entry: dict[str, Any] = {"default": default, "type": opt.type}
            if expr is not None:
                entry["expr"] = expr
            if new_style:
                entry["old"] = [o.format(key).upper() for o in opt.old] or [name.upper()]
            entry.update({k: _json_default(v)[0] if not isinstance(v, Opaque) else v.text
                          for k, v in opt.extra.items()})
            out[name] = entry
    return dict(sorted(out.items()))


# -- downloads -------------------------------------------------------------------------------

def releases() -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "celery"],
                          capture_output=True, text=True, timeout=120)
    match = re.search(r"Available versions: (.*)", proc.stdout)
    if not match:
        raise SystemExit(f"pip index versions celery failed: {proc.stderr.strip()[-300:]}")
    found = []
    for text in match.group(1).split(","):
        version = Version(text.strip())
        if version >= OLDEST and not version.is_prerelease:
            found.append(version)
    return [str(v) for v in sorted(found)]


def archive_for(version: str, cache: Path) -> Path | None:
    for path in sorted(cache.glob(f"celery-{version}[-.]*")):
        if path.suffix in (".whl", ".gz", ".zip"):
            return path
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
                           "--python-version", "3.9", "--only-binary", ":all:", f"celery=={version}",
                           "-d", str(cache)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:  # no wheel: the sdist, unbuilt
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", f"celery=={version}", "-d", str(cache)],
                       capture_output=True, text=True, timeout=600)
    for path in sorted(cache.glob(f"celery-{version}[-.]*")):
        if path.suffix in (".whl", ".gz", ".zip"):
            return path
    return None


def defaults_source(archive: Path) -> str:
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            name = next(n for n in zf.namelist() if n.endswith("celery/app/defaults.py"))
            return zf.read(name).decode("utf-8")
    with tarfile.open(archive) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("celery/app/defaults.py"))
        handle = tf.extractfile(member)
        assert handle is not None
        return io.TextIOWrapper(handle, encoding="utf-8").read()


def build(cache: Path, jobs: int) -> dict[str, Any]:
    versions = releases()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        archives = dict(zip(versions, pool.map(lambda v: archive_for(v, cache), versions), strict=True))
    per_release: list[tuple[str, dict[str, Any]]] = []
    skipped = []
    for version in versions:
        archive = archives[version]
        if archive is None:
            skipped.append(version)
            continue
        per_release.append((version, settings_of(defaults_source(archive), Version(version).major >= 4)))
    groups: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    for version, table in per_release:
        if groups and table == previous:
            groups[-1]["releases"].append(version)
            continue
        changed = {k: v for k, v in table.items() if previous.get(k) != v}
        removed = sorted(set(previous) - set(table))
        groups.append({"releases": [version], "set": changed, "unset": removed})
        previous = table
    return {
        "about": "Celery settings per release, read from celery/app/defaults.py of each released "
                 "package by scripts/build_settings_data.py. Apply the groups in order: each one's "
                 "'set' adds or replaces settings, 'unset' drops them. 3.x names are the old upper-case "
                 "ones; from 4.0 each setting lists its 'old' names (Celery's _TO_NEW_KEY).",
        "skipped": skipped,
        "groups": groups,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.cache, args.jobs)
    args.out.write_text(json.dumps(data, separators=(",", ":"), sort_keys=False) + "\n", encoding="utf-8")
    count = sum(len(g["releases"]) for g in data["groups"])
    print(f"{args.out}: {count} releases in {len(data['groups'])} groups, "
          f"{args.out.stat().st_size // 1024} KiB; skipped: {data['skipped'] or 'none'}")


if __name__ == "__main__":
    main()
