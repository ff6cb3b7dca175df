"""Text section of ``celery-doctor config``: each setting as written, what Celery makes of it."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Report

STATUS = {
    "ok": "read", "old_name": "old name (read)", "ignored_no_namespace": "IGNORED (no namespace)",
    "ignored_by_3x": "IGNORED (4.0+ name)", "removed": "IGNORED (removed)", "not_in_target": "IGNORED (too new)",
    "unknown": "IGNORED (unknown)",
}


def _static(config: dict[str, Any]) -> list[RenderableType]:
    rows = config.get("settings", [])
    table = Table(title=f"Settings as written ({len(rows)}), judged for Celery {config.get('target')}",
                  title_justify="left")
    for col in ("where", "written", "Celery reads it as", "status", "value"):
        table.add_column(col, overflow="fold")
    for row in rows:
        status = STATUS.get(row["status"], row["status"])
        style = "red" if status.startswith("IGNORED") else "yellow" if row["status"] == "old_name" else ""
        target = row.get("suggestion") or row.get("setting") or "-"
        table.add_row(f"{row['source'].rsplit('/', 1)[-1]}:{row['line']}", row["written"], target,
                      Text(status, style=style), row["value"])
    out: list[RenderableType] = [table]
    broker = f"Effective broker URL: {config.get('effective_broker_url')} ({config.get('effective_broker_origin')})"
    out.append(Text(broker))
    if config.get("mix_error"):
        out.append(Text("Celery would raise ImproperlyConfigured:" + config["mix_error"].rstrip(), style="bold red"))
    return out


def _effective(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Effective settings (imported app)", title_justify="left")
    for col in ("setting", "in effect", "from", "intended (files)"):
        table.add_column(col, overflow="fold")
    for row in rows:
        differs = row.get("intended") is not None and row.get("origin") != "config"
        table.add_row(row["setting"], repr(row["value"])[:80], row.get("origin") or "-",
                      Text(f"{row['intended']} ({row.get('intended_at')})" if row.get("intended") else "-",
                           style="red" if differs else ""))
    return table


def config_sections(report: Report) -> list[RenderableType]:
    out: list[RenderableType] = []
    if "effective" in report.data:
        out.append(_effective(report.data["effective"]))
    if "config" in report.data:
        out.extend(_static(report.data["config"]))
    return out
