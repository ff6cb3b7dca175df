"""Real reproductions: a real worker, the real local RabbitMQ/Redis, the fault proxy, the ledger.

Each test runs one scenario (well under 30 s) and checks three things against the ground truth:
what the proxy did, what the ledger says happened to every task, and the verdict of the logs
engine on the run's own logs. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import amqp
import pytest

from celery_doctor.model import Category, Kind
from celery_doctor.repro import harness
from celery_doctor.repro.proxy import parse_fault

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.timeout(180)]


def _run(tmp_path: Path, broker: str, scenario: str, fault: str | None, **kw: object) -> harness.RunResult:
    options = harness.RunOptions(scenario=scenario, fault=parse_fault(fault) if fault else None,
                                 broker_url=broker, workdir=tmp_path, **kw)  # type: ignore[arg-type]
    return harness.run(options)


def _worker_log(result: harness.RunResult) -> str:
    return Path(result.files["worker_log"]).read_text(errors="replace")


def _broker_log(result: harness.RunResult) -> str:
    path = Path(result.files["worker_log"]).with_name("broker.log")
    return path.read_text(errors="replace") if path.exists() else ""


def _top(result: harness.RunResult) -> Category | None:
    assert result.report is not None, result.data["self_check"]
    return result.report.findings[0].category if result.report.findings else None


def _no_leftovers(result: harness.RunResult) -> None:
    """The run's queue was checked and deleted; its worker is gone."""
    assert result.data["ledger"]["broker_checked"], result.data["ledger"].get("broker_note")
    name = result.data["worker"]
    assert name["alive_at_end"] in (True, False)
    out = subprocess.run(["pgrep", "-f", result.data["queue"]], capture_output=True, text=True)
    assert out.stdout.strip() == "", "a worker of this run is still running"


def test_idle_cut_rst_without_heartbeats_recurs_at_the_idle_period(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "idle", "idle-cut:3:rst", heartbeat=0)
    data = result.data
    cuts = [d for d in data["proxy"]["decisions"] if d["kind"] == Kind.PROXY_CUT.value]
    assert len(cuts) >= 2
    # the worker's connection is cut again each time it has been idle for the cut's period
    times = sorted({d["ts"][:21] for d in cuts})
    from datetime import datetime
    stamps = [datetime.fromisoformat(t + "0" * (23 - len(t)) if len(t) < 23 else t) for t in times]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps) if (b - a).total_seconds() > 1]
    assert gaps and all(2.8 <= g <= 4.5 for g in gaps), gaps
    assert len(re.findall(r"Connection to broker lost.*(reset|104)", _worker_log(result))) >= 2
    assert data["ledger"]["lost"] == 0 and data["ledger"]["duplicated"] == 0  # early acks: nothing lost
    assert data["ledger"]["succeeded"] == data["ledger"]["confirmed"] == 6
    assert data["worker"]["consuming_at_end"] is True
    _no_leftovers(result)
    assert _top(result) == Category.NETWORK_IDLE_TIMEOUT
    assert data["self_check"]["ok"]


def test_heartbeat_under_half_the_idle_timeout_prevents_the_resets(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "idle", "idle-cut:4:rst", heartbeat=1.5)
    data = result.data
    assert data["proxy"]["cuts"] == 0  # heartbeats kept the worker's connection busy
    assert "Connection to broker lost" not in _worker_log(result)
    assert data["ledger"]["lost"] == 0 and data["ledger"]["succeeded"] == data["ledger"]["confirmed"]
    _no_leftovers(result)
    assert _top(result) == Category.NO_INCIDENT
    assert data["self_check"]["ok"]


def test_blackhole_longer_than_two_heartbeats_is_detected_by_both_sides(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "idle", "blackhole:2:8", heartbeat=2)
    data = result.data
    assert data["proxy"]["blackholed"] >= 1 and data["proxy"]["healed"] >= 1
    assert "missed heartbeats from client" in _broker_log(result)
    assert re.search(r"Too many heartbeats missed|heartbeat", _worker_log(result))
    assert data["ledger"]["lost"] == 0 and data["ledger"]["succeeded"] == data["ledger"]["confirmed"]
    assert data["worker"]["consuming_at_end"] is True
    _no_leftovers(result)
    assert _top(result) == Category.NETWORK_PATH_LOSS
    assert data["self_check"]["ok"]


def test_long_task_in_solo_pool_is_closed_by_the_broker_and_redelivered(tmp_path: Path, rabbitmq_url: str) -> None:
    # Celery 5.7's solo pool runs the task in the thread that drives the event loop, so no
    # heartbeat goes out while it runs: RabbitMQ closes the connection, the late ack fails and
    # the message is delivered again.
    result = _run(tmp_path, rabbitmq_url, "long-task", None, heartbeat=2, pool="solo", acks_late=True)
    data = result.data
    assert "missed heartbeats from client" in _broker_log(result)
    assert data["ledger"]["duplicated"] == 1 and data["ledger"]["redelivered"] >= 1
    assert data["ledger"]["ack_failed"] >= 1
    assert data["ledger"]["lost"] == 0
    assert max(data["ledger"]["names"]["duplicated"].values()) >= 2
    _no_leftovers(result)
    assert _top(result) == Category.LONG_TASK_BLOCKS_HEARTBEAT
    assert data["self_check"]["ok"]


