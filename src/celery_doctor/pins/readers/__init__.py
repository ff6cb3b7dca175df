"""Readers: one module per input format, each returning an :class:`~celery_doctor.pins.interface.Environment`.

:func:`read_file` picks the reader from the file name, then from the content.
"""

from __future__ import annotations

from pathlib import Path

from celery_doctor.pins.interface import Environment, PinsError
from celery_doctor.pins.readers.interpreter import read_interpreter
from celery_doctor.pins.readers.locks import read_pipfile_lock, read_poetry_lock, read_uv_lock
from celery_doctor.pins.readers.pyproject import read_pyproject
from celery_doctor.pins.readers.requirements_txt import read_requirements

__all__ = ["read_file", "read_interpreter"]


def _sniff(name: str, text: str) -> str:
    lower = name.lower()
    for suffix, fmt in (("poetry.lock", "poetry.lock"), ("uv.lock", "uv.lock"),
                        ("pipfile.lock", "Pipfile.lock"), ("pyproject.toml", "pyproject.toml")):
        if lower.endswith(suffix):
            return fmt
    head = text.lstrip()[:4000]
    if head.startswith("{") and '"_meta"' in head:
        return "Pipfile.lock"
    if "[[package]]" in text:
        return "uv.lock" if "requires-python" in head.split("[[package]]")[0] else "poetry.lock"
    if "[project]" in head or "[tool.poetry" in head:
        return "pyproject.toml"
    return "requirements.txt"


def read_file(path: str) -> Environment:
    """Any supported requirement or lock file; ``-`` reads stdin (e.g. ``pip freeze | ...``)."""
    import sys

    if path == "-":
        text, file = sys.stdin.read(), Path("<stdin>")
    else:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise PinsError(f"{path}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PinsError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from exc
    fmt = _sniff(file.name, text)
    reader = {"poetry.lock": read_poetry_lock, "uv.lock": read_uv_lock, "Pipfile.lock": read_pipfile_lock,
              "pyproject.toml": read_pyproject}.get(fmt)
    env = reader(file, text) if reader else read_requirements(file, text)
    env.origin = path
    return env
