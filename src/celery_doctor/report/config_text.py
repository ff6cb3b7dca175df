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
    "unknown": "IGNORED (unknown)", "dropped_by_django": "IGNORED (Django drops lower-case)",
}


def _where(config: dict[str, Any]) -> list[RenderableType]:
    """How Celery gets these files: the loader call, the class, the namespace; what is running."""
    out: list[RenderableType] = []
    loader = config.get("loader")
    if loader:
        used = f" (the class {config['config_object']})" if config.get("config_object") else ""
        ns = f", namespace={loader['namespace']!r}" if loader.get("namespace") else ", no namespace"
        out.append(Text(f"Loaded by {loader['source'].rsplit('/', 1)[-1]}:{loader['line']}: "
                        f"{loader['text'].strip()}{used}{ns}"))
    elif config.get("config_object"):
        out.append(Text(f"Configured from the class {config['config_object']} (no config_from_object call found)"))
    alternative = config.get("alternative")
    if alternative:
        def label(namespace: str | None) -> str:
            return f"namespace={namespace!r}" if namespace else "no namespace"

        out.append(Text(f"Namespace unknown (no celery.py under the project loads this file): the table reads it "
                        f"with {label(config.get('namespace'))}; with {label(alternative['namespace'])} the broker "
                        f"would be {alternative['effective_broker_url']}", style="yellow"))
    return out


def _runtime(runtime: dict[str, Any]) -> Text:
    versions = " ".join(f"{k}:{v}" for k, v in runtime.get("versions", {}).items())
    extra = f" transport:{runtime['transport']}" if runtime.get("transport") else ""
    workers = f" workers: {', '.join(runtime['workers'])}" if runtime.get("workers") else ""
    return Text(f"Running ({runtime['kind']}, {runtime['source'].rsplit('/', 1)[-1]}): "
                f"{versions or 'versions not shown'}{extra}{workers}")


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
    out: list[RenderableType] = [*_where(config), table]
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
    if "runtime" in report.data:
        out.append(_runtime(report.data["runtime"]))
    if "config" in report.data:
        out.extend(_static(report.data["config"]))
    return out


def report_sections(report: Report) -> list[RenderableType]:
    """diagnose's `celery report` inputs: what each one says is running, and where it was read."""
    out: list[RenderableType] = []
    for entry in report.data.get("reports", []):
        where = f" lines {entry['lines'][0]}-{entry['lines'][1]}" if entry.get("lines") else ""
        judged = ("; its settings are judged in the Config section" if entry.get("settings_judged") else
                  "; it lists no settings" if not entry.get("settings") else "")
        line = _runtime(entry)
        line.append(f" ({entry['source']}{where}{judged})")
        out.append(line)
    return out