def test_broker_restart_through_the_hook(tmp_path: Path, broker_lock_exclusive: None) -> None:
    # the exclusive lock is held by the fixture: the harness must not take it again
    result = _run(tmp_path, "amqp://guest:guest@127.0.0.1:5672//", "idle", "broker-restart",
                  lock_broker=False, hook="rabbitmqctl -q stop_app; sleep 2; rabbitmqctl -q start_app")
    data = result.data
    try:
        assert re.search(r"CONNECTION_FORCED|Connection to broker lost|refused", _worker_log(result))
        assert data["ledger"]["lost"] == 0
        assert data["worker"]["consuming_at_end"] is True
        _no_leftovers(result)
        assert _top(result) == Category.BROKER_RESTART_OR_FAILOVER
    finally:
        subprocess.run("rabbitmqctl -q start_app; rabbitmqctl -q await_startup --timeout 60", shell=True,
                       capture_output=True, timeout=90)


def test_redis_idle_cut(tmp_path: Path, redis_url: str) -> None:
    result = _run(tmp_path, redis_url, "idle", "idle-cut:3:rst", heartbeat=0)
    data = result.data
    assert data["broker"]["kind"] == "redis"
    assert data["ledger"]["lost"] == 0 and data["ledger"]["succeeded"] == data["ledger"]["confirmed"] == 6
    assert data["worker"]["consuming_at_end"] is True
    _no_leftovers(result)
    expected = set(data["self_check"]["expected"])
    assert _top(result) is not None and _top(result).value in expected  # type: ignore[union-attr]


def test_redis_blackhole(tmp_path: Path, redis_url: str) -> None:
    result = _run(tmp_path, redis_url, "idle", "blackhole:2:6")
    data = result.data
    assert data["proxy"]["blackholed"] >= 1
    assert data["ledger"]["lost"] == 0
    assert data["ledger"]["succeeded"] == data["ledger"]["confirmed"]
    _no_leftovers(result)


def test_load_with_resets_accounts_for_every_task(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "load", "reset-under-load:0.01", rate=100, duration=5)
    summary = result.data["ledger"]
    assert result.data["proxy"]["cuts"] >= 1
    # every confirmed task ran, or is named as lost/stranded: nothing is silently missing
    assert summary["executed"] + summary["lost"] + summary["stranded"] == summary["confirmed"]
    assert summary["unaccounted"] == 0
    _no_leftovers(result)


def test_scenario_wall_times_are_reported(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "startup", None)
    assert result.data["wall_s"] > 0 and result.data["ledger"]["succeeded"] == 5
    assert statistics.fmean([result.data["wall_s"]]) == result.data["wall_s"]
    _no_leftovers(result)


def _default_signals() -> None:
    """A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
    the child would rightly keep ignoring it: give the child the disposition a terminal gives."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_worker_proxy_or_queue_behind(tmp_path: Path, rabbitmq_url: str, sig: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "celery_doctor.cli", "repro", "--fault", "idle-cut:5",
                             "--broker", rabbitmq_url, "--workdir", str(tmp_path), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 60
    settings = None
    while time.monotonic() < deadline:
        logs = list(tmp_path.glob("*/worker.log"))
        if logs and " ready." in logs[0].read_text(errors="replace"):
            settings = json.loads(logs[0].with_name("settings-worker.json").read_text())
            break
        time.sleep(0.2)
    assert settings is not None, "the worker never became ready"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert subprocess.run(["pgrep", "-f", settings["queue"]], capture_output=True).stdout == b""
    conn = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest", connect_timeout=5)
    conn.connect()
    try:
        with pytest.raises(amqp.exceptions.NotFound):
            conn.channel().queue_declare(settings["queue"], passive=True)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def test_proxy_command_forwards_and_prints_its_decisions(rabbitmq_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "celery_doctor.cli", "proxy", "--listen", f"127.0.0.1:{port}",
                             "--upstream", "127.0.0.1:5672", "--fault", "idle-cut:1:rst", "--duration", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        conn = None
        while conn is None and time.monotonic() < deadline:
            try:
                conn = amqp.Connection(host=f"127.0.0.1:{port}", userid="guest", password="guest",
                                       connect_timeout=2)
                conn.connect()
            except OSError:
                conn = None
                time.sleep(0.2)
        assert conn is not None and conn.server_properties.get("product") == "RabbitMQ"
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "connected" in out and "proxy_cut" in out and "cut after" in out
