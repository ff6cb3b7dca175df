"""The fault proxy with real sockets: a loopback server behind it, and the real RabbitMQ."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

from celery_doctor.model import Kind, Side
from celery_doctor.repro.proxy import FaultSpecError, ProxyThread, parse_fault

WAIT = 5.0  # every blocking socket call in these tests gives up after this long


class Upstream:
    """A loopback TCP server that keeps its accepted sockets so tests can look at both ends."""

    def __init__(self, echo: bool = False, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.address = self.sock.getsockname()
        self.accepted: list[socket.socket] = []
        self.echo = echo
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(WAIT)
            with self._ready:
                self.accepted.append(conn)
                self._ready.notify_all()
            if self.echo:
                threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def wait_accepted(self, n: int = 1) -> socket.socket:
        with self._ready:
            assert self._ready.wait_for(lambda: len(self.accepted) >= n, timeout=WAIT)
            return self.accepted[n - 1]

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def echo() -> Iterator[Upstream]:
    server = Upstream(echo=True)
    yield server
    server.close()


@pytest.fixture
def proxies() -> Iterator[list[ProxyThread]]:
    started: list[ProxyThread] = []
    yield started
    for proxy in started:
        proxy.stop()


def start(proxies: list[ProxyThread], upstream: tuple[str, int], spec: str | None = None,
          **kwargs: object) -> tuple[ProxyThread, tuple[str, int]]:
    fault = parse_fault(spec) if spec else None
    proxy = ProxyThread(("127.0.0.1", 0), upstream, fault, **kwargs)  # type: ignore[arg-type]
    proxies.append(proxy)
    return proxy, proxy.start()


def connect(address: tuple[str, int]) -> socket.socket:
    client = socket.create_connection(address, timeout=WAIT)
    client.settimeout(WAIT)
    return client


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def wait_for_event(proxy: ProxyThread, kind: Kind, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.kind is kind for e in proxy.events):
        assert time.monotonic() < deadline, f"no {kind.value} event; got {proxy.events}"
        time.sleep(0.02)


def assert_silent(sock: socket.socket, seconds: float = 0.5) -> None:
    """Nothing arrives and the socket stays open (a recv timeout, not EOF or RST)."""
    sock.settimeout(seconds)
    with pytest.raises(TimeoutError):
        sock.recv(1024)
    sock.settimeout(WAIT)


# -- spec parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "normalised"),
    [
        ("idle-cut:10", "idle-cut", "idle-cut:10:rst"),
        ("idle-cut:8.5:fin", "idle-cut", "idle-cut:8.5:fin"),
        ("idle-cut:9:silent", "idle-cut", "idle-cut:9:silent"),
        ("blackhole", "blackhole", "blackhole:0"),
        ("blackhole:2:10", "blackhole", "blackhole:2:10"),
        ("reset-under-load:0.05", "reset-under-load", "reset-under-load:0.05"),
        ("reset-after-bytes:4096", "reset-after-bytes", "reset-after-bytes:4096"),
        ("latency:50:10", "latency", "latency:50:10"),
        ("bandwidth:64", "bandwidth", "bandwidth:64"),
        ("refuse", "refuse", "refuse"),
        ("broker-restart", "broker-restart", "broker-restart"),
    ],
)
def test_parse_fault_accepts_every_documented_form(spec: str, kind: str, normalised: str) -> None:
    fault = parse_fault(spec)
    assert (fault.kind, fault.spec) == (kind, normalised)


def test_parse_fault_combines_with_plus() -> None:
    fault = parse_fault("latency:20+idle-cut:5:fin")
    assert fault.kind == "combined"
    assert [f.kind for f in fault.each()] == ["latency", "idle-cut"]
    idle = fault.find("idle-cut")
    assert idle is not None and idle.mode == "fin" and idle.seconds == 5


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("nonsense", "unknown fault"),
        ("idle-cut", "wrong number of arguments"),
        ("idle-cut:abc", "must be a number"),
        ("idle-cut:0", "must be > 0"),
        ("idle-cut:10:close", "mode must be one of"),
        ("reset-under-load:1.5", "probability"),
        ("reset-after-bytes:1.5", "must be a number"),
        ("latency:-1", ">= 0"),
        ("refuse:3", "wrong number of arguments"),
        ("latency:1+latency:2", "given twice"),
        ("bandwidth:nan", "finite"),
    ],
)
def test_parse_fault_rejects_bad_specs_with_a_clear_message(spec: str, says: str) -> None:
    with pytest.raises(FaultSpecError, match=says):
        parse_fault(spec)


def test_broker_restart_without_a_hook_is_a_spec_error(echo: Upstream) -> None:
    with pytest.raises(FaultSpecError, match="hook"):
        ProxyThread(("127.0.0.1", 0), echo.address, parse_fault("broker-restart")).start()


# -- plain forwarding -----------------------------------------------------------------------------


def test_forwards_both_ways_and_logs_open_and_close(
    echo: Upstream, proxies: list[ProxyThread], tmp_path: Path
) -> None:
    log = tmp_path / "proxy.jsonl"
    proxy, address = start(proxies, echo.address, event_log=log)
    payload = bytes(range(256)) * 4096  # 1 MiB, several chunks
    with connect(address) as client:
        sender = threading.Thread(target=client.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(client, len(payload)) == payload
        sender.join(WAIT)
    wait_for_event(proxy, Kind.OTHER)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["connected", "other"]
    assert set(rows[0]) == {"ts", "source", "kind", "client", "upstream", "fault", "message"}
    assert rows[0]["ts"].endswith("+00:00") and rows[0]["source"] == "proxy"
    assert rows[0]["upstream"] == f"127.0.0.1:{echo.address[1]}"
    assert rows[1]["client"] == rows[0]["client"]
    assert "client closed (EOF)" in rows[1]["message"]
    assert all(e.side is Side.PROXY for e in proxy.events)


def test_upstream_rst_reaches_the_client_as_rst(upstream: Upstream, proxies: list[ProxyThread]) -> None:
    _, address = start(proxies, upstream.address)
    with connect(address) as client:
        client.sendall(b"hello")
        server_side = upstream.wait_accepted()
        assert recv_exactly(server_side, 5) == b"hello"
        server_side.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server_side.close()
        with pytest.raises(ConnectionResetError):
            client.recv(1024)


# -- faults -----------------------------------------------------------------------------------------


def test_idle_cut_rst_resets_both_sides(upstream: Upstream, proxies: list[ProxyThread],
                                        tmp_path: Path) -> None:
    log = tmp_path / "proxy.jsonl"
    proxy, address = start(proxies, upstream.address, "idle-cut:0.5:rst", event_log=log)
    with connect(address) as client:
        client_address = f"127.0.0.1:{client.getsockname()[1]}"
        client.sendall(b"x")
        server_side = upstream.wait_accepted()
        assert server_side.recv(1) == b"x"
        with pytest.raises(ConnectionResetError):
            client.recv(1024)
        with pytest.raises(ConnectionResetError):
            server_side.recv(1024)
    cut = next(json.loads(line) for line in log.read_text().splitlines() if "proxy_cut" in line)
    assert cut["fault"] == "idle-cut:0.5:rst"
    assert cut["message"].startswith("cut after 0.5s idle") and "RST" in cut["message"]
    assert cut["client"] == client_address
    assert [e.peer for e in proxy.events if e.kind is Kind.PROXY_CUT] == [cut["client"]]


def test_idle_cut_fin_gives_both_sides_eof(upstream: Upstream, proxies: list[ProxyThread]) -> None:
    _, address = start(proxies, upstream.address, "idle-cut:0.5:fin")
    with connect(address) as client:
        client.sendall(b"x")
        server_side = upstream.wait_accepted()
        assert server_side.recv(1) == b"x"
        assert client.recv(1024) == b""
        assert server_side.recv(1024) == b""


def test_idle_cut_silent_leaves_both_sides_open_and_forwards_nothing(
    upstream: Upstream, proxies: list[ProxyThread]
) -> None:
    proxy, address = start(proxies, upstream.address, "idle-cut:0.3:silent")
    with connect(address) as client:
        client.sendall(b"x")
        server_side = upstream.wait_accepted()
        assert server_side.recv(1) == b"x"
        wait_for_event(proxy, Kind.PROXY_CUT)
        client.sendall(b"after the cut")
        server_side.sendall(b"also after the cut")
        assert_silent(server_side)
        assert_silent(client)


def test_idle_cut_spares_a_busy_connection(echo: Upstream, proxies: list[ProxyThread]) -> None:
    proxy, address = start(proxies, echo.address, "idle-cut:0.6")
    with connect(address) as client:
        for _ in range(10):  # 1 s of traffic, never 0.6 s quiet
            client.sendall(b"ping")
            assert recv_exactly(client, 4) == b"ping"
            time.sleep(0.1)
    assert not any(e.kind is Kind.PROXY_CUT for e in proxy.events)


def test_blackhole_holds_traffic_then_heals_on_the_same_sockets(
    upstream: Upstream, proxies: list[ProxyThread]
) -> None:
    proxy, address = start(proxies, upstream.address)
    with connect(address) as client:
        client.sendall(b"before")
        server_side = upstream.wait_accepted()
        assert recv_exactly(server_side, 6) == b"before"
        proxy.set_fault(parse_fault("blackhole:0:1.5"))
        wait_for_event(proxy, Kind.PROXY_BLACKHOLE)
        client.sendall(b"during")
        server_side.sendall(b"reply")
        assert_silent(server_side, 0.3)
        assert_silent(client, 0.3)
        wait_for_event(proxy, Kind.PROXY_HEAL)
        assert recv_exactly(server_side, 6) == b"during"
        assert recv_exactly(client, 5) == b"reply"
    kinds = [e.kind for e in proxy.events]
    assert kinds.index(Kind.PROXY_BLACKHOLE) < kinds.index(Kind.PROXY_HEAL)


def test_clearing_the_fault_heals_a_blackhole(upstream: Upstream, proxies: list[ProxyThread]) -> None:
    proxy, address = start(proxies, upstream.address, "blackhole")
    with connect(address) as client:
        client.sendall(b"held")
        wait_for_event(proxy, Kind.PROXY_BLACKHOLE)
        assert not upstream.accepted  # not even the connect goes through
        proxy.set_fault(None)
        assert recv_exactly(upstream.wait_accepted(), 4) == b"held"


def test_a_connection_abandoned_during_a_blackhole_never_reaches_upstream(
    upstream: Upstream, proxies: list[ProxyThread]
) -> None:
    proxy, address = start(proxies, upstream.address, "blackhole")
    with connect(address) as client:
        client.sendall(b"hello?")
        wait_for_event(proxy, Kind.PROXY_BLACKHOLE)
    wait_for_event(proxy, Kind.OTHER)
    proxy.set_fault(None)
    with connect(address) as client:
        client.sendall(b"second")
        assert recv_exactly(upstream.wait_accepted(), 6) == b"second"
    assert len(upstream.accepted) == 1
    assert "abandoned" in next(e for e in proxy.events if e.kind is Kind.OTHER).detail["message"]


def test_refuse_resets_new_connections_only_while_set(
    echo: Upstream, proxies: list[ProxyThread]
) -> None:
    proxy, address = start(proxies, echo.address, "refuse")
    # the RST may even beat connect() returning
    with pytest.raises(ConnectionResetError), connect(address) as client:
        client.recv(1024)
    assert any(e.kind is Kind.PROXY_REFUSE for e in proxy.events)
    assert not echo.accepted
    proxy.set_fault(None)
    with connect(address) as client:
        client.sendall(b"ok")
        assert recv_exactly(client, 2) == b"ok"


def test_reset_after_bytes_forwards_n_bytes_then_resets(
    upstream: Upstream, proxies: list[ProxyThread]
) -> None:
    _, address = start(proxies, upstream.address, "reset-after-bytes:50")
    with connect(address) as client:
        client.sendall(b"a" * 100)
        server_side = upstream.wait_accepted()
        got = b""
        with pytest.raises(ConnectionResetError):
            while chunk := server_side.recv(1024):
                got += chunk
        assert got == b"a" * 50
        with pytest.raises(ConnectionResetError):
            client.recv(1024)


def test_reset_under_load_resets_with_probability_one(
    upstream: Upstream, proxies: list[ProxyThread]
) -> None:
    proxy, address = start(proxies, upstream.address, "reset-under-load:1")
    with connect(address) as client:
        client.sendall(b"load")
        with pytest.raises(ConnectionResetError):
            client.recv(1024)
    assert "reset under load" in proxy.events[-1].detail["message"]


@pytest.mark.parametrize("spec", ["latency:30:20", "bandwidth:2000", "latency:5+bandwidth:5000"])
def test_shaping_faults_keep_the_stream_intact_and_in_order(
    spec: str, echo: Upstream, proxies: list[ProxyThread]
) -> None:
    _, address = start(proxies, echo.address, spec)
    with connect(address) as client:
        sent = b""
        for i in range(50):
            piece = f"{i:04d}".encode() * 50
            client.sendall(piece)
            sent += piece
        assert recv_exactly(client, len(sent)) == sent


def test_broker_restart_runs_the_hook(echo: Upstream, proxies: list[ProxyThread],
                                      tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proxy, _ = start(proxies, echo.address, "broker-restart", hook=f"touch {marker}")
    deadline = time.monotonic() + WAIT
    while "exit status 0" not in " ".join(e.detail["message"] for e in proxy.events):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert marker.exists()


def test_refusing_upstream_makes_the_proxy_refuse_until_it_is_back(
    proxies: list[ProxyThread],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # a port nobody listens on once closed
    proxy, address = start(proxies, ("127.0.0.1", port))
    with pytest.raises(ConnectionResetError), connect(address) as client:
        client.recv(1024)  # the connection that found the upstream gone
    wait_for_event(proxy, Kind.OTHER)
    deadline = time.monotonic() + WAIT
    while True:  # then the proxy stops listening: a real ECONNREFUSED, as without it
        try:
            socket.create_connection(address, timeout=WAIT).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server = Upstream(echo=True, port=port)
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                client = connect(address)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with client:
            client.sendall(b"back")
            assert recv_exactly(client, 4) == b"back"
        assert "accepts again" in " ".join(e.detail["message"] for e in proxy.events)
    finally:
        server.close()


def test_stop_closes_every_connection(upstream: Upstream) -> None:
    proxy = ProxyThread(("127.0.0.1", 0), upstream.address)
    address = proxy.start()
    with connect(address) as client:
        client.sendall(b"x")
        server_side = upstream.wait_accepted()
        assert server_side.recv(1) == b"x"
        proxy.stop()
        with pytest.raises(ConnectionResetError):
            client.recv(1024)
        with pytest.raises(ConnectionResetError):
            server_side.recv(1024)
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=WAIT)


# -- through to the real RabbitMQ with py-amqp ----------------------------------------------------


@pytest.mark.broker
def test_amqp_round_trip_then_idle_cut_resets_the_client(
    rabbitmq_url: str, proxies: list[ProxyThread]
) -> None:
    proxy, (host, port) = start(proxies, ("127.0.0.1", 5672))
    queue = f"celery-doctor-proxy-{uuid.uuid4().hex[:8]}"
    conn = amqp.Connection(f"{host}:{port}", userid="guest", password="guest",
                           heartbeat=0, connect_timeout=WAIT)
    conn.connect()
    try:
        channel = conn.channel()
        channel.queue_declare(queue, exclusive=True, auto_delete=True)
        channel.basic_publish(amqp.Message(b"through the proxy"), routing_key=queue)
        deadline = time.monotonic() + WAIT
        while (msg := channel.basic_get(queue, no_ack=True)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert msg.body == b"through the proxy"
        proxy.set_fault(parse_fault("idle-cut:0.5:rst"))
        wait_for_event(proxy, Kind.PROXY_CUT)
        with pytest.raises((ConnectionResetError, amqp.exceptions.RecoverableConnectionError)):
            channel.basic_publish(amqp.Message(b"x"), routing_key=queue)
            conn.drain_events(timeout=WAIT)
    finally:
        conn.collect()


@pytest.mark.broker
def test_amqp_blackhole_is_noticed_by_client_heartbeats(
    rabbitmq_url: str, proxies: list[ProxyThread]
) -> None:
    proxy, (host, port) = start(proxies, ("127.0.0.1", 5672))
    conn = amqp.Connection(f"{host}:{port}", userid="guest", password="guest",
                           heartbeat=1, connect_timeout=WAIT)
    conn.connect()
    try:
        assert conn.heartbeat == 1
        proxy.set_fault(parse_fault("blackhole"))
        deadline = time.monotonic() + 10
        with pytest.raises(amqp.exceptions.ConnectionForced, match="Too many heartbeats missed"):
            while time.monotonic() < deadline:
                conn.heartbeat_tick()
                time.sleep(0.2)
    finally:
        proxy.set_fault(None)
        conn.collect()
