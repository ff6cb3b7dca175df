"""Real recorded runs (tests/fixtures/recorded/, scripts/record_runs.py): a real Celery 3.1, 4.4 or
5.7 worker against a real broker with a real fault, diagnosed from its logs alone, with its config,
and with a misleading broker probe (a wrong password on the same kind of broker, probed for real).
The expected answer is the run's truth.json, written from the actions taken."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from celery_doctor.model import Finding
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES

RECORDED = FIXTURES / "recorded"
RUNS = sorted(p.parent.name for p in RECORDED.glob("*/truth.json"))
WRONG = {"amqp": "amqp://guest:WRONG@127.0.0.1:5672//", "redis": "redis://:WRONG@127.0.0.1:6379/0"}
# the first action that made the fault: a close the tool cites must come after it
FAULT_ACTIONS = (
    "nft_rule_added",
    "redis-cli shutdown nosave",
    "redis-cli replicaof 127.0.0.1 6397",
    "published",
    "broadcast_started",
    "publisher_started",
    "broker_down",
    "proxy_started",
)
CLOSE_WORDS = (
    "closing AMQP connection",
    "missed heartbeats",
    "Closing idle client",
    "scheduled to be closed",
    "Connection to broker lost",
    "Cannot connect",
    "User requested shutdown",
    "REPLICAOF",
    "UNBLOCKED",
    "READONLY",
)


def truth_of(run: str) -> dict[str, object]:
    return dict(json.loads((RECORDED / run / "truth.json").read_text()))


def options(run: str, mode: str) -> DiagnoseOptions:
    folder = RECORDED / run
    logs = [str(p) for p in sorted(folder.glob("*.log"))]  # never proxy.jsonl: a user does not have it
    if mode == "config":
        return DiagnoseOptions(logs=logs, config=str(folder / "celeryconfig.py"))
    if mode == "wrong-broker":
        return DiagnoseOptions(logs=logs, broker=WRONG["redis" if "redis" in run else "amqp"], timeout=3.0)
    return DiagnoseOptions(logs=logs)


def fault_at(truth: dict[str, object]) -> datetime:
    actions = truth["actions"]
    assert isinstance(actions, list)
    for a in actions:
        if a["action"] == "redis_started" and a.get("config"):
            return datetime.fromisoformat(a["ts"])  # a server limit set from the start is the fault
        if a["action"] in FAULT_ACTIONS and (a["action"] != "proxy_started" or a.get("fault")):
            return datetime.fromisoformat(a["ts"])
    return datetime.fromisoformat(actions[0]["ts"])


def top(findings: list[Finding]) -> Finding:
    assert findings, "no finding at all"
    return findings[0]


@pytest.mark.parametrize("mode", ["logs", "config", "wrong-broker"])
@pytest.mark.parametrize("run", RUNS)
def test_recorded_run_diagnoses_to_its_truth(run: str, mode: str) -> None:
    truth = truth_of(run)
    expected = truth["expected"]
    assert isinstance(expected, dict)
    report = diagnose(options(run, mode))
    lead = top(report.findings)
    if expected.get("logs_show_cause") is False:
        # neither log names the cause: the tool must not claim one with confidence
        assert lead.category.value == expected["category"] or lead.confidence <= 0.5, (lead.category, lead.confidence)
        return
    right = {expected["category"], *expected.get("accept", [])}
    assert lead.category.value in right, (lead.category, lead.confidence, lead.title)
    assert lead.confidence >= 0.5
    # the deciding lines are cited, and they are the run's: closes after the fault began, not
    # another client's close on the shared broker before it
    assert lead.evidence, "no evidence cited"
    began = fault_at(truth) - timedelta(seconds=1)
    closes = [e for e in lead.evidence if e.ts is not None and any(w in e.text for w in CLOSE_WORDS)]
    assert closes, [e.text for e in lead.evidence]
    for e in closes:
        assert e.ts is not None and e.ts >= began, (e.source, e.line, e.text)


def test_a_wrong_probe_password_is_about_the_probe_not_the_workers() -> None:
    """The worker logs show logins that worked: the probe's refused login is not the answer."""
    report = diagnose(options("c57-rabbit-idle-silent-hb", "wrong-broker"))
    assert top(report.findings).category.value == "network_idle_timeout"
    probe = [f for f in report.findings if f.rule_id == "CD-X01"]
    assert probe and probe[0] is not report.findings[0]


def test_a_silent_idle_cut_proposes_a_heartbeat_under_the_heartbeat_gap() -> None:
    """broker_heartbeat = 10 did not keep the flow alive: the fix proposes less than half of it."""
    lead = top(diagnose(options("c57-rabbit-idle-silent-hb", "logs")).findings)
    assert lead.rule_id == "CD-L60"
    assert lead.fix is not None and lead.fix.snippet is not None
    value = int(lead.fix.snippet.split("broker_heartbeat = ")[1].split()[0])
    assert value < 5


def test_the_worker_connection_cut_cites_the_workers_own_connection() -> None:
    """On a shared broker the reset is tied to the worker by the accept at its 'Connected to'."""
    lead = top(diagnose(options("c44-rabbit-nft-reject", "logs")).findings)
    assert lead.rule_id == "CD-L61"
    texts = [e.text for e in lead.evidence]
    assert any("Connected to amqp://" in t for t in texts)
    assert any("accepting AMQP connection" in t for t in texts)
    port = next(t.split("(127.0.0.1:")[1].split(" ")[0] for t in texts if "accepting AMQP connection" in t)
    assert any("closing AMQP connection" in t and f"127.0.0.1:{port}" in t for t in texts)


def test_every_recorded_run_keeps_what_the_readme_promises() -> None:
    readme = (RECORDED / "README.md").read_text()
    for run in RUNS:
        folder = RECORDED / run
        assert run in readme, run
        assert (folder / "broker.log").exists() and any(folder.glob("*.log")), run
        truth = truth_of(run)
        assert truth["actions"] and truth["expected"], run
        assert Path(folder / "celeryconfig.py").exists(), run


def test_a_31_config_is_judged_against_the_31_the_logs_show() -> None:
    """No --to: a Celery 3.1 worker's BROKER_URL is the right name, not an 'old' one."""
    report = diagnose(options("c31-redis-demoted-master", "config"))
    assert top(report.findings).category.value == "broker_restart_or_failover"
    assert not [f for f in report.findings if "old name" in f.title], [f.title for f in report.findings]
    assert any("judged against Celery 3.1" in w for w in report.warnings)
