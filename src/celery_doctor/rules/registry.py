"""Every rule has an id, a stage and the categories it can name (bandit's plugin registry is
the model): a rule is a function decorated with :func:`rule`, which records it and stamps its
id on each Finding it returns. ``scripts/rules_doc.py`` writes docs/incident-rules.md from
this registry, so the docs list exactly the rules that run.

Id prefixes: CD-L log rules, CD-K known library bugs, CD-V version fingerprints, CD-B broker
probe, CD-C config audit, CD-P pins, CD-X cross-input rules of diagnose, CD-R a reproduction's
own ground truth (rules/repro_rules.py).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from celery_doctor.model import Category, Finding


@dataclass(frozen=True)
class RuleInfo:
    id: str
    name: str
    stage: str  # "logs", "broker", "config", "pins", "diagnose"
    categories: tuple[Category, ...]
    summary: str  # the rule's docstring: why it fires
    module: str


REGISTRY: dict[str, RuleInfo] = {}
F = TypeVar("F", bound=Callable[..., Iterable[Finding]])


def register(info: RuleInfo) -> None:
    if info.id in REGISTRY and REGISTRY[info.id].name != info.name:
        raise ValueError(f"rule id {info.id} used twice ({REGISTRY[info.id].name}, {info.name})")
    REGISTRY[info.id] = info


def rule(rule_id: str, stage: str, *categories: Category) -> Callable[[F], F]:
    """Register the decorated rule; every Finding it returns carries ``rule_id``."""

    def wrap(fn: F) -> F:
        register(RuleInfo(rule_id, fn.__name__, stage, categories,
                          inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " "),
                          fn.__module__))

        @functools.wraps(fn)
        def stamped(*args: Any, **kwargs: Any) -> list[Finding]:
            out = list(fn(*args, **kwargs))
            for f in out:
                if f.rule_id is None:
                    f.rule_id = rule_id
            return out

        return stamped  # type: ignore[return-value]

    return wrap


def by_stage(stage: str) -> list[RuleInfo]:
    return sorted((r for r in REGISTRY.values() if r.stage == stage), key=lambda r: r.id)
