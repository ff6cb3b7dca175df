"""Setting names and defaults of every Celery release, from the generated data/settings.json.

The data comes from each release's own ``celery/app/defaults.py`` (scripts/build_settings_data.py);
nothing here imports Celery, so the answers are those of the release asked about, not of whatever
Celery happens to be installed.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from packaging.version import InvalidVersion, Version

from celery_doctor.settings.interface import SettingsError


@cache
def _data() -> dict[str, Any]:
    from importlib import resources  # here: ~6 ms to import, and `logs` needs the catalogue only late

    text = resources.files("celery_doctor.data").joinpath("settings.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def releases() -> tuple[str, ...]:
    return tuple(v for group in _data()["groups"] for v in group["releases"])


def newest() -> str:
    return releases()[-1]


def resolve(spec: str | None) -> str:
    """'5' -> newest 5.x, '4.1' -> newest 4.1.x, '3.1.26' -> 3.1.26.post2, None -> newest."""
    if not spec:
        return newest()
    spec = spec.strip().lstrip("vV")
    try:
        wanted = Version(spec)
    except InvalidVersion:
        raise SettingsError(f"--to/--from {spec!r}: not a Celery version") from None
    parts = spec.split(".")
    best = None
    for text in releases():
        version = Version(text)
        if version.release[: len(parts)] == wanted.release[: len(parts)] and (
                len(parts) < 3 or version.base_version == wanted.base_version):
            best = text
    if best is None:
        raise SettingsError(f"Celery {spec}: no such release in the data (known: {releases()[0]} to {newest()})")
    return best


@cache
def table(version: str) -> dict[str, dict[str, Any]]:
    """All settings of one release: name -> {default, type, [expr], [old], ...}."""
    current: dict[str, dict[str, Any]] = {}
    for group in _data()["groups"]:
        current = {k: v for k, v in current.items() if k not in group["unset"]}
        current.update(group["set"])
        if version in group["releases"]:
            return current
    raise SettingsError(f"Celery {version}: no such release in the data")


def new_style(version: str) -> bool:
    """4.0 renamed everything to lower case; 3.x releases know only the upper-case names."""
    return Version(version).major >= 4


@cache
def to_new(version: str) -> dict[str, str]:
    """Celery's ``_TO_NEW_KEY`` of a 4.0+ release: OLD_NAME -> new_name."""
    out: dict[str, str] = {}
    for name, entry in table(version).items():
        for old in entry.get("old", ()):
            out[old] = name
    return out


@cache
def any_to_new() -> dict[str, str]:
    """Old -> new over every 4.0+ release (newest wins): names removed later still map."""
    out: dict[str, str] = {}
    for version in releases():
        if new_style(version):
            out.update(to_new(version))
    return out


@cache
def known_old_names() -> frozenset[str]:
    """Every upper-case name any release declared (3.x tables and 4.0+ old names)."""
    names: set[str] = set(any_to_new())
    for version in releases():
        if not new_style(version):
            names.update(table(version))
    return frozenset(names)


def first_release_with(name: str) -> str | None:
    for version in releases():
        if name in table(version):
            return version
    return None


def last_release_with(name: str) -> str | None:
    last = None
    for version in releases():
        if name in table(version):
            last = version
    return last


def canonical(name: str, version: str) -> str | None:
    """The name ``version`` uses for ``name`` (old or new spelling), or None when it has none."""
    names = table(version)
    if name in names:
        return name
    if new_style(version):
        mapped = to_new(version).get(name) or any_to_new().get(name)
        if mapped and mapped in names:
            return mapped
        if name.lower() in names and name.isupper() is False:
            return name.lower()
        return None
    # a 3.x release: map a new name back through the newest table's old names
    for old, new in any_to_new().items():
        if new == name and old in names:
            return old
    return None


def default(name: str, version: str) -> tuple[Any, str | None] | None:
    """(default, expression text when not a literal) of ``name`` in ``version``; None: unknown."""
    key = canonical(name, version)
    if key is None:
        return None
    entry = table(version)[key]
    return entry.get("default"), entry.get("expr")
