"""`diagnose`: ranked causes from whatever evidence is given, and reports that keep secrets."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from celery_doctor.model import Category
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES, ROOT, console_script

EXAMPLES = ROOT / "examples"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "truth.json").exists()))
def test_examples_diagnose_to_their_recorded_cause(example: str) -> None:
    folder = EXAMPLES / example
    expected = json.loads((folder / "truth.json").read_text())["expected"]["category"]
    report = diagnose(DiagnoseOptions(logs=[str(folder / "*.log")]))
    assert report.findings[0].category == Category(expected)
    assert report.summary["top_cause"] == expected


def test_logs_alone_say_what_more_evidence_would_help() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(EXAMPLES / "idle-cut")]))  # a directory works too
    top = report.findings[0]
    assert top.category == Category.NETWORK_IDLE_TIMEOUT
    assert "--config" in top.explanation and "--broker" in top.explanation


def test_config_with_heartbeats_off_raises_the_idle_cut_and_is_cited(tmp_path: Path) -> None:
    config = tmp_path / "celeryconfig.py"
    config.write_text("broker_url = 'amqp://app:hunter2@mq.internal:5672//'\nbroker_heartbeat = 0\n")
    logs = [str(EXAMPLES / "idle-cut" / "worker.log"), str(EXAMPLES / "idle-cut" / "broker.log")]
    alone = diagnose(DiagnoseOptions(logs=logs)).findings[0]
    both = diagnose(DiagnoseOptions(logs=logs, config=str(config))).findings[0]
    assert both.category == Category.NETWORK_IDLE_TIMEOUT
    assert both.confidence > alone.confidence
    assert any(e.source == str(config) and e.line == 2 for e in both.evidence)


def test_config_alone_names_old_setting_names(tmp_path: Path) -> None:
    config = tmp_path / "celeryconfig.py"
    config.write_text("BROKER_URL = 'amqp://mq//'\nBROKER_HEARTBEAT = 30\nCELERYD_PREFETCH_MULTIPLIER = 1\n")
    report = diagnose(DiagnoseOptions(config=str(config), from_version="3.1", to_version="5.7"))
    assert any(f.category == Category.OLD_SETTING_NAMES_IGNORED for f in report.findings)
    assert any("--logs" in f.explanation for f in report.findings)


@pytest.mark.broker
def test_live_broker_probe_joins_the_diagnosis(rabbitmq_url: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(EXAMPLES / "healthy" / "*.log")], broker=rabbitmq_url))
    assert "broker" in report.data and report.data["broker"]["broker"]["reachable"] is True
    assert report.findings[0].category == Category.NO_INCIDENT


def test_unreachable_broker_is_evidence_not_a_crash() -> None:
    result = cli("diagnose", "--logs", str(EXAMPLES / "healthy" / "*.log"), "--broker", "amqp://u:pw@127.0.0.1:1//",
                 "--timeout", "2", "--format", "json")
    assert result.returncode in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    assert any("did not answer" in f["title"] for f in doc["findings"])


SECRETS = ("hunter2", "s3cr3t-token-value", "p@ssw0rdX")


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_no_secret_in_any_format(tmp_path: Path, fmt: str) -> None:
    worker = (FIXTURES / "rabbitmq-auth-failure" / "worker.log").read_text()
    leaky = worker.replace("amqp://guest:**@", "amqp://guest:hunter2@") + (
        "[2026-11-23 22:34:00,000: WARNING/MainProcess] consumer: Connection to broker lost. "
        "Trying to re-establish the connection... password=p@ssw0rdX token=s3cr3t-token-value\n"
        "ConnectionResetError: [Errno 104] Connection reset by peer redis://:hunter2@cache:6379/0\n")
    log = tmp_path / "worker.log"
    log.write_text(leaky)
    config = tmp_path / "celeryconfig.py"
    config.write_text("broker_url = 'amqp://app:hunter2@mq:5672//'\nbroker_password = 'p@ssw0rdX'\n")
    out = tmp_path / f"report.{fmt}"
    result = cli("diagnose", "--logs", str(log), "--config", str(config), "--format", fmt, "--output", str(out))
    assert result.returncode in (0, 1), result.stderr
    written = out.read_text()
    unwrapped = " ".join(written.replace("│", " ").split())  # the text renderer wraps evidence to the width
    assert "Connection to broker lost" in unwrapped or fmt == "html"
    for secret in SECRETS:
        assert secret not in written and secret not in result.stdout and secret not in result.stderr


def test_exit_status_follows_fail_on() -> None:
    logs = str(EXAMPLES / "idle-cut" / "*.log")
    assert cli("diagnose", "--logs", logs).returncode == 1
    assert cli("diagnose", "--logs", logs, "--fail-on", "critical").returncode == 0
    assert cli("diagnose", "--logs", str(EXAMPLES / "healthy" / "*.log")).returncode == 0


def test_wrapped_table_cells_do_not_leak_a_password() -> None:
    """Text tables wrap long values: a URL password split over two lines must still be masked."""
    result = cli("config", str(FIXTURES / "configs" / "celeryconfig_31.py"), "--to", "5.7")
    assert "s3cretpw" in (FIXTURES / "configs" / "celeryconfig_31.py").read_text()
    assert "s3cr" not in result.stdout and "etpw" not in result.stdout  # not even a wrapped fragment


def test_named_idle_timeout_confirms_or_contradicts_the_cut() -> None:
    logs = [str(EXAMPLES / "idle-cut" / "*.log")]
    truth = json.loads((EXAMPLES / "idle-cut" / "truth.json").read_text())
    injected_s = truth["fault"].split(":")[1]
    plain = diagnose(DiagnoseOptions(logs=logs)).findings[0].confidence
    matching = diagnose(DiagnoseOptions(logs=logs, idle_timeout=injected_s)).findings[0]
    other = diagnose(DiagnoseOptions(logs=logs, idle_timeout="aws-nlb")).findings[0]  # 350 s
    assert matching.confidence > plain > other.confidence
    assert "Against it" in other.explanation


def test_config_that_should_prevent_the_cut_is_shown_against_it(tmp_path: Path) -> None:
    config = tmp_path / "celeryconfig.py"
    config.write_text("broker_heartbeat = 4  # frames every ~2 s: an 8 s idle cut cannot happen\n")
    logs = [str(EXAMPLES / "idle-cut" / "*.log")]
    alone = diagnose(DiagnoseOptions(logs=logs)).findings[0]
    both = diagnose(DiagnoseOptions(logs=logs, config=str(config))).findings
    idle = next(f for f in both if f.category == Category.NETWORK_IDLE_TIMEOUT)
    assert idle.confidence < alone.confidence
    assert [(e.source, e.line) for e in idle.contradicting] == [(str(config), 1)]


def test_solo_pool_in_the_config_supports_the_long_task_cause(tmp_path: Path) -> None:
    config = tmp_path / "celeryconfig.py"
    config.write_text("worker_pool = 'solo'\n")
    logs = [str(EXAMPLES / "long-task-heartbeat" / "*.log")]
    alone = diagnose(DiagnoseOptions(logs=logs)).findings[0]
    both = diagnose(DiagnoseOptions(logs=logs, config=str(config))).findings[0]
    assert alone.category == both.category == Category.LONG_TASK_BLOCKS_HEARTBEAT
    assert both.confidence > alone.confidence
    assert any(e.source == str(config) and e.line == 1 for e in both.evidence)
