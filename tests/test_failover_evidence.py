"""Failover evidence (CD-L23) from the logs, and from the logs beside the config's broker_url.

Every fixture was recorded here (tests/fixtures/rules/README.md): Celery 5.7 workers with a
multi-host amqp:// broker_url against the local RabbitMQ (one dead port, two dead ports, a proxy
stopped under a connected worker), and with sentinel:// URLs against a Redis master, replica and
Sentinel started for the run. The live tests record the same shapes again."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from celery_doctor.model import Category, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from celery_doctor.report import render
from celery_doctor.rules.logs.failover import configured_nodes, node
from conftest import FIXTURES, free_port, start_worker

RULES = FIXTURES / "rules"


def _failover(folder: str, config: str | None = None) -> tuple[object, list]:
    logs = RULES / folder / "logs"
    report = diagnose(DiagnoseOptions(logs=[str(logs)], config=str(RULES / folder / config) if config else None))
    found = [f for f in report.findings if f.category == Category.BROKER_RESTART_OR_FAILOVER]
    return report, found


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@127.0.0.1:5679//", "127.0.0.1:5679"),
        ("amqp://guest:**@rabbitmq1//", "rabbitmq1:5672"),
        ("amqp://u:p@ss@word@mq.internal:5671/vh", "mq.internal:5671"),  # the userinfo ends at the last @
        ("sentinel://:**@10.0.0.10:26379/0", "10.0.0.10:26379"),
        ("redis://[::1]:6380/0", "::1:6380"),
    ],
)
def test_node_reads_urls_as_kombu_does(url: str, expected: str) -> None:
    assert node(url) == expected


def test_configured_nodes_of_every_form() -> None:
    assert configured_nodes("'amqp://a:1//;amqp://b:2//'") == ["a:1", "b:2"]
    assert configured_nodes("['amqp://a//', 'amqp://b//']") == ["a:5672", "b:5672"]
    assert configured_nodes("('sentinel://s1:26379/0', 'sentinel://s2:26379/0')") == ["s1:26379", "s2:26379"]
    assert configured_nodes("os.environ['BROKER_URL']") == []


def test_failover_that_worked_and_the_config_that_lists_both_nodes() -> None:
    _, alone = _failover("failover-amqp-worked")
    _, both = _failover("failover-amqp-worked", "celeryconfig.py")
    assert alone[0].rule_id == "CD-L23" and alone[0].role == Role.CAUSE
    assert alone[0].title == "Broker node 127.0.0.1:5679 was unreachable; the worker failed over to 127.0.0.1:5672"
    assert both[0].confidence > alone[0].confidence
    assert "The config agrees: broker_url lists 2 node" in both[0].explanation
    assert any(e.source.endswith("celeryconfig.py") and e.line == 1 for e in both[0].evidence)


def test_failover_the_one_node_config_does_not_explain() -> None:
    _, found = _failover("failover-amqp-worked", "celeryconfig_one_node.py")
    assert any(e.source.endswith("celeryconfig_one_node.py") for e in found[0].contradicting)
    assert "the file is not what the worker ran with" in found[0].explanation


def test_every_node_down_is_not_called_a_working_failover() -> None:
    report, alone = _failover("failover-amqp-all-down")
    assert alone[0].title.startswith("Every broker node the worker tried was unreachable")
    assert "failed over to" not in alone[0].title and alone[0].facts["failover"] == "all_failed"
    _, both = _failover("failover-amqp-all-down", "celeryconfig.py")
    assert both[0].title == "All 2 broker nodes in broker_url failed (127.0.0.1:5679, 127.0.0.1:5678)"
    assert both[0].confidence >= alone[0].confidence
    assert report.summary["top_cause"] == "broker_restart_or_failover"


def test_failover_after_a_loss_under_a_connected_worker() -> None:
    report, found = _failover("failover-amqp-after-loss", "celeryconfig.py")
    lead = next(f for f in found if "127.0.0.1:5690" in f.explanation)
    assert "failed over to 127.0.0.1:5672" in lead.explanation or "failed over to 127.0.0.1:5672" in lead.title
    assert report.findings[0].category == Category.BROKER_RESTART_OR_FAILOVER


def test_sentinel_switch_master_is_named() -> None:
    report = diagnose(
        DiagnoseOptions(
            logs=[str(RULES / "failover-sentinel-switch" / "logs")],
            config=str(RULES / "failover-sentinel-switch" / "celeryconfig.py"),
        )
    )
    assert report.findings[0].category == Category.BROKER_RESTART_OR_FAILOVER
    assert "Sentinel moved master cdmaster from 127.0.0.1:6395 to 127.0.0.1:6396" in report.findings[0].explanation
    for fmt in ("markdown", "json", "html"):
        assert "Sentinel moved master cdmaster from 127.0.0.1:6395 to 127.0.0.1:6396" in render(report, fmt), fmt
    assert any(
        e.source.endswith("sentinel.log") and "+switch-master" in e.text for f in report.findings for e in f.evidence
    )


def test_sentinel_that_monitors_another_master_name() -> None:
    folder = RULES / "failover-sentinel-no-master"
    without = diagnose(DiagnoseOptions(logs=[str(folder / "logs" / "worker.log")])).findings[0]
    assert without.title == "No Sentinel the worker asked knows a master named cd-master"
    report = diagnose(DiagnoseOptions(logs=[str(folder / "logs")], config=str(folder / "celeryconfig.py")))
    top = report.findings[0]
    assert top.title == "The Sentinels monitor cdmaster, not cd-master: master_name is wrong"
    assert top.confidence >= 0.9 and top.fix is not None and "'master_name': 'cdmaster'" in (top.fix.snippet or "")
    assert "broker_url lists 2 node" in top.explanation
    for fmt in ("markdown", "json", "html"):
        assert "master_name is wrong" in render(report, fmt)


def test_public_failover_threads_still_read_as_failover() -> None:
    for case in ("161-celery3921-rabbitmq-failover", "162-kombu813-sentinel-failover"):
        top = diagnose(DiagnoseOptions(logs=[str(FIXTURES / "threads" / case / "logs")])).findings[0]
        assert top.category == Category.BROKER_RESTART_OR_FAILOVER, case




def _worker_log(tmp_path: Path, broker: str, seconds: float, options: str = "") -> Path:
    (tmp_path / "foapp.py").write_text(
        "from celery import Celery\n"
        f"app = Celery('foapp', broker={broker!r})\n"
        "app.conf.broker_connection_retry_on_startup = True\n"
        "app.conf.broker_connection_max_retries = 3\n"
        f"app.conf.task_default_queue = 'cd-failover-{uuid.uuid4().hex[:6]}'\n" + options
    )
    log = tmp_path / "worker.log"
    proc = start_worker("foapp", tmp_path, log, "--without-heartbeat")
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        proc.wait(20)
    return log


def test_live_failover_to_the_local_rabbitmq(tmp_path: Path, rabbitmq_url: str) -> None:
    dead = free_port()
    url = f"amqp://guest:guest@127.0.0.1:{dead}//;{rabbitmq_url}"
    log = _worker_log(tmp_path, url, 8)
    config = tmp_path / "celeryconfig.py"
    config.write_text(f"broker_url = {url!r}\n")
    report = diagnose(DiagnoseOptions(logs=[str(log)], config=str(config)))
    top = report.findings[0]
    assert top.rule_id == "CD-L23" and top.facts["failover"] == "worked"
    assert f"127.0.0.1:{dead} was unreachable" in top.title and "The config agrees" in top.explanation


def test_live_sentinel_without_that_master(tmp_path: Path) -> None:
    master, sentinel = free_port(), free_port()
    procs = [
        subprocess.Popen(
            ["redis-server", "--port", str(master), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nsentinel monitor cdlive 127.0.0.1 {master} 1\nlogfile {tmp_path / 'sentinel.log'}\n"
    )
    procs.append(
        subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    )
    try:
        time.sleep(1.5)
        url = f"sentinel://127.0.0.1:{sentinel}/0;sentinel://127.0.0.1:{sentinel}/0"
        log = _worker_log(tmp_path, url, 25, "app.conf.broker_transport_options = {'master_name': 'cd-live'}\n")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    config = tmp_path / "celeryconfig.py"
    config.write_text(f"broker_url = {url!r}\nbroker_transport_options = {{'master_name': 'cd-live'}}\n")
    report = diagnose(DiagnoseOptions(logs=[str(log), str(tmp_path / "sentinel.log")], config=str(config)))
    top = report.findings[0]
    assert top.rule_id == "CD-L23" and top.title == "The Sentinels monitor cdlive, not cd-live: master_name is wrong"


def test_a_report_beside_a_failover_list_keeps_the_files_nodes(tmp_path: Path) -> None:
    """`celery report` prints only the first node; the file's list (list form here) is what failover is judged by."""
    report_txt = (FIXTURES / "configs" / "reports" / "celery57_amqp_failover_report.txt").read_text()
    report_txt = report_txt.replace("127.0.0.1:5672//'", "127.0.0.1:5679//'", 1)
    (tmp_path / "report.txt").write_text(report_txt)
    folder = RULES / "failover-amqp-worked"
    found = diagnose(
        DiagnoseOptions(
            logs=[str(folder / "logs")], config=str(folder / "celeryconfig.py"), reports=[str(tmp_path / "report.txt")]
        )
    ).findings[0]
    assert found.rule_id == "CD-L23" and "The config agrees: broker_url lists 2 node" in found.explanation
