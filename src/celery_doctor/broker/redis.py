"""Redis probe with redis-py: reachability, AUTH/ACL, INFO, CONFIG and the client list.

Celery's Redis transport keeps long-lived idle connections (producers in web processes,
the pidbox, the result backend), so what matters most is what the server does to idle or
slow clients: ``timeout``, ``tcp-keepalive``, ``maxclients`` and the pub/sub output buffer.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from celery_doctor.broker.interface import (
    BadURLError,
    BrokerProbe,
    BrokerTarget,
    UnreachableError,
    classify_network_error,
    parse_url,
    resolve,
)
from celery_doctor.model import BrokerFacts

PORTS = {"redis": 6379, "rediss": 6379, "sentinel": 26379}
TLS = {"rediss"}
PROBE_NAME = "celery-doctor-probe"
CONFIG_KEYS = ("timeout", "tcp-keepalive", "maxclients", "maxmemory", "maxmemory-policy",
               "client-output-buffer-limit")
INFO_KEYS = {
    "server": ("redis_version", "redis_mode", "uptime_in_seconds", "tcp_port"),
    "clients": ("connected_clients", "maxclients", "blocked_clients", "pubsub_clients",
                "client_recent_max_output_buffer"),
    "memory": ("used_memory", "maxmemory", "maxmemory_policy", "used_memory_peak"),
    "stats": ("total_connections_received", "rejected_connections", "evicted_clients",
              "evicted_keys", "client_output_buffer_limit_disconnections",
              "client_query_buffer_limit_disconnections"),
    "replication": ("role", "master_host", "master_port", "master_link_status"),
}


class _LoginFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RedisProbe(BrokerProbe):
    schemes = tuple(PORTS)

    def parse(self, url: str) -> BrokerTarget:
        # Celery's Sentinel URL lists every sentinel: "sentinel://h1:26379;sentinel://h2:26379"
        pieces = [p for p in url.split(";") if p.strip()]
        if not pieces:
            raise BadURLError("bad broker URL: empty")
        targets = [parse_url(p, PORTS, TLS) for p in pieces]
        first = targets[0]
        if len(targets) > 1 and any(t.scheme != "sentinel" for t in targets):
            raise BadURLError(f"bad broker URL {first.url}: only sentinel:// URLs may be joined with ';'")
        db = first.path.strip("/") or "0"
        if not (db.isascii() and db.isdigit()) or len(db) > 6:  # "²".isdigit() is True, int("²") fails
            raise BadURLError(f"bad broker URL {first.url}: the path must be a database number, not {db!r}")
        first.path = db
        first.extra = targets[1:]
        return first

    def probe(self) -> BrokerFacts:
        started = time.monotonic()
        t = self.target
        facts = BrokerFacts(kind="redis", url=t.url, host=t.host, port=t.port)
        facts.facts.update(db=int(t.path), tls=t.tls, user=t.username)
        if t.scheme == "sentinel":
            host, port = self._sentinel(facts)
        else:
            host, port = t.host, t.port
        client = self._connect(host, port, facts)
        if client is not None:
            try:
                self._inspect(client, facts)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if not self.budget.expired:
                    facts.notes.append(t.scrub(f"the connection broke while reading the server's state: "
                                               f"{_first_line(exc)}"))
            finally:
                client.close()
            if self.budget.expired:
                facts.notes.append(f"the server answered too slowly: the {self.options.timeout:g} s budget "
                                   "(--timeout) ran out before every fact was read")
        facts.elapsed_s = round(time.monotonic() - started, 3)
        return facts

    # -- connecting ----------------------------------------------------------------------------

    def _client(self, host: str, port: int, password: str | None, username: str | None,
                db: int, tls: bool, protocol: int = 3) -> redis.Redis:
        """A connected client (single connection: redis-py connects in the constructor)."""
        timeout = self.step_timeout()
        budget = self.budget
        kwargs: dict[str, Any] = {}
        if tls:
            kwargs.update(ssl=True, ssl_cert_reqs="required")

        def on_connect(connection: Any) -> None:
            budget.guard(getattr(connection, "_sock", None))  # a trickled handshake cannot outlive the budget
            connection.on_connect()

        return redis.Redis(
            host=host, port=port, db=db, username=username, password=password, protocol=protocol,
            socket_connect_timeout=timeout, socket_timeout=timeout,
            redis_connect_func=on_connect,  # type: ignore[arg-type]  # redis-py calls it with the connection
            retry=Retry(NoBackoff(), 0), health_check_interval=0, single_connection_client=True, **kwargs)

    def _client_any_protocol(self, host: str, port: int, password: str | None, username: str | None,
                             db: int, tls: bool, facts: BrokerFacts | None = None) -> redis.Redis:
        """RESP3 first (HELLO 3); a server before Redis 6, or a managed one that hides HELLO,
        answers -ERR unknown command: talk RESP2 to it, as Celery's clients do."""
        try:
            client = self._client(host, port, password, username, db, tls, 3)
            protocol = 3
        except ResponseError as exc:
            if "hello" not in str(exc).lower():
                raise
            client = self._client(host, port, password, username, db, tls, 2)
            protocol = 2
        if facts is not None:
            facts.facts["protocol"] = f"RESP{protocol}"
        return client

    def _connect(self, host: str, port: int, facts: BrokerFacts) -> redis.Redis | None:
        """A connected client, or None when the login was refused (recorded in ``facts``)."""
        t = self.target
        target = BrokerTarget(t.scheme, host, port, t.username, t.password, t.path, t.tls, t.url)
        address = resolve(host, port, self.step_timeout())
        facts.reachable = True
        # TLS needs the name for the certificate check; plain TCP uses the address we resolved
        try:
            client = self._client_any_protocol(host if t.tls else address, port, t.password, t.username,
                                               int(t.path), t.tls, facts)
        except (AuthenticationError, AuthenticationWrongNumberOfArgsError) as exc:
            facts.logged_in = False
            facts.facts["login"] = {"ok": False, "error": t.scrub(_first_line(exc)),
                                    "reason": _auth_reason(str(exc), bool(t.password))}
            return None
        except RedisConnectionError as exc:
            if "max number of clients reached" in str(exc):
                facts.facts["login"] = {"ok": False, "error": "max number of clients reached",
                                        "reason": "maxclients"}
                return None
            raise self._unreachable(exc, target) from None
        except RedisTimeoutError as exc:
            raise self._unreachable(exc, target) from None
        except RedisError as exc:
            if self.budget.expired:
                raise self.stalled(target.address, "Redis handshake") from None
            raise UnreachableError("closed", t.scrub(f"{target.address}: {_first_line(exc)}")) from None
        facts.logged_in = True
        facts.facts["login"] = {"ok": True}
        try:
            client.client_setname(PROBE_NAME)  # so CLIENT LIST can leave us out
        except (NoPermissionError, ResponseError):
            pass
        except AuthenticationError as exc:  # NOAUTH: no password given, one is required
            client.close()
            facts.logged_in = False
            facts.facts["login"] = {"ok": False, "error": t.scrub(_first_line(exc)),
                                    "reason": _auth_reason(str(exc), bool(t.password))}
            return None
        except (RedisConnectionError, RedisTimeoutError) as exc:
            client.close()
            raise self._unreachable(exc, target) from None
        return client

    def _unreachable(self, exc: RedisError, target: BrokerTarget) -> UnreachableError:
        text = str(exc)
        cause = exc.__cause__ or exc.__context__
        timeout = self.options.timeout  # as the user gave it, for the messages
        if self.budget.expired and "connecting" not in text and not isinstance(exc, RedisTimeoutError):
            return self.stalled(target.address, "Redis handshake")
        if isinstance(exc, RedisTimeoutError):
            stage = "tcp" if "connecting" in text else "greeting"
            if stage == "tcp" and target.tls:
                stage = "tls" if _tcp_open(target.host, target.port, self.step_timeout()) else "tcp"
            return classify_network_error(TimeoutError(), target, stage, timeout, "Redis")
        if isinstance(cause, OSError | ssl.SSLError):
            stage = "tcp" if "connecting" in text and not isinstance(cause, ssl.SSLError) else "greeting"
            return classify_network_error(cause, target, stage, timeout, "Redis")
        return classify_network_error(OSError(text), target, "greeting", timeout, "Redis")

    def _sentinel(self, facts: BrokerFacts) -> tuple[str, int]:
        """Ask each sentinel in turn which master it points to."""
        t = self.target
        errors: list[str] = []
        info: dict[str, Any] = {"sentinels": [x.address for x in (t, *t.extra)]}
        facts.facts["sentinel"] = info
        for sentinel in (t, *t.extra):
            try:
                address = resolve(sentinel.host, sentinel.port, self.step_timeout())
            except UnreachableError as exc:
                errors.append(str(exc))
                continue
            client: redis.Redis | None = None
            try:
                try:
                    client = self._client_any_protocol(address, sentinel.port, None, None, 0, False)
                    masters = client.sentinel_masters()
                except AuthenticationError:
                    if client is not None:
                        client.close()
                    client = self._client_any_protocol(address, sentinel.port, sentinel.password,
                                                       sentinel.username, 0, False)
                    masters = client.sentinel_masters()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                errors.append(str(self._unreachable(exc, sentinel)))
                continue
            except RedisError as exc:
                errors.append(t.scrub(f"{sentinel.address}: {_first_line(exc)}"))
                continue
            finally:
                if client is not None:
                    client.close()
            if not isinstance(masters, dict):  # RESP2 gives name -> state
                masters = {}
            names = sorted(str(n) for n in masters)
            info.update(answered_by=sentinel.address, masters=names)
            name: str | None = self.options.sentinel_master
            if name is None:
                if len(names) != 1:
                    raise BadURLError(
                        f"sentinel {sentinel.address} knows masters {names or 'none'}: "
                        "choose one with --sentinel-master NAME")
                name = names[0]
            if name not in masters:
                raise BadURLError(f"sentinel {sentinel.address} knows no master named {name!r} "
                                  f"(it knows {names or 'none'})")
            state = masters[name] if isinstance(masters[name], dict) else {}
            port = str(state.get("port") or "")
            if not (state.get("ip") and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                raise UnreachableError("closed", f"sentinel {sentinel.address} gave no usable address for "
                                                 f"master {name!r}")
            info.update(master_name=name, master=f"{state.get('ip')}:{port}",
                        master_flags=state.get("flags"),
                        num_other_sentinels=state.get("num-other-sentinels"))
            return str(state.get("ip")), int(port)
        raise UnreachableError("unreachable", "no sentinel answered: " + "; ".join(errors))

    # -- what the server says ------------------------------------------------------------------

    def _inspect(self, client: redis.Redis, facts: BrokerFacts) -> None:
        t = self.target
        try:
            info = client.info("everything")
        except NoPermissionError as exc:
            facts.notes.append(t.scrub(f"INFO not allowed for this user: {_first_line(exc)}"))
            info = {}
        except AuthenticationError as exc:  # NOAUTH: no password given, one is required
            facts.logged_in = False
            facts.facts["login"] = {"ok": False, "error": t.scrub(_first_line(exc)),
                                    "reason": _auth_reason(str(exc), bool(t.password))}
            return
        except ResponseError as exc:
            facts.notes.append(t.scrub(f"INFO failed: {_first_line(exc)}"))
            info = {}
        picked = {key: info[key] for keys in INFO_KEYS.values() for key in keys if key in info}
        facts.facts["info"] = picked
        facts.version = picked.get("redis_version")
        facts.facts["config"] = self._config(client, facts)
        facts.facts["clients"] = self._clients(client, facts)
        facts.facts["rejections"] = self._rejections(client, picked, facts)

    def _rejections(self, client: redis.Redis, first: dict[str, Any], facts: BrokerFacts) -> dict[str, Any] | None:
        """rejected_connections counts since the server started: history, not a present fault.
        A second sample --churn-interval later (inside the budget) tells a server refusing
        clients now from one that refused some hours ago."""
        before = first.get("rejected_connections")
        if not isinstance(before, int):
            return None
        sample: dict[str, Any] = {"since_start": before, "during_probe": None, "interval_s": None}
        wait = min(max(0.0, self.options.churn_interval), self.budget.deadline - time.monotonic() - 0.5)
        if wait <= 0:
            return sample
        t0 = time.monotonic()
        time.sleep(wait)
        try:
            second = client.info("stats")
        except RedisError:
            return sample
        after = second.get("rejected_connections")
        if isinstance(after, int):
            sample.update(since_start=after, during_probe=max(0, after - before),
                          interval_s=round(time.monotonic() - t0, 2),
                          received_during_probe=_count(second.get("total_connections_received"))
                          - _count(first.get("total_connections_received")))
        return sample

    def _config(self, client: redis.Redis, facts: BrokerFacts) -> dict[str, Any] | None:
        config: dict[str, Any] = {}
        for key in CONFIG_KEYS:
            try:
                config.update({str(k): v for k, v in client.config_get(key).items()})
            except (NoPermissionError, ResponseError) as exc:
                # managed services rename or forbid CONFIG: say so, carry on with INFO alone
                facts.notes.append(self.target.scrub(f"CONFIG GET not allowed: {_first_line(exc)}"))
                facts.facts["config_allowed"] = False
                return None
        facts.facts["config_allowed"] = True
        out: dict[str, Any] = {}
        for key, value in config.items():
            out[key] = int(value) if isinstance(value, str) and value.isdigit() else value
        limits = _output_buffer_limits(str(config.get("client-output-buffer-limit", "")))
        if limits:
            out["client-output-buffer-limit"] = limits
        return out

    def _clients(self, client: redis.Redis, facts: BrokerFacts) -> dict[str, Any] | None:
        try:
            rows = client.client_list()
        except (NoPermissionError, ResponseError) as exc:
            facts.notes.append(self.target.scrub(f"CLIENT LIST not allowed: {_first_line(exc)}"))
            return None
        others = [r for r in rows if isinstance(r, dict) and r.get("name") != PROBE_NAME]
        idle = sorted(_count(r.get("idle")) for r in others)
        age = sorted(_count(r.get("age")) for r in others)
        flags = [str(r.get("flags", "")) for r in others]
        summary: dict[str, Any] = {
            "count": len(others),
            "pubsub": sum(1 for f in flags if "P" in f),
            "blocked": sum(1 for f in flags if "b" in f),
            "idle_max_s": idle[-1] if idle else None,
            "idle_median_s": statistics.median(idle) if idle else None,
            "idle_over_60s": sum(1 for i in idle if i > 60),
            "idle_over_300s": sum(1 for i in idle if i > 300),
            "age_median_s": statistics.median(age) if age else None,
            "age_under_10s": sum(1 for a in age if a < 10),
        }
        by_addr: dict[str, int] = {}
        for r in others:
            host = str(r.get("addr", "?")).rsplit(":", 1)[0]
            by_addr[host] = by_addr.get(host, 0) + 1
        summary["by_host"] = dict(sorted(by_addr.items(), key=lambda kv: -kv[1])[:10])
        return summary


def _count(value: Any) -> int:
    """A non-negative count from CLIENT LIST; 0 for anything else (a proxy may answer oddly)."""
    text = str(value or "0")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _auth_reason(text: str, gave_password: bool) -> str:
    low = text.lower()
    if "without any password configured" in low or "no password is set" in low:
        return "password_not_configured"  # a password was sent to a server that has none
    if "required" in low or "noauth" in low:
        return "password_required" if not gave_password else "wrong_password"
    return "wrong_password"


def _output_buffer_limits(raw: str) -> dict[str, dict[str, int]]:
    """'normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60' -> per class."""
    words = raw.split()
    out: dict[str, dict[str, int]] = {}
    for i in range(0, len(words) - 3, 4):
        name, hard, soft, seconds = words[i:i + 4]
        try:
            out[name] = {"hard_bytes": int(hard), "soft_bytes": int(soft), "soft_seconds": int(seconds)}
        except ValueError:
            continue
    return out


def _tcp_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
