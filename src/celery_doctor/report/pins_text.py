"""Text section of ``celery-doctor pins``: the versions checked, then the ladder."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Report


def _versions(data: dict[str, Any]) -> list[RenderableType]:
    """A title line of its own: a long path would otherwise wrap inside the narrow table's width."""
    env = data.get("environment", {})
    where = ": ".join(str(v) for v in (env.get("format"), env.get("origin")) if v)
    pythons = ", ".join(data.get("pythons", [])) or "unknown (pass --python)"
    table = Table(expand=False)
    for col in ("package", "version", "from"):
        table.add_column(col)
    resolved = data.get("resolved", {})
    for name, version in data.get("versions", {}).items():
        table.add_row(name, version, "fresh install would pick" if name in resolved else "input")
    return [Text("Versions checked" + (f" ({where})" if where else ""), style="italic"), table,
            Text(f"Python: {pythons}")]


def _ladder(steps: list[dict[str, Any]]) -> list[RenderableType]:
    table = Table(title=f"Upgrade ladder ({len(steps)} steps)", title_justify="left")
    cols = ("#", "python", "celery", "kombu", "amqp", "billiard", "vine", "redis")
    for col in cols:
        table.add_column(col)
    for step in steps:
        pins = step["pins"]
        table.add_row(str(step["step"]), step["python"], *[pins.get(c, "-") for c in cols[2:]])
    out: list[RenderableType] = [table]
    for step in steps:
        text = Text(f"Step {step['step']}: celery {step['celery']} (this set runs on Python "
                    f"{', '.join(step['pythons'])})\n",
                    style="bold")
        for line in [*step.get("notes", []), *step.get("changes", [])]:
            text.append(f"  - {line}\n")
        check = step.get("install_check")
        if check:
            style = "green" if check.get("ok") else "red"
            text.append(f"  install check: {check.get('summary')}\n", style=style)
        out.append(text)
    return out


def pins_sections(report: Report) -> list[RenderableType]:
    data = report.data
    out: list[RenderableType] = _versions(data)
    if data.get("ladder"):
        out += _ladder(data["ladder"])
    if data.get("constraints"):
        out.append(Text("Constraints written: " + ", ".join(data["constraints"])))
    return out
