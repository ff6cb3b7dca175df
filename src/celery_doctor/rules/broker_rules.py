"""BrokerFacts -> Findings: what a live broker enforces that will cut Celery's connections.

Thresholds are deliberately plain (80 % of a limit, 1 new connection a second) and each
finding quotes the measured fact it rests on, so the reader can judge it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from celery_doctor.model import BrokerFacts, Category, Evidence, Finding, Fix, Severity
from celery_doctor.rules.registry import rule

NEAR = 0.8  # share of a limit that earns a warning
FULL = 0.95
CHURN_PER_S = 1.0  # new connections a second: a pool keeps this near zero
CHANNEL_CHURN_PER_S = 20.0
DEFAULT_CONSUMER_TIMEOUT_MS = 30 * 60 * 1000
PUBSUB_DEFAULT_HARD = 32 * 1024 * 1024
PUBSUB_DEFAULT_SOFT = 8 * 1024 * 1024


def broker_findings(facts: BrokerFacts) -> list[Finding]:
    rules: Sequence[Callable[[BrokerFacts], list[Finding]]] = (
        RABBITMQ_RULES if facts.kind == "rabbitmq" else REDIS_RULES)
    findings = [f for rule in rules for f in rule(facts)]
    findings.sort(key=lambda f: -f.severity.rank)
    return findings


def _ev(facts: BrokerFacts, text: str) -> Evidence:
    return Evidence(source=f"{facts.kind} {facts.url}", line=0, text=text)


def _share(used: Any, total: Any) -> float | None:
    if isinstance(used, int | float) and isinstance(total, int | float) and total > 0:
        return used / total
    return None


def _mb(value: Any) -> str:
    return f"{value / 1024 / 1024:.0f} MiB" if isinstance(value, int | float) else "?"


def _duration_ms(ms: int) -> str:
    return f"{ms / 60000:g} min" if ms >= 60000 else f"{ms / 1000:g} s"


# -- RabbitMQ ---------------------------------------------------------------------------------


@rule("CD-B01", "broker", Category.AUTH_OR_PERMISSIONS)
def rabbit_login(facts: BrokerFacts) -> list[Finding]:
    """The probe could not log in to RabbitMQ or open the vhost (credentials, permissions, vhost down)."""
    login = facts.facts.get("login") or {}
    if login.get("ok", True):
        return []
    user, vhost = facts.facts.get("user"), facts.facts.get("vhost")
    error = str(login.get("error") or "")
    code = login.get("code")
    evidence = [_ev(facts, f"connection.close {code}: {error}" if code else error)]
    local = facts.host in ("localhost", "127.0.0.1", "::1")
    if (code == 530 and "not found" in error) or facts.facts.get("vhost_exists") is False:
        title = f"virtual host {vhost!r} does not exist"
        explanation = (f"RabbitMQ accepted user {user!r} but has no virtual host {vhost!r}; "
                       "every worker and producer fails at connect. In a broker URL the vhost "
                       "is the path: amqp://host// is '/', amqp://host/name is 'name'.")
        fix = Fix("Create the vhost and grant the user access, or fix the URL path.",
                  snippet=(f"rabbitmqctl add_vhost {vhost}\n"
                           f"rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'"))
    elif code == 530:
        title = f"user {user!r} may not use virtual host {vhost!r}"
        explanation = ("The login succeeded but the user has no permissions on this vhost; "
                       "the broker closes the connection with NOT_ALLOWED.")
        fix = Fix("Grant the user permissions on the vhost.",
                  snippet=f"rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'")
    elif user == "guest" and not local:
        title = "the guest user may only connect from localhost"
        explanation = ("RabbitMQ refuses 'guest' on every interface but loopback "
                       "(loopback_users); containers and remote workers hit this first.")
        fix = Fix("Create a dedicated user for Celery and use it in broker_url.",
                  snippet=("rabbitmqctl add_user celery '<password>'\n"
                           f"rabbitmqctl set_permissions -p {vhost} celery '.*' '.*' '.*'"))
    else:
        title = f"RabbitMQ refused the login of user {user!r}"
        explanation = ("The broker refused the credentials (wrong password, unknown user, or "
                       "an auth backend that said no). Workers retry forever and log "
                       "connection errors that look like network trouble.")
        fix = Fix("Check the user and password in broker_url against the broker "
                  "(rabbitmqctl authenticate_user USER PASSWORD).")
    return [Finding(Category.AUTH_OR_PERMISSIONS, Severity.HIGH, title, explanation,
                    evidence, fix, confidence=0.95)]


@rule("CD-B02", "broker", Category.BROKER_RESOURCE_ALARM)
def rabbit_alarms(facts: BrokerFacts) -> list[Finding]:
    """RabbitMQ has a memory or disk alarm set (or is close to a watermark): publishers are blocked."""
    alarms = facts.facts.get("alarms") or []
    blocked = facts.facts.get("blocked_now")
    if not alarms and not blocked:
        return []
    evidence = [_ev(facts, f"alarm in effect: {a.get('resource')} on {a.get('node')} "
                           f"({facts.facts.get('alarms_source', '?')})") for a in alarms]
    if blocked:
        evidence.append(_ev(facts, "connection.blocked received after one publish: "
                                   f"{facts.facts.get('blocked_reason', '')}"))
    for node in facts.facts.get("nodes") or []:
        share = _share(node.get("mem_used"), node.get("mem_limit"))
        if share is not None:
            evidence.append(_ev(facts, f"{node.get('name')}: memory {_mb(node.get('mem_used'))} "
                                       f"of watermark {_mb(node.get('mem_limit'))}"))
    blocked_conns = [c for c in facts.facts.get("connections") or []
                     if c.get("state") in ("blocked", "blocking")]
    if blocked_conns:
        evidence.append(_ev(facts, f"{len(blocked_conns)} client connection(s) blocked/blocking"))
    resources = sorted({str(a.get("resource")) for a in alarms}) or ["resource"]
    return [Finding(
        Category.BROKER_RESOURCE_ALARM, Severity.HIGH,
        f"{' and '.join(resources)} alarm: RabbitMQ is blocking publishers",
        "While an alarm is in effect RabbitMQ stops reading from every connection that "
        "publishes. apply_async/delay hang, and heartbeats on those connections stop, so "
        "clients and broker then report missed heartbeats and resets that are not network "
        "faults.",
        evidence,
        Fix("Free memory/disk on the broker (drain or purge large queues, add consumers, "
            "raise the watermark only if the host really has the memory); set "
            "broker_connection_timeout / publish timeouts so producers fail fast.",
            snippet="rabbitmq-diagnostics alarms\nrabbitmq-diagnostics memory_breakdown"),
        confidence=0.95)]


@rule("CD-B03", "broker", Category.BROKER_RESOURCE_ALARM)
def rabbit_limits(facts: BrokerFacts) -> list[Finding]:
    """Connection or channel limits (per vhost/user) close to what the broker allows."""
    if facts.facts.get("alarms"):
        return []  # the alarm finding already covers the limit that fired
    out = []
    for node in facts.facts.get("nodes") or []:
        name = node.get("name")
        checks = (
            ("memory", node.get("mem_used"), node.get("mem_limit"),
             "the memory alarm fires at the watermark and blocks every publisher"),
            ("file descriptors", node.get("fd_used"), node.get("fd_total"),
             "at the limit RabbitMQ stops accepting connections"),
            ("sockets", node.get("sockets_used"), node.get("sockets_total"),
             "at the limit new client connections are refused"),
        )
        for what, used, total, consequence in checks:
            share = _share(used, total)
            if share is None or share < NEAR:
                continue
            shown = (f"{_mb(used)} of {_mb(total)}" if what == "memory" else f"{used} of {total}")
            out.append(Finding(
                Category.BROKER_RESOURCE_ALARM,
                Severity.HIGH if share >= FULL else Severity.MEDIUM,
                f"{name}: {what} at {share:.0%} of the limit",
                f"{what.capitalize()} in use is close to the limit: {consequence}.",
                [_ev(facts, f"{name}: {what} {shown}")],
                Fix("Raise the limit (ulimit -n for the broker; vm_memory_high_watermark) or "
                    "reduce use (fewer connections: broker_pool_limit, fewer idle clients)."),
                confidence=0.8))
        free, limit = node.get("disk_free"), node.get("disk_free_limit")
        if isinstance(free, int) and isinstance(limit, int) and limit > 0 and free < 2 * limit:
            out.append(Finding(
                Category.BROKER_RESOURCE_ALARM, Severity.MEDIUM,
                f"{name}: free disk close to the alarm limit",
                "When free disk drops below disk_free_limit, RabbitMQ blocks every publisher.",
                [_ev(facts, f"{name}: disk free {_mb(free)}, limit {_mb(limit)}")],
                Fix("Free disk on the broker host or move its data directory."),
                confidence=0.8))
    return out


@rule("CD-B04", "broker", Category.HEARTBEAT_MISCONFIG)
def rabbit_heartbeat(facts: BrokerFacts) -> list[Finding]:
    """The heartbeat the broker negotiates: off, or longer than a named middlebox's idle timeout."""
    out = []
    f = facts.facts
    if f.get("login", {}).get("ok") and f.get("negotiated_heartbeat") == 0:
        out.append(Finding(
            Category.HEARTBEAT_MISCONFIG, Severity.MEDIUM,
            "heartbeats are off for the requested settings",
            f"Asking for heartbeat {f.get('requested_heartbeat')} s against a server that offers "
            f"{f.get('server_heartbeat')} s negotiates 0: a connection cut silently by a "
            "firewall or NAT is noticed only when the next write fails, often hours later.",
            [_ev(facts, f"requested {f.get('requested_heartbeat')} s, server "
                        f"{f.get('server_heartbeat')} s, negotiated 0")],
            Fix("Enable heartbeats (Celery's default is 120 s; the broker then lowers it to its "
                "own value, 60 s on RabbitMQ).", snippet="broker_heartbeat = 60"),
            confidence=0.8))
    silent = [c for c in f.get("connections") or [] if c.get("heartbeat_s") == 0]
    if silent:
        evidence = [_ev(facts, f"{c.get('peer')} {c.get('client')} user={c.get('user')} "
                               f"vhost={c.get('vhost')} heartbeat=0 "
                               f"name={c.get('connection_name') or '-'}") for c in silent[:10]]
        out.append(Finding(
            Category.HEARTBEAT_MISCONFIG, Severity.MEDIUM,
            f"{len(silent)} client connection(s) run without heartbeats",
            "These clients negotiated heartbeat 0. If they are workers, a connection dropped by "
            "the network stays 'open' on one side: tasks stop arriving with no error. If they "
            "are short-lived publishers this is harmless.",
            evidence,
            Fix("Set broker_heartbeat (not 0) in those clients' Celery config; check that it is "
                "really applied (celery-doctor config).", snippet="broker_heartbeat = 60"),
            confidence=0.7))
    return out


