"""Rules speak the user's Celery version: a 3.1 worker gets 3.1 setting names in its fix."""

from __future__ import annotations

from pathlib import Path

from celery_doctor.model import Category
from celery_doctor.pipeline import analyse_logs
from conftest import FIXTURES

BANNER_31 = """\
 -------------- celery@billing-1 v3.1.25 (Cipater)
---- **** -----
--- * ***  * -- Linux-4.4.0-x86_64-with-Ubuntu-16.04-xenial
-- * - **** ---
- ** ---------- [config]
- ** ---------- .> app:         billing:0x7f0
- ** ---------- .> transport:   amqp://billing:**@mq.internal:5672/billing
- ** ---------- .> results:     amqp
- *** --- * --- .> concurrency: 8 (prefork)
"""


def test_a_31_worker_gets_its_fix_in_31_names(tmp_path: Path) -> None:
    recorded = FIXTURES / "rabbitmq-idle-cut"
    worker = tmp_path / "worker.log"
    worker.write_text(BANNER_31 + (recorded / "worker.log").read_text())
    report = analyse_logs([str(worker), str(recorded / "broker.log")])
    top = report.findings[0]
    assert report.sources[0].meta["celery_version"] == "3.1.25"
    assert report.sources[0].meta["pool"] == "prefork"
    assert top.category == Category.NETWORK_IDLE_TIMEOUT
    assert top.fix is not None and top.fix.snippet is not None
    assert "BROKER_HEARTBEAT = " in top.fix.snippet and "broker_heartbeat" not in top.fix.snippet
