"""The broker side of a reproduction: pick the broker, route it through the proxy, look into
the run's queue directly (not through the proxy) at the end, delete what the run declared,
and cut the broker's own log down to the run's window and connections.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from celery_doctor.broker.interface import BadURLError, parse_url
from celery_doctor.model import DoctorError
from celery_doctor.redact import redact
from celery_doctor.repro.ledger import BrokerLeftovers

LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
RABBITMQ_LOGS = "/var/log/rabbitmq"
REDIS_LOGS = "/var/log/redis"
ADMIN_TIMEOUT_S = 5.0


class BrokerSetupError(DoctorError):
    """The run's broker cannot be used (bad URL, unreachable, unsupported scheme)."""


@dataclass(frozen=True)
class BrokerTarget:
    url: str  # as given (or chosen); never printed unredacted
    kind: str  # "rabbitmq" | "redis"
    host: str
    port: int
    chosen_because: str

    def through(self, address: tuple[str, int]) -> str:
        """The same URL with the proxy's address in place of the broker's."""
        parts = urlsplit(self.url)
        creds = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit((parts.scheme, f"{creds}{address[0]}:{address[1]}", parts.path,
                           parts.query, parts.fragment))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def choose(url: str | None) -> BrokerTarget:
    """The broker given, or local RabbitMQ, else local Redis (and say which and why)."""
    if url is None:
        if _reachable("127.0.0.1", 5672):
            return _target(LOCAL_RABBITMQ, "no --broker given: local RabbitMQ answers on 127.0.0.1:5672")
        if _reachable("127.0.0.1", 6379):
            return _target(LOCAL_REDIS, "no --broker given and no local RabbitMQ: local Redis on 127.0.0.1:6379")
        raise BrokerSetupError("no --broker given and neither RabbitMQ (127.0.0.1:5672) nor Redis "
                               "(127.0.0.1:6379) answers locally")
    target = _target(url, "--broker")
    if not _reachable(target.host, target.port):
        raise BrokerSetupError(f"broker {target.host}:{target.port} does not accept connections")
    return target


def _target(url: str, why: str) -> BrokerTarget:
    scheme = url.strip().partition("://")[0].lower() if "://" in url else ""
    if scheme in ("amqp", "pyamqp", "redis"):
        # the broker stage's reading: userinfo up to the last "@", unencoded "/ ? #" named,
        # and no fragment of the password in the message
        try:
            parse_url(url, {"amqp": 5672, "pyamqp": 5672, "redis": 6379}, set())
        except BadURLError as exc:
            raise BrokerSetupError(str(exc)) from None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BrokerSetupError(f"bad broker URL {redact(url)}: not a URL kombu can read") from None
    scheme = parts.scheme.lower()
    if scheme in ("amqp", "pyamqp"):
        kind, default_port = "rabbitmq", 5672
    elif scheme == "redis":
        kind, default_port = "redis", 6379
    else:
        raise BrokerSetupError(f"repro supports amqp:// and redis:// brokers, not {scheme or 'no scheme'}://")
    return BrokerTarget(url=url, kind=kind, host=parts.hostname or "127.0.0.1",
                        port=port or default_port, chosen_because=why)


# -- looking into the queue at the end -----------------------------------------------------

def _task_id(headers: Any, body: Any) -> str | None:
    if isinstance(headers, dict) and headers.get("id"):
        return str(headers["id"])
    if isinstance(body, dict) and body.get("id"):  # task protocol 1
        return str(body["id"])
    return None


def witness_queue(queue: str) -> str:
    """The run's witness: a second queue bound to the run's exchange with the same routing key,
    so the broker itself keeps one copy of every message published to the run (a publisher
    retry that sent a task twice leaves two copies). Never consumed; read at the end."""
    return f"{queue}.witness"


def bind_witness(target: BrokerTarget, queue: str, *, declare_exchange: bool) -> str | None:
    """Bind the witness (directly, not through the middlebox). Returns None, or why the run
    has no witness (then duplicates are told apart from the worker's side only)."""
    try:
        if target.kind == "rabbitmq":
            import amqp

            conn = _amqp_connection(target)
            try:
                channel = conn.channel()
                try:
                    channel.exchange_declare(queue, "direct", passive=True)
                except amqp.exceptions.NotFound:
                    if not declare_exchange:
                        return "the run's exchange did not exist yet and its type is the config's"
                    channel = conn.channel()
                    # what Celery declares for task_default_exchange: direct, durable
                    channel.exchange_declare(queue, "direct", durable=True, auto_delete=False)
                channel.queue_declare(witness_queue(queue), durable=False, auto_delete=False)
                channel.queue_bind(witness_queue(queue), exchange=queue, routing_key=queue)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()
            return None
        import redis

        client = redis.Redis.from_url(target.url, socket_timeout=ADMIN_TIMEOUT_S,
                                      socket_connect_timeout=ADMIN_TIMEOUT_S)
        try:
            # kombu's routing table for the exchange: "routing_key SEP pattern SEP queue"
            client.sadd(f"_kombu.binding.{queue}", f"{queue}\x06\x16\x06\x16{witness_queue(queue)}")
        finally:
            with contextlib.suppress(Exception):
                client.close()
        return None
    except Exception as exc:  # the run goes on without a witness, and says so
        return f"no witness queue: {type(exc).__name__}: {exc}"