@rule("CD-B05", "broker", Category.POOL_EXHAUSTION_OR_MISUSE)
def rabbit_churn(facts: BrokerFacts) -> list[Finding]:
    """Connections opened and closed at a high rate (short-lived publishers, reconnect loops)."""
    churn = facts.facts.get("churn") or {}
    measured = churn.get("connection_created_per_s")
    server = (churn.get("server_rates_per_s") or {}).get("connection_created")
    rate = measured if measured is not None else server
    out = []
    if isinstance(rate, int | float) and rate >= CHURN_PER_S:
        out.append(Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE,
            Severity.HIGH if rate >= 10 * CHURN_PER_S else Severity.MEDIUM,
            f"connection churn: {rate:.1f} new connections a second",
            "Clients open and close connections all the time instead of reusing them: a "
            "producer per request (broker_pool_limit=0 or None, a new Celery app or "
            "Connection per call, prefork children reconnecting). Each connect costs the broker "
            "a handshake and can exhaust sockets/ports; under load they time out.",
            [_ev(facts, f"connections opened {rate:.2f}/s, closed "
                        f"{churn.get('connection_closed_per_s', '?')}/s over "
                        f"{churn.get('interval_s')} s (server rate {server})")],
            Fix("Reuse connections: keep broker_pool_limit > 0, create the Celery app once per "
                "process, publish through app.producer_pool.", snippet="broker_pool_limit = 10"),
            confidence=0.7))
    channels = churn.get("channel_created_per_s")
    if isinstance(channels, int | float) and channels >= CHANNEL_CHURN_PER_S:
        out.append(Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE, Severity.LOW,
            f"channel churn: {channels:.1f} new channels a second",
            "Channels are opened per message instead of reused; costly for the broker.",
            [_ev(facts, f"channels opened {channels:.2f}/s")],
            Fix("Publish through a pooled producer (app.producer_pool)."), confidence=0.5))
    return out


