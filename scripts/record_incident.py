#!/usr/bin/env python
"""Record a real broker-connection incident: a real Celery worker, the local broker, the
fault proxy between them, and the logs every side wrote.

    python scripts/record_incident.py idle-cut --broker rabbitmq --out tests/fixtures/rabbitmq-idle-cut
    python scripts/record_incident.py --all      # every fixture, then the examples/ copies

Each recording writes into its folder:
  worker.log   the worker's own --logfile (loglevel INFO, Celery's default format)
  broker.log   the broker's log lines of the run window (RabbitMQ: the shared node's log with
               other clients' connection lines left out; Redis: a private redis-server's log)
  proxy.jsonl  the fault proxy's events (its decisions, and connections opened/closed)
  truth.json   what this script did and therefore what the logs must be diagnosed as

truth.json is written from the actions taken, never from analysing the logs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from celery_doctor.repro.proxy import ProxyThread, parse_fault  # noqa: E402

RABBITMQ = ("127.0.0.1", 5672)
RABBITMQ_LOG = Path("/var/log/rabbitmq/rabbit@localhost.log")
BROKER_LOCK = Path("/tmp/celery-doctor-broker.lock")
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"
# fixture folder -> examples/ folder (the README's example command analyses these)
EXAMPLE_COPIES = {
    "rabbitmq-idle-cut": "idle-cut",
    "rabbitmq-long-task-heartbeat": "long-task-heartbeat",
    "rabbitmq-broker-restart": "broker-restart",
    "rabbitmq-auth-failure": "auth-failure",
    "rabbitmq-healthy": "healthy",
}
WRONG_PASSWORD = "not-the-password"  # a made-up wrong password, never a real one

APP_MODULE = '''\
"""The recorder's Celery app: one uniquely named queue, two trivial tasks."""
import os
import time

from celery import Celery

app = Celery("rec_app")
app.conf.broker_url = os.environ["REC_BROKER_URL"]
app.conf.broker_heartbeat = float(os.environ["REC_HEARTBEAT"])
app.conf.task_default_queue = os.environ["REC_QUEUE"]
app.conf.worker_enable_remote_control = False  # isolate from other clients of the shared broker
app.conf.broker_connection_retry_on_startup = True


@app.task
def add(x, y):
    return x + y


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds
'''

# A publisher that sends one task and exits without closing its connection (os._exit), like a
# cron job or a short script: the broker logs an abrupt close, nothing is wrong.
PUBLISHER = '''\
import os
import sys

from celery import Celery

