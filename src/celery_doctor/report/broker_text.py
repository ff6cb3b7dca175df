"""Text section of ``celery-doctor broker``: the measured facts, before the findings."""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table

from celery_doctor.model import Report


def _mb(value: Any) -> str:
    return f"{value / 1024 / 1024:.0f} MiB" if isinstance(value, int | float) else "-"


def _pct(used: Any, total: Any) -> str:
    if isinstance(used, int | float) and isinstance(total, int | float) and total:
        return f"{used / total:.0%}"
    return "-"


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _words(*parts: Any) -> str:
    """Join what is known: a missing value leaves its words out rather than showing '?' or '-'."""
    return " ".join(str(p) for p in parts if p not in (None, "", "None")) or "unknown"


def _sec(label: str, value: Any) -> str | None:
    return None if value is None else f"{label} {value} s"


def _facts_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, expand=False)
    table.add_column("fact", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, _show(value))
    return table


def _login(f: dict[str, Any]) -> str:
    login = f.get("login") or {}
    if not login:
        return "-"
    if login.get("ok"):
        return "ok"
    code = f"{login.get('code')} " if login.get("code") else ""
    return f"refused: {code}{login.get('error')}"


def _rabbitmq(broker: dict[str, Any]) -> list[RenderableType]:
    f = broker.get("facts") or {}
    server = f.get("server") or {}
    mgmt = f.get("management") or {}
    churn = f.get("churn") or {}
    conns = f.get("connections")
    rows: list[tuple[str, Any]] = [
        ("url", broker.get("url")),
        ("server", _words(server.get("product") or "RabbitMQ", broker.get("version"),
                          server.get("cluster_name") and f"cluster {server.get('cluster_name')}")),
        ("login / vhost", f"{_login(f)} (user {f.get('user')}, vhost {f.get('vhost')!r})"),
        ("heartbeat", ", ".join(p for p in (_sec("requested", f.get("requested_heartbeat")),
                                            _sec("server", f.get("server_heartbeat")),
                                            _sec("negotiated", f.get("negotiated_heartbeat"))) if p)
         or "not negotiated"),
        ("frame_max / channel_max", f"{_show(f.get('frame_max'))} / {_show(f.get('channel_max'))}"),
        ("connection.blocked", f"announced {_show(f.get('announces_connection_blocked'))}, "
                               f"blocked now {_show(f.get('blocked_now'))}"),
        ("management API", f"{mgmt.get('url')}: " + ("ok" if mgmt.get("available")
                                                     else str(mgmt.get("error")))),
        ("alarms", ", ".join(f"{a.get('resource')}@{a.get('node')}" for a in f.get("alarms") or [])
         or ("none" if "alarms" in f else "not checked")),
        ("consumer_timeout", (f"{f['consumer_timeout_ms']} ms" if f.get("consumer_timeout_ms")
                              else "none") + f" ({f.get('consumer_timeout_source')})"
         if "consumer_timeout_source" in f else "unknown"),
    ]
    if churn:
        rows.append(("churn", f"connections +{_show(churn.get('connection_created_per_s'))}/s "
                              f"-{_show(churn.get('connection_closed_per_s'))}/s, channels "
                              f"+{_show(churn.get('channel_created_per_s'))}/s over "
                              f"{churn.get('interval_s')} s; {_show(churn.get('connections_now'))} open"))
    if conns is not None:
        no_hb = sum(1 for c in conns if c.get("heartbeat_s") == 0)
        rows.append(("client connections", f"{len(conns)} ({no_hb} with heartbeat 0)"))
    rows.append(("probe time", f"{broker.get('elapsed_s')} s"))
    out: list[RenderableType] = [_facts_table("RabbitMQ", rows)]
    nodes = f.get("nodes") or []
    if nodes:
        table = Table(title="Nodes", title_justify="left")
        for col in ("node", "memory", "disk free", "fds", "sockets"):
            table.add_column(col)
        for n in nodes:
            table.add_row(
                str(n.get("name")),
                f"{_mb(n.get('mem_used'))} / {_mb(n.get('mem_limit'))} "
                f"({_pct(n.get('mem_used'), n.get('mem_limit'))})" + (" ALARM" if n.get("mem_alarm") else ""),
                f"{_mb(n.get('disk_free'))} (limit {_mb(n.get('disk_free_limit'))})"
                + (" ALARM" if n.get("disk_free_alarm") else ""),
                f"{n.get('fd_used')} / {n.get('fd_total')}",
                f"{n.get('sockets_used')} / {n.get('sockets_total')}",
            )
        out.append(table)
    queues = [q for q in f.get("queues") or [] if q.get("consumers") or q.get("unacked") or q.get("ready")]
    if queues:
        queues.sort(key=lambda q: (-(q.get("unacked") or 0), -(q.get("ready") or 0)))
        table = Table(title=f"Queues with traffic ({len(queues)})", title_justify="left")
        for col in ("vhost", "queue", "consumers", "ready", "unacked"):
            table.add_column(col)
        for q in queues[:15]:
            table.add_row(str(q.get("vhost")), str(q.get("name")), str(q.get("consumers")),
                          str(q.get("ready")), str(q.get("unacked")))
        out.append(table)
    return out


