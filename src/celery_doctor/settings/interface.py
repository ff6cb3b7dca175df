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
    via: str  # module | class | yaml | conf_update | conf_attr | conf_item | celery_kwarg | dict_literal
    # keys of celery_kwarg / conf_update are read without the Django namespace (no prefix)
    prefixed: bool = True
    scope: str | None = None  # the class a class-body setting belongs to
    in_function: bool = False  # written inside a def: when (and whether) it runs is not known
    at: int = 0  # the line of the read file where it takes effect, when not its own (a YAML key)


@dataclass
class ClassInfo:
    """A class whose body holds settings: a candidate for ``config_from_object(TheClass)``."""

    name: str
    bases: list[str]
    source: str
    line: int


@dataclass
class Loader:
    """The call that hands the audited file to Celery (found in the project when not given)."""

    source: str  # the app module
    line: int
    text: str
    target: str  # what config_from_object was given ('proj.celeryconfig', 'django.conf:settings', a class)
    kind: str  # module | class | django | code (the app module configures itself)
    namespace: str | None = None


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
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    config_object: str | None = None  # the class Celery is configured from, when one is
    loader: Loader | None = None
    loader_calls: list[Loader] = field(default_factory=list)  # every config_from_object call read
    # False when a Django settings file's namespace could not be learned from any celery.py
    namespace_known: bool = True
    # names the files read as variables: an ignored name used to build another value is a helper
    loaded_names: set[str] = field(default_factory=set)
    django_settings: str | None = None  # the Django settings module (DJANGO_SETTINGS_MODULE) that holds the file

    def class_mro(self, name: str) -> list[str]:
        """``name`` and its bases defined in the files read, subclass first (Python's order for
        single and simple multiple inheritance)."""
        out: list[str] = []

        def visit(current: str) -> None:
            if current in out or current not in self.classes:
                return
            out.append(current)
            for base in self.classes[current].bases:
                visit(base)

        visit(name)
        return out

    def by_name(self) -> dict[str, Assignment]:
        """The last write of each name wins, as in Python."""
        out: dict[str, Assignment] = {}
        for item in self.assignments:
            out[item.name] = item
        return out
