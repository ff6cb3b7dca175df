"""`celery report` and `celery inspect conf` output as settings and version evidence: read from
outputs the real Celery 5.7 prints here (a real worker on the local Redis answers inspect), and
from pastes in public issues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import billiard
import celery
import kombu
import pytest
import redis

from celery_doctor.model import Category
from celery_doctor.pipeline import check_config
from celery_doctor.settings.runtime_report import read_runtime, read_runtime_text

REPORTS = Path(__file__).parent / "fixtures" / "configs" / "reports"
CELERY = str(Path(sys.executable).with_name("celery"))

APP = '''from celery import Celery

app = Celery('reportapp', broker='{broker}', backend='redis://127.0.0.1:6379/3')
app.config_from_object({{'CELERYD_PREFETCH_MULTIPLIER': 1, 'CELERY_ACKS_LATE': True, 'BROKER_HEARTBEAT': 0,
                        'BROKER_TRANSPORT_OPTIONS': {{'visibility_timeout': 600, 'password': 'hunter2'}},
                        'CELERY_DEFAULT_QUEUE': '{queue}'}})
'''


@pytest.fixture
def app_dir(tmp_path: Path, redis_url: str) -> Path:
    queue = f"cd-report-{uuid.uuid4().hex[:8]}"
    (tmp_path / "reportapp.py").write_text(APP.format(broker="redis://127.0.0.1:6379/9", queue=queue))
    return tmp_path


def _celery(app_dir: Path, *args: str) -> str:
    proc = subprocess.run([CELERY, "-A", "reportapp", *args], cwd=app_dir, capture_output=True, text=True,
                          timeout=60, check=True, env={**os.environ, "PYTHONPATH": str(app_dir)})
    return proc.stdout


def test_celery_report_gives_versions_and_settings(app_dir: Path, tmp_path: Path) -> None:
    text = _celery(app_dir, "report")
    report = read_runtime_text(text, "report.txt")
    assert report.kind == "celery report"
    assert report.versions["celery"] == celery.__version__ and report.versions["kombu"] == kombu.__version__
    assert report.versions["billiard"] == billiard.__version__ and report.versions["redis"] == redis.__version__
    assert report.transport == "redis" and report.results == "redis://127.0.0.1:6379/3"
    assert report.settings["CELERYD_PREFETCH_MULTIPLIER"] == 1 and report.settings["BROKER_HEARTBEAT"] == 0
    # a dict value continues on the next lines; Celery censors the password itself
    assert report.settings["BROKER_TRANSPORT_OPTIONS"] == {"visibility_timeout": 600, "password": "********"}
    pasted = tmp_path / "report.txt"
    pasted.write_text(text)
    audit = check_config([str(pasted)])
    assert audit.summary["celery_running"] == celery.__version__ and audit.summary["from"] == celery.__version__
    statuses = {r["written"]: r["status"] for r in audit.data["config"]["settings"]}
    assert statuses["CELERYD_PREFETCH_MULTIPLIER"] == "old_name"
    assert audit.data["runtime"]["versions"]["kombu"] == kombu.__version__
    assert "hunter2" not in json.dumps(audit.data)


@pytest.fixture
def worker(app_dir: Path) -> Iterator[str]:
    node = f"cdreport{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen([CELERY, "-A", "reportapp", "worker", "-n", node, "--pool", "solo", "-l", "warning",
                             "--without-gossip", "--without-mingle"], cwd=app_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(app_dir)})
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            ping = subprocess.run([CELERY, "-A", "reportapp", "inspect", "ping", "-d", node, "-t", "2"],
                                  cwd=app_dir, capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "PYTHONPATH": str(app_dir)})
            if "pong" in ping.stdout:
                break
        else:
            pytest.fail("the worker did not answer ping within 40 s")
        yield node
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_inspect_conf_json_and_text(app_dir: Path, worker: str, tmp_path: Path) -> None:
    for args in (["--json"], []):
        text = _celery(app_dir, "inspect", "conf", "-d", worker, *args)
        report = read_runtime_text(text, "conf")
        assert report.kind == "inspect conf" and report.workers == [worker]
        # the worker answers with the names as configured (old ones here), passwords censored
        assert report.settings["CELERYD_PREFETCH_MULTIPLIER"] == 1 and report.settings["BROKER_HEARTBEAT"] == 0
        assert report.settings["BROKER_TRANSPORT_OPTIONS"]["password"] == "********"
        pasted = tmp_path / f"conf{len(args)}.txt"
        pasted.write_text(text)
        audit = check_config([str(pasted)])
        rows = {r["written"]: r for r in audit.data["config"]["settings"]}
        assert rows["BROKER_HEARTBEAT"]["status"] == "old_name" and rows["BROKER_HEARTBEAT"]["value"] == "0"
        # heartbeat 0 matters on AMQP only: kombu's Redis transport has no heartbeats
        assert not any(f.category is Category.HEARTBEAT_MISCONFIG for f in audit.findings)


def test_pasted_reports_from_issues() -> None:
    old = read_runtime(str(REPORTS / "celery3707_report.txt"))
    assert old.versions == {"celery": "4.0.2", "kombu": "4.0.2", "python": "3.5.2", "billiard": "3.5.0.2",
                            "amqp": "2.1.4"}
    assert old.transport == "amqp" and old.results == "disabled"
    audit = check_config([str(REPORTS / "celery3707_report.txt")])
    assert audit.summary["from"] == "4.0.2"
    assert not any(f.category is Category.HEARTBEAT_MISCONFIG for f in audit.findings)  # 4.0 already sends them
    django = read_runtime(str(REPORTS / "celery913_report.txt"))
    assert django.versions["celery"] == "3.0.5" and django.versions["redis"] == "2.6.0"
    assert django.settings == {"_wrapped": "<django.conf.Settings object at 0x100781710>"}
    audit = check_config([str(REPORTS / "celery913_report.txt")])
    assert any("lists no settings" in w for w in audit.warnings)
    assert any("older than the settings data" in w for w in audit.warnings)
