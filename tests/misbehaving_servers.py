"""Servers that misbehave on purpose, for the broker probe's bounds: loopback only, each on an
ephemeral port, every connection bounded, all stopping by themselves after ``lifetime`` seconds.

Behaviours seen in the field: a port that accepts and says nothing (a proxy holding the
connection), garbage, an AMQP greeting that stalls or trickles byte by byte, a Redis that
answers each command slowly or trickles its replies, a Redis before 6 (no HELLO), and a
management API that trickles, answers with odd JSON or never ends its body.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

# A real RabbitMQ 3.10 Connection.Start frame, trimmed to what py-amqp needs to parse it.
_START_ARGS = (b"\x00\x09"  # version 0-9
               b"\x00\x00\x00\x00"  # empty server-properties table
               b"\x00\x00\x00\x05PLAIN"  # mechanisms
               b"\x00\x00\x00\x05en_US")  # locales
_PAYLOAD = b"\x00\x0a\x00\x0a" + _START_ARGS  # class 10 (connection), method 10 (start)
CONNECTION_START = b"\x01\x00\x00" + len(_PAYLOAD).to_bytes(4, "big") + _PAYLOAD + b"\xce"


class Servers:
    def __init__(self, lifetime: float = 120.0) -> None:
        self.stop = threading.Event()
        self.ports: dict[str, int] = {}
        self.deadline = time.monotonic() + lifetime
        self._threads: list[threading.Thread] = []

    def add(self, name: str, handler: Callable[[socket.socket], None]) -> None:
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
        self.ports[name] = server.getsockname()[1]
        thread = threading.Thread(target=self._serve, args=(server, handler), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _serve(self, server: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        with server:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._handle, args=(conn, handler), daemon=True).start()

    def _handle(self, conn: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(1.0)
            handler(conn)

    # -- pieces of behaviour ---------------------------------------------------------------------
    def hold(self, conn: socket.socket, seconds: float = 30.0) -> None:
        end = min(self.deadline, time.monotonic() + seconds)
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                if conn.recv(65536) == b"":
                    return
            except TimeoutError:
                continue

    def trickle(self, conn: socket.socket, data: bytes, gap: float) -> None:
        for byte in data:
            if self.stop.is_set():
                return
            conn.sendall(bytes([byte]))
            time.sleep(gap)
        self.hold(conn)

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(1)


def redis_reply(args: list[bytes], hello: bool) -> bytes:
    cmd = args[0].upper() if args else b""
    if cmd == b"HELLO":
        if not hello:
            return b"-ERR unknown command 'HELLO', with args beginning with: '3'\r\n"
        return b"%1\r\n$5\r\nproto\r\n:3\r\n"
    if cmd == b"INFO":
        body = b"# Server\r\nredis_version:5.0.14\r\nredis_mode:standalone\r\n# Clients\r\nconnected_clients:1\r\n"
        return b"$%d\r\n%s\r\n" % (len(body), body)
    if cmd == b"CONFIG" and len(args) > 2:
        key, value = args[2], {b"timeout": b"300", b"tcp-keepalive": b"0"}.get(args[2], b"")
        return b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)
    if cmd == b"CLIENT" and len(args) > 1 and args[1].upper() == b"LIST":
        body = b"id=3 addr=127.0.0.1:5555 fd=8 name= age=100 idle=50 flags=N\n"
        return b"$%d\r\n%s\r\n" % (len(body), body)
    return b"+OK\r\n"


@contextlib.contextmanager
def misbehaving_servers(lifetime: float = 120.0) -> Iterator[dict[str, int]]:
    s = Servers(lifetime)

    def silent(conn: socket.socket) -> None:
        s.hold(conn)

    def amqp_start_stall(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(CONNECTION_START)
        s.hold(conn)

    def amqp_start_trickle(conn: socket.socket) -> None:
        conn.recv(8)
        s.trickle(conn, CONNECTION_START, 0.5)

    def redis_like(conn: socket.socket, delay: float = 0.0, gap: float = 0.0, hello: bool = True) -> None:
        f = conn.makefile("rb")
        while not s.stop.is_set():
            try:
                line = f.readline()
            except TimeoutError:
                continue
            if not line:
                return
            args = [line.strip()]
            if line.startswith(b"*"):
                args = []
                for _ in range(int(line[1:])):
                    size = int(f.readline()[1:])
                    args.append(f.read(size + 2)[:-2])
            reply = redis_reply(args, hello)
            time.sleep(delay)
            if gap:
                s.trickle(conn, reply, gap)
                return
            conn.sendall(reply)

    def http_trickle(conn: socket.socket) -> None:
        conn.recv(65536)
        body = b'{"rabbitmq_version": "3.10.8"}'
        s.trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), 0.3)

    def http_odd_json(conn: socket.socket) -> None:
        conn.recv(65536)
        body = b'{"rabbitmq_version": ["x"], "churn_rates": 5, "object_totals": "zz"}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def http_endless(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[")
        end = min(s.deadline, time.monotonic() + 30)
        while not s.stop.is_set() and time.monotonic() < end:
            conn.sendall(b'{"name": "x"},')
            time.sleep(0.2)

    s.add("silent", silent)
    s.add("amqp_start_stall", amqp_start_stall)
    s.add("amqp_start_trickle", amqp_start_trickle)
    s.add("redis_slow", lambda c: redis_like(c, delay=1.2))
    s.add("redis_trickle", lambda c: redis_like(c, gap=0.4))
    s.add("redis_no_hello", lambda c: redis_like(c, hello=False))
    s.add("http_trickle", http_trickle)
    s.add("http_odd_json", http_odd_json)
    s.add("http_endless", http_endless)
    try:
        yield s.ports
    finally:
        s.close()
