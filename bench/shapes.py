"""Generate big logs of every shape `celery-doctor logs` reads, with a known number of incidents.

    python bench/shapes.py SHAPE SIZE_MB [OUT]      (OUT defaults to bench/data/SHAPE-SIZEmb.log)
    python bench/shapes.py --list

Each shape is mostly the traffic that real logs are made of (task lines, application warnings
and tracebacks, broker connection churn), with one connection failure injected every few MB.
The failures are spaced minutes apart so each is one incident; ``OUT.truth.json`` records how
many were injected, what to grep for (the anchor) and which files make up the input.

The line layouts are the ones the released programs write (see the fixtures recorded by
scripts/record_incident.py under tests/fixtures/, and docs/signatures.md for the sources):
Celery 5 and 3.1 worker logs, ``docker compose logs`` prefixes, python-json-logger lines,
RabbitMQ 3.9+ (one prefix per physical line), Redis 7 verbose, `kubectl logs --timestamps`; and a worker
whose tasks log their own upstream failures (requests over urllib3, chained tracebacks).
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
START = 1_793_491_200.0  # 2026-11-01 00:00:00 UTC
EVERY = 3 * 1024 * 1024  # one injected failure per this many bytes of traffic
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Clock:
    """A monotonic fake clock with cheap timestamp strings (the date part is cached per second)."""

    def __init__(self, start: float = START) -> None:
        self.t = start
        self._sec = -1
        self._iso = self._redis = ""

    def tick(self, seconds: float) -> None:
        self.t += seconds

    def _refresh(self) -> None:
        sec = int(self.t)
        if sec != self._sec:
            tm = time.gmtime(sec)
            self._sec = sec
            self._iso = time.strftime("%Y-%m-%d %H:%M:%S", tm)
            self._redis = f"{tm.tm_mday:02d} {MONTHS[tm.tm_mon - 1]} {tm.tm_year} {time.strftime('%H:%M:%S', tm)}"

    def celery(self) -> str:  # 2026-11-01 00:00:00,123
        self._refresh()
        return f"{self._iso},{int((self.t % 1) * 1000):03d}"

    def rabbit(self) -> str:  # 2026-11-01 00:00:00.123456+00:00
        self._refresh()
        return f"{self._iso}.{int((self.t % 1) * 1e6):06d}+00:00"

    def redis(self) -> str:  # 01 Nov 2026 00:00:00.123
        self._refresh()
        return f"{self._redis}.{int((self.t % 1) * 1000):03d}"


def task_id(n: int) -> str:
    h = (n * 2654435761) % (1 << 48)
    return f"{n & 0xFFFFFFFF:08x}-7d3c-4a1b-9f2e-{h:012x}"


# --- Celery 5 worker traffic ---------------------------------------------------------------------
TASKS = ("shop.tasks.sync_inventory", "shop.tasks.send_receipt", "shop.tasks.resize_image", "shop.tasks.refresh_feed")
# Real warnings an application logs from its tasks (urllib3, Django, the app's own): ~7% of lines.
APP_WARNINGS = (
    "{name}[{id}]: upstream returned 503 from inventory.internal, retrying in 5s",
    "Connection pool is full, discarding connection: api.payments.example. Connection pool size: 10",
    "Retrying (Retry(total=2, connect=None, read=None, redirect=None, status=None)) after connection broken by "
    "'ProtocolError('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))': /v2/stock",
    "{name}[{id}]: image larger than 20 MB, downscaling before upload",
    "/srv/app/shop/models.py:118: RuntimeWarning: DateTimeField Order.created received a naive datetime "
    "(2026-11-01 00:00:00) while time zone support is active.",
    "{name}[{id}]: feed entry without guid, skipped",
)


def worker_traffic(clock: Clock, n: int, warn_every: int = 14) -> Iterator[str]:
    """Task received / succeeded pairs, with an application warning on about 7% of lines."""
    for i in range(n, n + 1000):
        name = TASKS[i % len(TASKS)]
        tid = task_id(i)
        clock.tick(0.004)
        yield f"[{clock.celery()}: INFO/MainProcess] Task {name}[{tid}] received\n"
        if i % (warn_every // 2) == 0:
            clock.tick(0.001)
            text = APP_WARNINGS[(i // 7) % len(APP_WARNINGS)].format(name=name, id=tid)
            yield f"[{clock.celery()}: WARNING/ForkPoolWorker-{i % 4 + 1}] {text}\n"
        clock.tick(0.003)
        yield f"[{clock.celery()}: INFO/ForkPoolWorker-{i % 4 + 1}] Task {name}[{tid}] succeeded in " \
              f"0.{i % 9000 + 1000:04d}s: None\n"


# A task whose HTTP upstream resets it (urllib3 under requests, Python 3's chained traceback): what an
# application logs, not the worker's broker connection (celery_family.application_traceback)
UPSTREAM_RESET = (
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.12/site-packages/urllib3/connectionpool.py", line 536, in _make_request\n'
    "    response = conn.getresponse()\n"
    '  File "/usr/local/lib/python3.12/http/client.py", line 1428, in getresponse\n'
    "    response.begin()\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
    "\nDuring handling of the above exception, another exception occurred:\n\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/tasks.py", line 88, in {fn}\n'
    "    resp = session.post(url, json=payload, timeout=5)\n"
    "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, "
    "'Connection reset by peer'))\n"
)


def apperrors_traffic(clock: Clock, n: int) -> Iterator[str]:
    """The worker traffic with twice the warnings, and one task in 33 failing on its upstream: by
    turns raised, logged by the task (``logger.exception``) or by a module's logger, each with a
    chained traceback."""
    for i, line in enumerate(worker_traffic(clock, n, warn_every=7)):
        if i % 100 == 50:
            k = n + i
            name = TASKS[k % len(TASKS)]
            tid = task_id(k)
            frames = UPSTREAM_RESET.format(fn=name.rsplit(".", 1)[1])
            head = (f"Task {name}[{tid}] raised unexpected: ConnectionError(ProtocolError('Connection aborted.', "
                    "ConnectionResetError(104, 'Connection reset by peer')))" if k % 3 == 0 else
                    f"{name}[{tid}]: upstream stock call failed, will retry" if k % 3 == 1 else
                    "shop.clients.stock: stock service unreachable, serving cached levels")  # a module's logger
            yield f"[{clock.celery()}: ERROR/ForkPoolWorker-{k % 4 + 1}] {head}\n{frames}"
        yield line


def kubectl(text: str, clock: Clock) -> str:
    """``kubectl logs --timestamps``: the container runtime's RFC 3339 time on every physical line,
    the time the line was written (that of its Celery header; a traceback's lines share their
    record's), fractions with trailing zeros trimmed as Go's RFC3339Nano does."""
    def rfc3339(celery_time: str) -> str:  # 2026-11-01 00:00:00,120 -> 2026-11-01T00:00:00.12Z
        return celery_time.replace(" ", "T").replace(",", ".").rstrip("0").rstrip(".") + "Z "

    stamp = rfc3339(clock.celery())
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("[20"):
            stamp = rfc3339(line[1:24])
        out.append(stamp + line)
    return "".join(out)


CELERY5_LOSSES = (
    # Celery 5.3+: the repr of the error on the same line
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... "
    "(ConnectionResetError(104, 'Connection reset by peer'))\n",
    # Celery 5.0-5.2: the traceback that consumer.py logs with exc_info
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/local/lib/python3.11/site-packages/celery/worker/consumer/consumer.py", line 340, in start\n'
    "    blueprint.start(self)\n"
    '  File "/usr/local/lib/python3.11/site-packages/amqp/transport.py", line 342, in _read\n'
    "    s = recv(n - len(rbuf))\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n",
)


def worker_loss(clock: Clock, k: int) -> str:
    clock.tick(45)  # an idle pause, then the cut
    lost = CELERY5_LOSSES[k % 2].format(ts=clock.celery())
    clock.tick(0.02)
    return lost + f"[{clock.celery()}: INFO/MainProcess] Connected to amqp://guest:**@rabbitmq:5672//\n"


# --- Celery 3.1 worker with many application tracebacks ------------------------------------------
PY2_FRAMES = (
    '  File "/srv/app/venv/local/lib/python2.7/site-packages/celery/app/trace.py", line 240, in trace_task\n'
    "    R = retval = fun(*args, **kwargs)\n"
    '  File "/srv/app/venv/local/lib/python2.7/site-packages/celery/app/trace.py", line 438, in __protected_call__\n'
    "    return self.run(*args, **kwargs)\n"
    '  File "/srv/app/shop/tasks.py", line 57, in {fn}\n'
    "    resp = requests.get(url, timeout=10)\n"
)
APP_ERRORS = (
    "ConnectionError: HTTPConnectionPool(host='inventory.internal', port=80): Max retries exceeded with url: "
    "/stock (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f3c>: Failed to "
    "establish a new connection: [Errno 111] Connection refused',))",
    "ValueError: No JSON object could be decoded",
    "KeyError: 'sku'",
    "IntegrityError: duplicate key value violates unique constraint \"shop_order_pkey\"",
)


def celery31_traffic(clock: Clock, n: int) -> Iterator[str]:
    """3.1 task lines; one task in 25 fails with a traceback (task errors and app logger.exception)."""
    for i in range(n, n + 1000):
        name = TASKS[i % len(TASKS)]
        tid = task_id(i)
        clock.tick(0.004)
        yield f"[{clock.celery()}: INFO/MainProcess] Received task: {name}[{tid}]\n"
        clock.tick(0.003)
        if i % 25 == 0:
            error = APP_ERRORS[(i // 25) % len(APP_ERRORS)]
            frames = PY2_FRAMES.format(fn=name.rsplit(".", 1)[1])
            if i % 50 == 0:  # the task's own failure, as celery/app/trace.py logs it
                yield f"[{clock.celery()}: ERROR/MainProcess] Task {name}[{tid}] raised unexpected: " \
                      f"{error.split(': ', 1)[0]}({error.split(': ', 1)[1][:60]!r},)\n" \
                      f"Traceback (most recent call last):\n{frames}{error}\n"
            else:  # the application's logger.exception() inside the task
                yield f"[{clock.celery()}: ERROR/Worker-{i % 4 + 1}] {name}[{tid}]: could not refresh stock\n" \
                      f"Traceback (most recent call last):\n{frames}{error}\n"
        else:
            yield f"[{clock.celery()}: INFO/MainProcess] Task {name}[{tid}] succeeded in " \
                  f"0.{i % 9000 + 1000:04d}s: None\n"


def celery31_loss(clock: Clock, k: int) -> str:
    clock.tick(45)
    ts = clock.celery()
    clock.tick(0.02)
    return (f"[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the "
            "connection...\nTraceback (most recent call last):\n"
            '  File "/srv/app/venv/local/lib/python2.7/site-packages/celery/worker/consumer.py", line 278, in start\n'
            "    blueprint.start(self)\n"
            '  File "/srv/app/venv/local/lib/python2.7/site-packages/amqp/transport.py", line 237, in _read\n'
            "    s = recv(n - len(rbuf))\n"
            "error: [Errno 104] Connection reset by peer\n"
            f"[{clock.celery()}: INFO/MainProcess] Connected to amqp://guest:**@rabbitmq:5672//\n")


# --- python-json-logger --------------------------------------------------------------------------
def json_line(clock: Clock, level: str, logger: str, message: str, **extra: str) -> str:
    return json.dumps({"asctime": clock.celery(), "levelname": level, "name": logger,
                       "processName": "MainProcess", "message": message, **extra}) + "\n"


def json_traffic(clock: Clock, n: int) -> Iterator[str]:
    for line in worker_traffic(clock, n):
        head, _, message = line.partition("] ")
        level = head.split(": ", 1)[1].split("/", 1)[0]
        logger = "celery.app.trace" if "Task " in message else "shop.tasks"
        yield json_line(clock, level, logger, message.rstrip("\n"))


def json_loss(clock: Clock, k: int) -> str:
    clock.tick(45)
    exc = ("Traceback (most recent call last):\n"
           "  File \"/usr/local/lib/python3.11/site-packages/amqp/transport.py\", line 342, in _read\n"
           "    s = recv(n - len(rbuf))\nConnectionResetError: [Errno 104] Connection reset by peer")
    lost = json_line(clock, "WARNING", "celery.worker.consumer.consumer",
                     "consumer: Connection to broker lost. Trying to re-establish the connection...", exc_info=exc)
    clock.tick(0.02)
    return lost + json_line(clock, "INFO", "celery.worker.consumer.connection",
                            "Connected to amqp://guest:**@rabbitmq:5672//")


# --- RabbitMQ 3.9+ server log with connection churn ----------------------------------------------
def rabbit_traffic(clock: Clock, n: int) -> Iterator[str]:
    """Short-lived publishers: accept, authenticate, close cleanly (3.9+: prefix on every line)."""
    for i in range(n, n + 1000):
        pid = f"<0.{20000 + i % 900000}.0>"
        peer = f"10.0.{i % 7}.{i % 250 + 2}:{30000 + i % 30000} -> 10.0.0.2:5672"
        clock.tick(0.01)
        yield f"{clock.rabbit()} [info] {pid} accepting AMQP connection {pid} ({peer})\n"
        clock.tick(0.002)
        yield f"{clock.rabbit()} [info] {pid} connection {pid} ({peer}): user 'shop' authenticated and granted " \
              "access to vhost '/'\n"
        clock.tick(0.02)
        yield f"{clock.rabbit()} [info] {pid} closing AMQP connection {pid} ({peer}, vhost: '/', user: 'shop')\n"


def rabbit_loss(clock: Clock, k: int) -> str:
    clock.tick(120)
    pid = f"<0.{9000 + k}.1>"
    ts = clock.rabbit()
    return (f"{ts} [error] {pid} closing AMQP connection {pid} (10.0.3.17:{40000 + k % 20000} -> 10.0.0.2:5672):\n"
            f"{ts} [error] {pid} missed heartbeats from client, timeout: 60s\n")


# --- Redis 7 server log, verbose, with connection churn ------------------------------------------
def redis_traffic(clock: Clock, n: int) -> Iterator[str]:
    for i in range(n, n + 1000):
        addr = f"10.0.{i % 7}.{i % 250 + 2}:{30000 + i % 30000}"
        clock.tick(0.01)
        yield f"1:M {clock.redis()} - Accepted {addr}\n"
        clock.tick(0.02)
        yield f"1:M {clock.redis()} - Client closed connection id={i} addr={addr} laddr=10.0.0.3:6379 fd=9 name= " \
              "age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=20474 argv-mem=0 " \
              "multi-mem=0 rbs=1024 rbp=0 obl=0 oll=0 omem=0 tot-mem=22272 events=r cmd=lpush user=default " \
              "redir=-1 resp=3\n"
        if i % 50 == 0:
            yield f"1:M {clock.redis()} - DB 0: {i % 40 + 2} keys (0 volatile) in 64 slots HT.\n"


def redis_loss(clock: Clock, k: int) -> str:
    clock.tick(400)  # `timeout 300` closes the worker's idle pidbox connection
    return f"1:M {clock.redis()} - Closing idle client\n"


@dataclass(frozen=True)
class Shape:
    name: str
    about: str
    traffic: Callable[[Clock, int], Iterator[str]]
    loss: Callable[[Clock, int], str]
    anchor: str  # what `grep -c` counts (a literal of the injected failures)
    head: str = ""
    prefix: str = ""
    wrap: Callable[[str, Clock], str] | None = None  # a collector's prefix computed per block of lines
    files: int = 1
    gz: bool = False


WORKER_HEAD = """
 -------------- celery@worker-7f9c v5.4.0 (opalescent)
--- ***** -----
-- ******* ---- Linux-6.1.0-x86_64-with-glibc2.36 2026-11-01 00:00:00
- *** --- * ---
- ** ---------- [config]
- ** ---------- .> app:         shop:0x7f3c2a1b
- ** ---------- .> transport:   amqp://guest:**@rabbitmq:5672//
- ** ---------- .> results:     redis://redis:6379/1
- *** --- * --- .> concurrency: 4 (prefork)
-- ******* ---- .> task events: OFF (enable -E to monitor tasks in this worker)
--- ***** -----
 -------------- [queues]
                .> celery           exchange=celery(direct) key=celery

[2026-11-01 00:00:00,050: INFO/MainProcess] Connected to amqp://guest:**@rabbitmq:5672//
[2026-11-01 00:00:00,080: INFO/MainProcess] celery@worker-7f9c ready.
"""
SHAPES = {s.name: s for s in (
    Shape("worker", "Celery 5 worker log, 7% of lines application WARNINGs", worker_traffic, worker_loss,
          "Connection to broker lost", WORKER_HEAD),
    Shape("compose", "the worker log behind docker compose prefixes", worker_traffic, worker_loss,
          "Connection to broker lost", WORKER_HEAD, prefix="shop-worker-1  | "),
    Shape("json", "Celery JSON lines (python-json-logger)", json_traffic, json_loss, "Connection to broker lost"),
    Shape("rabbitmq", "RabbitMQ 3.9+ server log, connection churn", rabbit_traffic, rabbit_loss,
          "missed heartbeats from client"),
    Shape("redis", "Redis 7 server log (verbose), connection churn", redis_traffic, redis_loss,
          "Closing idle client"),
    Shape("celery31", "Celery 3.1 log, one task in 25 fails with a traceback", celery31_traffic, celery31_loss,
          "Connection to broker lost", WORKER_HEAD.replace("v5.4.0 (opalescent)", "v3.1.26.post2 (Cipater)")),
    Shape("apperrors", "Celery 5 worker log, 14% app warnings, tasks failing on their upstream (chained tracebacks)",
          apperrors_traffic, worker_loss, "Connection to broker lost", WORKER_HEAD),
    Shape("kubectl", "the worker log as kubectl logs --timestamps shows it", worker_traffic, worker_loss,
          "Connection to broker lost", WORKER_HEAD, wrap=kubectl),
    Shape("many", "ten worker logs at once", worker_traffic, worker_loss, "Connection to broker lost",
          WORKER_HEAD, files=10),
    Shape("gz", "the worker log, gzip-compressed", worker_traffic, worker_loss, "Connection to broker lost",
          WORKER_HEAD, gz=True),
)}


def write_one(shape: Shape, path: Path, size: int, start: float = START) -> int:
    """Write ``size`` bytes of ``shape`` to ``path``; return the number of injected failures."""
    clock = Clock(start)
    written = injected = n = 0
    every = min(EVERY, max(64 * 1024, size // 8))  # small files still get failures
    next_loss = every // 2
    with path.open("w", encoding="utf-8", newline="\n") as out:
        head = "".join(shape.prefix + ln + "\n" for ln in shape.head.splitlines()) if shape.head else ""
        if shape.wrap and head:
            head = shape.wrap(head, clock)
        out.write(head)
        written += len(head)
        while written < size:
            block = list(shape.traffic(clock, n))
            n += len(block)
            if written + sum(map(len, block)) >= next_loss:
                block.append(shape.loss(clock, injected))
                injected += 1
                next_loss += every
            text = "".join(block)
            if shape.prefix:
                text = "".join(shape.prefix + ln for ln in text.splitlines(keepends=True))
            if shape.wrap:
                text = shape.wrap(text, clock)
            out.write(text)
            written += len(text.encode())
    return injected


def generate(name: str, size_mb: int, out: Path | None = None) -> dict[str, object]:
    """Write the shape's files and its truth file; return the truth."""
    shape = SHAPES[name]
    base = out or DATA / f"{name}-{size_mb}mb.log"
    base.parent.mkdir(parents=True, exist_ok=True)
    size = size_mb * 1024 * 1024
    files: list[Path] = []
    injected = 0
    if shape.files > 1:
        for k in range(shape.files):
            part = base.with_name(f"{base.stem}.{k}.log")
            injected += write_one(shape, part, size // shape.files, START + 21600 * k)  # 6 h apart
            files.append(part)
    else:
        injected = write_one(shape, base, size)
        files.append(base)
    if shape.gz:
        packed = base.with_name(base.name + ".gz")
        if shutil.which("gzip"):
            with packed.open("wb") as dst:
                subprocess.run(["gzip", "-c", "-6", str(base)], stdout=dst, check=True)
        else:
            with base.open("rb") as src, gzip.open(packed, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        base.unlink()
        files = [packed]
    truth = {"shape": name, "about": shape.about, "size_mb": size_mb, "injected": injected,
             "anchor": shape.anchor, "files": [str(f) for f in files], "gz": shape.gz}
    base.with_name(base.name + ".truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__.strip().splitlines()[0])
        for s in SHAPES.values():
            print(f"  {s.name:9} {s.about}")
        return 0 if argv else 2
    name, size_mb = argv[0], int(argv[1])
    if name not in SHAPES:
        print(f"unknown shape {name!r} (choose from {', '.join(SHAPES)})", file=sys.stderr)
        return 2
    truth = generate(name, size_mb, Path(argv[2]) if len(argv) > 2 else None)
    print(json.dumps(truth))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
