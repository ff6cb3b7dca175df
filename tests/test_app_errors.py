"""A worker whose tasks lose *their own* connections (an HTTP upstream that resets them) is not a
worker that lost its broker: recorded live from a real worker on the real RabbitMQ, whose tasks
talk to a loopback server that answers every request with a TCP reset. One task logs the error
(``logger.exception``), one fails on it with a chained traceback ("During handling of the above
exception ..."), and the worker's broker connection stays up throughout.

The log is read as it was written, and also repeated into an input big enough for the parallel
scan (whose traceback judgement works on raw bytes), with one real broker loss added, which must
still be the one incident found."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from celery_doctor.model import Kind
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import start_worker

TASKS = """
import http.client
from celery import Celery
from celery.utils.log import get_task_logger

app = Celery("appfail", broker={broker!r})
app.conf.task_default_queue = {queue!r}
logger = get_task_logger(__name__)


def fetch(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/stock")
    return conn.getresponse().read()


@app.task
def logged(port):
    try:
        fetch(port)
    except OSError:
        logger.exception("upstream fetch failed")


@app.task
def failed(port):
    try:
        fetch(port)
    except OSError:
        raise RuntimeError("upstream is down")
"""
BROKER_LOSS = (  # celery 5.0-5.2's consumer, as tests/fixtures/recorded shows it
    "[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
    "Traceback (most recent call last):\n"
    '  File "/usr/lib/python3/site-packages/celery/worker/consumer/consumer.py", line 332, in start\n'
    "    blueprint.start(self)\n"
    '  File "/usr/lib/python3/site-packages/amqp/transport.py", line 342, in _read\n'
    "    s = recv(n - len(rbuf))\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
)


def _resetting_server() -> tuple[socket.socket, threading.Event]:
    """A loopback server that reads each request and closes with a reset (SO_LINGER 0)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, stop


def _record(tmp_path: Path, rabbitmq_url: str) -> Path:
    server, stop = _resetting_server()
    port = server.getsockname()[1]
    (tmp_path / "appfail.py").write_text(TASKS.format(broker=rabbitmq_url, queue=f"cd-app-{uuid.uuid4().hex[:8]}"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "worker.log"
    worker = start_worker("appfail", tmp_path, log, env=env)
    try:
        deadline = time.monotonic() + 60
        while "ready." not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never became ready"
            time.sleep(0.2)
        subprocess.run([sys.executable, "-c", "from appfail import logged, failed\n"
                        f"for _ in range(3):\n    logged.delay({port}); failed.delay({port})"],
                       cwd=tmp_path, env=env, timeout=60, check=True)
        while log.read_text().count("raised unexpected") < 3 or log.read_text().count("upstream fetch failed") < 3:
            assert time.monotonic() < deadline, "the tasks did not run"
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
        stop.set()
    return log


def test_a_task_losing_its_upstream_is_not_a_broker_incident(tmp_path: Path, rabbitmq_url: str) -> None:
    log = _record(tmp_path, rabbitmq_url)
    text = log.read_text()
    # what the test is about really happened: resets, logged and chained, in the tasks' processes
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in text
    assert "During handling of the above exception, another exception occurred:" in text
    assert "upstream fetch failed" in text
    report = diagnose(DiagnoseOptions(logs=[str(log)]))
    assert report.incidents == []
    assert not [e for e in report.events if e.kind in (Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT)]


def test_in_a_big_log_only_the_broker_loss_is_an_incident(tmp_path: Path, rabbitmq_url: str) -> None:
    """~50 MB of the recorded tasks' failures (the parallel scan, tracebacks judged on bytes) with
    one broker loss half-way: that loss is the only incident."""
    lines = _record(tmp_path, rabbitmq_url).read_text().splitlines(keepends=True)
    body = "".join(ln for ln in lines if "ready." not in ln and "Connected to" not in ln)
    head = "".join(lines[: next(i for i, ln in enumerate(lines) if "ready." in ln) + 1])
    big = tmp_path / "big.log"
    copies = 50 * 1024 * 1024 // len(body) + 1
    with big.open("w") as out:
        out.write(head)
        for k in range(copies):
            out.write(body)
            if k == copies // 2:
                stamp = body.rsplit("\n[", 1)[1][:23]  # the last record's time: the loss follows it
                out.write(BROKER_LOSS.format(ts=stamp))
    report = diagnose(DiagnoseOptions(logs=[str(big)]))
    assert big.stat().st_size > 48 * 1024 * 1024
    assert [i.events[0].kind for i in report.incidents] == [Kind.CONNECTION_LOST]
    assert [e.kind for e in report.events if e.kind in (Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT)] == [
        Kind.CONNECTION_LOST]
