#!/usr/bin/env python
"""Record a worker whose connection the broker closes on purpose, on a broker other clients share.

    python scripts/record_shared_broker.py tests/fixtures/shared-broker/rabbitmq-forced-close

A real Celery worker consumes one uniquely named queue on the local RabbitMQ. Meanwhile "another
application" keeps trying to log in with a wrong password. The worker's connection is closed twice
by an operator: once with `rabbitmqctl close_connection`, once through the management API (the
"Force close" button of the management UI), each with a reason. broker.log is the node's whole log
for the window, other clients' lines included: that is what an on-call engineer copies from a
shared broker, and what the tool must read without blaming the worker for the other clients.

Writes worker.log, broker.log and truth.json (from the actions taken, never from an analysis).
Deletes its queue at the end.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

RABBITMQ_LOG = Path("/var/log/rabbitmq/rabbit@localhost.log")
URL = "amqp://guest:guest@127.0.0.1:5672//"
APP = '''\
import os, time
from celery import Celery
app = Celery("shared_app", broker=os.environ["REC_URL"])
app.conf.task_default_queue = os.environ["REC_QUEUE"]
app.conf.worker_enable_remote_control = False
app.conf.broker_heartbeat = 10

@app.task
def add(x, y):
    return x + y
'''
# another application on the same broker, with a password nobody set (a made-up string)
OTHER_APP = '''\
import time, amqp
end = time.time() + float(__import__("sys").argv[1])
while time.time() < end:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="not-the-password", connect_timeout=3)
    try:
        conn.connect()
    except Exception:
        pass
    finally:
        conn.collect()
    time.sleep(3)
'''


def iso(ts: datetime) -> str:
    return ts.isoformat()


def worker_connections(worker_pid: int) -> list[str]:
    """The broker-side connection names (peer host:port) of the worker's process tree."""
    pids = {str(worker_pid)}
    children = subprocess.run(["pgrep", "-P", str(worker_pid)], capture_output=True, text=True).stdout.split()
    pids.update(children)
    ss = subprocess.run(["ss", "-Htnp", "dst", "127.0.0.1:5672"], capture_output=True, text=True).stdout
    ports = []
    for line in ss.splitlines():
        if any(f"pid={p}," in line for p in pids):
            ports.append(line.split()[3])  # the worker's local address
    return ports


def connection_pid(local: str) -> str:
    listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "peer_host", "peer_port"],
                             capture_output=True, text=True, timeout=30).stdout
    host, port = local.rsplit(":", 1)
    for line in listing.splitlines():
        cols = line.split()
        if len(cols) == 3 and cols[1] == host and cols[2] == port:
            return cols[0]
    raise SystemExit(f"no broker connection for {local}")


def close_by_api(local: str, reason: str) -> None:
    """What the management UI's 'Force close' does: DELETE the connection with an X-Reason."""
    req = urllib.request.Request("http://127.0.0.1:15672/api/connections")
    auth = base64.b64encode(b"guest:guest").decode()
    req.add_header("Authorization", f"Basic {auth}")
    conns = json.load(urllib.request.urlopen(req, timeout=10))
    host, port = local.rsplit(":", 1)
    name = next(c["name"] for c in conns if c.get("peer_host") == host and str(c.get("peer_port")) == port)
    delete = urllib.request.Request("http://127.0.0.1:15672/api/connections/" + urllib.request.quote(name, safe=""),
                                    method="DELETE")
    delete.add_header("Authorization", f"Basic {auth}")
    delete.add_header("X-Reason", reason)
    urllib.request.urlopen(delete, timeout=10).close()


def main(out: Path) -> int:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="celery-doctor-shared-"))
    queue = f"celery-doctor-shared-{uuid.uuid4().hex[:8]}"
    (tmp / "shared_app.py").write_text(APP)
    (tmp / "other_app.py").write_text(OTHER_APP)
    log = out / "worker.log"
    log.unlink(missing_ok=True)
    actions: list[dict[str, str]] = []

    def act(what: str, **details: str) -> None:
        actions.append({"ts": iso(datetime.now(UTC)), "action": what, **details})

    start = datetime.now(UTC)
    env = dict(os.environ, PYTHONPATH=str(tmp), REC_URL=URL, REC_QUEUE=queue)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "shared_app", "worker", "-P", "solo",
                               "-Q", queue, "-n", f"{queue}@%h", "--loglevel", "INFO", "--logfile", str(log),
                               "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    other = subprocess.Popen([sys.executable, str(tmp / "other_app.py"), "22"], cwd=tmp,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    act("worker_started", queue=queue)
    act("other_app_started", does="logs in with a wrong password every 3 s for 22 s")
    try:
        deadline = time.time() + 30
        while not (log.exists() and re.search(r"\bready\.$", log.read_text(), re.M)):
            if time.time() > deadline:
                raise SystemExit("the worker never became ready")
            time.sleep(0.3)
        time.sleep(3)
        for local in worker_connections(worker.pid)[:1]:
            pid = connection_pid(local)
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "Closed by the operator for maintenance"],
                           check=True, timeout=30, capture_output=True)
            act("rabbitmqctl close_connection", connection=local, reason="Closed by the operator for maintenance")
        time.sleep(8)
        for local in worker_connections(worker.pid)[:1]:
            close_by_api(local, "Moved to the new cluster")
            act("management API DELETE /api/connections/NAME", connection=local, reason="Moved to the new cluster")
        time.sleep(8)
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, 9)
        other.wait(30)
        act("worker_stopped")
        end = datetime.now(UTC)
        import amqp

        conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", connect_timeout=5)
        with contextlib.suppress(Exception):
            conn.connect()
            channel = conn.channel()
            channel.queue_delete(queue)
            channel.exchange_delete(queue)  # Celery declared an exchange named after its default queue
            conn.close()
        conn.collect()
        shutil.rmtree(tmp, ignore_errors=True)
    time.sleep(0.5)
    lines = []
    for line in RABBITMQ_LOG.read_text(errors="replace").splitlines(keepends=True):
        stamp = line[:32]
        with contextlib.suppress(ValueError):
            if start <= datetime.fromisoformat(stamp.replace(" ", "T")) <= end:
                lines.append(line)
    (out / "broker.log").write_text("".join(lines))
    import celery
    import kombu

    truth = {
        "scenario": "forced-close on a shared broker",
        "expected": {"category": "broker_restart_or_failover", "closed_by": "broker"},
        "other_clients": "another application's refused logins, and whatever else used the node meanwhile",
        "actions": actions,
        "window": {"start": iso(start), "end": iso(end)},
        "versions": {"celery": celery.__version__, "kombu": kombu.__version__,
                     "rabbitmq": subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True,
                                                text=True).stdout.strip()},
        "command": "python scripts/record_shared_broker.py " + out.name,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