app = Celery("rec_app", broker=sys.argv[1])
app.send_task("rec_app.add", args=(2, 2), queue=sys.argv[2])
os._exit(0)
'''


class RecordError(Exception):
    """The recording could not be made (broker down, worker never ready)."""


def now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def broker_lock(exclusive: bool) -> Iterator[None]:
    """Shared while merely using the shared RabbitMQ, exclusive while changing its state."""
    with BROKER_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def wait_until(what: str, check: Callable[[], bool], timeout: float, *, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    if fail:
        raise RecordError(f"timed out after {timeout:g}s waiting for {what}")
    return False


# -- the broker side --------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, so it can be restarted and reconfigured
    without disturbing the shared one."""

    def __init__(self, workdir: Path, logfile: Path, loglevel: str = "notice",
                 requirepass: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.logfile = logfile
        self.args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                     "--logfile", str(logfile), "--loglevel", loglevel, "--save", "",
                     "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no"]
        self.requirepass = requirepass
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = list(self.args)
        if self.requirepass:
            args += ["--requirepass", self.requirepass]  # argv only: never written to a file
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_until("the private redis-server", self._up, 10)

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis logs its orderly shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.requirepass,
                           socket_timeout=5, socket_connect_timeout=5)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RecordError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()[:200]}")
    return done.stdout


RABBIT_LINE = re.compile(r"^(\S+ \S+) \[\w+\] (<[\d.]+>) (.*)$")
RABBIT_ACCEPT = re.compile(r"accepting AMQP connection <[\d.]+> \((\S+) -> ")
RABBIT_PEER = re.compile(r"\((\d+\.\d+\.\d+\.\d+:\d+) -> ")


def rabbit_window(log: Path, start: datetime, end: datetime, mine: set[str],
                  keep_unowned: bool) -> tuple[str, int]:
    """The node's log lines between start and end, without other clients' lines.

    The node is shared with concurrent test runs; a line belongs to another client when its
    Erlang process (or the peer address it names) is a connection we did not open. Lines of no
    connection (node stop/start, supervisor reports) are kept only when ``keep_unowned``: when
    the recording held the exclusive broker lock, nobody else could have caused them.
    Returns the text and how many lines were left out.
    """
    owner: dict[str, str] = {}  # connection process -> peer address, from "accepting" lines
    kept: list[str] = []
    dropped = 0
    with log.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            m = RABBIT_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            stamp, pid, text = m.groups()
            accept = RABBIT_ACCEPT.search(text)
            if accept:
                owner[pid] = accept.group(1)
            try:
                ts = datetime.fromisoformat(stamp.replace(" ", "T"))
            except ValueError:
                continue
            if not start <= ts <= end:
                continue
            peer = owner.get(pid)
            named = RABBIT_PEER.search(text)
            ours = (peer in mine) or bool(named and named.group(1) in mine)
            foreign = (peer is not None and peer not in mine) or bool(
                named and named.group(1) not in mine
            )
            if "HTTP access" in text:
                foreign = True  # the management API, used by other tools' probes
            if ours or (keep_unowned and not foreign):
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    return "".join(kept), dropped


def delete_rabbit_queue(queue: str) -> None:
    import amqp

    conn = amqp.Connection(f"{RABBITMQ[0]}:{RABBITMQ[1]}", userid="guest", password="guest",
                           connect_timeout=5)
    try:
        conn.connect()
        channel = conn.channel()
        channel.queue_delete(queue)
        # and the exchange Celery declared for the queue (named after it)
        with contextlib.suppress(Exception):
            conn.channel().exchange_delete(queue)
        conn.close()
    finally:
        conn.collect()


# -- one recording ----------------------------------------------------------------------------


Expected = dict[str, str | None]  # closed_by, phase, category


@dataclass
class Scenario:
    name: str
    brokers: tuple[str, ...]
    describe: str
    expected: dict[str, Expected]  # broker -> closed_by, phase, category
    run: Callable[[Recording], None]
    pool: str = "prefork"
    heartbeat: float = 4.0
    fault: str | None = None  # fault set when the worker starts
    exclusive: bool = False  # changes the shared broker's state
    wait_ready: bool = True
    redis_loglevel: str = "notice"
    notes: dict[str, str] = field(default_factory=dict)  # broker -> note for truth.json
    # what was injected, when the logs cannot show it (then ``expected`` says what they show)
    injected_category: dict[str, str] = field(default_factory=dict)


class Recording:
    """Everything one scenario run owns; ``close`` releases it all, whatever happened."""

    def __init__(self, scenario: Scenario, broker: str, out: Path, repeat: int) -> None:
        self.scenario = scenario
        self.broker = broker
        self.out = out
        self.repeat = repeat
        self.queue = f"celery-doctor-rec-{scenario.name}-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="celery-doctor-rec-"))
        self.worker: subprocess.Popen[bytes] | None = None
        self.proxy: ProxyThread | None = None
        self.pub_proxy: ProxyThread | None = None
        self.redis: PrivateRedis | None = None
        self.actions: list[dict[str, Any]] = []
        self.password = "guest"
        self.worker_password = "guest"
        self.app: Any = None
        self.start_ts = now()
        self.end_ts: datetime | None = None
        self.extra: dict[str, Any] = {}

    # paths and URLs
    @property
    def worker_log(self) -> Path:
        return self.out / "worker.log"

    def url(self, address: tuple[str, int], password: str | None) -> str:
        if self.broker == "rabbitmq":
            return f"amqp://guest:{password}@{address[0]}:{address[1]}//"
        auth = f":{password}@" if password else ""
        return f"redis://{auth}{address[0]}:{address[1]}/0"

    def upstream(self) -> tuple[str, int]:
        if self.broker == "rabbitmq":
            return RABBITMQ
        assert self.redis is not None
        return ("127.0.0.1", self.redis.port)

    def act(self, action: str, **details: Any) -> None:
        """Note what was done, when: the injected-times part of the ground truth."""
        self.actions.append({"ts": iso(now()), "action": action, **details})

    # setting up
    def setup(self) -> None:
        for name in ("worker.log", "broker.log", "proxy.jsonl", "truth.json"):
            (self.out / name).unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.tmp / "rec_app.py").write_text(APP_MODULE)
        (self.tmp / "publish_and_exit.py").write_text(PUBLISHER)
        if self.broker == "redis":
            if self.scenario.name == "auth-failure":
                self.password = uuid.uuid4().hex  # the private server's, used by nobody
                self.worker_password = WRONG_PASSWORD
            else:
                self.password = self.worker_password = ""
            self.redis = PrivateRedis(self.tmp, self.tmp / "redis.log",
                                      self.scenario.redis_loglevel, self.password or None)
            self.redis.start()
        elif self.scenario.name == "auth-failure":
            self.worker_password = WRONG_PASSWORD
        fault = parse_fault(self.scenario.fault) if self.scenario.fault else None
        self.proxy = ProxyThread(("127.0.0.1", 0), self.upstream(), fault,
                                 event_log=self.out / "proxy.jsonl")
        proxy_address = self.proxy.start()
        publish_address = self.upstream()
        if self.broker == "rabbitmq":
            # publishers go through a fault-free proxy: its events tell which broker log lines
            # are ours
            self.pub_proxy = ProxyThread(("127.0.0.1", 0), self.upstream())
            publish_address = self.pub_proxy.start()
        self.publish_url = self.url(publish_address, self.password)
        self.worker_url = self.url(proxy_address, self.worker_password)
        self.start_ts = now()
        self.start_worker()
        if self.scenario.wait_ready:
            wait_until("the worker to be ready", lambda: self.count(r"\bready\.$") >= 1, 30)

    def start_worker(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.tmp), REC_BROKER_URL=self.worker_url,
                   REC_HEARTBEAT=f"{self.scenario.heartbeat:g}", REC_QUEUE=self.queue)
        argv = [sys.executable, "-m", "celery", "-A", "rec_app", "worker",
                "-P", self.scenario.pool, "-c", "1", "-Q", self.queue, "-n", f"{self.queue}@%h",
                "--loglevel", "INFO", "--logfile", str(self.worker_log),
                "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.worker_argv = argv
        with (self.tmp / "worker.out").open("wb") as out:
            self.worker = subprocess.Popen(argv, cwd=self.tmp, env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.act("worker_started", pool=self.scenario.pool, heartbeat=self.scenario.heartbeat)

    # driving
    def count(self, pattern: str) -> int:
        try:
            text = self.worker_log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return len(re.findall(pattern, text, re.M))

    def send(self, task: str, *args: Any) -> None:
        """Publish on one long-lived connection, closed in order at the end of the run."""
        if self.app is None:
            from celery import Celery

            self.app = Celery("rec_app", broker=self.publish_url)
            self.app.conf.broker_connection_timeout = 5
            self.pub_conn = self.app.connection_for_write()
        self.app.send_task(f"rec_app.{task}", args=args, queue=self.queue,
                           connection=self.pub_conn)

    def close_publisher(self) -> None:
        if self.app is not None:
            with contextlib.suppress(Exception):
                self.pub_conn.release()
            self.app.close()
            self.app = None

    def send_adds(self, n: int, every: float = 0.3) -> None:
        for i in range(n):
            self.send("add", i, i)
            time.sleep(every)
        self.act("published", task="add", count=n)

    def wait_succeeded(self, n: int, timeout: float = 20) -> None:
        wait_until(f"{n} tasks to succeed", lambda: self.count(r"succeeded in") >= n, timeout)

    pub_conn: Any = None

    def proxy_events(self, kind: str) -> int:
        return sum(1 for e in (self.proxy.events if self.proxy else []) if e.kind.value == kind)

    def set_fault(self, spec: str | None) -> None:
        assert self.proxy is not None
        self.proxy.set_fault(parse_fault(spec) if spec else None)
        self.act("fault_set", fault=spec)

    # tearing down
    def stop_worker(self) -> None:
        proc, self.worker = self.worker, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()  # warm shutdown of the main process, as a supervisor would
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def close(self) -> None:
        """Kill the worker, stop the proxies, delete the queue, stop the private server."""
        with contextlib.suppress(Exception):
            self.stop_worker()
        with contextlib.suppress(Exception):
            self.close_publisher()
        for proxy in (self.proxy, self.pub_proxy):
            if proxy is not None:
                with contextlib.suppress(Exception):
                    proxy.stop()
        if self.broker == "rabbitmq":
            with contextlib.suppress(Exception):
                delete_rabbit_queue(self.queue)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # saving
    def save_broker_log(self) -> None:
        assert self.end_ts is not None
        if self.broker == "rabbitmq":
            mine = set()
            for proxy in (self.proxy, self.pub_proxy):
                for event in proxy.events if proxy else []:
                    if event.detail.get("local"):
                        mine.add(event.detail["local"])
            text, dropped = rabbit_window(RABBITMQ_LOG, self.start_ts, self.end_ts, mine,
                                          keep_unowned=self.scenario.exclusive)
            self.extra["broker_log_other_clients_lines_left_out"] = dropped
        else:
            assert self.redis is not None
            text = self.redis.logfile.read_text(errors="replace")
        (self.out / "broker.log").write_text(text)

    def save_truth(self, command: list[str]) -> None:
        import amqp
        import celery
        import kombu
        import redis

        scenario = self.scenario
        expected = scenario.expected[self.broker]
        server = {"rabbitmq": rabbitmq_version, "redis": self.redis_version}[self.broker]()
        injected = [e for e in (self.proxy.events if self.proxy else [])
                    if e.kind.value.startswith("proxy_")]
        truth = {
            "scenario": scenario.name,
            "broker": self.broker,
            "broker_server_version": server,
            "description": scenario.describe,
            "fault": scenario.fault or next(
                (a["fault"] for a in self.actions if a["action"] == "fault_set"), None),
            # what a correct reading of worker.log + broker.log concludes
            "expected": {"category": expected["category"], "closed_by": expected["closed_by"],
                         "phase": expected["phase"]},
            # what was actually done to the connection (differs only when the logs are silent)
            "injected_category": scenario.injected_category.get(self.broker,
                                                                expected["category"]),
            "actions": self.actions,
            "injected": [{"ts": iso(e.ts), "kind": e.kind.value, "client": e.peer,
                          "message": e.detail.get("message")} for e in injected],
            "window": {"start": iso(self.start_ts),
                       "end": iso(self.end_ts) if self.end_ts else None},
            "worker": {"pool": scenario.pool, "concurrency": 1,
                       "broker_heartbeat": scenario.heartbeat,
                       "options": "--without-gossip --without-mingle --without-heartbeat; "
                                  "worker_enable_remote_control=False",
                       "queue": self.queue},
            "versions": {"python": ".".join(map(str, sys.version_info[:3])),
                         "celery": celery.__version__, "kombu": kombu.__version__,
                         "amqp": amqp.__version__, "redis": redis.__version__},
            "command": shlex.join(command),
            "recorded_at": iso(self.start_ts),
            "notes": scenario.notes.get(self.broker, ""),
            **self.extra,
        }
        (self.out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")

    def redis_version(self) -> str:
        assert self.redis is not None
        return str(self.redis.client().info("server")["redis_version"])


def rabbitmq_version() -> str:
    return rabbitmqctl("version", timeout=30).strip()


def record(scenario: Scenario, broker: str, out: Path, command: list[str], repeat: int) -> Path:
    if broker not in scenario.brokers:
        raise RecordError(f"scenario {scenario.name} does not apply to {broker}")
    rec = Recording(scenario, broker, out, repeat)
    lock = (broker_lock(scenario.exclusive) if broker == "rabbitmq"
            else contextlib.nullcontext())
    with lock:
        try:
            rec.setup()
            scenario.run(rec)
            rec.close_publisher()  # an orderly close, inside the window
            rec.stop_worker()
            rec.act("worker_stopped")
            rec.end_ts = now()
            if rec.proxy is not None:
                rec.proxy.stop()
            if rec.pub_proxy is not None:
                rec.pub_proxy.stop()
            time.sleep(0.5)  # let the broker finish writing the window's last lines
            rec.save_broker_log()
            rec.save_truth(command)
        finally:
            rec.close()
    return out


# -- the scenarios ----------------------------------------------------------------------------


def run_healthy(rec: Recording) -> None:
    rec.send_adds(20)
    rec.wait_succeeded(20)
    time.sleep(2)


def run_idle_cut(rec: Recording) -> None:
    rec.send_adds(3)
    rec.wait_succeeded(3)
    if rec.broker == "redis":
        # kombu's consumer re-issues BRPOP every second, so only the worker's other (command)
        # connection goes idle; tasks published after each cut show whether anything noticed
        for i in range(rec.repeat):
            def cut_seen(n: int = i + 1) -> bool:
                return rec.proxy_events("proxy_cut") >= n

            wait_until(f"idle cut {i + 1}", cut_seen, 25)
            rec.send_adds(2)
            rec.wait_succeeded(5 + 2 * i)
        time.sleep(1)
        return
    lost = r"Connection to broker lost|Cannot connect to|Connection reset by peer"
    wait_until(f"{rec.repeat} idle cuts noticed by the worker",
               lambda: rec.proxy_events("proxy_cut") >= rec.repeat and rec.count(lost) >= 1,
               rec.repeat * 14 + 10)
    if rec.broker == "redis":
        time.sleep(3)
    else:
        # the worker has reconnected after the last cut: one more task shows it recovered
        wait_until("the reconnect", lambda: rec.count(r"Connected to") >= 2, 15, fail=False)
    rec.send_adds(2)
    rec.wait_succeeded(5, 20)


def run_blackhole(rec: Recording) -> None:
    rec.send_adds(2)
    rec.wait_succeeded(2)
    time.sleep(2)
    hold = 20.0  # > 2 heartbeat intervals of 4 s: both sides give up on their own
    rec.set_fault(f"blackhole:0:{hold:g}")
    time.sleep(hold)
    rec.act("healed")
    rec.set_fault(None)
    wait_until("the worker to reconnect", lambda: rec.count(r"Connected to") >= 2, 30,
               fail=False)
    rec.send_adds(2)
    rec.wait_succeeded(4, 30)


def run_broker_restart(rec: Recording) -> None:
    rec.send_adds(2)
    rec.wait_succeeded(2)
    time.sleep(2)
    if rec.broker == "rabbitmq":
        rec.act("rabbitmqctl stop_app")
        try:
            rabbitmqctl("stop_app")
            time.sleep(3)
        finally:
            rabbitmqctl("start_app")
            rec.act("rabbitmqctl start_app")
            rabbitmqctl("await_startup", timeout=120)
    else:
        assert rec.redis is not None
        rec.act("redis-server stopped (SIGTERM)")
        rec.redis.stop()
        time.sleep(3)
        rec.redis.start()
        rec.act("redis-server started")
    wait_until("the worker to reconnect", lambda: rec.count(r"Connected to") >= 2, 40,
               fail=False)
    rec.send_adds(2)
    rec.wait_succeeded(4, 40)


def run_auth_failure(rec: Recording) -> None:
    # Celery 5.7 treats AccessRefused at startup as unrecoverable: the worker exits by itself
    assert rec.worker is not None
    worker = rec.worker
    wait_until("the worker to give up", lambda: worker.poll() is not None, 30, fail=False)
    rec.act("worker exited by itself" if worker.poll() is not None else "worker still retrying")
    time.sleep(1)


def run_long_task(rec: Recording) -> None:
    rec.send_adds(1)
    rec.wait_succeeded(1)
    seconds = 15  # beyond the broker's 2-3 heartbeat intervals of 4 s
    rec.send("sleep", seconds)
    rec.act("published", task="sleep", seconds=seconds)
    # the broker closes the silent connection during each run; the worker notices when the task
    # returns, reconnects, and (as observed) gets the same message again: wait for two rounds
    wait_until("two runs of the long task", lambda: rec.count(r"sleep\[.*succeeded in") >= 2,
               2 * seconds + 20)
    wait_until("the worker to notice", lambda: rec.count(r"Connection to broker lost|Couldn't ack")
               >= 2, 10, fail=False)
    time.sleep(1)


def run_short_lived_publishers(rec: Recording) -> None:
    rec.send_adds(2)
    rec.wait_succeeded(2)
    for i in range(3):
        subprocess.run([sys.executable, str(rec.tmp / "publish_and_exit.py"), rec.publish_url,
                        rec.queue], cwd=rec.tmp, timeout=30, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rec.act("publisher exited without closing (os._exit)", run=i + 1)
        time.sleep(2)
    rec.wait_succeeded(5)
    time.sleep(2)


def run_server_timeout(rec: Recording) -> None:
    assert rec.redis is not None
    timeout = 5
    rec.redis.client().config_set("timeout", timeout)
    rec.act("CONFIG SET timeout", seconds=timeout)
    rec.send_adds(1)
    rec.wait_succeeded(1)
    seconds = 15  # the solo pool stops polling Redis while the task runs: the server sees idle
    rec.send("sleep", seconds)
    rec.act("published", task="sleep", seconds=seconds)
    wait_until("the long task to finish", lambda: rec.count(r"succeeded in") >= 2, seconds + 20)
    time.sleep(5)
    rec.send_adds(1)
    rec.wait_succeeded(3, 30)


IDLE: Expected = {"closed_by": "network", "phase": "idle", "category": "network_idle_timeout"}
RESTART: Expected = {"closed_by": "broker", "phase": "idle", "category": "broker_restart_or_failover"}
AUTH: Expected = {"closed_by": "broker", "phase": "startup", "category": "auth_or_permissions"}
HEALTHY: Expected = {"closed_by": None, "phase": None, "category": "no_incident"}

SCENARIOS = {s.name: s for s in [
    Scenario("healthy", ("rabbitmq", "redis"),
             "Control run: tasks flow, no fault, clean shutdown.",
             {"rabbitmq": HEALTHY, "redis": HEALTHY}, run_healthy),
    Scenario("idle-cut", ("rabbitmq", "redis"),
             "A middlebox cuts flows idle for 8 s with an RST to both sides; broker heartbeats off "
             "(broker_heartbeat=0) so nothing keeps the flow busy and the cut recurs.",
             {"rabbitmq": IDLE, "redis": HEALTHY}, run_idle_cut, heartbeat=0,
             fault="idle-cut:8:rst", injected_category={"redis": "network_idle_timeout"},
             notes={"redis": "Heartbeats do not apply to Redis. kombu's Redis consumer re-issues "
                             "BRPOP every second, so the consuming connection is never idle; the "
                             "worker's other connection (commands/acks) was cut after 8 s idle, "
                             "every time, and redis-py reconnected it silently on next use: "
                             "worker.log shows no error and tasks kept flowing; at loglevel "
                             "notice broker.log shows nothing either. Only proxy.jsonl shows the "
                             "cuts, so expected is no_incident while injected_category is "
                             "network_idle_timeout."}),
    Scenario("blackhole", ("rabbitmq",),
             "Packets are silently dropped both ways for 20 s (> 2 heartbeat intervals of 4 s), "
             "then the path heals: both sides give up on missed heartbeats.",
             {"rabbitmq": {"closed_by": "network", "phase": "idle",
                           "category": "network_path_loss"}}, run_blackhole),
    Scenario("broker-restart", ("rabbitmq", "redis"),
             "The broker is stopped for ~3 s and started again (RabbitMQ: rabbitmqctl stop_app / "
             "start_app; Redis: a private redis-server stopped with SIGTERM and restarted).",
             {"rabbitmq": RESTART, "redis": RESTART}, run_broker_restart, exclusive=True),
    Scenario("auth-failure", ("rabbitmq", "redis"),
             "The worker's broker URL has a wrong password; the broker refuses every login.",
             {"rabbitmq": AUTH, "redis": AUTH}, run_auth_failure, wait_ready=False,
             notes={"redis": "The private redis-server has requirepass set to a random token "
                             "used by nobody; the worker sends a made-up wrong password."}),
    Scenario("long-task-heartbeat", ("rabbitmq",),
             "A 25 s task in the solo pool with broker_heartbeat=4: the task blocks the event loop "
             "that sends heartbeats, the broker closes the connection (missed heartbeats from "
             "client), the worker notices when the task ends.",
             {"rabbitmq": {"closed_by": "broker", "phase": "load",
                           "category": "long_task_blocks_heartbeat"}},
             run_long_task, pool="solo",
             notes={"rabbitmq": "Celery 5.7 keeps AMQP heartbeats on with -P solo: the worker "
                                "has the event-loop hub whenever the transport is asynchronous "
                                "(py-amqp), and Consumer sets amqheartbeat from broker_heartbeat "
                                "when a hub exists (celery/worker/consumer/consumer.py). The solo "
                                "pool runs the task inside that loop, so nothing is sent while it "
                                "runs. Observed: the broker closed each connection 12 s after its "
                                "last byte (3 intervals of 4 s), the worker noticed only when the "
                                "task returned, and the same message was delivered again after "
                                "the reconnect, so the task ran repeatedly (each run ended the "
                                "same way)."}),
    Scenario("short-lived-publishers", ("rabbitmq",),
             "A healthy worker runs while a publisher script is run 3 times; each sends one task "
             "and exits with os._exit() without closing its connection.",
             {"rabbitmq": {"closed_by": "client", "phase": "shutdown",
                           "category": "benign_client_disconnect"}},
             run_short_lived_publishers),
    Scenario("server-timeout", ("redis",),
             "The Redis server's idle-client timeout is set to 5 s (CONFIG SET timeout 5) while "
             "a 15 s task runs in the solo pool, so the worker's connections sit idle.",
             {"redis": {"closed_by": "broker", "phase": "load",
                        "category": "redis_server_timeout"}},
             run_server_timeout, pool="solo", redis_loglevel="verbose",
             notes={"redis": "The private redis-server runs with loglevel verbose so 'Closing idle "
                             "client' is logged; with the default loglevel notice it would not "
                             "be."}),
]}

ALL = [("rabbitmq", name) for name in ("healthy", "idle-cut", "blackhole", "broker-restart",
                                        "auth-failure", "long-task-heartbeat",
                                        "short-lived-publishers")]
ALL += [("redis", name) for name in ("healthy", "idle-cut", "broker-restart", "auth-failure",
                                     "server-timeout")]


def copy_examples() -> None:
    for fixture, name in EXAMPLE_COPIES.items():
        source = FIXTURES / fixture
        if not source.is_dir():
            continue
        target = EXAMPLES / name
        target.mkdir(parents=True, exist_ok=True)
        for file in ("worker.log", "broker.log", "proxy.jsonl", "truth.json"):
            if (source / file).exists():
                shutil.copyfile(source / file, target / file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=textwrap.dedent("""\
        scenarios: """ + ", ".join(SCENARIOS)))
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    parser.add_argument("--broker", choices=("rabbitmq", "redis"), default="rabbitmq")
    parser.add_argument("--out", type=Path, help="folder to write (default tests/fixtures/"
                                                 "BROKER-SCENARIO)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="idle-cut: how many cuts to wait for (default 3)")
    parser.add_argument("--all", action="store_true",
                        help="record every fixture into tests/fixtures/, then copy examples/")
    args = parser.parse_args(argv)
    if not args.all and not args.scenario:
        parser.error("give a SCENARIO or --all")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwind through every finally: worker killed, queue deleted

    signal.signal(signal.SIGTERM, on_term)
    jobs = ALL if args.all else [(args.broker, args.scenario)]
    try:
        for broker, name in jobs:
            out = args.out if (args.out and not args.all) else FIXTURES / f"{broker}-{name}"
            try:
                shown = out.resolve().relative_to(ROOT)
            except ValueError:
                shown = out
            command = ["python", "scripts/record_incident.py", name, "--broker", broker,
                       "--out", str(shown)]
            if name == "idle-cut" and args.repeat != 3:
                command += ["--repeat", str(args.repeat)]
            started = time.monotonic()
            print(f"recording {broker}/{name} -> {shown}", file=sys.stderr, flush=True)
            record(SCENARIOS[name], broker, out, command, args.repeat)
            print(f"  done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        if args.all:
            copy_examples()
    except RecordError as exc:
        print(f"record_incident: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("record_incident: interrupted; worker killed and queue deleted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
