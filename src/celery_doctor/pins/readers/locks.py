"""Lock files: poetry.lock, uv.lock (TOML) and Pipfile.lock (JSON). Every entry is an exact pin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tomllib

from celery_doctor.pins.interface import Environment, Pin, PinsError, canonical
from celery_doctor.pins.readers.pyproject import poetry_range


def _toml(path: Path, text: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
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
    for p in packages:
        if "name" not in p or "version" not in p:
            raise PinsError(f"{path}: not a valid {what}: a [[package]] entry lacks name or version")
    return packages


def read_poetry_lock(path: Path, text: str) -> Environment:
    doc = _toml(path, text, "poetry.lock")
    env = Environment(origin=str(path), format="poetry.lock")
    for p in _packages(path, doc, "poetry.lock"):
        name = canonical(p["name"])
        env.add(Pin(name=name, version=str(p["version"]), line=_line_of(text, p["name"]),
                    text=f"{p['name']} {p['version']}"))
    python = doc.get("metadata", {}).get("python-versions")
    if python and python != "*":
        env.python_spec = poetry_range(python)
    # extras asked of celery/kombu live in the consumer's dependency tables
    for p in doc["package"]:
        for dep, spec in (p.get("dependencies") or {}).items():
            if isinstance(spec, dict) and spec.get("extras") and canonical(dep) in env.pins:
                pin = env.pins[canonical(dep)]
                pin.extras = tuple(sorted(set(pin.extras) | set(spec["extras"])))
    return env


def read_uv_lock(path: Path, text: str) -> Environment:
    doc = _toml(path, text, "uv.lock")
    env = Environment(origin=str(path), format="uv.lock")
    for p in _packages(path, doc, "uv.lock"):
        source = p.get("source") or {}
        if "editable" in source or "virtual" in source:
            continue  # the project itself
        env.add(Pin(name=canonical(p["name"]), version=str(p["version"]), line=_line_of(text, p["name"]),
                    text=f"{p['name']} {p['version']}"))
    for p in doc["package"]:
        for dep in p.get("dependencies") or []:
            if isinstance(dep, dict) and dep.get("extra") and canonical(dep.get("name", "")) in env.pins:
                pin = env.pins[canonical(dep["name"])]
                pin.extras = tuple(sorted(set(pin.extras) | set(dep["extra"])))
    if doc.get("requires-python"):
        env.python_spec = doc["requires-python"]
    return env


def read_pipfile_lock(path: Path, text: str) -> Environment:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PinsError(f"{path}: not a valid Pipfile.lock (JSON error: {exc})") from exc
    if not isinstance(doc, dict) or "default" not in doc:
        raise PinsError(f"{path}: not a valid Pipfile.lock: no \"default\" section")
    env = Environment(origin=str(path), format="Pipfile.lock")
    for section in ("default", "develop"):
        for name, entry in (doc.get(section) or {}).items():
            if not isinstance(entry, dict):
                raise PinsError(f"{path}: not a valid Pipfile.lock: entry {name!r} is not a table")
            version = str(entry.get("version", "")).lstrip("=") or None
            env.add(Pin(name=canonical(name), version=version, extras=tuple(entry.get("extras", ())),
                        text=f"{name} {entry.get('version', '')}"))
    python = (doc.get("_meta", {}).get("requires") or {})
    if python.get("python_full_version"):
        env.python = python["python_full_version"]
    elif python.get("python_version"):
        env.python_spec = f"=={python['python_version']}.*"
    return env