@rule("CD-B06", "broker", Category.VERSION_INCOMPATIBILITY)
def rabbit_consumer_timeout(facts: BrokerFacts) -> list[Finding]:
    """RabbitMQ's consumer_timeout (delivery acknowledgement timeout) shorter than long tasks or ETAs."""
    f = facts.facts
    timeout = f.get("consumer_timeout_ms")
    held = [q for q in f.get("queues") or [] if q.get("unacked")]
    per_queue = [q for q in f.get("queues") or [] if q.get("consumer_timeout_ms")]
    if not isinstance(timeout, int) and not per_queue:
        return []
    evidence = []
    if isinstance(timeout, int):
        evidence.append(_ev(facts, f"consumer_timeout = {timeout} ms ({_duration_ms(timeout)}), "
                                   f"from {f.get('consumer_timeout_source')}"))
    evidence += [_ev(facts, f"queue {q['vhost']}/{q['name']}: x-consumer-timeout "
                            f"{q['consumer_timeout_ms']} ms") for q in per_queue[:5]]
    evidence += [_ev(facts, f"queue {q['vhost']}/{q['name']}: {q['unacked']} unacked, "
                            f"{q['consumers']} consumer(s)") for q in held[:5]]
    lowered = (isinstance(timeout, int) and timeout < DEFAULT_CONSUMER_TIMEOUT_MS) or any(
        isinstance(q.get("consumer_timeout_ms"), int)
        and q["consumer_timeout_ms"] < DEFAULT_CONSUMER_TIMEOUT_MS for q in per_queue)
    if not lowered and not held:
        return []
    shown = _duration_ms(timeout) if isinstance(timeout, int) else "per queue"
    return [Finding(
        Category.VERSION_INCOMPATIBILITY,
        Severity.MEDIUM if lowered else Severity.LOW,
        f"delivery acknowledgement timeout in effect ({shown})",
        "RabbitMQ 3.8.15+ closes the channel (PRECONDITION_FAILED, 'delivery acknowledgement "
        "timed out') of a consumer that holds a delivery unacked longer than this. Long tasks "
        "with task_acks_late, or ETA/countdown tasks held by the worker, cross it and the worker "
        "reconnects: it looks like a broker-side connection loss after a broker upgrade.",
        evidence,
        Fix("Raise consumer_timeout in rabbitmq.conf above the longest task/ETA, or keep ETA "
            "tasks short and acks early.", snippet="# rabbitmq.conf\nconsumer_timeout = 36000000"),
        confidence=0.6 if lowered else 0.4)]


