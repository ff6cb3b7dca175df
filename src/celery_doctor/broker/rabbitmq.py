"""RabbitMQ probe: an AMQP handshake with py-amqp, then the management API, then the CLI.

The handshake tells what every Celery client will get (login, vhost, negotiated heartbeat,
connection.blocked); the management API tells what the broker enforces and how it is used
(alarms, limits, churn, heartbeat-less clients, unacked deliveries); ``rabbitmqctl`` /
``rabbitmq-diagnostics`` fill the gaps when the node runs on this machine.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

import amqp
from amqp import transport as amqp_transport
from amqp.exceptions import AMQPError

from celery_doctor.broker.interface import (
    BrokerProbe,
    BrokerTarget,
    UnreachableError,
    classify_network_error,
    parse_url,
    resolve,
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


class _ProbeConnection(amqp.Connection):
    """A py-amqp connection that remembers how far the handshake got."""

    stage = "tcp"

    def Transport(self, host: str, connect_timeout: float | None, ssl: Any = False,
                  read_timeout: float | None = None, write_timeout: float | None = None,
                  socket_settings: Any = None, **kwargs: Any) -> Any:
        conn = self
        base = amqp_transport.SSLTransport if ssl else amqp_transport.TCPTransport

        class Tracked(base):  # type: ignore[misc, valid-type]
            def _init_socket(self, *args: Any, **kw: Any) -> None:
                conn.stage = "tls" if ssl else "greeting"
                super()._init_socket(*args, **kw)
                conn.stage = "greeting"

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
        address = resolve(t.host, t.port, self.options.timeout)
        facts.reachable = True  # DNS answered; AMQP step below refines it
        self._amqp(address, facts)
        self._management(facts)
        self._local_cli(facts)
        facts.elapsed_s = round(time.monotonic() - started, 3)
        return facts

    # -- AMQP handshake ------------------------------------------------------------------------

    def _amqp(self, address: str, facts: BrokerFacts) -> None:
        t, timeout = self.target, self.options.timeout
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
            if conn.stage in ("login", "vhost"):
                # the socket went away after the greeting: brokers without
                # authentication_failure_close drop the connection on a bad login
                facts.logged_in = False
                facts.facts["login"] = {"ok": False, "stage": conn.stage, "code": None,
                                        "error": t.scrub(f"connection closed during {conn.stage}: {exc}")}
                self._server_properties(conn, facts)
                return
            raise classify_network_error(exc, t, conn.stage, timeout, "AMQP") from None
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
            return self.options.management_url.rstrip("/")
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"http://{host}:{MANAGEMENT_PORT}"

    def _get(self, base: str, path: str) -> Any:
        parts = urlsplit(base)
        user = parts.username or self.target.username or ""
        password = parts.password if parts.password is not None else (self.target.password or "")
        netloc = parts.netloc.rpartition("@")[2]
        url = parts._replace(netloc=netloc).geturl() + path
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = Request(url, headers={"Authorization": f"Basic {token}",
                                        "Accept": "application/json"})
        with urlopen(request, timeout=self.options.timeout) as response:
            return json.load(response)

    def _management(self, facts: BrokerFacts) -> None:
        base = self._management_base()
        parts = urlsplit(base)
        safe_base = redact(parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl())
        extra = (parts.password,) if parts.password else ()
        info: dict[str, Any] = {"url": safe_base, "available": False}
        facts.facts["management"] = info
        if parts.scheme not in ("http", "https"):
            info["error"] = "management URL must be http:// or https://"
            return
        try:
            first = self._get(base, "/api/overview")
        except HTTPError as exc:
            info["error"] = f"HTTP {exc.code} {exc.reason}" + (
                " (credentials refused or user lacks the management/monitoring tag)"
                if exc.code == 401 else "")
            info["status"] = exc.code
        except (URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            info["error"] = self.target.scrub(redact(f"not reachable: {reason}", extra))
        if "error" in info:
            facts.notes.append(f"management API {safe_base}: {info['error']}; node limits, churn "
                               "and client heartbeats not checked")
            return
        info["available"] = True
        t0 = time.monotonic()
        facts.version = facts.version or first.get("rabbitmq_version")
        facts.facts.setdefault("server", {}).setdefault("cluster_name", first.get("cluster_name"))
        facts.facts["management_version"] = first.get("management_version")
        steps = {
            "nodes": self._nodes,
            "alarms": self._alarms,
            "connections": self._connections,
            "queues": self._queues,
            "vhost": self._vhost,
        }
        for name, step in steps.items():
            try:
                step(base, facts)
            except HTTPError as exc:
                facts.notes.append(f"management {name}: HTTP {exc.code} {exc.reason}")
            except (URLError, OSError, ValueError) as exc:
                facts.notes.append(self.target.scrub(f"management {name}: {exc}"))
        self._churn(base, first, t0, facts)

    def _nodes(self, base: str, facts: BrokerFacts) -> None:
        nodes = []
        alarms = []
        for node in self._get(base, "/api/nodes"):
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
        except HTTPError as exc:
            if exc.code != 503:  # 503 is the "alarms in effect" answer; 404 before 3.8.10
                if exc.code == 404:
                    return
                raise
            doc = json.loads(exc.read() or b"{}")
        facts.facts["alarms"] = [{"node": a.get("node"), "resource": a.get("resource")}
                                 for a in doc.get("alarms") or [] if isinstance(a, dict)]
        facts.facts["alarms_source"] = "management API health check"

    def _connections(self, base: str, facts: BrokerFacts) -> None:
        columns = ("name,user,vhost,peer_host,peer_port,timeout,state,client_properties,"
                   "connected_at,channels,ssl,protocol")
        rows = []
        for conn in self._get(base, f"/api/connections?columns={columns}"):
            props = conn.get("client_properties") or {}
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
        for queue in self._get(base, f"/api/queues?columns={columns}"):
            args = queue.get("arguments") or {}
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
        except HTTPError as exc:
            if exc.code != 404:
                raise
            facts.facts["vhost_exists"] = False

    def _churn(self, base: str, first: dict[str, Any], t0: float, facts: BrokerFacts) -> None:
        """Connection/channel open and close rates from two overview samples."""
        interval = max(0.0, self.options.churn_interval)
        churn: dict[str, Any] = {"interval_s": interval}
        keys = ("connection_created", "connection_closed", "channel_created", "channel_closed")
        server_rates = {
            key: ((first.get("churn_rates") or {}).get(f"{key}_details") or {}).get("rate")
            for key in keys}
        churn["server_rates_per_s"] = server_rates
        churn["connections_now"] = (first.get("object_totals") or {}).get("connections")
        if interval > 0:
            wait = interval - (time.monotonic() - t0)
            if wait > 0:
                time.sleep(wait)
            try:
                second = self._get(base, "/api/overview")
            except (HTTPError, URLError, OSError, ValueError) as exc:
                facts.notes.append(self.target.scrub(f"second churn sample failed: {exc}"))
                second = None
            if second is not None:
                elapsed = max(time.monotonic() - t0, 0.001)
                churn["interval_s"] = round(elapsed, 2)
                a, b = first.get("churn_rates") or {}, second.get("churn_rates") or {}
                for key in keys:
                    if isinstance(a.get(key), int) and isinstance(b.get(key), int):
                        # the probe's own connection and channel may land in this window
                        delta = max(0, b[key] - a[key] - 1)
                        churn[f"{key}_per_s"] = round(delta / elapsed, 3)
                churn["connections_now"] = (second.get("object_totals") or {}).get("connections")
        facts.facts["churn"] = churn

    # -- local CLI fallback --------------------------------------------------------------------

    def _is_local(self) -> bool:
        host = self.target.host.lower()
        return host in LOCAL_HOSTS or host in {socket.gethostname().lower(), socket.getfqdn().lower()}

    def _cli(self, *args: str) -> str | None:
        try:
            done = subprocess.run(args, capture_output=True, text=True,
                                  timeout=max(self.options.timeout, 5.0), check=False)
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