def _amqp_connection(target: BrokerTarget) -> Any:
    import amqp

    parts = urlsplit(target.url)
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    conn = amqp.Connection(host=f"{target.host}:{target.port}", userid=unquote(parts.username or "guest"),
                           password=unquote(parts.password or "guest"), virtual_host=vhost,
                           connect_timeout=ADMIN_TIMEOUT_S, read_timeout=ADMIN_TIMEOUT_S,
                           write_timeout=ADMIN_TIMEOUT_S)
    conn.connect()
    return conn


def inspect_and_delete(target: BrokerTarget, queue: str, worker_name: str,
                       witness: bool = True) -> BrokerLeftovers:
    """Which of the run's messages are still in the broker; then delete the run's queue,
    exchange and bindings. Never raises: a failure becomes the leftovers' note."""
    try:
        if target.kind == "rabbitmq":
            return _rabbitmq_leftovers(target, queue, worker_name, witness)
        return _redis_leftovers(target, queue, worker_name)
    except Exception as exc:  # the run's report says what could not be checked
        if target.kind == "rabbitmq":
            _rabbitmq_delete(target, queue, worker_name)  # what was declared goes, inspected or not
        return BrokerLeftovers(checked=False, note=f"could not inspect the queue: {type(exc).__name__}: {exc}")


def _rabbitmq_delete(target: BrokerTarget, queue: str, worker_name: str) -> None:
    """Delete the run's queues and exchange, each on its own channel, errors ignored."""
    with contextlib.suppress(Exception):
        conn = _amqp_connection(target)
        try:
            for op, name in (("queue_delete", queue), ("queue_delete", witness_queue(queue)),
                             ("exchange_delete", queue), ("queue_delete", pidbox_queue(worker_name))):
                with contextlib.suppress(Exception):
                    getattr(conn.channel(), op)(name)
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def pidbox_queue(worker_name: str) -> str:
    """The remote-control queue Celery declares for ``-n NAME@%h``."""
    return f"{worker_name}@{socket.gethostname()}.celery.pidbox"


def _rabbitmq_leftovers(target: BrokerTarget, queue: str, worker_name: str, witness: bool) -> BrokerLeftovers:
    import amqp

    conn = _amqp_connection(target)
    left = BrokerLeftovers(checked=True)
    try:
        if witness:
            # on a connection of its own: a channel error there (py-amqp reopening a channel id
            # the broker is still closing) must not cost the run's queue its deletion
            try:
                side = _amqp_connection(target)
                try:
                    left.copies = _rabbitmq_witness(side, queue)
                finally:
                    with contextlib.suppress(Exception):
                        side.close()
            except Exception as exc:  # the witness is a detail: the queue is what must be checked
                left.note = f"could not read the witness queue: {type(exc).__name__}: {exc}"
        left.witnessed = left.copies is not None
        if witness and not left.witnessed:
            with contextlib.suppress(Exception):
                conn.channel().queue_delete(witness_queue(queue))  # idempotent on RabbitMQ
        channel = conn.channel()
        try:
            channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            left.note = "the run's queue no longer existed at the end"
            with contextlib.suppress(Exception):
                conn.channel().exchange_delete(queue)
            return left
        while True:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                break
            body: Any = None
            with contextlib.suppress(ValueError, TypeError):
                body = json.loads(message.body)
            task_id = _task_id(message.headers, body)
            if task_id:
                left.queued.append(task_id)
        channel.queue_delete(queue)
        with contextlib.suppress(Exception):
            channel.exchange_delete(queue)
        # the worker's remote-control queue is auto-delete, but a worker killed with its
        # connection half-open keeps it until the broker notices: delete it now
        with contextlib.suppress(Exception):
            conn.channel().queue_delete(pidbox_queue(worker_name))
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return left


def _messages(conn: Any, name: str) -> list[tuple[Any, Any]] | None:
    """Every message of queue ``name`` (headers, decoded body), the queue deleted; None when
    it does not exist."""
    import amqp

    channel = conn.channel()
    try:
        channel.queue_declare(name, passive=True)
    except amqp.exceptions.NotFound:
        return None
    out = []
    while True:
        message = channel.basic_get(name, no_ack=True)
        if message is None:
            break
        body: Any = None
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(message.body)
        out.append((message.headers, body))
    channel.queue_delete(name)
    return out