# -- Redis ------------------------------------------------------------------------------------


@rule("CD-B07", "broker", Category.AUTH_OR_PERMISSIONS, Category.POOL_EXHAUSTION_OR_MISUSE)
def redis_login(facts: BrokerFacts) -> list[Finding]:
    """The probe could not authenticate to Redis (NOAUTH, WRONGPASS)."""
    login = facts.facts.get("login") or {}
    if login.get("ok", True):
        return []
    reason = login.get("reason")
    evidence = [_ev(facts, str(login.get("error")))]
    if reason == "maxclients":
        return [Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE, Severity.HIGH,
            "Redis refused the connection: max number of clients reached",
            "The server is at maxclients; every new worker, producer or result-backend "
            "connection fails until clients go away.", evidence,
            Fix("Find who holds the connections (CLIENT LIST), cap pools "
                "(broker_pool_limit, redis_max_connections), or raise maxclients.",
                snippet="broker_pool_limit = 10\nredis_max_connections = 20"),
            confidence=0.95)]
    titles = {
        "password_required": "Redis requires a password and the URL gives none",
        "password_not_configured": "a password was sent to a Redis that has none",
        "wrong_password": "Redis refused the password (or user)",
    }
    return [Finding(
        Category.AUTH_OR_PERMISSIONS, Severity.HIGH,
        titles.get(str(reason), "Redis refused the login"),
        "Every worker and producer fails at connect; kombu retries and logs errors that can "
        "look like network trouble.", evidence,
        Fix("Put the right credentials in broker_url: redis://[user]:password@host:port/db "
            "(percent-encode special characters)."),
        confidence=0.95)]


