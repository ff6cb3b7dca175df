"""Shared fixtures. Tests that need a broker FAIL (never skip) when it is not there.

Tests that change global broker state (stop_app, watermarks, CONFIG SET, users, vhosts)
take the exclusive broker lock; tests that merely use a broker take it shared, so a
parallel run (or a developer's concurrent recording) never sees a half-restarted broker.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = ROOT.parent / "shared" / "cases"
BROKER_LOCK = Path("/tmp/celery-doctor-broker.lock")
# The console script installed beside the interpreter running the tests: never whatever
# `celery-doctor` happens to be first on PATH (a fresh machine has none there).
CONSOLE_SCRIPT = Path(sys.executable).parent / "celery-doctor"

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _lock(mode: int) -> Iterator[None]:
    with BROKER_LOCK.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def broker_lock_shared() -> Iterator[None]:
    yield from _lock(fcntl.LOCK_SH)


@pytest.fixture
def broker_lock_exclusive() -> Iterator[None]:
    yield from _lock(fcntl.LOCK_EX)


@pytest.fixture
def rabbitmq_url(broker_lock_shared: None) -> str:
    if not _reachable("127.0.0.1", 5672):
        pytest.fail("RabbitMQ is not listening on 127.0.0.1:5672 (start it: rabbitmq-server -detached)")
    return RABBITMQ_URL


@pytest.fixture
def redis_url(broker_lock_shared: None) -> str:
    if not _reachable("127.0.0.1", 6379):
        pytest.fail("Redis is not listening on 127.0.0.1:6379")
    return REDIS_URL


def console_script() -> str:
    """The installed console script; a missing one is a packaging failure, not a skip."""
    if not CONSOLE_SCRIPT.exists():
        pytest.fail(f"{CONSOLE_SCRIPT} is missing: pip install -e '.[test]' into this interpreter")
    return str(CONSOLE_SCRIPT)


CELERY = str(Path(sys.executable).with_name("celery"))


def children_of(pid: int) -> set[int]:
    """The pids of ``pid``'s live children, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_worker(app: str, cwd: Path, log: Path, *options: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A real Celery worker of the app module in ``cwd`` (solo pool, its own session so a test can
    kill it with its children), logging to ``log``; ``options`` are more worker options."""
    return subprocess.Popen(
        [CELERY, "-A", app, "worker", "-P", "solo", "-l", "info", "--without-gossip", "--without-mingle",
         *options, f"--logfile={log}"],
        cwd=cwd, env=env if env is not None else {**os.environ, "PYTHONPATH": str(cwd)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
