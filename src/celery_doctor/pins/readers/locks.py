"""Lock files: poetry.lock, uv.lock (TOML) and Pipfile.lock (JSON). Every entry is an exact pin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomllib

from celery_doctor.pins.interface import Environment, Pin, PinsError, canonical
from celery_doctor.pins.readers import shape
from celery_doctor.pins.readers.pyproject import poetry_range


def _toml(path: Path, text: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than int() takes
        raise PinsError(f"{path}: not a valid {what} (TOML error: {exc})") from exc


def _line_of(text: str, name: str) -> int:
    needle = f'name = "{name}"'
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() == needle:
            return number
    return 0


def _packages(path: Path, doc: dict[str, Any], what: str) -> list[dict[str, Any]]:
    packages = doc.get("package")
    if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
        raise PinsError(f"{path}: not a valid {what}: no [[package]] entries")
    for index, p in enumerate(packages):
        if "name" not in p or "version" not in p:
            raise PinsError(f"{path}: not a valid {what}: a [[package]] entry lacks name or version")
        shape.string(p["name"], path, f"package[{index}].name")
        shape.version(p["version"], path, f"package[{index}].version ({p['name']})")
    return packages


def read_poetry_lock(path: Path, text: str) -> Environment:
    doc = _toml(path, text, "poetry.lock")
    env = Environment(origin=str(path), format="poetry.lock")
    for p in _packages(path, doc, "poetry.lock"):
        name = canonical(p["name"])
        env.add(Pin(name=name, version=str(p["version"]), line=_line_of(text, p["name"]),
                    text=f"{p['name']} {p['version']}"))
    python = shape.table(doc.get("metadata"), path, "[metadata]").get("python-versions")
    if python and python != "*":
        try:
            env.python_spec = poetry_range(shape.string(python, path, "metadata.python-versions"))
        except ValueError as exc:
            raise PinsError(f"{path}: metadata.python-versions: {exc}") from None
    # extras asked of celery/kombu live in the consumer's dependency tables
    for p in doc["package"]:
        deps = shape.table(p.get("dependencies"), path, f"[package.dependencies] of {p['name']}")
        for dep, spec in deps.items():
            if isinstance(spec, dict) and spec.get("extras") and canonical(dep) in env.pins:
                pin = env.pins[canonical(dep)]
                extras = shape.strings(spec["extras"], path, f"{p['name']}.dependencies.{dep}.extras")
                pin.extras = tuple(sorted(set(pin.extras) | set(extras)))
    return env


def read_uv_lock(path: Path, text: str) -> Environment:
    doc = _toml(path, text, "uv.lock")
    env = Environment(origin=str(path), format="uv.lock")
    for p in _packages(path, doc, "uv.lock"):
        source = shape.table(p.get("source"), path, f"package.source of {p['name']}")
        if "editable" in source or "virtual" in source:
            continue  # the project itself
        env.add(Pin(name=canonical(p["name"]), version=str(p["version"]), line=_line_of(text, p["name"]),
                    text=f"{p['name']} {p['version']}"))
    for p in doc["package"]:
        for dep in shape.array(p.get("dependencies"), path, f"package.dependencies of {p['name']}"):
            if (isinstance(dep, dict) and dep.get("extra") and isinstance(dep.get("name"), str)
                    and canonical(dep["name"]) in env.pins):
                pin = env.pins[canonical(dep["name"])]
                extras = shape.strings(dep["extra"], path, f"{p['name']}.dependencies.{dep['name']}.extra")
                pin.extras = tuple(sorted(set(pin.extras) | set(extras)))
    if doc.get("requires-python"):
        env.python_spec = shape.string(doc["requires-python"], path, "requires-python")
    return env


def read_pipfile_lock(path: Path, text: str) -> Environment:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, deep nesting
        raise PinsError(f"{path}: not a valid Pipfile.lock (JSON error: {exc})") from exc
    if not isinstance(doc, dict) or "default" not in doc:
        raise PinsError(f"{path}: not a valid Pipfile.lock: no \"default\" section")
    env = Environment(origin=str(path), format="Pipfile.lock")
    for section in ("default", "develop"):
        for name, entry in shape.table(doc.get(section), path, f'"{section}"').items():
            if not isinstance(entry, dict):
                raise PinsError(f"{path}: not a valid Pipfile.lock: entry {name!r} is not a table")
            version = shape.version(entry.get("version", ""), path, f"{section}.{name}.version").lstrip("=") or None
            extras = shape.strings(entry.get("extras"), path, f"{section}.{name}.extras")
            env.add(Pin(name=canonical(name), version=version, extras=tuple(extras),
                        text=f"{name} {entry.get('version', '')}"))
    meta = shape.table(doc.get("_meta"), path, '"_meta"')
    python = shape.table(meta.get("requires"), path, "_meta.requires")
    if python.get("python_full_version"):
        env.python = shape.string(python["python_full_version"], path, "_meta.requires.python_full_version")
    elif python.get("python_version"):
        env.python_spec = f"=={shape.string(python['python_version'], path, '_meta.requires.python_version')}.*"
    return env
