"""pyproject.toml: PEP 621 ``[project]`` dependencies and Poetry's ``[tool.poetry]`` tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
from packaging.requirements import InvalidRequirement, Requirement

from celery_doctor.pins.interface import Environment, PinsError, canonical
from celery_doctor.pins.readers import shape
from celery_doctor.pins.readers.requirements_txt import pin_from_requirement


def poetry_range(spec: str) -> str:
    """Poetry's ``^``/``~``/``*`` constraints as PEP 440 (``^4.3`` -> ``>=4.3,<5.0``)."""
    parts = []
    for clause in re.split(r"\s*,\s*|\s+(?=[<>=!^~])", spec.strip()):
        clause = clause.strip()
        if clause in ("", "*"):
            continue
        if clause[0] in "^~" and not clause.startswith("~="):
            base = clause[1:].strip()
            nums = [int(x) for x in re.findall(r"\d{1,18}", base)[:3]]
            if not nums:
                raise ValueError(f"{clause!r} has no version after {clause[0]}")
            if clause[0] == "^":
                idx = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1)
            else:
                idx = 0 if len(nums) == 1 else 1
            upper = nums[: idx + 1]
            upper[-1] += 1
            parts.append(f">={base},<{'.'.join(map(str, upper))}")
        elif clause[0].isdigit():
            parts.append(f"=={clause}")
        else:
            parts.append(clause)
    return ",".join(parts)


def _poetry_table(env: Environment, table: dict[str, Any], key: str) -> None:
    for name, value in table.items():
        where = f"{key}.{name}"
        try:
            if canonical(name) == "python":
                env.python_spec = poetry_range(shape.string(value, env.origin, where))
                continue
            if isinstance(value, list):  # multiple-constraint form: take the first
                value = value[0] if value else {}
            extras: tuple[str, ...] = ()
            if isinstance(value, dict):
                extras = tuple(shape.strings(value.get("extras"), env.origin, f"{where}.extras"))
                value = value.get("version", "")
            spec = poetry_range(shape.version(value, env.origin, where))
        except ValueError as exc:
            raise PinsError(f"{env.origin}: bad Poetry constraint for {name}: {exc}") from None
        req = f"{name}[{','.join(extras)}]{spec}" if extras else f"{name}{spec}"
        try:
            pin = pin_from_requirement(Requirement(req), 0, f"{name} = {value!r}")
        except InvalidRequirement as exc:
            raise PinsError(f"{env.origin}: bad Poetry constraint for {name}: {value!r}") from exc
        env.add(pin)


def read_pyproject(path: Path, text: str) -> Environment:
    try:
        doc = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than int() takes
        raise PinsError(f"{path}: not valid TOML: {exc}") from exc
    env = Environment(origin=str(path), format="pyproject.toml")
    project = shape.table(doc.get("project"), path, "[project]")
    deps = list(shape.strings(project.get("dependencies"), path, "project.dependencies"))
    for group, items in shape.table(project.get("optional-dependencies"), path,
                                    "project.optional-dependencies").items():
        deps += shape.strings(items, path, f"project.optional-dependencies.{group}")
    for group, items in shape.table(doc.get("dependency-groups"), path, "[dependency-groups]").items():
        deps += [d for d in shape.array(items, path, f"dependency-groups.{group}") if isinstance(d, str)]
    for dep in deps:
        try:
            env.add(pin_from_requirement(Requirement(dep), 0, dep))
        except InvalidRequirement as exc:
            raise PinsError(f"{path}: not a requirement: {dep!r}") from exc
    if project.get("requires-python"):
        env.python_spec = shape.string(project["requires-python"], path, "project.requires-python")
    poetry = shape.table(shape.table(doc.get("tool"), path, "[tool]").get("poetry"), path, "[tool.poetry]")
    _poetry_table(env, shape.table(poetry.get("dependencies"), path, "tool.poetry.dependencies"),
                  "tool.poetry.dependencies")
    for name, group in shape.table(poetry.get("group"), path, "tool.poetry.group").items():
        key = f"tool.poetry.group.{name}.dependencies"
        _poetry_table(env, shape.table(shape.table(group, path, f"tool.poetry.group.{name}").get("dependencies"),
                                       path, key), key)
    _poetry_table(env, shape.table(poetry.get("dev-dependencies"), path, "tool.poetry.dev-dependencies"),
                  "tool.poetry.dev-dependencies")
    return env
