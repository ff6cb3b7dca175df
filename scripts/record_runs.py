#!/usr/bin/env python
"""Record real Celery workers (3.1, 4.4, 5.7) against real brokers with real faults.

    python scripts/record_runs.py NAME [NAME ...]      # or: all
    python scripts/record_runs.py --list

Each scenario starts a real worker (and, where the fault needs one, a publisher) of one Celery
release, against the shared RabbitMQ on 5672 or a private redis-server started for the run, and
makes one fault: a Redis server limit or restart, a fault proxy (`celery-doctor proxy`), a broker
that is not there yet, a wrong vhost, a CPU-bound task in a gevent pool, or a kernel nftables rule
(DROP, or REJECT with a TCP reset) on the worker's connections only (they are told apart by the
process group id the worker runs with, `setpriv --regid`, and a conntrack mark, so other clients of
the shared broker are not touched).

Writes into tests/fixtures/recorded/NAME/: worker.log (and publisher.log), broker.log (the shared
RabbitMQ node's whole log for the run's window, other clients' lines included, or the private
Redis server's log), proxy.jsonl where a proxy was used, the app and config files the run used, and
truth.json from the actions taken (never from an analysis).

Interpreters (not modified by this script): Celery 5.7 in this checkout's .venv, Celery 4.4.7 at
/tmp/c44/bin/python, Celery 3.1.26.post2 for Python 2.7 at /tmp/c31 (pip --target).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "recorded"
RABBITMQ_LOG = Path("/var/log/rabbitmq/rabbit@localhost.log")
DOCTOR = ROOT / ".venv" / "bin" / "celery-doctor"
PY = {
    "5.7": [str(ROOT / ".venv" / "bin" / "python")],
    "4.4": ["/tmp/c44/bin/python"],
    "3.1": ["/root/.pyenv/versions/2.7.18/bin/python"],
}
VERSIONS = {
    "5.7": "celery 5.7.0, kombu 5.7.0, py-amqp 5.4.2, redis-py (from .venv), Python 3.11",
    "4.4": "celery 4.4.7, kombu 4.6.11, py-amqp 2.6.1, redis-py 6.1.1, Python 3.8",
    "3.1": "celery 3.1.26.post2, kombu 3.0.37, py-amqp 1.4.9, redis-py 2.10.6, Python 2.7.18",
}
GID = 4242  # the worker's group id under the nftables scenarios
NFT_TABLE = "cdrecorded"


def now() -> str:
    return datetime.now(UTC).isoformat()


class Run:
    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.dir = Path("/tmp/recorded-runs") / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.actions: list[dict[str, object]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.files: list[IO[bytes]] = []
        self.rabbit_offset: int | None = None
        self.redis_port: int | None = None
        self.start = now()

    def act(self, action: str, **kw: object) -> None:
        self.actions.append({"ts": now(), "action": action, **kw})

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.dir) + (":/tmp/c31" if self.version == "3.1" else "")
        env["C_FORCE_ROOT"] = "1"
        env.pop("VIRTUAL_ENV", None)
        return env

    def sink(self, name: str) -> IO[bytes]:
        """A file a child process writes its output to, open until the run finishes."""
        f = (self.dir / name).open("ab")  # handed to a child process, closed in finish()
        self.files.append(f)
        return f

    def write(self, name: str, text: str) -> None:
        (self.dir / name).write_text(text)

    def rabbit_window_start(self) -> None:
        self.rabbit_offset = RABBITMQ_LOG.stat().st_size

    def worker(self, *args: str, gid: int | None = None, log: str = "worker.log") -> subprocess.Popen[bytes]:
        cmd = [*PY[self.version], "-m", "celery", *args]
        if self.version == "3.1":
            cmd = [*PY["3.1"], "-c", "from celery.__main__ import main; main()", *args]
        cmd += ["-l", "INFO", "--logfile", str(self.dir / log)]
        if gid is not None:
            cmd = ["setpriv", f"--regid={gid}", "--clear-groups", *cmd]
        p = subprocess.Popen(
            cmd, cwd=self.dir, env=self.env(), stdout=self.sink("stdout.txt"), stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        self.act("worker_started", command=" ".join(cmd))
        return p

    def script(self, code: str, name: str, log: str) -> subprocess.Popen[bytes]:
        self.write(name, code)
        p = subprocess.Popen(
            [*PY[self.version], name],
            cwd=self.dir,
            env=self.env(),
            stdout=self.sink(log),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(p)
        return p

    def proxy(self, listen: int, upstream: str, fault: str | None, duration: float) -> subprocess.Popen[bytes]:
        cmd = [str(DOCTOR), "proxy", "--listen", f"127.0.0.1:{listen}", "--upstream", upstream]
        if fault:
            cmd += ["--fault", fault]
        cmd += ["--event-log", str(self.dir / "proxy.jsonl"), "--duration", str(duration)]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.sink("proxy.stderr"))
        self.procs.append(p)
        self.act("proxy_started", listen=f"127.0.0.1:{listen}", upstream=upstream, fault=fault)
        time.sleep(1.0)
        return p

    def redis(self, port: int, *conf: str) -> None:
        self.redis_port = port
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
        cmd = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "yes", "--logfile", str(self.dir / "broker.log"), "--loglevel", "verbose",
            "--pidfile", str(self.dir / "redis.pid"), "--dir", str(self.dir), *conf,
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        time.sleep(0.5)
        self.act("redis_started", port=port, config=list(conf))

    def redis_cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), *args], capture_output=True, text=True)
        self.act("redis-cli " + " ".join(args), reply=out.stdout.strip())
        return out.stdout

    def wait(self, p: subprocess.Popen[bytes], timeout: float, what: str) -> None:
        try:
            p.wait(timeout)
            self.act(what + "_exited", returncode=p.returncode)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.act(what + "_killed", after_s=timeout, why="still running (hung)")

    def stop(self, p: subprocess.Popen[bytes], action: str = "worker_stopped") -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.act(action, returncode=p.returncode)

    def finish(self, truth: dict[str, object]) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.files:
            f.close()
        if self.redis_port is not None:
            subprocess.run(["redis-cli", "-p", str(self.redis_port), "shutdown", "nosave"], capture_output=True)
        if self.rabbit_offset is not None:
            time.sleep(1.0)
            with RABBITMQ_LOG.open("rb") as f:
                f.seek(self.rabbit_offset)
                (self.dir / "broker.log").write_bytes(f.read())
        dest = OUT / self.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for f in self.dir.iterdir():
            if f.suffix in (".log", ".jsonl") or f.name.endswith((".py", ".conf")):
                if f.name == "dump.rdb" or f.name.startswith("__"):
                    continue
                target = dest / (f.name + ".txt" if f.suffix == ".py" and f.name != "celeryconfig.py" else f.name)
                shutil.copy(f, target)
        truth = {
            "scenario": self.name,
            "celery": self.version,
            "versions": VERSIONS[self.version],
            **truth,
            "actions": self.actions,
            "window": {"start": self.start, "end": now()},
        }
        (dest / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
        print(f"{self.name}: recorded into {dest}")


@contextlib.contextmanager
def nft_marked(gid: int) -> Iterator[None]:
    """Mark (conntrack) every connection to 5672 opened by processes of group `gid`."""
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)
    subprocess.run(["nft", "add", "table", "inet", NFT_TABLE], check=True)
    subprocess.run(
        ["nft", "add", "chain", "inet", NFT_TABLE, "out", "{ type filter hook output priority 0 ; }"], check=True
    )
    subprocess.run(
        ["nft", "add", "rule", "inet", NFT_TABLE, "out", "meta", "skgid", str(gid), "tcp", "dport", "5672",
         "ct", "mark", "set", "0x4242"], check=True,
    )  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)


def nft_fault(verdict: list[str]) -> None:
    # the RST a reject makes carries the connection's conntrack entry (and mark): exempt RSTs, or the
    # rule would swallow its own resets and act as a DROP
    match = ["ct", "mark", "0x4242"] + (["tcp", "flags", "&", "rst", "==", "0"] if "reject" in verdict else [])
    subprocess.run(["nft", "add", "rule", "inet", NFT_TABLE, "out", *match, *verdict], check=True)


def nft_clear_fault() -> None:
    out = subprocess.run(["nft", "-a", "list", "chain", "inet", NFT_TABLE, "out"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "ct mark 0x00004242" in line and "handle" in line and "set" not in line:
            handle = line.rsplit("handle", 1)[1].strip()
            subprocess.run(["nft", "delete", "rule", "inet", NFT_TABLE, "out", "handle", handle], check=True)


# ---------------------------------------------------------------- apps

APP57 = """\
from celery import Celery
app = Celery("recorded")
app.config_from_object("celeryconfig")

