"""A TCP fault proxy for loopback: sits between a Celery worker and its broker and breaks
the connection the way load balancers, NATs, firewalls and restarting brokers do.

Every decision the proxy takes is recorded as a ``model.Event`` (side ``proxy``) and, when an
event log is given, as one JSON line, so a recording carries its own ground truth:

    {"ts": "2025-01-01T10:00:00.000000+00:00", "source": "proxy", "kind": "proxy_cut",
     "client": "127.0.0.1:53412", "upstream": "127.0.0.1:5672", "fault": "idle-cut:10:rst",
     "message": "cut after 10.0s idle, RST to both sides"}

Forwarding is chunked (large reads, no per-byte work) so the proxy costs little throughput.
Closes are propagated faithfully when no fault is involved: an RST from one side becomes an
RST to the other, an EOF becomes a half-close, so the broker's own closing style (RabbitMQ
closes with RST) still reaches the worker.

A loopback proxy cannot make the kernel withhold TCP ACKs, so "blackhole" and "silent" cuts
look to each end like a peer that stopped talking, not like unacknowledged data: only
heartbeats (not TCP_USER_TIMEOUT) can notice them, which is the case worth reproducing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from celery_doctor.model import DoctorError, Event, Kind, Side

CHUNK = 256 * 1024  # bytes per read: large reads keep the per-chunk overhead negligible
CUT_MODES = ("rst", "fin", "silent")
FAULT_KINDS = (
    "idle-cut",
    "blackhole",
    "reset-under-load",
    "reset-after-bytes",
    "latency",
    "bandwidth",
    "refuse",
    "broker-restart",
)
FAULT_HELP = (
    "idle-cut:SECONDS[:rst|fin|silent], blackhole[:AFTER[:FOR]], reset-under-load:P, "
    "reset-after-bytes:N, latency:MS[:JITTER], bandwidth:KBPS, refuse, broker-restart "
    "(several joined with '+')"
)


class FaultSpecError(DoctorError):
    """A fault spec string that cannot be understood."""


class ProxyError(DoctorError):
    """The proxy could not start (port in use, upstream address invalid)."""


@dataclass(frozen=True)
class Fault:
    """One fault, or several (``parts``) applied together.

    Only the fields of ``kind`` are meaningful; ``spec`` is the normalised spec string,
    which is what the event log records.
    """

    kind: str
    spec: str
    seconds: float | None = None  # idle-cut: idle time before the cut
    mode: str = "rst"  # idle-cut: rst | fin | silent
    after_s: float = 0.0  # blackhole: delay after the fault is set
    for_s: float | None = None  # blackhole: duration (None = until the fault changes)
    probability: float = 0.0  # reset-under-load: per forwarded chunk
    nbytes: int = 0  # reset-after-bytes: per connection, both directions together
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    kbps: float = 0.0  # bandwidth: kilobytes (1000 bytes) per second, each direction
    parts: tuple[Fault, ...] = field(default=())

    def each(self) -> tuple[Fault, ...]:
        return self.parts or (self,)

    def find(self, kind: str) -> Fault | None:
        return next((f for f in self.each() if f.kind == kind), None)


def _number(value: str, what: str, spec: str, *, low: float = 0.0, integer: bool = False) -> float:
    try:
        number = float(int(value)) if integer else float(value)
    except ValueError:
        raise FaultSpecError(f"fault {spec!r}: {what} must be a number, got {value!r}") from None
    if number != number or number < low or number == float("inf"):
        raise FaultSpecError(f"fault {spec!r}: {what} must be a finite number >= {low:g}")
    return number


def _parse_one(spec: str) -> Fault:
    name, *args = spec.strip().split(":")
    name = name.strip().lower()
    arity = {"idle-cut": (1, 2), "blackhole": (0, 2), "reset-under-load": (1, 1),
             "reset-after-bytes": (1, 1), "latency": (1, 2), "bandwidth": (1, 1),
             "refuse": (0, 0), "broker-restart": (0, 0)}
    if name not in arity:
        raise FaultSpecError(f"unknown fault {spec!r}; expected one of: {FAULT_HELP}")
    low, high = arity[name]
    if not low <= len(args) <= high:
        raise FaultSpecError(f"fault {spec!r}: wrong number of arguments; expected {FAULT_HELP}")
    if name == "idle-cut":
        seconds = _number(args[0], "SECONDS", spec)
        if seconds <= 0:
            raise FaultSpecError(f"fault {spec!r}: SECONDS must be > 0")
        mode = args[1].lower() if len(args) > 1 else "rst"
        if mode not in CUT_MODES:
            raise FaultSpecError(f"fault {spec!r}: mode must be one of {', '.join(CUT_MODES)}")
        return Fault(name, f"idle-cut:{seconds:g}:{mode}", seconds=seconds, mode=mode)
    if name == "blackhole":
        after = _number(args[0], "AFTER", spec) if args else 0.0
        duration = _number(args[1], "FOR", spec) if len(args) > 1 else None
        norm = f"blackhole:{after:g}" + (f":{duration:g}" if duration is not None else "")
        return Fault(name, norm, after_s=after, for_s=duration)
    if name == "reset-under-load":
        p = _number(args[0], "P", spec)
        if p > 1:
            raise FaultSpecError(f"fault {spec!r}: P is a probability between 0 and 1")
        return Fault(name, f"reset-under-load:{p:g}", probability=p)
    if name == "reset-after-bytes":
        n = int(_number(args[0], "N", spec, low=1, integer=True))
        return Fault(name, f"reset-after-bytes:{n}", nbytes=n)
    if name == "latency":
        ms = _number(args[0], "MS", spec)
        jitter = _number(args[1], "JITTER", spec) if len(args) > 1 else 0.0
        return Fault(name, f"latency:{ms:g}" + (f":{jitter:g}" if jitter else ""),
                     latency_ms=ms, jitter_ms=jitter)
    if name == "bandwidth":
        kbps = _number(args[0], "KBPS", spec)
        if kbps <= 0:
            raise FaultSpecError(f"fault {spec!r}: KBPS must be > 0")
        return Fault(name, f"bandwidth:{kbps:g}", kbps=kbps)
    return Fault(name, name)


def parse_fault(spec: str) -> Fault:
    """Parse ``idle-cut:10:rst`` or ``latency:50+idle-cut:10``; raise FaultSpecError."""
    if not isinstance(spec, str) or not spec.strip():
        raise FaultSpecError(f"empty fault spec; expected one of: {FAULT_HELP}")
    parts = tuple(_parse_one(p) for p in spec.split("+"))
    if len(parts) == 1:
        return parts[0]
    kinds = [p.kind for p in parts]
    duplicate = next((k for k in kinds if kinds.count(k) > 1), None)
    if duplicate:
        raise FaultSpecError(f"fault {spec!r}: {duplicate} given twice")
    return Fault("combined", "+".join(p.spec for p in parts), parts=parts)


def _now() -> datetime:
    return datetime.now(UTC)


def _addr(sockname: object) -> str:
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host = str(sockname[0])
        return f"[{host}]:{sockname[1]}" if ":" in host else f"{host}:{sockname[1]}"
    return str(sockname)


def _abort_with_rst(writer: asyncio.StreamWriter | None) -> None:
    """Close at once with an RST (SO_LINGER 0), discarding unsent data."""
    if writer is None or writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _close_with_fin(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.transport.is_closing():
        writer.close()


class _Flow:
    """One client connection and its upstream twin."""

    def __init__(self, client: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.client = client
        self.c_reader, self.c_writer = reader, writer
        self.u_reader: asyncio.StreamReader | None = None
        self.u_writer: asyncio.StreamWriter | None = None
        self.opened = time.monotonic()
        self.last_activity = self.opened
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self.dead = False  # nothing more is forwarded (cut, or reset by one side)
        self.faulted = False  # the proxy cut it (a proxy_cut event says so)
        self.silent = False  # cut silently: keep reading, forward nothing, close nothing
        self.blackholed = False
        self.first_close: str | None = None  # who closed first, for the closing event
        self.tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()

    def writers(self) -> Iterator[asyncio.StreamWriter]:
        yield self.c_writer
        if self.u_writer is not None:
            yield self.u_writer


class FaultProxy:
    """An asyncio TCP proxy that injects one (possibly combined) fault at a time."""

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        fault: Fault | None = None,
        event_log: Path | None = None,
        hook: str | None = None,
    ) -> None:
        self.listen = listen
        self.upstream = upstream
        self.event_log = Path(event_log) if event_log is not None else None
        self.hook = hook
        self.events: list[Event] = []
        self.address: tuple[str, int] = listen
        self._fault: Fault | None = None
        self._fault_set_at = time.monotonic()
        self._flows: set[_Flow] = set()
        self._server: asyncio.base_events.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._timers: list[asyncio.TimerHandle] = []
        self._watcher: asyncio.Task[None] | None = None
        self._hook_tasks: set[asyncio.Task[None]] = set()  # hook runs, refusal mirroring
        self._stopping = False
        self._rng = random.Random()
        self._upstream_text = _addr(upstream)
        self._initial = fault
        self._check_fault(fault)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._listen(self.listen)
        except OSError as exc:
            raise ProxyError(f"cannot listen on {_addr(self.listen)}: {exc.strerror or exc}") from exc
        assert self._server is not None
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        self._watcher = asyncio.create_task(self._watch_idle())
        self.set_fault(self._initial)

    async def _listen(self, address: tuple[str, int]) -> None:
        self._server = await asyncio.start_server(
            self._on_client, address[0], address[1], limit=CHUNK
        )

    async def _mirror_refusal(self) -> None:
        """The upstream refuses connections (a broker restarting): stop listening so clients
        get a real ECONNREFUSED as they would without the proxy, and listen again on the same
        port as soon as the upstream accepts."""
        if self._server is None:
            return
        self._server.close()
        self._record(Kind.OTHER, None, f"upstream {self._upstream_text} refuses connections; "
                                       "proxy stops listening until it accepts again")
        while not self._stopping:
            await asyncio.sleep(0.25)
            try:
                _, probe = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 2)
            except (OSError, TimeoutError):
                continue
            _abort_with_rst(probe)
            break
        if not self._stopping:
            await self._listen(self.address)
            self._record(Kind.OTHER, None, f"upstream {self._upstream_text} accepts again; "
                                           "proxy listening again")

    async def stop(self) -> None:
        """Stop listening and close every connection (RST: nothing is left half-open)."""
        self._stopping = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._server is not None:
            self._server.close()
        if self._watcher is not None:
            self._watcher.cancel()
        for flow in list(self._flows):
            for writer in flow.writers():
                _abort_with_rst(writer)
            for task in flow.tasks:
                task.cancel()
        pending = [t for f in list(self._flows) for t in f.tasks]
        pending += list(self._hook_tasks)
        if self._watcher is not None:
            pending.append(self._watcher)
        if pending:
            await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        self._flows.clear()

    # -- faults -------------------------------------------------------------------------------

    def _refusing(self) -> bool:
        return self._server is not None and not self._server.is_serving()

    def _check_fault(self, fault: Fault | None) -> None:
        if fault is not None and fault.find("broker-restart") and not self.hook:
            raise FaultSpecError("fault broker-restart needs a hook command (the proxy runs it)")

    @property
    def fault(self) -> Fault | None:
        return self._fault

    def set_fault(self, fault: Fault | None) -> None:
        """Switch the fault; open connections are kept and the new fault applies to them."""
        self._check_fault(fault)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        was_blackholed = not self._flowing.is_set()
        self._fault = fault
        self._fault_set_at = time.monotonic()
        if was_blackholed:
            self._heal("fault changed")
        if fault is None:
            return
        loop = asyncio.get_running_loop()
        hole = fault.find("blackhole")
        if hole is not None:
            self._timers.append(loop.call_later(hole.after_s, self._begin_blackhole, hole))
            if hole.for_s is not None:
                self._timers.append(
                    loop.call_later(hole.after_s + hole.for_s, self._heal, f"after {hole.for_s:g}s")
                )
        if fault.find("broker-restart"):
            task = loop.create_task(self._run_hook())
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    def _begin_blackhole(self, hole: Fault) -> None:
        self._flowing.clear()
        for flow in list(self._flows):
            if not flow.dead:
                flow.blackholed = True
                self._record(Kind.PROXY_BLACKHOLE, flow.client,
                             "blackhole: forwarding stopped, sockets left open")

    def _heal(self, why: str) -> None:
        if self._flowing.is_set():
            return
        self._flowing.set()
        for flow in list(self._flows):
            if flow.blackholed:
                flow.blackholed = False
                self._record(Kind.PROXY_HEAL, flow.client,
                             f"blackhole healed ({why}): forwarding resumed on the same sockets")

    async def _run_hook(self) -> None:
        assert self.hook is not None
        self._record(Kind.OTHER, None, "broker-restart: running the hook command")
        proc = await asyncio.create_subprocess_shell(
            self.hook, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            status = await proc.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        self._record(Kind.OTHER, None, f"broker-restart: hook finished with exit status {status}")

    # -- events -------------------------------------------------------------------------------

    def _record(self, kind: Kind, client: str | None, message: str, error: str | None = None,
                local: str | None = None) -> None:
        ts = _now()
        fault = self._fault.spec if self._fault is not None else None
        row = {
            "ts": ts.isoformat(timespec="microseconds"),
            "source": "proxy",
            "kind": kind.value,
            "client": client,
            "upstream": self._upstream_text,
            "fault": fault,
            "message": message,
        }
        text = json.dumps(row)
        if self.event_log is not None:
            with self.event_log.open("a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        self.events.append(
            Event(ts=ts, source="proxy", line=len(self.events) + 1, side=Side.PROXY, kind=kind,
                  text=text, peer=client, error=error,
                  detail={"upstream": self._upstream_text, "fault": fault, "message": message,
                          "local": local})
        )

    # -- connections --------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _addr(writer.get_extra_info("peername"))
        fault = self._fault
        if fault is not None and fault.find("refuse"):
            self._record(Kind.PROXY_REFUSE, client, "new connection refused with RST")
            _abort_with_rst(writer)
            return
        flow = _Flow(client, reader, writer)
        self._flows.add(flow)
        try:
            held: bytes | None = b""
            if not self._flowing.is_set():  # a blackhole swallows the connect too, until healed
                flow.blackholed = True
                self._record(Kind.PROXY_BLACKHOLE, client,
                             "blackhole: new connection held, upstream not contacted")
                held = await self._hold(flow)
                if held is None:  # the client gave up first: as if its SYN never arrived
                    self._record(Kind.OTHER, client,
                                 "held connection abandoned by the client; upstream never "
                                 "contacted")
                    _close_with_fin(writer)
                    return
            try:
                u_reader, u_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream, limit=CHUNK), timeout=10
                )
            except (OSError, TimeoutError) as exc:
                self._record(Kind.OTHER, client,
                             f"upstream {self._upstream_text} unreachable ({exc!r}); client reset",
                             error=type(exc).__name__)
                _abort_with_rst(writer)
                if isinstance(exc, ConnectionRefusedError) and not self._refusing():
                    task = asyncio.create_task(self._mirror_refusal())
                    self._hook_tasks.add(task)
                    task.add_done_callback(self._hook_tasks.discard)
                return
            flow.u_reader, flow.u_writer = u_reader, u_writer
            for w in flow.writers():
                with contextlib.suppress(OSError):
                    w.get_extra_info("socket").setsockopt(
                        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
                    )
            if held:
                u_writer.write(held)
            local = _addr(u_writer.get_extra_info("sockname"))
            self._record(Kind.CONNECTED, client,
                         f"connection opened to {self._upstream_text} from {local}", local=local)
            flow.tasks = [
                asyncio.create_task(self._pump(flow, flow.c_reader, u_writer, up=True)),
                asyncio.create_task(self._pump(flow, u_reader, flow.c_writer, up=False)),
            ]
            await asyncio.gather(*flow.tasks, return_exceptions=True)
            if not flow.faulted:
                took = time.monotonic() - flow.opened
                self._record(
                    Kind.OTHER, client,
                    f"connection closed ({flow.first_close or 'proxy stopped'}) after {took:.1f}s, "
                    f"{flow.bytes_up} bytes up, {flow.bytes_down} bytes down",
                )
            for w in flow.writers():
                _close_with_fin(w)
        finally:
            self._flows.discard(flow)
            flow.done.set()

    async def _hold(self, flow: _Flow) -> bytes | None:
        """Keep a connection made during a blackhole until it heals, buffering what the client
        sends; None when the client closes or resets it first."""
        buffered = b""
        healed = asyncio.create_task(self._flowing.wait())
        try:
            while not healed.done():
                read = asyncio.create_task(flow.c_reader.read(CHUNK))
                await asyncio.wait({healed, read}, return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        data = await read
                        buffered += data  # the read finished as it was cancelled
                    break
                try:
                    data = read.result()
                except OSError:
                    return None
                if not data:
                    return None
                buffered += data
            return buffered
        finally:
            healed.cancel()

    async def _pump(self, flow: _Flow, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, *, up: bool) -> None:
        """Forward one direction until EOF, an error, or a cut."""
        src, dst = ("client", "upstream") if up else ("upstream", "client")
        delayed: asyncio.Queue[tuple[float, bytes]] | None = None
        sender: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionResetError, BrokenPipeError, OSError) as exc:
                    if flow.silent:
                        return
                    if not flow.dead:
                        flow.first_close = flow.first_close or f"{src} reset (RST)"
                        flow.dead = True  # an RST goes on as an RST, both ways
                        self._forward_close(flow, reset=True, exc=exc)
                    return
                if flow.dead:
                    if flow.silent and data:
                        continue  # a silent cut swallows whatever comes
                    return
                if not data:
                    flow.first_close = flow.first_close or f"{src} closed (EOF)"
                    if delayed is not None:
                        await delayed.join()
                    if not writer.transport.is_closing() and writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()  # half-close: the other side finishes its part
                    return
                flow.last_activity = time.monotonic()
                if not self._flowing.is_set():
                    await self._flowing.wait()  # blackhole: hold the chunk, deliver it on heal
                    if flow.dead:
                        return
                fault = self._fault
                if fault is not None:
                    kept = self._apply_chunk_faults(flow, fault, data, writer)
                    if kept is None:
                        return
                    data = kept
                if up:
                    flow.bytes_up += len(data)
                else:
                    flow.bytes_down += len(data)
                lat = fault.find("latency") if fault is not None else None
                if lat is not None or (delayed is not None and not delayed.empty()):
                    if delayed is None:
                        delayed = asyncio.Queue()
                        sender = asyncio.create_task(self._send_delayed(delayed, writer))
                    delay = 0.0
                    if lat is not None:
                        delay = lat.latency_ms + self._rng.uniform(-lat.jitter_ms, lat.jitter_ms)
                    delayed.put_nowait((time.monotonic() + max(0.0, delay) / 1000.0, data))
                else:
                    writer.write(data)
                    await writer.drain()
                bw = fault.find("bandwidth") if fault is not None else None
                if bw is not None:
                    await asyncio.sleep(len(data) / (bw.kbps * 1000.0))
                if flow.dead and not flow.silent:
                    return
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if not flow.dead:
                flow.first_close = flow.first_close or f"{dst} reset (RST)"
                flow.dead = True
                self._forward_close(flow, reset=True, exc=exc)
        finally:
            if sender is not None:
                sender.cancel()

    @staticmethod
    async def _send_delayed(queue: asyncio.Queue[tuple[float, bytes]],
                            writer: asyncio.StreamWriter) -> None:
        due_last = 0.0
        while True:
            due, data = await queue.get()
            due = max(due, due_last)  # jitter never reorders the stream
            due_last = due
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not writer.transport.is_closing():
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                queue.task_done()

    def _apply_chunk_faults(self, flow: _Flow, fault: Fault, data: bytes,
                            writer: asyncio.StreamWriter) -> bytes | None:
        """Faults decided per forwarded chunk; return the bytes to forward, None when cut."""
        load = fault.find("reset-under-load")
        if load is not None and self._rng.random() < load.probability:
            self._cut(flow, "rst", f"reset under load (p={load.probability:g}) after "
                                   f"{flow.bytes_up + flow.bytes_down} bytes, RST to both sides")
            return None
        limit = fault.find("reset-after-bytes")
        if limit is not None:
            left = limit.nbytes - (flow.bytes_up + flow.bytes_down)
            if left <= len(data):
                if left > 0:
                    writer.write(data[:left])  # the bytes that fit still go through
                self._cut(flow, "rst", f"reset after {limit.nbytes} bytes, RST to both sides")
                return None
        return data

    def _forward_close(self, flow: _Flow, *, reset: bool, exc: BaseException | None) -> None:
        for w in flow.writers():
            if reset:
                _abort_with_rst(w)
            else:
                _close_with_fin(w)

    def _cut(self, flow: _Flow, mode: str, message: str) -> None:
        """Cut a flow as a middlebox would: RST both ends, FIN both ends, or go silent."""
        if flow.dead:
            return
        flow.dead = flow.faulted = True
        self._record(Kind.PROXY_CUT, flow.client, message)
        if mode == "silent":
            flow.silent = True  # sockets stay open; the pumps keep reading and drop everything
            return
        for w in flow.writers():
            if mode == "rst":
                _abort_with_rst(w)
            else:
                _close_with_fin(w)

    async def _watch_idle(self) -> None:
        while True:
            fault = self._fault
            cut = fault.find("idle-cut") if fault is not None else None
            if cut is None or cut.seconds is None:
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for flow in list(self._flows):
                if flow.dead or flow.blackholed or flow.u_writer is None:
                    continue
                idle = now - max(flow.last_activity, self._fault_set_at)
                if idle >= cut.seconds:
                    how = {"rst": "RST to both sides", "fin": "FIN to both sides",
                           "silent": "flow dropped silently, both sockets left open"}[cut.mode]
                    self._cut(flow, cut.mode, f"cut after {idle:.1f}s idle, {how}")
            await asyncio.sleep(min(0.2, cut.seconds / 20))


class ProxyThread:
    """A FaultProxy on its own event loop in a background thread, for synchronous callers."""

    def __init__(
        self,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        fault: Fault | None = None,
        event_log: Path | None = None,
        hook: str | None = None,
    ) -> None:
        self._args = (listen, upstream, fault, event_log, hook)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: FaultProxy | None = None

    def start(self) -> tuple[str, int]:
        listen, upstream, fault, event_log, hook = self._args
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)
        self._thread.start()

        async def create() -> FaultProxy:
            proxy = FaultProxy(listen, upstream, fault, event_log, hook)
            await proxy.start()
            return proxy

        try:
            self._proxy = asyncio.run_coroutine_threadsafe(create(), self._loop).result(15)
        except BaseException:
            self._shutdown_loop()
            raise
        return self._proxy.address

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._proxy is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._proxy.stop(), self._loop).result(15)
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        if not loop.is_running():
            loop.close()
        self._loop = None

    def set_fault(self, fault: Fault | None) -> None:
        if self._proxy is None or self._loop is None:
            raise ProxyError("the proxy is not running")
        proxy = self._proxy

        async def switch() -> None:
            proxy.set_fault(fault)

        asyncio.run_coroutine_threadsafe(switch(), self._loop).result(15)

    @property
    def address(self) -> tuple[str, int]:
        if self._proxy is None:
            raise ProxyError("the proxy is not running")
        return self._proxy.address

    @property
    def events(self) -> list[Event]:
        return list(self._proxy.events) if self._proxy is not None else []
