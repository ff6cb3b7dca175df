"""The RabbitMQ probe against the real local broker (and local sockets that misbehave)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from base64 import b64encode
from collections.abc import Iterator

import amqp
import pytest

from celery_doctor.broker import ProbeOptions, UnreachableError, probe_broker
from celery_doctor.model import Category, Severity
from celery_doctor.rules.broker_rules import broker_findings

pytestmark = pytest.mark.broker

FAST = ProbeOptions(timeout=5, churn_interval=0)
MGMT = "http://127.0.0.1:15672"
# tests holding the exclusive lock cannot also take the shared one the rabbitmq_url fixture holds
URL = "amqp://guest:guest@127.0.0.1:5672//"


def _ctl(*args: str) -> str:
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.strip()


def _api(path: str) -> object:
    token = b64encode(b"guest:guest").decode()
    req = urllib.request.Request(MGMT + path, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def _wait_for(predicate, seconds: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Management statistics lag up to one collection interval (5 s)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("management API never showed the expected state")


def _categories(facts) -> set[Category]:  # type: ignore[no-untyped-def]
    return {f.category for f in broker_findings(facts)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_healthy_broker_reports_version_heartbeat_and_limits(rabbitmq_url: str) -> None:
    facts = probe_broker(rabbitmq_url, ProbeOptions(churn_interval=1))
    f = facts.facts
    assert facts.reachable and facts.logged_in
    assert facts.version and facts.version.startswith("3.")
    assert f["server"]["product"] == "RabbitMQ"
    # the broker lowers Celery's 120 s to its own value (RabbitMQ's default 60 s)
    assert f["negotiated_heartbeat"] == min(120, f["server_heartbeat"] or 120)
    assert f["announces_connection_blocked"] is True
    assert f["management"]["available"] is True
    node = f["nodes"][0]
    assert node["fd_total"] > 0 and node["mem_limit"] > 0
    assert "connection_created_per_s" in f["churn"]
    assert f["consumer_timeout_ms"] == 1800000  # 3.10's default, read from the node
    # nothing of ours shows up as a client, and no login/alarm finding
    assert all(c.get("connection_name") != "celery-doctor broker probe" for c in f["connections"])
    cats = _categories(facts)
    assert Category.AUTH_OR_PERMISSIONS not in cats
    assert Category.BROKER_RESOURCE_ALARM not in cats


def test_requested_heartbeat_zero_negotiates_zero(rabbitmq_url: str) -> None:
    facts = probe_broker(rabbitmq_url, ProbeOptions(heartbeat=0, churn_interval=0))
    assert facts.facts["negotiated_heartbeat"] == 0
    assert any(f.category == Category.HEARTBEAT_MISCONFIG and "off" in f.title
               for f in broker_findings(facts))


def test_wrong_password_is_an_auth_finding_without_the_password(rabbitmq_url: str) -> None:
    secret = "Wr0ngPassw0rd-zz"
    facts = probe_broker(f"amqp://guest:{secret}@127.0.0.1:5672//", FAST)
    assert facts.reachable and facts.logged_in is False
    assert facts.facts["login"]["code"] == 403
    findings = broker_findings(facts)
    assert findings[0].category == Category.AUTH_OR_PERMISSIONS
    assert findings[0].severity == Severity.HIGH
    assert secret not in repr(facts) and secret not in repr(findings)


def test_missing_vhost_is_named(rabbitmq_url: str) -> None:
    vhost = f"celery-doctor-missing-{os.getpid()}"
    facts = probe_broker(f"amqp://guest:guest@127.0.0.1:5672/{vhost}", FAST)
    assert facts.logged_in is True  # the password was fine; the vhost is not there
    assert facts.facts["login"]["code"] == 530
    assert facts.facts["vhost_exists"] is False
    finding = broker_findings(facts)[0]
    assert finding.category == Category.AUTH_OR_PERMISSIONS
    assert "does not exist" in finding.title and vhost in finding.title


def test_user_without_vhost_permission(broker_lock_exclusive: None) -> None:
    user, vhost, password = f"cd-test-{os.getpid()}", f"cd-test-vhost-{os.getpid()}", "cd-pass-9"
    _ctl("add_vhost", vhost)
    try:
        _ctl("add_user", user, password)
        try:
            facts = probe_broker(f"amqp://{user}:{password}@127.0.0.1:5672/{vhost}", FAST)
        finally:
            _ctl("delete_user", user)
    finally:
        _ctl("delete_vhost", vhost)
    assert facts.facts["login"]["code"] == 530
    finding = broker_findings(facts)[0]
    assert finding.category == Category.AUTH_OR_PERMISSIONS
    assert "may not use" in finding.title
    assert password not in repr(facts)


def test_memory_alarm_is_seen_and_restored(broker_lock_exclusive: None) -> None:
    original = _ctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    restore = (["absolute", original.split(",")[1].rstrip("}").strip()]
               if original.startswith("{absolute") else [original])
    try:
        _ctl("set_vm_memory_high_watermark", "0.0001")
        facts = probe_broker(URL, FAST)
    finally:
        _ctl("set_vm_memory_high_watermark", *restore)
    assert _ctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().") == original
    assert {"node": "rabbit@localhost", "resource": "memory"} in facts.facts["alarms"]
    assert facts.facts["blocked_now"] is True
    finding = broker_findings(facts)[0]
    assert finding.category == Category.BROKER_RESOURCE_ALARM
    assert finding.severity == Severity.HIGH


def test_client_without_heartbeat_is_spotted(rabbitmq_url: str) -> None:
    name = f"celery-doctor-test-hb0-{os.getpid()}"
    conn = amqp.Connection("127.0.0.1:5672", heartbeat=0, connect_timeout=5,
                           client_properties={"connection_name": name})
    conn.connect()
    try:
        _wait_for(lambda: any((c.get("client_properties") or {}).get("connection_name") == name
                              for c in _api("/api/connections")))  # type: ignore[union-attr]
        facts = probe_broker(rabbitmq_url, FAST)
    finally:
        conn.close()
    mine = [c for c in facts.facts["connections"] if c["connection_name"] == name]
    assert mine and mine[0]["heartbeat_s"] == 0
    hb = [f for f in broker_findings(facts) if f.category == Category.HEARTBEAT_MISCONFIG]
    assert hb and any(name in ev.text for f in hb for ev in f.evidence)


def test_queue_with_consumer_and_unacked_messages(rabbitmq_url: str) -> None:
    queue = f"celery-doctor-test-q-{os.getpid()}"
    conn = amqp.Connection("127.0.0.1:5672", connect_timeout=5)
    conn.connect()
    try:
        ch = conn.channel()
        ch.queue_declare(queue, auto_delete=True)
        for _ in range(3):
            ch.basic_publish(amqp.Message(b"x"), exchange="", routing_key=queue)
        ch.basic_qos(0, 10, False)
        ch.basic_consume(queue, callback=lambda m: None, no_ack=False)
        conn.drain_events(timeout=5)

        def listed() -> bool:
            rows = _api("/api/queues?columns=name,messages_unacknowledged,consumers")
            return any(q["name"] == queue and q.get("messages_unacknowledged") == 3
                       for q in rows)  # type: ignore[union-attr]

        _wait_for(listed)
        facts = probe_broker(rabbitmq_url, FAST)
    finally:
        conn.close()
    row = next(q for q in facts.facts["queues"] if q["name"] == queue)
    assert row["consumers"] == 1 and row["unacked"] == 3
    timeout = [f for f in broker_findings(facts) if f.category == Category.VERSION_INCOMPATIBILITY]
    assert timeout and any(queue in ev.text for ev in timeout[0].evidence)


def test_connection_churn_is_measured(rabbitmq_url: str) -> None:
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            conn = amqp.Connection("127.0.0.1:5672", connect_timeout=5)
            conn.connect()
            conn.close()

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        time.sleep(1)
        facts = probe_broker(rabbitmq_url, ProbeOptions(churn_interval=6))
    finally:
        stop.set()
        worker.join(10)
    assert facts.facts["churn"]["connection_created_per_s"] >= 1
    assert Category.POOL_EXHAUSTION_OR_MISUSE in _categories(facts)


def test_nothing_listening_is_refused() -> None:
    port = _free_port()
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"amqp://guest:guest@127.0.0.1:{port}//", FAST)
    assert err.value.reason == "refused"


def test_listener_that_never_answers_times_out(silent_listener: int) -> None:
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"amqp://guest:guest@127.0.0.1:{silent_listener}//",
                     ProbeOptions(timeout=1, churn_interval=0))
    assert err.value.reason == "no_greeting"
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"amqps://guest:guest@127.0.0.1:{silent_listener}//",
                     ProbeOptions(timeout=1, churn_interval=0))
    assert err.value.reason == "tls"


def test_tls_spoken_to_a_plain_port(rabbitmq_url: str) -> None:
    with pytest.raises(UnreachableError) as err:
        probe_broker("amqps://guest:guest@127.0.0.1:5672//", FAST)
    assert err.value.reason == "tls"


def test_unknown_host_is_a_dns_error() -> None:
    with pytest.raises(UnreachableError) as err:
        probe_broker("amqp://guest:guest@no-such-host.invalid//", FAST)
    assert err.value.reason == "dns"


def test_cli_exit_codes_and_no_secret(rabbitmq_url: str, silent_listener: int) -> None:
    secret = "Cli-Secret-77"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "celery_doctor.cli", "broker", *args,
                               "--churn-interval", "0"],
                              capture_output=True, text=True, timeout=60, check=False)

    healthy = run(rabbitmq_url, "--format", "json")
    assert healthy.returncode in (0, 1)  # 1 only if other clients on this broker earn findings
    doc = json.loads(healthy.stdout)
    assert doc["data"]["broker"]["logged_in"] is True

    bad = run(f"amqp://guest:{secret}@127.0.0.1:5672//", "--format", "json")
    assert bad.returncode == 1
    assert secret not in bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["findings"][0]["category"] == "auth_or_permissions"

    text = run(f"amqp://guest:{secret}@127.0.0.1:5672//")
    assert text.returncode == 1 and secret not in text.stdout and "refused" in text.stdout

    down = run(f"amqp://guest:{secret}@127.0.0.1:{_free_port()}//")
    assert down.returncode == 2
    assert down.stdout == "" and len(down.stderr.strip().splitlines()) == 1
    assert "refused" in down.stderr and secret not in down.stderr

    silent = run(f"amqp://guest:{secret}@127.0.0.1:{silent_listener}//", "--timeout", "1")
    assert silent.returncode == 2 and "no AMQP answer" in silent.stderr

    bad_url = run("amqp://guest:pw@host:notaport/")
    assert bad_url.returncode == 2 and "bad broker URL" in bad_url.stderr