def _config(facts: BrokerFacts) -> dict[str, Any]:
    return facts.facts.get("config") or {}


def _info(facts: BrokerFacts) -> dict[str, Any]:
    return facts.facts.get("info") or {}


@rule("CD-B08", "broker", Category.REDIS_SERVER_TIMEOUT)
def redis_timeout(facts: BrokerFacts) -> list[Finding]:
    """Redis `timeout` is non-zero: idle client connections are closed by the server."""
    timeout = _config(facts).get("timeout")
    if not isinstance(timeout, int) or timeout <= 0:
        return []
    clients = facts.facts.get("clients") or {}
    evidence = [_ev(facts, f"CONFIG timeout = {timeout} s")]
    if clients.get("idle_max_s") is not None:
        evidence.append(_ev(facts, f"{clients.get('count')} other clients, longest idle "
                                   f"{clients.get('idle_max_s')} s"))
    half = max(1, min(25, timeout // 2))
    return [Finding(
        Category.REDIS_SERVER_TIMEOUT,
        Severity.HIGH if timeout < 300 else Severity.MEDIUM,
        f"Redis closes clients idle for more than {timeout} s",
        "With 'timeout' set, Redis drops any non-blocked, non-pub/sub client idle that long: "
        "pooled producer connections in web processes, the result backend, a worker between "
        "polls. The next use fails with 'Connection closed by server' / 'Connection reset by "
        "peer' / 'Error 32 Broken pipe'.",
        evidence,
        Fix(f"Set timeout 0 on the server, or make clients check connections idle for less than "
            f"{timeout} s before use.",
            snippet=(f"# redis: CONFIG SET timeout 0 (and timeout 0 in redis.conf)\n"
                     f"broker_transport_options = {{'health_check_interval': {half}}}\n"
                     f"result_backend_transport_options = {{'health_check_interval': {half}}}")),
        confidence=0.85)]


@rule("CD-B09", "broker", Category.NETWORK_IDLE_TIMEOUT)
def redis_keepalive(facts: BrokerFacts) -> list[Finding]:
    """Redis `tcp-keepalive` is off: dead peers and idle middlebox cuts go unnoticed."""
    if _config(facts).get("tcp-keepalive") != 0:
        return []
    return [Finding(
        Category.NETWORK_IDLE_TIMEOUT, Severity.LOW,
        "Redis sends no TCP keepalives",
        "With tcp-keepalive 0 an idle connection carries no packets at all: a NAT, load "
        "balancer or firewall may forget it, and dead clients linger on the server.",
        [_ev(facts, "CONFIG tcp-keepalive = 0")],
        Fix("Turn server keepalive on (Redis' default is 300 s), or lower it below the "
            "middlebox idle timeout.", snippet="# redis: CONFIG SET tcp-keepalive 60"),
        confidence=0.6)]


@rule("CD-B10", "broker", Category.POOL_EXHAUSTION_OR_MISUSE)
def redis_clients(facts: BrokerFacts) -> list[Finding]:
    """Clients near `maxclients`, or connections rejected for it."""
    info, config = _info(facts), _config(facts)
    maxclients = config.get("maxclients") or info.get("maxclients")
    connected = info.get("connected_clients")
    out = []
    share = _share(connected, maxclients)
    if share is not None and share >= NEAR:
        out.append(Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE, Severity.HIGH if share >= FULL else Severity.MEDIUM,
            f"Redis clients at {share:.0%} of maxclients",
            "When maxclients is reached Redis refuses new connections ('max number of clients "
            "reached'); workers and producers then fail at connect.",
            [_ev(facts, f"connected_clients = {connected}, maxclients = {maxclients}")],
            Fix("Cap client pools or raise maxclients (and the server's ulimit -n).",
                snippet="broker_pool_limit = 10\nredis_max_connections = 20"),
            confidence=0.8))
    rejected = info.get("rejected_connections")
    sample = facts.facts.get("rejections") or {}
    during = sample.get("during_probe")
    since = sample.get("since_start", rejected)
    if isinstance(during, int) and during > 0 and isinstance(since, int):
        out.append(Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE, Severity.HIGH,
            f"Redis rejected {during} connection{'s' if during != 1 else ''} during the "
            f"{sample.get('interval_s'):g} s probe",
            "rejected_connections counts connections refused because maxclients was reached, and it "
            "rose while celery-doctor watched: clients are being refused now.",
            [_ev(facts, f"rejected_connections {since - during} -> {since} in {sample.get('interval_s'):g} s, "
                        f"maxclients = {maxclients}, connected_clients = {connected}")],
            Fix("Find who holds the connections (CLIENT LIST), cap pools or raise maxclients.",
                snippet="broker_pool_limit = 10\nredis_max_connections = 20"),
            confidence=0.85))
    elif isinstance(since, int) and since > 0:
        # a counter since start: history. Judge today's use instead (the share above).
        watched = f"none during the {sample['interval_s']:g} s probe" if during == 0 else "not sampled twice"
        out.append(Finding(
            Category.POOL_EXHAUSTION_OR_MISUSE, Severity.LOW if during == 0 else Severity.MEDIUM,
            f"Redis rejected {since} connection{'s' if since != 1 else ''} since it started, {watched}",
            "rejected_connections counts connections refused because maxclients was reached at some "
            "time since the server started (uptime "
            f"{_uptime(info.get('uptime_in_seconds'))}). "
            + ("None were refused while celery-doctor watched and the clients are well under the limit "
               "now, so this is history; it matters if it lines up with the failures in your logs."
               if during == 0 else "Run the probe with --churn-interval to see whether it is still rising."),
            [_ev(facts, f"rejected_connections = {since}, maxclients = {maxclients}, "
                        f"connected_clients = {connected}")],
            Fix("If the times match your failures: find who held the connections (CLIENT LIST), cap pools "
                "or raise maxclients."),
            confidence=0.4 if during == 0 else 0.6))
    return out


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "unknown"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


