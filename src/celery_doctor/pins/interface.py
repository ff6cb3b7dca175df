"""The pins stage's contract: an environment or requirement set in, a list of pins out.

Every reader (one module per input format under ``pins/readers/``) returns an
:class:`Environment`; the checks and the ladder only ever see that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from celery_doctor.model import DoctorError

# The packages whose releases and declared requirements the shipped data covers.
TRACKED = ("celery", "kombu", "amqp", "billiard", "vine", "redis", "librabbitmq")


class PinsError(DoctorError):
    """Unreadable or meaningless input for ``pins`` (a bad lock file, a version that never existed)."""


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Pin:
    """One package as the input states it."""

    name: str  # canonical
    version: str | None = None  # the exact version when pinned or installed
    specifier: str = ""  # the range when not pinned exactly (PEP 440 text)
    extras: tuple[str, ...] = ()
    line: int = 0  # 1-based line in the input, 0 when not line-based
    text: str = ""  # the input's own words for it

    @property
    def pinned(self) -> bool:
        return self.version is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "specifier": self.specifier,
                "extras": list(self.extras), "line": self.line, "text": self.text}


@dataclass
class Environment:
    """What one input says is (or will be) installed."""

    origin: str  # file path, or the interpreter's path
    format: str  # requirements.txt, pyproject.toml, poetry.lock, uv.lock, Pipfile.lock, pip-freeze, interpreter
    pins: dict[str, Pin] = field(default_factory=dict)  # canonical name -> pin (all packages)
    python: str | None = None  # "3.11.7" when known exactly (an interpreter)
    python_spec: str | None = None  # a declared range ("^3.8", ">=3.9") when only that is known
    installed: bool = False  # True when read from a live interpreter
    probe: dict[str, Any] = field(default_factory=dict)  # the probe's raw answer (interpreter only)
    notes: list[str] = field(default_factory=list)

    def tracked(self) -> dict[str, Pin]:
        return {n: p for n, p in self.pins.items() if n in TRACKED}

    def add(self, pin: Pin) -> None:
        known = self.pins.get(pin.name)
        if known is None:
            self.pins[pin.name] = pin
            return
        # the same name twice (markers, several groups): keep an exact pin, join the ranges
        if pin.version and not known.version:
            known.version = pin.version
        if pin.specifier:
            known.specifier = ",".join(s for s in (known.specifier, pin.specifier) if s)
        known.extras = tuple(sorted(set(known.extras) | set(pin.extras)))
