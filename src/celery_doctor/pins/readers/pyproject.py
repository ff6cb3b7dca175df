"""pyproject.toml: PEP 621 ``[project]`` dependencies and Poetry's ``[tool.poetry]`` tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
from packaging.requirements import InvalidRequirement, Requirement

from celery_doctor.pins.interface import Environment, PinsError, canonical
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
            nums = [int(x) for x in re.findall(r"\d+", base)[:3]]
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


def _poetry_table(env: Environment, table: dict[str, Any]) -> None:
    for name, value in table.items():
        if canonical(name) == "python":
            env.python_spec = poetry_range(str(value))
            continue
        if isinstance(value, list):  # multiple-constraint form: take the first
            value = value[0] if value else {}
        extras: tuple[str, ...] = ()
        if isinstance(value, dict):
            extras = tuple(value.get("extras", ()))
            value = value.get("version", "")
        spec = poetry_range(str(value))
        req = f"{name}[{','.join(extras)}]{spec}" if extras else f"{name}{spec}"
        try:
            pin = pin_from_requirement(Requirement(req), 0, f"{name} = {value!r}")
        except InvalidRequirement as exc:
            raise PinsError(f"{env.origin}: bad Poetry constraint for {name}: {value!r}") from exc
        env.add(pin)


def read_pyproject(path: Path, text: str) -> Environment:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PinsError(f"{path}: not valid TOML: {exc}") from exc
    env = Environment(origin=str(path), format="pyproject.toml")
    project = doc.get("project", {})
    deps = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        deps += group
    for group in doc.get("dependency-groups", {}).values():
        deps += [d for d in group if isinstance(d, str)]
    for dep in deps:
        try:
            env.add(pin_from_requirement(Requirement(dep), 0, dep))
        except InvalidRequirement as exc:
            raise PinsError(f"{path}: not a requirement: {dep!r}") from exc
    if project.get("requires-python"):
        env.python_spec = project["requires-python"]
    poetry = doc.get("tool", {}).get("poetry", {})
    _poetry_table(env, poetry.get("dependencies", {}))
    for group in poetry.get("group", {}).values():
        _poetry_table(env, group.get("dependencies", {}))
    _poetry_table(env, poetry.get("dev-dependencies", {}))
    return env