@rule("CD-B11", "broker", Category.BROKER_RESOURCE_ALARM)
def redis_memory(facts: BrokerFacts) -> list[Finding]:
    """Redis near `maxmemory` with a policy that refuses writes or evicts Celery's keys."""
    info, config = _info(facts), _config(facts)
    maxmemory = config.get("maxmemory", info.get("maxmemory"))
    policy = str(config.get("maxmemory-policy") or info.get("maxmemory_policy") or "")
    used = info.get("used_memory")
    out = []
    share = _share(used, maxmemory)
    if policy == "noeviction" and share is not None and share >= NEAR:
        out.append(Finding(
            Category.BROKER_RESOURCE_ALARM, Severity.HIGH if share >= FULL else Severity.MEDIUM,
            f"Redis memory at {share:.0%} of maxmemory with noeviction",
            "At maxmemory, writes fail with OOM: publishing tasks and storing results error out.",
            [_ev(facts, f"used_memory {_mb(used)} of maxmemory {_mb(maxmemory)}, policy {policy}")],
            Fix("Raise maxmemory, drain queues, expire results (result_expires)."),
            confidence=0.85))
    if isinstance(maxmemory, int) and maxmemory > 0 and policy and policy != "noeviction":
        all_keys = policy.startswith("allkeys")
        out.append(Finding(
            Category.BROKER_RESOURCE_ALARM, Severity.MEDIUM if all_keys else Severity.LOW,
            f"Redis may evict keys (maxmemory-policy {policy})",
            "Celery keeps queues, unacked messages and bindings in ordinary keys. "
            + ("With an allkeys-* policy Redis may evict them under memory pressure: tasks "
               "vanish silently." if all_keys else
               "volatile-* only evicts keys with a TTL (results), but a shared instance is risky."),
            [_ev(facts, f"maxmemory {_mb(maxmemory)}, maxmemory-policy {policy}, "
                        f"used {_mb(used)}, evicted_keys {info.get('evicted_keys')}")],
            Fix("Use noeviction on the broker database, or a separate Redis for caches.",
                snippet="# redis: CONFIG SET maxmemory-policy noeviction"),
            confidence=0.6))
    evicted = info.get("evicted_clients")
    if isinstance(evicted, int) and evicted > 0:
        out.append(Finding(
            Category.BROKER_RESOURCE_ALARM, Severity.MEDIUM,
            f"Redis evicted {evicted} client(s) for memory (maxmemory-clients)",
            "Evicted clients see their connection closed by the server.",
            [_ev(facts, f"evicted_clients = {evicted}")],
            Fix("Raise maxmemory-clients or find the clients with large buffers (CLIENT LIST)."),
            confidence=0.7))
    return out