def _rejected_now(sample: dict[str, Any]) -> str:
    during = sample.get("during_probe")
    if during is None:
        return ""
    return f"; rejected during the {sample.get('interval_s'):g} s probe: {during}"


def _redis(broker: dict[str, Any]) -> list[RenderableType]:
    f = broker.get("facts") or {}
    info = f.get("info") or {}
    config = f.get("config")
    clients = f.get("clients") or {}
    sentinel = f.get("sentinel")
    rows: list[tuple[str, Any]] = [("url", broker.get("url"))]
    if sentinel:
        rows.append(("sentinel", f"master {sentinel.get('master_name')} at {sentinel.get('master')} "
                                 f"(asked {sentinel.get('answered_by')})"))
    rows += [
        ("server", _words("Redis", broker.get("version"), info.get("redis_mode"),
                          info.get("role") and f"role {info.get('role')}")),
        ("login", _login(f)),
    ]
    if config is not None:
        rows += [
            ("timeout", f"{config.get('timeout')} s" + (" (idle clients are closed)"
                                                        if config.get("timeout") else " (off)")),
            ("tcp-keepalive", f"{config.get('tcp-keepalive')} s"),
            ("maxmemory-policy", config.get("maxmemory-policy")),
        ]
        pubsub = (config.get("client-output-buffer-limit") or {}).get("pubsub")
        if pubsub:
            rows.append(("pubsub output limit", f"hard {_mb(pubsub.get('hard_bytes'))}, soft "
                                                f"{_mb(pubsub.get('soft_bytes'))} for "
                                                f"{pubsub.get('soft_seconds')} s"))
    elif "config_allowed" in f:
        rows.append(("CONFIG", "not allowed for this user"))
    if info:
        maxclients = (config or {}).get("maxclients") or info.get("maxclients")
        rows += [
            ("clients", f"{info.get('connected_clients')} of maxclients {maxclients}; since start: "
                        f"rejected {info.get('rejected_connections')}, received "
                        f"{info.get('total_connections_received')}; blocked now {info.get('blocked_clients')}"
                        + _rejected_now(f.get("rejections") or {})),
            ("memory", f"{_mb(info.get('used_memory'))} of maxmemory "
                       f"{_mb(info.get('maxmemory')) if info.get('maxmemory') else 'unlimited'}"),
        ]
    if clients:
        idle = [p for p in (_sec("max", clients.get("idle_max_s")), _sec("median", clients.get("idle_median_s")))
                if p]
        rows.append(("client idle", ", ".join([*idle, f"{clients.get('idle_over_300s')} idle > 300 s",
                                               f"{clients.get('pubsub')} pub/sub"]) if idle
                     else "no other client connected"))
    rows.append(("probe time", f"{broker.get('elapsed_s')} s"))
    return [_facts_table("Redis", rows)]


def broker_sections(report: Report) -> list[RenderableType]:
    broker = report.data.get("broker") or {}
    if broker.get("kind") == "rabbitmq":
        return _rabbitmq(broker)
    if broker.get("kind") == "redis":
        return _redis(broker)
    return []
