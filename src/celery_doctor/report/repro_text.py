"""Text sections of `repro`: what was run, what happened to every task, and whether the
verdict named the injected fault. ``--compare`` puts minimal and production side by side."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Report

ROWS = (
    ("planned", "planned"), ("sent", "sent"), ("confirmed", "confirmed by the broker"),
    ("publish_failed", "publish failed"), ("received", "received by the worker"),
    ("executed", "executed"), ("succeeded", "succeeded"), ("acked", "acked"),
    ("ack_failed", "ack failed"), ("redelivered", "redelivered"),
    ("duplicated_by_redelivery", "run twice: redelivered"), ("duplicated_by_publish", "run twice: published twice"),
    ("extra_executions", "extra executions"),
)
# where each planned task ended: one state per task, the counts add up to "planned"
STATE_ROWS = (
    ("executed", "= executed once"), ("duplicated", "= executed more than once"),
    ("started_not_succeeded", "= started, never finished"), ("stranded", "= stranded in broker"),
    ("lost", "= LOST"), ("publish_failed", "= publish failed"),
    ("publish_interrupted", "= publish interrupted"), ("not_sent", "= never sent"),
    ("unaccounted", "= unaccounted"),
)
BAD = {"publish_failed", "ack_failed", "duplicated", "extra_executions", "lost", "stranded", "unaccounted",
       "duplicated_by_redelivery", "duplicated_by_publish", "publish_interrupted", "not_sent",
       "started_not_succeeded"}


def _runs(report: Report) -> list[dict[str, Any]]:
    runs = report.data.get("runs")
    return list(runs) if isinstance(runs, list) else [report.data] if report.data.get("scenario") else []


def _versions(run: dict[str, Any]) -> str:
    v = run.get("versions") or {}
    return " ".join(f"{k} {v[k]}" for k in ("python", "celery", "kombu", "amqp", "redis") if v.get(k))


def _setup_rows(run: dict[str, Any]) -> list[tuple[str, str]]:
    s = run.get("settings") or {}
    worker = run.get("worker") or {}
    canary = run.get("canary") or {}
    proxy = run.get("proxy") or {}
    recovery = run.get("recovery") or {}
    consuming = worker.get("consuming_at_end")
    box = run.get("middlebox") or {}
    return [
        ("scenario", str(run.get("scenario"))),
        ("fault", str(run.get("fault") or "none")),
        ("broker", f"{(run.get('broker') or {}).get('kind')} ({(run.get('broker') or {}).get('chosen_because')})"),
        ("versions", _versions(run)),
        ("config", str(run.get("config") or "minimal")),
        ("heartbeat", f"{s.get('heartbeat_why')}" if not s.get("heartbeat_from_user_config")
         else "from the config file"),
        ("pool / acks", f"{s.get('pool')} x{s.get('concurrency')}, "
                        f"{'late' if s.get('acks_late') else 'early'} acks"),
        ("middlebox", f"{box.get('kind', 'proxy')}: {box.get('why')}"),
        ("publisher's path", _proxy_line(run.get("publisher_proxy") or {})),
        ("worker's path", _proxy_line(proxy)),
        ("reconnects", f"{recovery.get('reconnects') or 0}"
         + (f" (longest outage {recovery['longest_outage_s']} s)" if recovery.get("longest_outage_s") else "")
         if recovery else "-"),
        ("after the fault", "worker consumes again"
         + (f" (new task ran in {canary.get('latency_s')} s)" if canary.get("latency_s") is not None else "")
         if consuming else "WORKER ALIVE BUT NOT CONSUMING" if worker.get("alive_but_not_consuming")
         else "worker gone" if not worker.get("alive_at_end") else "unknown"),
        ("wall time", f"{run.get('wall_s')} s"),
        ("files", str(run.get("workdir")) if run.get("workdir") else "removed (keep them with --workdir DIR)"),
    ]


def _proxy_line(proxy: dict[str, Any]) -> str:
    return (f"{proxy.get('connections', 0)} connections, {proxy.get('cuts', 0)} cut, "
            f"{proxy.get('blackholed', 0)} blackholed, {proxy.get('refused', 0)} refused")


def _check_text(run: dict[str, Any]) -> Text:
    check = run.get("self_check") or {}
    if check.get("ok"):
        return Text(f"self-check: the top finding names {check.get('top_finding')} ({check.get('why')})",
                    style="green")
    return Text(check.get("message") or "self-check: no verdict", style="bold red")


def single(run: dict[str, Any]) -> list[RenderableType]:
    setup = Table(title="Reproduction", title_justify="left", show_header=False)
    setup.add_column("what", style="bold")
    setup.add_column("value", overflow="fold")
    for key, value in _setup_rows(run):
        setup.add_row(key, value)
    summary = run.get("ledger") or {}
    table = Table(title="Ledger", title_justify="left")
    table.add_column("tasks")
    table.add_column("count", justify="right")
    for key, label in ROWS:
        value = summary.get(key, 0)
        table.add_row(label, Text(str(value), style="bold red" if key in BAD and value else ""))
    states = summary.get("states") or {}
    for key, label in STATE_ROWS:
        value = states.get(key, 0)
        table.add_row(label, Text(str(value), style="bold red" if key in BAD and value else ""))
    bad = any(summary.get(k) for k in BAD) or any(states.get(k) for k in BAD)
    out: list[RenderableType] = [setup, table, Text(f"Ledger: {run.get('verdict')}",
                                                    style="bold red" if bad else "bold green")]
    names = summary.get("names") or {}
    for key in ("lost", "stranded", "duplicated", "duplicated_by_publish", "publish_failed", "ack_failed",
                "unaccounted", "state_publish_interrupted", "state_not_sent", "executed_without_publish_record"):
        ids = names.get(key)
        if ids:
            shown = ", ".join(f"{k} (x{v})" for k, v in ids.items()) if isinstance(ids, dict) else ", ".join(ids)
            out.append(Text(f"{key.replace('_', ' ')}: {shown}", style="red"))
    for error in (run.get("worker") or {}).get("errors") or []:
        out.append(Text(f"worker error: {error}", style="red"))
    for note in run.get("notes") or []:
        out.append(Text(f"note: {note}", style="dim"))
    out.append(_check_text(run))
    verified = run.get("verify_fix")
    if verified:
        out.append(_verify_text(verified))
    return out


def _verify_text(verified: dict[str, Any]) -> Text:
    if verified.get("proven") is None:
        return Text(f"verify-fix: {verified.get('why')}", style="yellow")
    if verified.get("proven"):
        return Text(f"verify-fix: PROVEN on the same fault with {verified.get('fix')}: {verified.get('why')}",
                    style="bold green")
    return Text(f"verify-fix: NOT PROVEN with {verified.get('fix')}: {verified.get('why')}", style="bold red")


def compare(runs: list[dict[str, Any]]) -> list[RenderableType]:
    labels = [str(r.get("label")) for r in runs]
    title = ("Without and with the proposed fix (same scenario, fault and broker)" if "fixed" in labels else
             "Minimal vs production settings (same scenario and fault)")
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for run in runs:
        table.add_column(str(run.get("label")), overflow="fold")
    setups = [dict(_setup_rows(r)) for r in runs]
    for key in setups[0]:
        table.add_row(key, *[s.get(key, "") for s in setups])
    for key, label in ROWS:
        values = [(r.get("ledger") or {}).get(key, 0) for r in runs]
        table.add_row(label, *[Text(str(v), style="bold red" if key in BAD and v else "") for v in values])
    for key, label in STATE_ROWS:
        values = [((r.get("ledger") or {}).get("states") or {}).get(key, 0) for r in runs]
        table.add_row(label, *[Text(str(v), style="bold red" if key in BAD and v else "") for v in values])
    table.add_row("verdict", *[str(r.get("verdict")) for r in runs])
    table.add_row("top finding", *[str((r.get("self_check") or {}).get("top_finding")) for r in runs])
    table.add_row("findings", *[", ".join(r.get("categories") or []) for r in runs])
    out: list[RenderableType] = [table]
    for run in runs:
        out.append(Text(f"{run.get('label')}: ", style="bold") + _check_text(run))
    verified = next((r.get("verify_fix") for r in runs if r.get("verify_fix")), None)
    if verified:
        out.append(_verify_text(verified))
    return out


def sections(report: Report) -> list[RenderableType]:
    runs = _runs(report)
    if not runs:
        return []
    return compare(runs) if len(runs) > 1 else single(runs[0])