@rule("CD-B12", "broker", Category.BROKER_RESOURCE_ALARM)
def redis_pubsub_buffer(facts: BrokerFacts) -> list[Finding]:
    """Pub/sub output buffer limits that close result or event subscribers."""
    limits = (_config(facts).get("client-output-buffer-limit") or {})
    pubsub = limits.get("pubsub") if isinstance(limits, dict) else None
    disconnections = _info(facts).get("client_output_buffer_limit_disconnections")
    out = []
    if pubsub:
        hard, soft = pubsub.get("hard_bytes", 0), pubsub.get("soft_bytes", 0)
        small = (0 < hard < PUBSUB_DEFAULT_HARD) or (0 < soft < PUBSUB_DEFAULT_SOFT)
        if small:
            out.append(Finding(
                Category.BROKER_RESOURCE_ALARM, Severity.MEDIUM,
                "pub/sub output buffer limit below Redis' default",
                "Workers subscribe to events, pidbox and result channels. When a subscriber "
                "falls behind (many events, a busy worker), Redis closes it at this limit; the "
                "worker logs a lost connection.",
                [_ev(facts, f"client-output-buffer-limit pubsub {hard} {soft} "
                            f"{pubsub.get('soft_seconds')}")],
                Fix("Restore the default, or turn off events you do not use (worker_send_task_events).",
                    snippet="# redis: CONFIG SET client-output-buffer-limit \"pubsub 32mb 8mb 60\""),
                confidence=0.6))
    if isinstance(disconnections, int) and disconnections > 0:
        out.append(Finding(
            Category.BROKER_RESOURCE_ALARM, Severity.MEDIUM,
            f"Redis cut {disconnections} client(s) at the output buffer limit",
            "Clients that read too slowly (subscribers, MONITOR) were disconnected by the server.",
            [_ev(facts, f"client_output_buffer_limit_disconnections = {disconnections}")],
            Fix("Raise client-output-buffer-limit pubsub or reduce event volume."),
            confidence=0.7))
    return out


@rule("CD-B13", "broker", Category.BROKER_RESTART_OR_FAILOVER)
def redis_role(facts: BrokerFacts) -> list[Finding]:
    """The probed Redis is a replica or read-only (failover moved the master)."""
    info = _info(facts)
    out = []
    role = info.get("role")
    if role and role != "master":
        out.append(Finding(
            Category.BROKER_RESTART_OR_FAILOVER, Severity.HIGH,
            f"the URL points at a Redis {role}, not a master",
            "A replica is read-only: publishing fails with READONLY. After a failover the old "
            "master becomes a replica; clients that do not follow the switch keep failing.",
            [_ev(facts, f"role = {role}, master {info.get('master_host')}:{info.get('master_port')} "
                        f"link {info.get('master_link_status')}")],
            Fix("Point broker_url at the master, or use Sentinel (sentinel://) so clients follow "
                "failovers."),
            confidence=0.9))
    sentinel = facts.facts.get("sentinel") or {}
    flags = str(sentinel.get("master_flags") or "")
    if "s_down" in flags or "o_down" in flags:
        out.append(Finding(
            Category.BROKER_RESTART_OR_FAILOVER, Severity.HIGH,
            f"Sentinel reports master {sentinel.get('master_name')} down",
            "Sentinel sees the master as down; a failover may be under way.",
            [_ev(facts, f"sentinel flags: {flags}")],
            Fix("Check the master and the Sentinel quorum."), confidence=0.8))
    return out


RABBITMQ_RULES = [rabbit_login, rabbit_alarms, rabbit_limits, rabbit_heartbeat, rabbit_churn,
                  rabbit_consumer_timeout]
REDIS_RULES = [redis_login, redis_role, redis_timeout, redis_keepalive, redis_clients,
               redis_memory, redis_pubsub_buffer]
