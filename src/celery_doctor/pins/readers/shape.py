"""Checking the shape of what a TOML or JSON lock file holds before using it.

A hand-edited or truncated ``pyproject.toml`` can hold a string where a table belongs or a
number where a name belongs; each check names the file, the key and what was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery_doctor.pins.interface import PinsError


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def table(value: Any, path: Path | str, key: str) -> dict[str, Any]:
    """``value`` as a table (missing: an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PinsError(f"{path}: {key} must be a table, not {_kind(value)}")
    return value


def array(value: Any, path: Path | str, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PinsError(f"{path}: {key} must be a list, not {_kind(value)}")
    return value


def string(value: Any, path: Path | str, key: str) -> str:
    if not isinstance(value, str):
        raise PinsError(f"{path}: {key} must be a string, not {_kind(value)}")
    return value


def strings(value: Any, path: Path | str, key: str) -> list[str]:
    """A list of strings (a single string is not accepted: it would be read letter by letter)."""
    items = array(value, path, key)
    for index, item in enumerate(items):
        string(item, path, f"{key}[{index}]")
    return items


def version(value: Any, path: Path | str, key: str) -> str:
    """A version: a string, or the number TOML makes of an unquoted ``1.0``."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PinsError(f"{path}: {key} must be a version string, not {_kind(value)}")
    text = str(value)
    if sum(c.isdigit() for c in text) > 100:  # no release number is that long; int() refuses 4300+ digits
        raise PinsError(f"{path}: {key}: {text[:20]}... is not a version number")
    return text