def _rabbitmq_witness(conn: Any, queue: str) -> dict[str, int] | None:
    """Copies of each task the broker routed to the run (from the witness queue, then deleted)."""
    found = _messages(conn, witness_queue(queue))
    if found is None:
        return None
    copies: dict[str, int] = {}
    for headers, body in found:
        task_id = _task_id(headers, body)
        if task_id:
            copies[task_id] = copies.get(task_id, 0) + 1
    return copies


def _redis_leftovers(target: BrokerTarget, queue: str, worker_name: str) -> BrokerLeftovers:
    import redis

    client = redis.Redis.from_url(target.url, socket_timeout=ADMIN_TIMEOUT_S,
                                  socket_connect_timeout=ADMIN_TIMEOUT_S)
    left = BrokerLeftovers(checked=True)
    try:
        # kombu keeps priority sub-queues as "<queue>\x06\x16<n>" next to the plain list
        keys = [queue.encode()] + [k for k in client.scan_iter(match=f"{queue}\x06\x16*", count=500)]
        for key in keys:
            for raw in client.lrange(key, 0, -1):
                task_id = _redis_message_id(raw)
                if task_id:
                    left.queued.append(task_id)
            client.delete(key)
        # messages a worker took but never acked wait in the 'unacked' hash (restored after the
        # visibility timeout): they are not lost, and they are ours to remove
        for tag, raw in client.hscan_iter("unacked", count=500):
            try:
                message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            if routing_key != queue and message.get("properties", {}).get("delivery_info", {}).get(
                    "routing_key") != queue:
                continue
            task_id = _task_id(message.get("headers"), None)
            if task_id:
                left.unacked.append(task_id)
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
        # kombu keeps each exchange's bindings in two sets (kombu 5.7 added the 'permanent'
        # one, which survives the queue); both are named after the run's exchange
        client.delete(*run_keys(queue))
        for key in ("_kombu.binding.celery.pidbox", "_kombu.binding_permanent.celery.pidbox"):
            for member in client.smembers(key):
                if worker_name.encode() in member:
                    client.srem(key, member)
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return left


def run_keys(queue: str) -> list[str]:
    """Every Redis key named after the run's queue/exchange that kombu may create."""
    return [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", witness_queue(queue)]


def _redis_restored(raw: bytes | str) -> bool:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return False
    if not isinstance(message, dict):
        return False
    headers = message.get("headers") or {}
    info = (message.get("properties") or {}).get("delivery_info") or {}
    return bool(headers.get("redelivered") or info.get("redelivered"))


def _redis_message_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(message, dict):
        return None
    return _task_id(message.get("headers"), None)


# -- the broker's own log ------------------------------------------------------------------

def log_file(target: BrokerTarget) -> Path | None:
    """The local broker's log, when the broker is on this host and the file is readable."""
    if target.host not in ("127.0.0.1", "localhost", "::1"):
        return None
    folder, pattern = ((RABBITMQ_LOGS, "rabbit@*.log") if target.kind == "rabbitmq"
                       else (REDIS_LOGS, "*.log"))
    candidates = [p for p in Path(folder).glob(pattern) if "_upgrade" not in p.name] if Path(folder).is_dir() else []
    readable = [p for p in candidates if _readable(p)]
    return max(readable, key=lambda p: p.stat().st_mtime) if readable else None


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except OSError:
        return False


_RMQ_PID = re.compile(r"^\S+ \S+ \[\w+\] (<\d+\.\d+\.\d+>) ")
_RMQ_ACCEPT = re.compile(r"accepting AMQP connection (<\d+\.\d+\.\d+>) \(([\d.:\[\]a-f]+):(\d+) ->")
_RMQ_CONN_ADDR = re.compile(r"connection (<\d+\.\d+\.\d+>) \(([\d.:\[\]a-f]+):(\d+) ->")


def rabbitmq_lines_for(lines: list[str], ports: set[int]) -> list[str]:
    """Keep the lines about the run's own connections (by the proxy's upstream-side ports, then
    by the Erlang process that handles each), plus lines about no connection at all (broker
    stop/start, alarms). Other clients of a shared broker would otherwise add their incidents."""
    ours: set[str] = set()
    theirs: set[str] = set()
    kept = []
    for line in lines:
        found = _RMQ_ACCEPT.search(line) or _RMQ_CONN_ADDR.search(line)
        if found:
            (ours if int(found.group(3)) in ports else theirs).add(found.group(1))
        pid = _RMQ_PID.match(line)
        owner = pid.group(1) if pid else None
        if owner in ours or (found and found.group(1) in ours):
            kept.append(line)
        elif owner in theirs or (found and found.group(1) in theirs):
            continue
        elif not re.search(r"connection|client|channel", line, re.I):
            kept.append(line)
    return kept