@app.task
def add(x, y):
    return x + y

@app.task
def spin(seconds):
    import time
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n
"""
APP31 = APP57  # the same code runs on 3.1 (config_from_object, @app.task)


def config_new(**kw: object) -> str:
    return "".join(f"{k} = {v!r}\n" for k, v in kw.items())


# ---------------------------------------------------------------- scenarios


def c44_redis_server_timeout() -> None:
    r = Run("c44-redis-server-timeout", "4.4")
    r.redis(6391, "--timeout", "3")
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="redis://127.0.0.1:6391/0",
            result_backend="redis://127.0.0.1:6391/1",
            task_default_queue="rec-c44-timeout",
            worker_prefetch_multiplier=1,
        ),
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec44@%h")
    time.sleep(6)
    pub = r.script(
        "import time, logging\nlogging.basicConfig(level=logging.INFO,"
        " format='[%(asctime)s: %(levelname)s/%(processName)s] %(message)s')\n"
        "from app import add\n"
        "for i in range(4):\n"
        "    res = add.delay(i, i)\n"
        "    logging.info('task %s: %s', res.id, res.get(timeout=10))\n"
        "    time.sleep(8)\n",
        "publish.py",
        "publisher.log",
    )
    r.act("publisher_started", does="add.delay + result.get every 8 s, 4 times (idle 8 s > timeout 3 s)")
    r.wait(pub, 50, "publisher")
    time.sleep(10)
    r.stop(w)
    r.finish(
        {
            "fault": "redis-server timeout 3 (idle clients closed by the server after 3 s)",
            "expected": {"category": "redis_server_timeout", "closed_by": "broker", "connection": "redis 6391"},
        }
    )


def c31_redis_restart() -> None:
    r = Run("c31-redis-restart", "3.1")
    r.redis(6392)
    r.write("app.py", APP31)
    r.write(
        "celeryconfig.py",
        "BROKER_URL = 'redis://127.0.0.1:6392/0'\n"
        "CELERY_RESULT_BACKEND = 'redis://127.0.0.1:6392/1'\n"
        "CELERY_DEFAULT_QUEUE = 'rec-c31-restart'\n"
        "CELERYD_PREFETCH_MULTIPLIER = 1\n"
        "CELERY_ACCEPT_CONTENT = ['json']\nCELERY_TASK_SERIALIZER = 'json'\n",
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec31@%h", "--without-gossip", "--without-mingle")
    time.sleep(8)
    r.redis_cli("shutdown", "nosave")
    r.act("redis_stopped", how="redis-cli shutdown nosave")
    time.sleep(8)
    r.redis(6392)
    time.sleep(12)
    r.stop(w)
    r.finish(
        {
            "fault": "the Redis server was shut down for 8 s and started again",
            "expected": {"category": "broker_restart_or_failover", "closed_by": "broker"},
        }
    )


def c31_redis_demoted_master() -> None:
    r = Run("c31-redis-demoted-master", "3.1")
    # the node that takes over (its log is not kept: the worker's team has the old master's)
    subprocess.run(["redis-cli", "-p", "6397", "shutdown", "nosave"], capture_output=True)
    subprocess.run(["redis-server", "--port", "6397", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--logfile", str(r.dir / "node2.redislog"), "--dir", str(r.dir)],
                   check=True)  # fmt: skip
    r.act("redis_started", port=6397, config=[], role="the node that takes over")
    r.redis(6396)  # the master the worker uses; broker.log is its log
    r.write("app.py", APP31)
    r.write(
        "celeryconfig.py",
        "BROKER_URL = 'redis://127.0.0.1:6396/0'\n"
        "CELERY_DEFAULT_QUEUE = 'rec-c31-demoted'\n"
        "CELERY_ACCEPT_CONTENT = ['json']\nCELERY_TASK_SERIALIZER = 'json'\n",
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec31d@%h", "--without-gossip", "--without-mingle")
    time.sleep(8)
    r.redis_cli("replicaof", "127.0.0.1", "6397")
    r.act("failover", how="the worker's master 6396 demoted to a replica of 6397 (REPLICAOF): a failover that "
          "left the worker's address on the old master")  # fmt: skip
    time.sleep(15)
    r.stop(w)
    subprocess.run(["redis-cli", "-p", "6397", "shutdown", "nosave"], capture_output=True)
    r.finish(
        {
            "fault": "failover: the Redis the worker used became a read-only replica of another node",
            "expected": {"category": "broker_restart_or_failover", "closed_by": "broker"},
        }
    )


def c44_redis_maxclients() -> None:
    r = Run("c44-redis-maxclients", "4.4")
    r.redis(6393, "--maxclients", "3")
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="redis://127.0.0.1:6393/0",
            result_backend="redis://127.0.0.1:6393/1",
            task_default_queue="rec-c44-maxclients",
        ),
    )
    w = r.worker("-A", "app", "worker", "-c", "2", "-n", "rec44m@%h")
    time.sleep(20)
    r.stop(w)
    r.finish(
        {
            "fault": "redis-server maxclients 3: the worker needs more connections than the server accepts",
            "expected": {"category": "broker_resource_alarm", "closed_by": "broker"},
        }
    )


def c44_redis_maxclients_publisher() -> None:
    r = Run("c44-redis-maxclients-publisher", "4.4")
    r.redis(6395, "--maxclients", "4")
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="redis://127.0.0.1:6395/0",
            result_backend="redis://127.0.0.1:6395/1",
            task_default_queue="rec-c44-maxclients-pub",
        ),
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec44mp@%h", "--without-mingle", "--without-gossip")
    time.sleep(6)
    pub = r.script(
        "import time, logging\nlogging.basicConfig(level=logging.INFO,"
        " format='[%(asctime)s: %(levelname)s/%(processName)s] %(message)s')\n"
        "from app import add\n"
        "for i in range(3):\n"
        "    try:\n"
        "        res = add.delay(i, i)\n"
        "        logging.info('task %s: %s', res.id, res.get(timeout=5))\n"
        "    except Exception:\n"
        "        logging.exception('publish or result failed')\n"
        "    time.sleep(3)\n",
        "publish.py",
        "publisher.log",
    )
    r.act("publisher_started", does="add.delay + result.get(timeout=5), 3 times, 3 s apart")
    r.wait(pub, 50, "publisher")
    time.sleep(4)
    r.stop(w)
    r.finish(
        {
            "fault": "redis-server maxclients 4: the worker holds the connections, the publisher's are refused",
            "expected": {"category": "broker_resource_alarm", "closed_by": "broker"},
        }
    )


def c57_redis_pubsub_outbuf() -> None:
    r = Run("c57-redis-pubsub-outbuf", "5.7")
    r.redis(6394, "--client-output-buffer-limit", "pubsub 8kb 4kb 5")
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="redis://127.0.0.1:6394/0",
            result_backend="redis://127.0.0.1:6394/1",
            task_default_queue="rec-c57-pubsub",
            broker_connection_retry_on_startup=True,
        ),
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec57p@%h")
    time.sleep(8)
    bc = r.script(
        "import time\nfrom app import app\n"
        "for i in range(2):\n"
        "    app.control.broadcast('rate_limit', arguments={'task_name': 'x' * 50000, 'rate_limit': '1/s'})\n"
        "    time.sleep(6)\n",
        "broadcast.py",
        "broadcast.log",
    )
    r.act("broadcast_started", does="2 x app.control.broadcast of a 50 kB message, 6 s apart")
    r.wait(bc, 40, "broadcast")
    time.sleep(8)
    r.stop(w)
    r.finish(
        {
            "fault": "client-output-buffer-limit pubsub 8kb 4kb 5: a 50 kB broadcast overflows the worker's"
            " pidbox subscription, the server closes it",
            "expected": {"category": "broker_resource_alarm", "closed_by": "broker"},
        }
    )


def c57_rabbit_idle_silent_hb() -> None:
    r = Run("c57-rabbit-idle-silent-hb", "5.7")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="amqp://guest:guest@127.0.0.1:5691//",
            broker_heartbeat=10,
            task_default_queue="rec-c57-silent",
            worker_enable_remote_control=False,
            broker_connection_retry_on_startup=True,
        ),
    )
    r.proxy(5691, "127.0.0.1:5672", "idle-cut:3:silent", 70)
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec57s@%h", "--without-gossip", "--without-mingle")
    time.sleep(60)
    r.stop(w)
    r.finish(
        {
            "fault": "proxy idle-cut:3:silent (a middlebox that forgets a flow after 3 s idle and drops its packets"
            " silently) with broker_heartbeat = 10 (frames every ~5 s: longer than the cut)",
            "expected": {"category": "network_idle_timeout", "closed_by": "network"},
        }
    )


def c57_rabbit_refused_startup() -> None:
    r = Run("c57-rabbit-refused-startup", "5.7")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="amqp://guest:guest@127.0.0.1:5692//",
            task_default_queue="rec-c57-refused",
            broker_connection_retry_on_startup=True,
        ),
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec57r@%h")
    r.act("broker_down", how="nothing listens on 127.0.0.1:5692 yet")
    time.sleep(12)
    r.proxy(5692, "127.0.0.1:5672", None, 30)
    r.act("broker_up", how="a plain proxy to the shared RabbitMQ now listens on 5692")
    time.sleep(14)
    r.stop(w)
    r.finish(
        {
            "fault": "the broker was not listening when the worker started (connection refused for 12 s), then up",
            "expected": {"category": "broker_restart_or_failover", "closed_by": "unknown", "phase": "startup"},
        }
    )


def c44_rabbit_refused_then_up() -> None:
    r = Run("c44-rabbit-refused-then-up", "4.4")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write("celeryconfig.py", config_new(broker_url="amqp://guest:guest@127.0.0.1:5694//",
                                          task_default_queue="rec-c44-refused"))  # fmt: skip
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec44r@%h")
    r.act("broker_down", how="nothing listens on 127.0.0.1:5694 yet")
    time.sleep(9)
    r.proxy(5694, "127.0.0.1:5672", None, 30)
    r.act("broker_up", how="a plain proxy to the shared RabbitMQ now listens on 5694")
    time.sleep(16)
    r.stop(w)
    r.finish(
        {
            "fault": "the broker was not listening when the worker started (connection refused for 9 s), then up",
            "expected": {"category": "broker_restart_or_failover", "closed_by": "unknown", "phase": "startup"},
        }
    )


def c44_rabbit_wrong_vhost() -> None:
    r = Run("c44-rabbit-wrong-vhost", "4.4")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(broker_url="amqp://guest:guest@127.0.0.1:5672/billing", task_default_queue="rec-c44-vhost"),
    )
    w = r.worker("-A", "app", "worker", "-c", "1", "-n", "rec44v@%h")
    time.sleep(16)
    r.stop(w)
    r.finish(
        {
            "fault": "broker_url names vhost 'billing', which does not exist on the broker",
            "expected": {"category": "auth_or_permissions", "closed_by": "broker", "phase": "startup"},
        }
    )


def c57_rabbit_gevent_blocked() -> None:
    r = Run("c57-rabbit-gevent-blocked", "5.7")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="amqp://guest:guest@127.0.0.1:5672//",
            broker_heartbeat=4,
            task_default_queue="rec-c57-gevent",
            broker_connection_retry_on_startup=True,
        ),
    )
    w = r.worker("-A", "app", "worker", "-P", "gevent", "-c", "10", "-n", "rec57g@%h", "--without-gossip")
    time.sleep(6)
    pub = r.script("from app import spin\nspin.delay(25)\n", "publish.py", "publisher.log")
    r.wait(pub, 30, "publisher")
    r.act("published", task="spin(25)", does="a CPU-bound loop of 25 s in a gevent pool: blocks the hub")
    time.sleep(40)
    r.stop(w)
    r.finish(
        {
            "fault": "a 25 s CPU-bound task in the gevent pool (-P gevent) with broker_heartbeat = 4",
            "expected": {"category": "long_task_blocks_heartbeat", "closed_by": "broker"},
        }
    )


def c57_publisher_reset() -> None:
    r = Run("c57-publisher-reset", "5.7")
    r.rabbit_window_start()
    r.write("app.py", APP57)
    r.write(
        "celeryconfig.py",
        config_new(
            broker_url="amqp://guest:guest@127.0.0.1:5693//",
            task_default_queue="rec-c57-pub",
            broker_heartbeat=0,
        ),
    )
    r.proxy(5693, "127.0.0.1:5672", "idle-cut:6:rst", 60)
    pub = r.script(
        "import time, logging\nlogging.basicConfig(level=logging.DEBUG,"
        " format='[%(asctime)s: %(levelname)s/%(name)s] %(message)s')\n"
        "from app import add\n"
        "for i in range(3):\n"
        "    try:\n"
        "        r = add.apply_async((i, i))\n"
        "        logging.info('published %s', r.id)\n"
        "    except Exception:\n"
        "        logging.exception('publish failed')\n"
        "    time.sleep(12)\n",
        "publish.py",
        "publisher.log",
    )
    r.act("publisher_started", does="apply_async every 12 s, 3 times, through a proxy that cuts after 6 s idle (RST)")
    r.wait(pub, 60, "publisher")
    subprocess.run(
        [*PY["5.7"], "-c", "import amqp; c=amqp.Connection('127.0.0.1:5672'); c.connect();"
         " ch=c.channel(); ch.queue_delete('rec-c57-pub'); c.close()"], capture_output=True,
    )  # fmt: skip
    r.finish(
        {
            "fault": "proxy idle-cut:6:rst between a publishing script and RabbitMQ; the script idles 12 s"
            " between apply_async calls",
            "expected": {"category": "network_idle_timeout", "closed_by": "network", "log": "publisher.log"},
        }
    )


def _nft_run(name: str, version: str, verdict: list[str], heartbeat: int, fault_for: float, what: str,
             expected: dict[str, object]) -> None:  # fmt: skip
    r = Run(name, version)
    r.rabbit_window_start()
    r.write("app.py", APP57)
    if version == "3.1":
        r.write(
            "celeryconfig.py",
            "BROKER_URL = 'amqp://guest:guest@127.0.0.1:5672//'\n"
            f"BROKER_HEARTBEAT = {heartbeat}\n"
            f"CELERY_DEFAULT_QUEUE = '{name}'\nCELERY_ACCEPT_CONTENT = ['json']\n"
            "CELERY_TASK_SERIALIZER = 'json'\n",
        )
    else:
        r.write(
            "celeryconfig.py",
            config_new(broker_url="amqp://guest:guest@127.0.0.1:5672//", broker_heartbeat=heartbeat,
                       task_default_queue=name, broker_connection_retry_on_startup=True),
        )  # fmt: skip
    with nft_marked(GID):
        extra = ["--without-gossip", "--without-mingle"]
        w = r.worker("-A", "app", "worker", "-c", "1", "-n", f"{name}@%h", *extra, gid=GID)
        time.sleep(8)
        nft_fault(verdict)
        r.act("nft_rule_added", rule="ct mark 0x4242 " + " ".join(verdict), applies_to=f"the worker's connections"
              f" to 5672 (processes of gid {GID}), both directions")  # fmt: skip
        time.sleep(fault_for)
        nft_clear_fault()
        r.act("nft_rule_removed")
        time.sleep(15)
        r.stop(w)
    subprocess.run(
        [*PY["5.7"], "-c", "import amqp; c=amqp.Connection('127.0.0.1:5672'); c.connect();"
         f" ch=c.channel(); ch.queue_delete('{name}'); c.close()"], capture_output=True,
    )  # fmt: skip
    r.finish({"fault": what, "expected": expected})


def c57_rabbit_nft_drop() -> None:
    _nft_run(
        "c57-rabbit-nft-drop", "5.7", ["drop"], 4, 25,
        "kernel nftables DROP of every packet of the worker's connections for 25 s (broker_heartbeat = 4)",
        {"category": "network_path_loss", "closed_by": "network"},
    )  # fmt: skip


def c44_rabbit_nft_reject() -> None:
    _nft_run(
        "c44-rabbit-nft-reject", "4.4", ["reject", "with", "tcp", "reset"], 10, 12,
        "kernel nftables REJECT with tcp reset of the worker's connections for 12 s (broker_heartbeat = 10)",
        {"category": "network_path_loss", "closed_by": "network"},
    )  # fmt: skip


def c31_rabbit_nft_reject() -> None:
    _nft_run(
        "c31-rabbit-nft-reject", "3.1", ["reject", "with", "tcp", "reset"], 10, 10,
        "kernel nftables REJECT with tcp reset of the worker's connections for 10 s (BROKER_HEARTBEAT = 10)",
        {"category": "network_path_loss", "closed_by": "network"},
    )  # fmt: skip


SCENARIOS: dict[str, Callable[[], None]] = {
    "c44-redis-server-timeout": c44_redis_server_timeout,
    "c31-redis-restart": c31_redis_restart,
    "c31-redis-demoted-master": c31_redis_demoted_master,
    "c44-redis-maxclients": c44_redis_maxclients,
    "c44-redis-maxclients-publisher": c44_redis_maxclients_publisher,
    "c57-redis-pubsub-outbuf": c57_redis_pubsub_outbuf,
    "c57-rabbit-idle-silent-hb": c57_rabbit_idle_silent_hb,
    "c57-rabbit-refused-startup": c57_rabbit_refused_startup,
    "c44-rabbit-refused-then-up": c44_rabbit_refused_then_up,
    "c44-rabbit-wrong-vhost": c44_rabbit_wrong_vhost,
    "c57-rabbit-gevent-blocked": c57_rabbit_gevent_blocked,
    "c57-publisher-reset": c57_publisher_reset,
    "c57-rabbit-nft-drop": c57_rabbit_nft_drop,
    "c44-rabbit-nft-reject": c44_rabbit_nft_reject,
    "c31-rabbit-nft-reject": c31_rabbit_nft_reject,
}


def main(argv: list[str]) -> int:
    if not argv or argv == ["--list"]:
        print("\n".join(SCENARIOS))
        return 0 if argv else 2
    names = list(SCENARIOS) if argv == ["all"] else argv
    for n in names:
        if n not in SCENARIOS:
            print(f"unknown scenario {n!r}", file=sys.stderr)
            return 2
    for n in names:
        SCENARIOS[n]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
