"""The settings stage's contract: its error type and the shapes the readers hand to the rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery_doctor.model import DoctorError


class SettingsError(DoctorError):
    """Unreadable config input: a syntax error, a missing file or module, a bad interpreter."""


@dataclass(frozen=True)
class Dynamic:
    """A value the static reader will not guess (``os.environ[...]``, a call); says where from."""

    origin: str  # e.g. "os.environ.get('BROKER_URL', 'amqp://...')"
    env_var: str | None = None
    fallback: Any = None  # the literal default of an env lookup, when there is one


@dataclass
class Assignment:
    """One setting written in the user's code."""

    name: str  # as written (BROKER_HEARTBEAT, CELERY_BROKER_URL, broker_heartbeat)
    value: Any  # a Python literal or a Dynamic
    source: str
    line: int
    text: str  # the source line
    via: str  # module | conf_update | conf_attr | conf_item | celery_kwarg | dict_literal
    # keys of celery_kwarg / conf_update are read without the Django namespace (no prefix)
    prefixed: bool = True


@dataclass
class ConfigFacts:
    """Everything the static reader learned from the files it was given."""

    files: list[str] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    namespace: str | None = None  # from config_from_object(..., namespace='CELERY')
    namespace_line: tuple[str, int, str] | None = None
    django: bool = False  # a Django settings module (or config_from_object('django.conf:settings'))
    celery_py: str | None = None  # the app module that was read alongside
    config_from_object: list[tuple[str, int, str]] = field(default_factory=list)  # (target, line, text)
    uses_countdown_or_eta: list[tuple[str, int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def by_name(self) -> dict[str, Assignment]:
        """The last write of each name wins, as in Python."""
        out: dict[str, Assignment] = {}
        for item in self.assignments:
            out[item.name] = item
        return out
