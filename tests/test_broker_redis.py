"""The Redis probe against the real local server (and local sockets that misbehave)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis

from celery_doctor.broker import BadURLError, ProbeOptions, UnreachableError, probe_broker
from celery_doctor.model import Category, Severity
from celery_doctor.rules.broker_rules import broker_findings

pytestmark = pytest.mark.broker

OPTS = ProbeOptions(timeout=5)
# tests holding the exclusive lock cannot also take the shared one the redis_url fixture holds
URL = "redis://127.0.0.1:6379/0"


def _admin() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5, socket_connect_timeout=5)


def _categories(facts) -> set[Category]:  # type: ignore[no-untyped-def]
    return {f.category for f in broker_findings(facts)}


@pytest.fixture
def silent_listener() -> Iterator[int]:
    server = socket.socket()
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


def test_healthy_redis_reports_info_config_and_clients(redis_url: str) -> None:
    facts = probe_broker(redis_url, OPTS)
    assert facts.reachable and facts.logged_in
    assert facts.version and facts.version.startswith("7.")
    f = facts.facts
    assert f["info"]["role"] == "master"
    assert f["config_allowed"] is True
    assert f["config"]["maxclients"] == f["info"]["maxclients"]
    assert f["config"]["client-output-buffer-limit"]["pubsub"]["hard_bytes"] >= 0
    assert f["clients"]["count"] >= 0


def test_server_timeout_and_keepalive_off_are_found(broker_lock_exclusive: None) -> None:
    admin = _admin()
    saved = {k: admin.config_get(k)[k] for k in ("timeout", "tcp-keepalive")}
    try:
        admin.config_set("timeout", 120)
        admin.config_set("tcp-keepalive", 0)
        facts = probe_broker(URL, OPTS)
    finally:
        for key, value in saved.items():
            admin.config_set(key, value)
        admin.close()
    assert {k: _admin().config_get(k)[k] for k in saved} == saved
    assert facts.facts["config"]["timeout"] == 120
    findings = broker_findings(facts)
    timeout = next(f for f in findings if f.category == Category.REDIS_SERVER_TIMEOUT)
    assert timeout.severity == Severity.HIGH and "120" in timeout.title
    assert "health_check_interval" in (timeout.fix.snippet if timeout.fix else "")
    assert Category.NETWORK_IDLE_TIMEOUT in {f.category for f in findings}


def test_maxclients_close_to_use(broker_lock_exclusive: None) -> None:
    admin = _admin()
    saved = admin.config_get("maxclients")["maxclients"]
    extra = [_admin() for _ in range(10)]
    for client in extra:
        client.ping()
    try:
        connected = int(admin.info("clients")["connected_clients"])
        # room for the probe's own connection: nobody is refused, rejected_connections stays 0
        admin.config_set("maxclients", connected + 2)
        facts = probe_broker(URL, OPTS)
    finally:
        admin.config_set("maxclients", saved)
        for client in extra:
            client.close()
    assert admin.config_get("maxclients")["maxclients"] == saved
    admin.close()
    pool = [f for f in broker_findings(facts) if f.category == Category.POOL_EXHAUSTION_OR_MISUSE]
    assert pool and "maxclients" in pool[0].title


def test_wrong_password_and_restricted_user(broker_lock_exclusive: None) -> None:
    user, password, secret = f"cd-test-{os.getpid()}", "cd-right-pw-1", "cd-Wrong-pw-2"
    limited = f"cd-limited-{os.getpid()}"
    admin = _admin()
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      commands=["+@all"])
    admin.acl_setuser(limited, enabled=True, passwords=[f"+{password}"], keys=["*"],
                      commands=["-@all", "+ping", "+client|setname"])
    try:
        wrong = probe_broker(f"redis://{user}:{secret}@127.0.0.1:6379/0", OPTS)
        restricted = probe_broker(f"redis://{limited}:{password}@127.0.0.1:6379/0", OPTS)
    finally:
        admin.acl_deluser(user, limited)
        admin.close()
    assert wrong.logged_in is False and wrong.facts["login"]["reason"] == "wrong_password"
    finding = broker_findings(wrong)[0]
    assert finding.category == Category.AUTH_OR_PERMISSIONS
    assert secret not in repr(wrong) and secret not in repr(finding)
    # CONFIG and INFO denied: said so, and the probe goes on
    assert restricted.logged_in is True
    assert restricted.facts["config_allowed"] is False
    assert any("CONFIG GET not allowed" in n for n in restricted.notes)
    assert any("INFO not allowed" in n for n in restricted.notes)
    assert password not in repr(restricted)


def test_nothing_listening_and_silent_listener(silent_listener: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"redis://127.0.0.1:{free}/0", OPTS)
    assert err.value.reason == "refused"
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"redis://:pw-x@127.0.0.1:{silent_listener}/0", ProbeOptions(timeout=1))
    assert err.value.reason == "no_greeting"
    with pytest.raises(UnreachableError) as err:
        probe_broker(f"rediss://127.0.0.1:{silent_listener}/0", ProbeOptions(timeout=1))
    assert err.value.reason == "tls"


def test_bad_urls() -> None:
    for url in ("redis://127.0.0.1:6379/notadb", "redis://:pw@:6379/0", "redis://h:99999/0",
                "redis://h/0;sentinel://h2/0"):
        with pytest.raises(BadURLError):
            probe_broker(url, OPTS)


def test_cli_redis_exit_codes(redis_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "celery_doctor.cli", "broker", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    ok = run(redis_url, "--format", "json")
    assert ok.returncode in (0, 1)
    assert json.loads(ok.stdout)["data"]["broker"]["kind"] == "redis"
    text = run(redis_url)
    assert "Redis" in text.stdout and "timeout" in text.stdout
    bad = run("redis://127.0.0.1:6379/notadb")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def _refused_clients(count: int) -> int:
    """Open clients that Redis refuses (maxclients reached); returns how many were refused."""
    refused = 0
    for _ in range(count):
        client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2, socket_connect_timeout=2, retry=None)
        try:
            client.ping()
        except redis.ConnectionError:
            refused += 1
        finally:
            client.close()
    return refused


def test_rejections_since_start_are_history_and_rejections_now_are_a_fault(broker_lock_exclusive: None) -> None:
    """rejected_connections is a counter since start: sampled twice, refusals during the probe
    are HIGH, refusals hours ago (none while watching, clients far from the limit) are LOW."""
    admin = _admin()
    admin.ping()
    saved = admin.config_get("maxclients")["maxclients"]
    options = ProbeOptions(timeout=5, churn_interval=1.5)

    def refuse_now() -> None:
        # maxclients at the open connections: existing ones stay, new ones are refused (others'
        # clients come and go on the shared server: read the count right before each try)
        refused = 0
        try:
            for _ in range(5):
                admin.config_set("maxclients", int(admin.info("clients")["connected_clients"]))
                refused += _refused_clients(1)
                if refused >= 3:
                    break
        finally:
            admin.config_set("maxclients", saved)
        assert refused >= 3

    try:
        refuse_now()  # history: refused before the probe
        past = probe_broker(URL, options)
        refusing = threading.Timer(0.5, refuse_now)  # now: while the probe waits between its samples
        refusing.start()
        present = probe_broker(URL, options)
        refusing.join()
    finally:
        admin.config_set("maxclients", saved)
    assert admin.config_get("maxclients")["maxclients"] == saved
    admin.close()

    history = [f for f in broker_findings(past) if "rejected" in f.title]
    assert len(history) == 1 and history[0].severity == Severity.LOW, [f.title for f in history]
    # the title says the interval the probe measured (1.5 s asked; a loaded host overruns it a little)
    waited = past.facts["rejections"]["interval_s"]
    assert 1.4 <= waited < 2.5
    assert f"since it started, none during the {waited:g} s probe" in history[0].title
    assert past.facts["rejections"]["during_probe"] == 0

    now = [f for f in broker_findings(present) if "rejected" in f.title]
    assert present.facts["rejections"]["during_probe"] >= 3, present.facts["rejections"]
    assert len(now) == 1 and now[0].severity == Severity.HIGH and "during the" in now[0].title
