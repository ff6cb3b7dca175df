"""CD-L13: "no connection failure" is claimed only as strongly as the logs allow. An unreadable
worker log, no worker log at all, or a worker that never became ready keep it at 0.5 or below,
and every format says what could not be seen."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from celery_doctor.model import Category
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from celery_doctor.report import render
from conftest import FIXTURES, ROOT, start_worker

RULES = FIXTURES / "rules"


def _verdict(*paths: Path) -> tuple[float, str, list[str]]:
    report = diagnose(DiagnoseOptions(logs=[str(p) for p in paths]))
    top = report.findings[0]
    assert top.category == Category.NO_INCIDENT and top.rule_id == "CD-L13"
    return top.confidence, top.explanation, list(top.facts.get("not_seen", []))


@pytest.mark.parametrize(
    ("folder", "said"),
    [
        ("unreadable-worker-empty", "worker.log could not be read (empty)"),
        ("unreadable-worker-gz", "worker.log.gz was read only in part (compressed data ends early"),
        ("broker-log-only", "no worker log was read"),
        ("never-ready-logfile", "the worker started but never logged 'celery@... ready.'"),
        ("never-ready-console", "the worker started but never logged 'celery@... ready.'"),
    ],
)
def test_what_could_not_be_seen_caps_the_verdict(folder: str, said: str) -> None:
    confidence, explanation, not_seen = _verdict(RULES / folder)
    assert confidence <= 0.5
    assert said in explanation and any(said in item for item in not_seen)


def test_a_healthy_pair_keeps_its_confidence() -> None:
    confidence, _, not_seen = _verdict(*sorted((ROOT / "examples" / "healthy").glob("*.log")))
    assert confidence == pytest.approx(0.8) and not not_seen


def test_an_extra_unreadable_file_beside_a_read_worker_log() -> None:
    """The healthy recording's folder holds truth.json (not a log): named, and the verdict below 0.8."""
    confidence, explanation, _ = _verdict(FIXTURES / "rabbitmq-healthy")
    assert confidence == pytest.approx(0.7) and "truth.json could not be read" in explanation


def test_every_format_says_what_was_missing() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "unreadable-worker-empty")]))
    for fmt in ("text", "markdown", "json", "html"):
        out = render(report, fmt)
        assert "part of the picture is missing" in out, fmt
    assert report.summary["confidence"] <= 0.5


def test_a_report_given_as_a_log_is_not_an_unreadable_log(tmp_path: Path) -> None:
    for name in ("worker.log", "broker.log"):
        (tmp_path / name).write_text((ROOT / "examples" / "healthy" / name).read_text())
    (tmp_path / "report.txt").write_text((FIXTURES / "configs" / "reports" / "celery534_redis_report.txt").read_text())
    confidence, _, not_seen = _verdict(tmp_path)
    assert confidence == pytest.approx(0.8) and not not_seen


def test_live_worker_stuck_before_ready(tmp_path: Path, rabbitmq_url: str) -> None:
    """A real worker on the local RabbitMQ whose start-up step blocks: it connects, never logs ready."""
    (tmp_path / "stuckapp.py").write_text(
        "import time\nfrom celery import Celery, bootsteps\n"
        f"app = Celery('stuckapp', broker={rabbitmq_url!r})\n"
        f"app.conf.task_default_queue = 'cd-stuck-{uuid.uuid4().hex[:6]}'\n"
        "class Warmup(bootsteps.StartStopStep):\n"
        "    requires = {'celery.worker.consumer.tasks:Tasks'}\n"
        "    def start(self, c):\n        time.sleep(120)\n"
        "app.steps['consumer'].add(Warmup)\n"
    )
    log = tmp_path / "worker.log"
    proc = start_worker("stuckapp", tmp_path, log, "--without-heartbeat")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Connected to" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.5)
        time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert "Connected to" in log.read_text()
    confidence, explanation, _ = _verdict(log)
    assert confidence <= 0.5 and "never logged 'celery@... ready.'" in explanation
