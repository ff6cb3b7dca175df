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
from celery_doctor.userfiles import MAX_TEXT_BYTES, decode_text, read_text

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
        data = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1)
        if len(data) > MAX_TEXT_BYTES:
            raise PinsError(f"<stdin>: more than {MAX_TEXT_BYTES // (1024 * 1024)} MB: not a requirement file")
        file = Path("<stdin>")
        text = decode_text(data, file, PinsError)
    else:
        file = Path(path)
        text = read_text(file, PinsError, "requirement or lock file")
    fmt = _sniff(file.name, text)
    reader = {"poetry.lock": read_poetry_lock, "uv.lock": read_uv_lock, "Pipfile.lock": read_pipfile_lock,
              "pyproject.toml": read_pyproject}.get(fmt)
    try:
        env = reader(file, text) if reader else read_requirements(file, text)
    except RecursionError:
        raise PinsError(f"{path}: nested too deeply to read as a {fmt}") from None
    env.origin = path
    return env
