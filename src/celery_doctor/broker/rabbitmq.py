"""RabbitMQ probe: an AMQP handshake with py-amqp, then the management API, then the CLI.

The handshake tells what every Celery client will get (login, vhost, negotiated heartbeat,
connection.blocked); the management API tells what the broker enforces and how it is used
(alarms, limits, churn, heartbeat-less clients, unacked deliveries); ``rabbitmqctl`` /
``rabbitmq-diagnostics`` fill the gaps when the node runs on this machine.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import amqp
from amqp import transport as amqp_transport
from amqp.exceptions import AMQPError

from celery_doctor.broker.interface import (
    BrokerProbe,
    BrokerTarget,
    Budget,
    UnreachableError,
    classify_network_error,
    parse_url,
    resolve,
    split_authority,
)
from celery_doctor.model import BrokerFacts
from celery_doctor.redact import redact

PORTS = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671, "pyamqps": 5671}
TLS = {"amqps", "pyamqps"}
MANAGEMENT_PORT = 15672
PROBE_NAME = "celery-doctor broker probe"
# Unroutable on purpose: published to the default exchange, it is dropped by the broker.
PROBE_ROUTING_KEY = "celery-doctor.probe.unroutable"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_BODY = 32 * 1024 * 1024  # a management answer larger than this is not RabbitMQ's
# What a failed management request can raise (http.client's own errors are not OSErrors).
HTTP_FAILURES = (OSError, ValueError, http.client.HTTPException)


class ManagementHTTPError(Exception):
    """The management API answered with an HTTP error status."""

    def __init__(self, code: int, reason: str, body: bytes) -> None:
        super().__init__(f"HTTP {code} {reason}")
        self.code, self.reason, self.body = code, reason, body


class _ProbeConnection(amqp.Connection):
    """A py-amqp connection that remembers how far the handshake got."""

    stage = "tcp"
    budget: Budget | None = None
    first_bytes = b""  # what the server sent first: an AMQP method frame starts 01 00 00

    def Transport(self, host: str, connect_timeout: float | None, ssl: Any = False,
                  read_timeout: float | None = None, write_timeout: float | None = None,
                  socket_settings: Any = None, **kwargs: Any) -> Any:
        conn = self
        base = amqp_transport.SSLTransport if ssl else amqp_transport.TCPTransport

        class Tracked(base):  # type: ignore[misc, valid-type]
            def _init_socket(self, *args: Any, **kw: Any) -> None:
                conn.stage = "tls" if ssl else "greeting"
                if conn.budget is not None:  # a trickled handshake cannot outlive the budget
                    conn.budget.guard(self.sock)
                super()._init_socket(*args, **kw)
                conn.stage = "greeting"

            def _read(self, n: int, initial: bool = False) -> bytes:
                try:
                    data: bytes = super()._read(n, initial)
                except BaseException:
                    conn.first_bytes = (conn.first_bytes + bytes(self._read_buffer or b""))[:3]
                    raise
                conn.first_bytes = (conn.first_bytes + data)[:3]
                return data

        tracked_kwargs: dict[str, Any] = {"ssl": ssl} if ssl else {}
        return Tracked(host, connect_timeout=connect_timeout, read_timeout=read_timeout,
                       write_timeout=write_timeout, socket_settings=socket_settings,
                       **tracked_kwargs, **kwargs)

    def _on_start(self, *args: Any, **kwargs: Any) -> None:
        self.stage = "login"
        super()._on_start(*args, **kwargs)

    def _on_tune(self, *args: Any, **kwargs: Any) -> None:
        self.stage = "vhost"
        super()._on_tune(*args, **kwargs)

    def _on_open_ok(self) -> None:
        self.stage = "open"
        super()._on_open_ok()


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    return value


class _Blocked(Exception):
    """Raised from the connection.blocked callback to end the round trip at once."""


class RabbitMQProbe(BrokerProbe):
    schemes = tuple(PORTS)
    _raise_on_blocked = False

    def parse(self, url: str) -> BrokerTarget:
        target = parse_url(url, PORTS, TLS)
        # kombu's convention: "amqp://host//" and "amqp://host/" and "amqp://host" mean vhost "/"
        target.path = target.path or "/"
        if target.username is None:
            target.username, target.password = "guest", target.password or "guest"
        return target

    # -- the whole probe ----------------------------------------------------------------------

    def probe(self) -> BrokerFacts:
        started = time.monotonic()
        t = self.target
        facts = BrokerFacts(kind="rabbitmq", url=t.url, host=t.host, port=t.port)
        facts.facts.update(vhost=t.path, user=t.username, tls=t.tls,
                           requested_heartbeat=self.options.heartbeat)
        address = resolve(t.host, t.port, self.step_timeout())
        facts.reachable = True  # DNS answered; AMQP step below refines it
        self._amqp(address, facts)
        churn = self._management(facts)
        self._local_cli(facts)
        if churn is not None:
            self._churn(*churn, facts)
        if self.budget.expired:
            facts.notes.append(f"the {self.options.timeout:g} s budget (--timeout) ran out before every "
                               "fact was read; the ones missing are marked as not checked")
        facts.elapsed_s = round(time.monotonic() - started, 3)
        return facts

    # -- AMQP handshake ------------------------------------------------------------------------

    def _amqp(self, address: str, facts: BrokerFacts) -> None:
        t, timeout = self.target, self.step_timeout()
        blocked: list[str] = []
        host = f"[{address}]:{t.port}" if ":" in address else f"{address}:{t.port}"
        ssl_opts: Any = False
        if t.tls:
            # a default context: system CAs, hostname checked against the URL's host
            ssl_opts = {"context": {}, "server_hostname": t.host}
        conn = _ProbeConnection(
            host=host, userid=t.username, password=t.password or "", virtual_host=t.path,
            login_method="PLAIN", ssl=ssl_opts, connect_timeout=timeout,
            read_timeout=timeout, write_timeout=timeout, heartbeat=self.options.heartbeat,
            client_properties={"connection_name": PROBE_NAME},
            on_blocked=lambda reason: self._on_blocked(blocked, reason),
            on_unblocked=lambda: blocked.clear(),
        )
        conn.budget = self.budget
        try:
            conn.connect()
        except AMQPError as exc:  # the server said no, in protocol: a finding, not an error
            facts.logged_in = conn.stage == "vhost"
            facts.facts["login"] = {
                "ok": False,
                "stage": conn.stage,
                "code": exc.reply_code,
                "error": t.scrub(exc.reply_text or str(exc)),
            }
            self._server_properties(conn, facts)
            return
        except (OSError, ssl.SSLError) as exc:
            stalled = self.budget.expired or isinstance(exc, TimeoutError | socket.timeout)
            heard = conn.first_bytes
            # the start of a method frame on channel 0 (even one byte of it, trickled) is AMQP
            began = conn.stage in ("login", "vhost", "open") or (bool(heard) and b"\x01\x00\x00".startswith(heard[:3]))
            if stalled and began:
                # no answer is not a "no": a broker refusing a login closes or says so at once
                with contextlib.suppress(OSError):
                    conn.collect()
                raise self.stalled(t.address, f"AMQP handshake (stage: {conn.stage})") from None
            if conn.stage in ("login", "vhost"):
                # the socket went away after the greeting: brokers without
                # authentication_failure_close drop the connection on a bad login
                facts.logged_in = False
                facts.facts["login"] = {"ok": False, "stage": conn.stage, "code": None,
                                        "error": t.scrub(f"connection closed during {conn.stage}: {exc}")}
                with contextlib.suppress(OSError):
                    conn.collect()
                self._server_properties(conn, facts)
                return
            if self.budget.expired and conn.stage == "greeting":
                exc = TimeoutError()  # the budget shut the socket: a silence, not a close
            raise classify_network_error(exc, t, conn.stage, self.options.timeout, "AMQP") from None
        facts.logged_in = True
        facts.facts["login"] = {"ok": True, "stage": "open"}
        self._server_properties(conn, facts)
        facts.facts.update(
            server_heartbeat=getattr(conn, "server_heartbeat", None),
            negotiated_heartbeat=conn.heartbeat,
            frame_max=conn.frame_max,
            channel_max=conn.channel_max,
        )
        try:
            self._blocked_check(conn, blocked, facts)
        finally:
            try:
                if blocked:  # a blocked broker stops reading: do not wait for close-ok
                    conn.collect()
                else:
                    conn.close()
            except (OSError, AMQPError):
                conn.collect()

    def _server_properties(self, conn: amqp.Connection, facts: BrokerFacts) -> None:
        props = _text(conn.server_properties or {})
        if not props:
            return
        caps = props.get("capabilities") or {}
        facts.version = props.get("version")
        facts.facts["server"] = {
            "product": props.get("product"),
            "version": props.get("version"),
            "cluster_name": props.get("cluster_name"),
            "platform": props.get("platform"),
            "capabilities": sorted(k for k, v in caps.items() if v),
        }
        facts.facts["announces_connection_blocked"] = bool(caps.get("connection.blocked"))

    def _blocked_check(self, conn: amqp.Connection, blocked: list[str], facts: BrokerFacts) -> None:
        """Publish one unroutable message, then make a round trip.

        A broker under a resource alarm blocks a connection when it publishes and says so with
        connection.blocked before it stops reading; a healthy one answers the round trip at once.
        """
        if not facts.facts.get("announces_connection_blocked"):
            facts.facts["blocked_now"] = None
            return
        self._raise_on_blocked = True
        try:
            channel = conn.channel()
            channel.basic_publish(amqp.Message(b""), exchange="", routing_key=PROBE_ROUTING_KEY)
            channel.basic_qos(0, 1, False)
        except _Blocked:
            pass
        except (OSError, AMQPError) as exc:
            facts.notes.append(self.target.scrub(f"blocked check failed: {exc}"))
        finally:
            self._raise_on_blocked = False
        facts.facts["blocked_now"] = bool(blocked)
        if blocked:
            facts.facts["blocked_reason"] = blocked[0]

    def _on_blocked(self, blocked: list[str], reason: str | None) -> None:
        blocked.append(reason or "blocked")
        if self._raise_on_blocked:
            raise _Blocked(reason)

    # -- management API ------------------------------------------------------------------------

    def _management_base(self) -> str:
        if self.options.management_url:
            return self.options.management_url.strip().rstrip("/")
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"http://{host}:{MANAGEMENT_PORT}"

    def _management_parts(self, base: str) -> tuple[str, str, int, str, str, str]:
        """(scheme, host, port, path prefix, user, password) of the management URL; its userinfo
        is everything before the last "@" (a "/" in the password must not become the path)."""
        scheme, userinfo, rest = split_authority(base)
        parts = urlsplit(f"{scheme.lower()}://{rest}")
        port = parts.port  # ValueError for a bad port: reported by the caller, scrubbed
        user_raw, colon, password_raw = userinfo.partition(":")
        user = unquote(user_raw) if userinfo else (self.target.username or "")
        password = unquote(password_raw) if colon else (self.target.password or "")
        default = 443 if parts.scheme == "https" else 80
        return parts.scheme, parts.hostname or "", port or default, parts.path.rstrip("/"), user, password

    def _get(self, base: str, path: str) -> Any:
        """GET one management API path as JSON, within the probe's budget and a size bound."""
        scheme, host, port, prefix, user, password = self._management_parts(base)
        timeout = self.step_timeout()
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            conn.connect()
            self.budget.guard(conn.sock)  # headers or a body trickled byte by byte end with the budget
            conn.request("GET", prefix + path, headers={"Authorization": f"Basic {token}",
                                                         "Accept": "application/json"})
            response = conn.getresponse()
            body = bytearray()
            while chunk := response.read(65536):
                body += chunk
                if len(body) > MAX_BODY:
                    raise ValueError(f"answer larger than {MAX_BODY // (1024 * 1024)} MB")
            if self.budget.expired:
                raise TimeoutError("no complete answer within the --timeout budget")
            if response.status >= 400:
                raise ManagementHTTPError(response.status, response.reason, bytes(body))
            return json.loads(bytes(body))
        finally:
            conn.close()

    def _management(self, facts: BrokerFacts) -> tuple[str, dict[str, Any], float] | None:
        """Read the management API; returns what the churn sample needs (taken last)."""
        base = self._management_base()
        scheme, userinfo, rest = split_authority(base)
        _, colon, password_raw = userinfo.partition(":")
        extra = tuple(p for p in {password_raw, unquote(password_raw)} if colon and p)
        safe_base = self.target.scrub(redact(f"{scheme}://{rest}", extra))
        info: dict[str, Any] = {"url": safe_base, "available": False}
        facts.facts["management"] = info
        if scheme.lower() not in ("http", "https"):
            info["error"] = "management URL must be http:// or https://"
            facts.notes.append(f"management API {safe_base}: {info['error']}")
            return None
        try:
            first = self._get(base, "/api/overview")
            if not isinstance(first, dict):
                raise ValueError("the overview is not a JSON object (is this the RabbitMQ management API?)")
        except ManagementHTTPError as exc:
            info["error"] = f"HTTP {exc.code} {exc.reason}" + (
                " (credentials refused or user lacks the management/monitoring tag)"
                if exc.code == 401 else "")
            info["status"] = exc.code
        except HTTP_FAILURES as exc:
            reason = "no complete answer within the --timeout budget" if self.budget.expired else _reason(exc)
            info["error"] = self.target.scrub(redact(f"not reachable: {reason}", extra))
        if "error" in info:
            facts.notes.append(f"management API {safe_base}: {info['error']}; node limits, churn "
                               "and client heartbeats not checked")
            return None
        info["available"] = True
        t0 = time.monotonic()
        facts.version = facts.version or _str_or_none(first.get("rabbitmq_version"))
        server = facts.facts.setdefault("server", {})
        if isinstance(server, dict):
            server.setdefault("cluster_name", _str_or_none(first.get("cluster_name")))
        facts.facts["management_version"] = _str_or_none(first.get("management_version"))
        steps = {
            "nodes": self._nodes,
            "alarms": self._alarms,
            "connections": self._connections,
            "queues": self._queues,
            "vhost": self._vhost,
        }
        for name, step in steps.items():
            if self.budget.expired:
                facts.notes.append(f"management {name}: not read (the --timeout budget ran out)")
                continue
            try:
                step(base, facts)
            except ManagementHTTPError as exc:
                facts.notes.append(f"management {name}: HTTP {exc.code} {exc.reason}")
            except (*HTTP_FAILURES, AttributeError, TypeError) as exc:  # TypeError, AttributeError: odd shapes
                facts.notes.append(self.target.scrub(redact(f"management {name}: {_reason(exc)}", extra)))
        return base, first, t0

    def _nodes(self, base: str, facts: BrokerFacts) -> None:
        nodes = []
        alarms = []
        for node in _rows(self._get(base, "/api/nodes")):
            entry = {key: node.get(key) for key in (
                "name", "running", "mem_used", "mem_limit", "mem_alarm", "disk_free",
                "disk_free_limit", "disk_free_alarm", "fd_used", "fd_total", "sockets_used",
                "sockets_total", "proc_used", "proc_total", "uptime")}
            nodes.append(entry)
            if node.get("mem_alarm"):
                alarms.append({"node": node.get("name"), "resource": "memory"})
            if node.get("disk_free_alarm"):
                alarms.append({"node": node.get("name"), "resource": "disk"})
        facts.facts["nodes"] = nodes
        facts.facts["alarms"] = alarms
        facts.facts["alarms_source"] = "management API"

    def _alarms(self, base: str, facts: BrokerFacts) -> None:
        """Alarms in effect now (the node stats above lag by the 5 s statistics interval)."""
        try:
            doc = self._get(base, "/api/health/checks/alarms")
        except ManagementHTTPError as exc:
            if exc.code != 503:  # 503 is the "alarms in effect" answer; 404 before 3.8.10
                if exc.code == 404:
                    return
                raise
            doc = json.loads(exc.body or b"{}")
        facts.facts["alarms"] = [{"node": a.get("node"), "resource": a.get("resource")}
                                 for a in _rows(_dict(doc).get("alarms"))]
        facts.facts["alarms_source"] = "management API health check"

    def _connections(self, base: str, facts: BrokerFacts) -> None:
        columns = ("name,user,vhost,peer_host,peer_port,timeout,state,client_properties,"
                   "connected_at,channels,ssl,protocol")
        rows = []
        for conn in _rows(self._get(base, f"/api/connections?columns={columns}")):
            props = _dict(conn.get("client_properties"))
            if props.get("connection_name") == PROBE_NAME:
                continue  # ourselves
            product = props.get("product") or "?"
            version = props.get("version") or ""
            rows.append({
                "name": conn.get("name"),
                "user": conn.get("user"),
                "vhost": conn.get("vhost"),
                "peer": f"{conn.get('peer_host')}:{conn.get('peer_port')}",
                "client": f"{product} {version}".strip(),
                "connection_name": props.get("connection_name"),
                "heartbeat_s": conn.get("timeout"),
                "state": conn.get("state"),
                "channels": conn.get("channels"),
                "connected_at_ms": conn.get("connected_at"),
            })
        facts.facts["connections"] = rows

    def _queues(self, base: str, facts: BrokerFacts) -> None:
        columns = ("name,vhost,consumers,messages_ready,messages_unacknowledged,arguments,"
                   "effective_policy_definition,type,state")
        rows = []
        for queue in _rows(self._get(base, f"/api/queues?columns={columns}")):
            args = _dict(queue.get("arguments"))
            policy = queue.get("effective_policy_definition") or {}
            if not isinstance(policy, dict):
                policy = {}
            timeout = args.get("x-consumer-timeout", policy.get("consumer-timeout"))
            rows.append({
                "vhost": queue.get("vhost"),
                "name": queue.get("name"),
                "type": queue.get("type"),
                "state": queue.get("state"),
                "consumers": queue.get("consumers") or 0,
                "ready": queue.get("messages_ready") or 0,
                "unacked": queue.get("messages_unacknowledged") or 0,
                "consumer_timeout_ms": timeout,
            })
        facts.facts["queues"] = rows

    def _vhost(self, base: str, facts: BrokerFacts) -> None:
        login = facts.facts.get("login") or {}
        if login.get("ok"):
            return
        try:
            self._get(base, "/api/vhosts/" + quote(self.target.path, safe=""))
            facts.facts["vhost_exists"] = True
        except ManagementHTTPError as exc:
            if exc.code != 404:
                raise
            facts.facts["vhost_exists"] = False

    def _churn(self, base: str, first: dict[str, Any], t0: float, facts: BrokerFacts) -> None:
        """Connection/channel open and close rates from two overview samples, the second taken
        --churn-interval after the first but never past the --timeout budget."""
        interval = max(0.0, self.options.churn_interval)
        churn: dict[str, Any] = {"interval_s": interval}
        keys = ("connection_created", "connection_closed", "channel_created", "channel_closed")
        rates = _dict(first.get("churn_rates"))
        churn["server_rates_per_s"] = {key: _dict(rates.get(f"{key}_details")).get("rate") for key in keys}
        churn["connections_now"] = _dict(first.get("object_totals")).get("connections")
        if interval > 0:
            # leave room for the second request inside the budget
            wait = min(interval - (time.monotonic() - t0), self.budget.deadline - time.monotonic() - 0.5)
            if time.monotonic() - t0 + max(wait, 0) < 0.5:
                facts.notes.append("churn sampled once: the --timeout budget left no room for a second sample")
                second = None
            else:
                if wait > 0:
                    time.sleep(wait)
                try:
                    second = _dict(self._get(base, "/api/overview"))
                except (ManagementHTTPError, *HTTP_FAILURES) as exc:
                    facts.notes.append(self.target.scrub(f"second churn sample failed: {_reason(exc)}"))
                    second = None
            if second is not None:
                elapsed = max(time.monotonic() - t0, 0.001)
                churn["interval_s"] = round(elapsed, 2)
                a, b = rates, _dict(second.get("churn_rates"))
                for key in keys:
                    if isinstance(a.get(key), int) and isinstance(b.get(key), int):
                        # the probe's own connection and channel may land in this window
                        delta = max(0, b[key] - a[key] - 1)
                        churn[f"{key}_per_s"] = round(delta / elapsed, 3)
                churn["connections_now"] = _dict(second.get("object_totals")).get("connections")
        facts.facts["churn"] = churn

    # -- local CLI fallback --------------------------------------------------------------------

    def _is_local(self) -> bool:
        host = self.target.host.lower()
        return host in LOCAL_HOSTS or host in {socket.gethostname().lower(), socket.getfqdn().lower()}

    def _cli(self, *args: str) -> str | None:
        # the local CLI boots an Erlang VM (about a second): only inside what is left of the budget
        left = self.budget.deadline - time.monotonic() - 0.3
        if left < 0.5:
            return None
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=left, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    def _local_cli(self, facts: BrokerFacts) -> None:
        """consumer_timeout (and, without the management API, alarms and listeners)."""
        version = facts.version or ""
        local = self._is_local()
        if local and shutil.which("rabbitmqctl"):
            out = self._cli("rabbitmqctl", "-q", "eval", "application:get_env(rabbit, consumer_timeout).")
            if out is not None:
                value = out.strip()
                facts.facts["consumer_timeout_source"] = "rabbitmqctl eval (local node)"
                if value.startswith("{ok,") and value[4:-1].strip().isdigit():
                    facts.facts["consumer_timeout_ms"] = int(value[4:-1])
                else:
                    facts.facts["consumer_timeout_ms"] = None  # undefined: no timeout
        if "consumer_timeout_source" not in facts.facts and version:
            default = _default_consumer_timeout(version)
            facts.facts["consumer_timeout_ms"] = default
            facts.facts["consumer_timeout_source"] = f"default of RabbitMQ {version} (not read)"
        if "alarms" in facts.facts or not (local and shutil.which("rabbitmq-diagnostics")):
            return
        out = self._cli("rabbitmq-diagnostics", "-q", "alarms", "--formatter", "json")
        if out:
            try:
                doc = json.loads(out)
            except ValueError:
                doc = {}
            alarms = []
            for alarm in doc.get("alarms") or []:
                if isinstance(alarm, dict):
                    alarms.append({"node": alarm.get("node"), "resource": alarm.get("resource")
                                   or alarm.get("type")})
                else:
                    alarms.append({"node": doc.get("node"), "resource": str(alarm)})
            facts.facts["alarms"] = alarms
            facts.facts["alarms_source"] = "rabbitmq-diagnostics (local node)"
        out = self._cli("rabbitmq-diagnostics", "-q", "listeners", "--formatter", "json")
        if out:
            with contextlib.suppress(ValueError):
                facts.facts["listeners"] = json.loads(out).get("listeners") or []


def _dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (a proxy or another server answered)."""
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list; anything else holds no rows."""
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason) or type(exc).__name__


def _default_consumer_timeout(version: str) -> int | None:
    """Server-wide delivery acknowledgement timeout by release (ms); None = none."""
    try:
        parts = tuple(int(p) for p in version.split("-")[0].split(".")[:3])
    except ValueError:
        return None
    if parts < (3, 8, 15):
        return None
    if parts < (3, 8, 17):
        return 15 * 60 * 1000
    return 30 * 60 * 1000


__all__ = ["RabbitMQProbe", "UnreachableError"]
