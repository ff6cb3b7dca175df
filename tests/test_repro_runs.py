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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

from celery_doctor.model import Category, Kind, Report, Severity
from celery_doctor.pipeline import reproduce
from celery_doctor.repro import harness
from celery_doctor.repro.proxy import parse_fault
from celery_doctor.rules.fixes import heartbeat_for_idle
from conftest import console_script

pytestmark = [pytest.mark.slow, pytest.mark.broker, pytest.mark.timeout(180)]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("cdnat-")}


@pytest.fixture(autouse=True)
def _no_namespace_outlives_the_test(tmp_path: Path) -> Iterator[None]:
    """A kernel-middlebox run's namespace (and its host table) is gone when the test ends,
    whatever the test's outcome: the harness removes it, and this removes what it did not.
    Only this test's runs (found by their run ids in its tmp_path) are touched: other suites
    on the same machine run their own namespaces at the same time."""
    yield
    ours = set()
    for settings in tmp_path.glob("**/settings-worker.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            ours.add("cdnat-" + json.loads(settings.read_text())["queue"].rsplit(".", 1)[1][:8])
    for name in ours & _namespaces():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        subprocess.run(["nft", "delete", "table", "ip", name.replace("-", "_")], capture_output=True, check=False)


class Result:
    """One judged run: its data (the JSON edge), its Report, its kept files."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.data = report.data if "runs" not in report.data else report.data["runs"][0]
        self.files = {"worker_log": self.data["files"]["worker.log"]}


def _run(tmp_path: Path, broker: str, scenario: str, fault: str | None, **kw: object) -> Result:
    options = harness.RunOptions(scenario=scenario, fault=parse_fault(fault) if fault else None,
                                 broker_url=broker, workdir=tmp_path, **kw)  # type: ignore[arg-type]
    return Result(reproduce([options]))


def _worker_log(result: Result) -> str:
    return Path(result.files["worker_log"]).read_text(errors="replace")


def _broker_log(result: Result) -> str:
    path = Path(result.files["worker_log"]).with_name("broker.log")
    return path.read_text(errors="replace") if path.exists() else ""


def _top(result: Result) -> Category | None:
    return result.report.findings[0].category if result.report.findings else None


def assert_nothing_left(queue: str, kind: str) -> None:
    """Checked on the broker itself, not through the harness: no process of the run, no queue,
    exchange or remote-control queue (RabbitMQ), no key naming the run (Redis)."""
    out = subprocess.run(["pgrep", "-f", queue], capture_output=True, text=True)
    assert out.stdout.strip() == "", f"a process of this run is still running: {out.stdout}"
    run_id = queue.rsplit(".", 1)[1]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"cdnat-{run_id[:8]}" not in namespaces, namespaces
    assert f"cdnat_{run_id[:8]}" not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    if kind == "rabbitmq":
        listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True,
                                timeout=60).stdout + subprocess.run(
            ["rabbitmqctl", "-q", "list_exchanges", "name"], capture_output=True, text=True, timeout=60).stdout
        assert run_id not in listed, [line for line in listed.splitlines() if run_id in line]
    else:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        try:
            keys = [k for k in client.scan_iter(match=f"*{run_id}*", count=1000)]
            members = [m for key in ("_kombu.binding.celery.pidbox", "_kombu.binding_permanent.celery.pidbox")
                       for m in client.smembers(key) if run_id.encode() in m]
            unacked = [v for v in client.hvals("unacked") if run_id.encode() in v]
        finally:
            client.close()
        assert keys == [] and members == [] and unacked == [], (keys, members, len(unacked))


def _no_leftovers(result: Result) -> None:
    """The run's queue was checked and deleted; its worker is gone; nothing names it any more."""
    assert result.data["ledger"]["broker_checked"], result.data["ledger"].get("broker_note")
    assert result.data["worker"]["alive_at_end"] in (True, False)
    assert_nothing_left(result.data["queue"], result.data["broker"]["kind"])


def test_idle_cut_rst_without_heartbeats_recurs_at_the_idle_period(tmp_path: Path, rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "idle", "idle-cut:3:rst", heartbeat=0, middlebox="proxy")
    data = result.data
    assert data["middlebox"]["kind"] == "proxy"
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
    result = _run(tmp_path, rabbitmq_url, "idle", "idle-cut:4:rst", heartbeat=1.5, middlebox="proxy")
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
    # the worker learns of the close by its failed ack, or, when the broker's Close frame is read
    # first, by the lost connection (then the ack is never tried): both are in its own log
    assert data["ledger"]["ack_failed"] >= 1 or "Connection to broker lost" in _worker_log(result)
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
    result = _run(tmp_path, redis_url, "idle", "idle-cut:3:rst", heartbeat=0, middlebox="proxy")
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
    # every confirmed task ran, or is named as lost/stranded: nothing is silently missing. A reset
    # can also fall between the broker taking a message and its confirm: the publish raised, yet
    # the task ran; the ledger names those apart, so they are not counted among the confirmed.
    ran_confirmed = (summary["executed"] - summary["executed_although_publish_failed"]
                     - summary["executed_without_publish_record"])
    assert ran_confirmed + summary["lost"] + summary["stranded"] == summary["confirmed"]
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


def _start_repro(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], dict]:
    """A `celery-doctor repro` in the background, returned once its worker is ready."""
    proc = subprocess.Popen([console_script(), "repro", *args, "--workdir", str(tmp_path), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_signals)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = list(tmp_path.glob("*/worker.log"))
        if logs and " ready." in logs[0].read_text(errors="replace"):
            return proc, json.loads(logs[0].with_name("settings-worker.json").read_text())
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the worker never became ready")


def _wait_nothing_left(queue: str, kind: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            assert_nothing_left(queue, kind)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


@pytest.mark.parametrize(("sig", "broker"), [(signal.SIGINT, "rabbitmq"), (signal.SIGTERM, "rabbitmq"),
                                            (signal.SIGHUP, "rabbitmq"), (signal.SIGHUP, "redis")])
def test_interrupt_leaves_no_worker_proxy_or_queue_behind(tmp_path: Path, broker_lock_shared: None, sig: int,
                                                          broker: str) -> None:
    url = "amqp://guest:guest@127.0.0.1:5672//" if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
    proc, settings = _start_repro(tmp_path, "--fault", "idle-cut:5", "--broker", url)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert_nothing_left(settings["queue"], broker)


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_celery_doctor_killed_outright_leaves_nothing_behind(tmp_path: Path, broker_lock_shared: None,
                                                             broker: str) -> None:
    # SIGKILL: no finally runs; the guard process sees its pipe close and cleans up
    url = "amqp://guest:guest@127.0.0.1:5672//" if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
    proc, settings = _start_repro(tmp_path, "--fault", "idle-cut:5", "--broker", url)
    assert subprocess.run(["pgrep", "-f", settings["queue"]], capture_output=True).stdout != b""
    proc.kill()
    proc.communicate(timeout=30)
    _wait_nothing_left(settings["queue"], broker, within_s=20)


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


# -- the verdict tells the truth about every task (issue 13) -----------------------------------

def _worker_log_counts(result: Result) -> int:
    """Independent count: task executions the worker's own log reports as succeeded (the
    canary, published after the fault, is not a planned task)."""
    ids = re.findall(r"Task doctor\.\w+\[([^\]]+)\] succeeded", _worker_log(result))
    return len([i for i in ids if "-canary-" not in i])


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_refused_publishes_are_the_verdict_not_no_incident(tmp_path: Path, broker_lock_shared: None,
                                                           broker: str) -> None:
    url = "amqp://guest:guest@127.0.0.1:5672//" if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
    result = _run(tmp_path, url, "idle", "refuse")
    data = result.data
    assert data["publisher_proxy"]["refused"] >= 1
    states = data["ledger"]["states"]
    assert states["publish_failed"] == data["ledger"]["planned"] == 6, data["verdict"]
    assert "6 publish failed" in data["verdict"]
    assert _top(result) == Category.BROKER_RESTART_OR_FAILOVER
    assert result.report.findings[0].facts["rule"] == "repro.publish_failed"
    assert data["self_check"]["ok"] and result.report.worst() is not None
    assert result.report.worst().rank >= Severity.HIGH.rank  # type: ignore[union-attr]
    _no_leftovers(result)


def test_a_publisher_slower_than_the_plan_leaves_every_task_in_a_named_state(tmp_path: Path,
                                                                             rabbitmq_url: str) -> None:
    result = _run(tmp_path, rabbitmq_url, "load", "latency:200", rate=20, duration=5)
    data, summary = result.data, result.data["ledger"]
    assert summary["planned"] == 100
    assert sum(summary["states"].values()) == 100, summary["states"]
    assert summary["states"]["not_sent"] > 0 and "never sent" in data["verdict"]
    assert summary["executed_without_publish_record"] == 0
    # the ledger's executions match the worker's own log, task by task in number
    assert summary["executions"] == _worker_log_counts(result)
    assert data["wall_s"] < 30, data["timings"]
    assert result.report.findings[0].facts.get("rule") == "repro.fell_behind"
    _no_leftovers(result)


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_silent_idle_cut_is_diagnosed_and_its_fix_proven(tmp_path: Path, broker_lock_shared: None,
                                                         broker: str) -> None:
    # a real NAT (conntrack): heartbeats (RabbitMQ) or TCP keepalive (Redis) keep every flow's
    # entry alive, so the rerun with the proposed fix has nothing cut and nothing lost
    url = "amqp://guest:guest@127.0.0.1:5672//" if broker == "rabbitmq" else "redis://127.0.0.1:6379/0"
    options = harness.RunOptions(scenario="idle", fault=parse_fault("idle-cut:5:silent"), broker_url=url,
                                 heartbeat=0, workdir=tmp_path, middlebox="kernel")
    report = reproduce([options], verify_fix=True)
    broken, fixed = report.data["runs"]
    assert broken["middlebox"]["kind"] == fixed["middlebox"]["kind"] == "kernel"
    assert broken["proxy"]["cuts"] >= 1
    assert broken["worker"]["alive_but_not_consuming"], broken["canary"]
    assert report.findings[0].category == Category.NETWORK_IDLE_TIMEOUT
    assert report.findings[0].facts["rule"] == "repro.not_consuming"
    assert broken["wall_s"] < 30 and fixed["wall_s"] < 30, (broken["wall_s"], fixed["wall_s"])
    assert fixed["worker"]["consuming_at_end"] is True, fixed["canary"]
    assert fixed["proxy"]["cuts"] == 0, fixed["proxy"]
    assert fixed["ledger"]["states"]["executed"] == fixed["ledger"]["planned"] == 6, fixed["verdict"]
    assert ("socket_keepalive" in str(fixed["verify_fix"]["fix"])) is (broker == "redis")
    assert "health_check_interval" not in str(fixed["verify_fix"]["fix"])
    assert broken["verify_fix"]["proven"] is True, broken["verify_fix"]
    assert (report.findings[0].fix.verify or "").startswith("verified")  # type: ignore[union-attr]
    for run in (broken, fixed):
        assert_nothing_left(run["queue"], broker)


def test_redis_silent_cut_through_the_proxy_proposes_only_the_keepalive_fix_it_cannot_prove(
        tmp_path: Path, redis_url: str) -> None:
    # the userspace proxy cannot see keepalives: the fix is the proven one (keepalive), never
    # the health-check one a rerun contradicted, and --verify-fix says why it does not rerun
    options = harness.RunOptions(scenario="idle", fault=parse_fault("idle-cut:5:silent"), broker_url=redis_url,
                                 workdir=tmp_path, middlebox="proxy")
    report = reproduce([options], verify_fix=True)
    data = report.data
    assert "runs" not in data  # no rerun: nothing it could prove
    assert data["worker"]["alive_but_not_consuming"], data["canary"]
    top = report.findings[0]
    assert top.category == Category.NETWORK_IDLE_TIMEOUT and top.fix is not None
    assert "socket_keepalive" in (top.fix.snippet or "") and "health_check_interval" not in (top.fix.snippet or "")
    assert "--middlebox kernel" in (top.fix.verify or "")
    assert data["verify_fix"]["proven"] is None and "userspace proxy" in data["verify_fix"]["why"]
    assert data["wall_s"] < 30, data["timings"]
    _no_leftovers(Result(report))


@pytest.mark.parametrize("middlebox", ["proxy", "kernel"])
def test_idle_cut_fix_proven_on_rabbitmq(tmp_path: Path, rabbitmq_url: str, middlebox: str) -> None:
    options = harness.RunOptions(scenario="idle", fault=parse_fault("idle-cut:3:rst"), broker_url=rabbitmq_url,
                                 heartbeat=0, workdir=tmp_path, middlebox=middlebox)
    report = reproduce([options], verify_fix=True)
    broken, fixed = report.data["runs"]
    assert broken["middlebox"]["kind"] == fixed["middlebox"]["kind"] == middlebox
    # the proxy cuts at every idle period; a NAT's forgotten flow is found by its next packet
    assert broken["proxy"]["cuts"] >= (2 if middlebox == "proxy" else 1) and fixed["proxy"]["cuts"] == 0
    # the heartbeat `logs` and `diagnose` propose for the same idle timeout: one rule everywhere
    assert fixed["verify_fix"]["fix"] == {"heartbeat": float(heartbeat_for_idle(3))}
    assert fixed["settings"]["heartbeat_s"] == float(heartbeat_for_idle(3))
    assert broken["verify_fix"]["proven"] is True
    assert "Connection to broker lost" not in Path(fixed["files"]["worker.log"]).read_text()
    assert broken["wall_s"] < 30 and fixed["wall_s"] < 30, (broken["wall_s"], fixed["wall_s"])
    for run in (broken, fixed):
        assert_nothing_left(run["queue"], "rabbitmq")


def test_long_task_fixes_proven_on_rabbitmq(tmp_path: Path, rabbitmq_url: str) -> None:
    # both fixes the long-task rules propose, each rerun on the same long task: the prefork pool
    # (the main process keeps sending heartbeats) and heartbeats off
    options = harness.RunOptions(scenario="long-task", fault=None, broker_url=rabbitmq_url, heartbeat=2,
                                 pool="solo", acks_late=True, workdir=tmp_path)
    report = reproduce([options], verify_fix=True)
    broken, *fixed = report.data["runs"]
    assert report.findings[0].category == Category.LONG_TASK_BLOCKS_HEARTBEAT
    assert broken["ledger"]["duplicated"] == 1, broken["verdict"]
    assert [run["verify_fix"]["fix"] for run in fixed] == [{"pool": "prefork"}, {"heartbeat": 0.0}]
    assert fixed[0]["settings"]["pool"] == "prefork" and fixed[1]["settings"]["heartbeat_s"] == 0.0
    for run in fixed:
        assert run["verify_fix"]["proven"] is True, run["verify_fix"]
        assert run["ledger"]["states"]["executed"] == run["ledger"]["planned"] == 1, run["verdict"]
        assert "missed heartbeats" not in Path(run["files"]["broker.log"]).read_text(errors="replace")
    assert broken["verify_fix"]["proven"] is True and len(broken["verify_fix"]["each"]) == 2
    for run in (broken, *fixed):
        assert run["wall_s"] < 30, (run["label"], run["wall_s"])
        assert_nothing_left(run["queue"], "rabbitmq")


def test_long_task_on_redis_proposes_no_heartbeat_fix(tmp_path: Path, redis_url: str) -> None:
    options = harness.RunOptions(scenario="long-task", fault=None, broker_url=redis_url, pool="solo",
                                 workdir=tmp_path)
    report = reproduce([options], verify_fix=True)
    data = report.data
    assert _top(Result(report)) == Category.NO_INCIDENT, data["findings"]
    assert not any(f.category == Category.LONG_TASK_BLOCKS_HEARTBEAT for f in report.findings)
    assert data["verify_fix"]["proven"] is None
    assert data["ledger"]["states"]["executed"] == 1 and data["wall_s"] < 30
    _no_leftovers(Result(report))


def test_wrong_password_shows_the_brokers_refusal(tmp_path: Path, rabbitmq_url: str) -> None:
    done = subprocess.run([console_script(), "repro", "--broker", "amqp://guest:wrong-secret@127.0.0.1:5672//",
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "ACCESS_REFUSED" in done.stderr and "[tasks]" not in done.stderr
    assert str(tmp_path) in done.stderr  # says where the kept files are
    assert "wrong-secret" not in done.stderr + done.stdout
    assert list(tmp_path.glob("*/worker.log"))
    assert_nothing_left(_queue_of(tmp_path), "rabbitmq")  # a failed run leaves nothing either


def test_wrong_password_at_startup_is_the_verdict_and_the_self_check_agrees(tmp_path: Path,
                                                                           rabbitmq_url: str) -> None:
    # a misconfigured URL is what the run shows, whatever fault was asked for: not a failed self-check
    options = harness.RunOptions(scenario="startup", fault=None, workdir=tmp_path,
                                 broker_url="amqp://guest:wrong-secret@127.0.0.1:5672//")
    report = reproduce([options])
    assert report.findings[0].category == Category.AUTH_OR_PERMISSIONS
    check = report.data["self_check"]
    assert check["ok"] and "refused" in check["why"], check
    assert not any("self-check failed" in w for w in report.warnings)


def test_config_file_heartbeat_is_reported_as_in_effect(tmp_path: Path, rabbitmq_url: str) -> None:
    config = tmp_path / "celeryconfig.py"
    config.write_text("broker_heartbeat = 2\n")
    options = harness.RunOptions(scenario="startup", fault=None, broker_url=rabbitmq_url, config=config,
                                 label="production", workdir=tmp_path)
    data = reproduce([options]).data
    assert data["settings"]["heartbeat_s"] == 2.0 and data["settings"]["heartbeat_from_user_config"]
    assert data["settings"]["effective"]["broker_heartbeat"] == 2


def test_kernel_nat_idle_cut_with_rst_and_the_keepalive_fix_on_redis(tmp_path: Path, redis_url: str) -> None:
    # the userspace proxy cannot see keepalives; the kernel NAT can, so this fix is provable here
    options = harness.RunOptions(scenario="idle", fault=parse_fault("idle-cut:3:rst"), broker_url=redis_url,
                                 workdir=tmp_path, middlebox="kernel")
    report = reproduce([options], verify_fix=True)
    broken, fixed = report.data["runs"]
    assert "kernel middlebox" in broken["middlebox"]["why"]
    assert broken["proxy"]["cuts"] >= 1 and fixed["proxy"]["cuts"] == 0
    assert fixed["settings"]["effective"]["broker_transport_options"]["socket_keepalive"] is True
    assert fixed["ledger"]["states"]["executed"] == 6 and broken["verify_fix"]["proven"] is True
    assert report.summary["middlebox"] == "kernel"
    for run in (broken, fixed):
        assert_nothing_left(run["queue"], "redis")


def test_middlebox_kernel_refused_for_a_fault_it_cannot_make(tmp_path: Path, rabbitmq_url: str) -> None:
    done = subprocess.run([console_script(), "repro", "--fault", "refuse", "--middlebox", "kernel",
                           "--broker", rabbitmq_url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no idle cut" in done.stderr and "Traceback" not in done.stderr


# -- independent counts: the broker's own and the worker log's, task by task (issue 13) --------

def _mgmt(path: str) -> dict:
    import base64
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:15672/api/{path}")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def _worker_log_per_task(result: Result) -> tuple[Counter[str], Counter[str]]:
    """(received, succeeded) per task id, as the worker's own log says them."""
    text = _worker_log(result)
    received = Counter(re.findall(r"Task doctor\.\w+\[([^\]]+)\] received", text))
    succeeded = Counter(re.findall(r"Task doctor\.\w+\[([^\]]+)\] succeeded", text))
    return received, succeeded


def _ledger_tasks(result: Result) -> dict:
    from celery_doctor.repro import ledger

    path = Path(result.data["files"]["ledger.jsonl"])
    return {k: v for k, v in ledger.build(ledger.read_lines(path)).items() if "-canary-" not in k}


def _queue_of(tmp_path: Path) -> str:
    return json.loads(next(tmp_path.glob("*/settings-worker.json")).read_text())["queue"]


def test_reset_under_load_on_rabbitmq_matches_the_management_api_and_the_worker_log(
        tmp_path: Path, rabbitmq_url: str) -> None:
    """A queue of the test's own, bound to the run's exchange before the first publish, holds a
    copy of every message the broker routed; the management API counts them. The ledger must
    match it task by task (a task published twice is named as such, never as a lost ack), and
    match the worker log's received/succeeded lines task by task; the cut counts of the
    finding, the run's table and the logs engine agree."""
    check: dict = {}

    def bind_check(what: str, done: float) -> None:
        if "name" not in check and what.startswith("publish"):
            queue = _queue_of(tmp_path)
            conn = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest", connect_timeout=5)
            conn.connect()
            channel = conn.channel()
            channel.queue_declare(f"{queue}.check", auto_delete=False)
            channel.queue_bind(f"{queue}.check", exchange=queue, routing_key=queue)
            check.update(name=f"{queue}.check", conn=conn)

    options = harness.RunOptions(scenario="load", fault=parse_fault("reset-under-load:0.01"), rate=100,
                                 duration=4, broker_url=rabbitmq_url, workdir=tmp_path, middlebox="proxy")
    try:
        result = Result(reproduce([options], progress=bind_check))
        assert "name" in check
        # the management API's figures are sampled every 5 s (collect_statistics_interval): wait until
        # two samples more than 5 s apart agree
        stats: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = _mgmt(f"queues/%2F/{check['name'].replace('/', '%2F')}")
            sample = {"published": (now.get("message_stats") or {}).get("publish", 0), "messages": now.get("messages")}
            if sample == stats:
                break
            stats = sample
            time.sleep(5.5)
        channel = check["conn"].channel()
        copies: Counter[str] = Counter()
        while (message := channel.basic_get(check["name"], no_ack=True)) is not None:
            copies[message.headers["id"]] += 1
    finally:
        if "conn" in check:
            with contextlib.suppress(Exception):
                check["conn"].channel().queue_delete(check["name"])
            with contextlib.suppress(Exception):
                check["conn"].close()
    data, summary = result.data, result.data["ledger"]
    # the broker's count of the queue and the copies it holds agree (canary included); its publish
    # counter is a channel statistic, which a channel killed by a reset may take with it unreported
    assert stats["messages"] == sum(copies.values()), (stats, sum(copies.values()))
    assert stats["published"] <= stats["messages"]
    planned = {k: v for k, v in copies.items() if "-canary-" not in k}
    assert summary["witnessed"] and summary["copies_in_broker"] == sum(planned.values())
    tasks = _ledger_tasks(result)
    assert set(planned) <= set(tasks)
    # task by task: two copies in the broker <=> named "published twice" by the ledger
    twice = {k for k, n in planned.items() if n >= 2 and tasks[k].executions >= 2}
    assert set(summary["names"]["duplicated_by_publish"]) == twice
    # (resets at random: most runs make a publisher retry that leaves a second copy, not every one)
    assert summary["duplicated_by_publish"] == len(twice)
    for task_id in twice:
        # the publisher's end: one call (kombu retried inside it)
        assert tasks[task_id].sending == 1
    path_loss = [f for f in result.report.findings if f.category == Category.NETWORK_PATH_LOSS]
    if twice:
        assert "published twice" in data["verdict"]
        assert any("sent them twice" in f.explanation for f in path_loss)
    assert not any("ack" in f.title.lower() for f in result.report.findings)
    # task by task against the worker log
    received, succeeded = _worker_log_per_task(result)
    for task_id, rec in tasks.items():
        assert rec.received == received.get(task_id, 0), task_id
        assert rec.succeeded == succeeded.get(task_id, 0), task_id
    # one count of the cuts: the middlebox's file, the table, the finding, the logs engine
    events = Path(data["files"]["proxy-events.jsonl"]).read_text().splitlines()
    cut_lines = sum(1 for line in events if json.loads(line)["kind"] == Kind.PROXY_CUT.value)
    cuts = data["cuts"]
    assert cut_lines == data["proxy"]["cuts"] == cuts["worker_cuts"] >= 1
    assert cuts["cuts_in_incidents"] + cuts["cuts_not_seen_by_worker"] == cuts["worker_cuts"]
    assert cuts["incidents"] == data["recovery"]["incidents"] == len(result.report.incidents)
    assert any(f"{cuts['worker_cuts']} of the worker's {cuts['worker_connections']} connection(s) cut" in f.explanation
               for f in path_loss)
    # every incident is explained by a finding that counts it; none is called unexplained
    explained = [n for f in result.report.findings for n in f.facts.get("incidents", ())]
    # (a reset that caught a reconnect's handshake is also a connect-time close: two findings may count it)
    assert set(explained) == {i.id for i in result.report.incidents}, (
        explained, [(f.rule_id, f.title, f.facts.get("incidents")) for f in result.report.findings])
    for busy in (f for f in path_loss if f.title == "Busy connections reset on the path"):
        assert busy.explanation.startswith(f"{len(busy.facts['incidents'])} connection(s) were reset")
    assert not any(f.rule_id == "CD-L11" for f in result.report.findings)
    assert data["wall_s"] < 30, data["timings"]
    _no_leftovers(result)


def test_faulted_redis_run_matches_redis_monitor_and_the_worker_log(tmp_path: Path, redis_url: str) -> None:
    """`redis-cli monitor` sees every command the broker ran: each publish (LPUSH to the run's
    queue, a restored message carries redelivered=true) and each delivery (HSET unacked). The
    ledger must match it task by task, and the worker log's lines task by task."""
    monitor_file = tmp_path / "monitor.txt"
    with monitor_file.open("w") as out:
        monitor = subprocess.Popen(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "monitor"], stdout=out,
                                   stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        options = harness.RunOptions(scenario="load", fault=parse_fault("reset-under-load:0.01"), rate=50,
                                     duration=4, broker_url=redis_url, workdir=tmp_path, middlebox="proxy")
        result = Result(reproduce([options]))
        time.sleep(0.5)
    finally:
        monitor.terminate()
        monitor.wait(10)
    queue, data, summary = result.data["queue"], result.data, result.data["ledger"]
    task = re.compile(r'\\"id\\": \\"(doctor-[0-9a-f]+-\d{5})\\"')
    pushed: Counter[str] = Counter()
    tags: dict[str, set[str]] = {}
    for line in monitor_file.read_text(errors="replace").splitlines():
        found = task.search(line)
        if not found or queue not in line:
            continue
        if f'"LPUSH" "{queue}"' in line and 'redelivered\\": true' not in line:
            pushed[found.group(1)] += 1
        elif '"HSET" "unacked"' in line:  # a delivery: the message's tag is the hash field
            tags.setdefault(found.group(1), set()).add(line.split('"')[5])
    tasks = _ledger_tasks(result)
    assert summary["copies_source"] == "the delivery tags the worker received"
    received, succeeded = _worker_log_per_task(result)
    for task_id, rec in tasks.items():
        # each copy the worker received is one the broker delivered (by tag; a delivery whose
        # reply died with a reset never reached the worker); each came from a publish
        assert rec.tags <= tags.get(task_id, set()) and (rec.tags or not rec.executions), task_id
        assert len(rec.tags) <= pushed.get(task_id, 0), task_id
        assert rec.received == received.get(task_id, 0) and rec.succeeded == succeeded.get(task_id, 0), task_id
        if pushed.get(task_id):
            assert rec.published is not None or rec.sending, task_id  # the publisher's end knows it too
    twice = {k for k, rec in tasks.items() if len(tags.get(k, ())) >= 2 and rec.executions >= 2}
    assert set(summary["names"]["duplicated_by_publish"]) == twice
    assert data["proxy"]["cuts"] + data["publisher_proxy"]["cuts"] >= 1
    assert summary["unaccounted"] == 0 and data["wall_s"] < 30, data["timings"]
    _no_leftovers(result)
