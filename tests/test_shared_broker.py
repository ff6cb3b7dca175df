"""A broker's log is shared by every client of the broker: real recordings (tests/fixtures/shared-broker)
where other programs used the node while a worker failed. The worker's own failure must be the
answer, with its deciding lines, and other clients' failures must be said as theirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_doctor.model import Category, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES

SHARED = FIXTURES / "shared-broker"


def _diagnose(folder: str):
    paths = [str(SHARED / folder / "worker.log"), str(SHARED / folder / "broker.log")]
    return diagnose(DiagnoseOptions(logs=paths))


@pytest.mark.parametrize("folder", ["rabbitmq-forced-close", "rabbitmq-close-all"])
def test_operator_close_is_the_answer_with_its_reason(folder: str) -> None:
    report = _diagnose(folder)
    top = report.findings[0]
    assert top.category == Category.BROKER_RESTART_OR_FAILOVER
    assert top.rule_id == "CD-L04"
    assert "on purpose" in top.title
    # the reason the operator gave is quoted, as RabbitMQ logged it and the worker received it
    assert "Closed by the operator for maintenance" in top.explanation
    cited = [Path(e.source).name for e in top.evidence]
    assert "worker.log" in cited and "broker.log" in cited
    assert all("login refused" not in e.text for e in top.evidence)


@pytest.mark.parametrize("folder", ["rabbitmq-forced-close", "rabbitmq-close-all"])
def test_another_programs_refused_logins_are_said_as_theirs(folder: str) -> None:
    report = _diagnose(folder)
    auth = [f for f in report.findings if f.category == Category.AUTH_OR_PERMISSIONS]
    assert auth, "the refused logins are in the broker log and must be reported"
    assert all(f.role == Role.CONTEXT and f.facts.get("other_client") for f in auth)
    assert all("retries forever" not in f.explanation for f in auth)
    assert report.findings.index(auth[0]) > 0


def test_worker_that_was_refused_itself_keeps_the_auth_cause() -> None:
    # the recorded wrong-password run: the worker's own log shows the refusal, so it is the cause
    folder = FIXTURES / "rabbitmq-auth-failure"
    report = diagnose(DiagnoseOptions(logs=[str(folder / "worker.log"), str(folder / "broker.log")]))
    assert report.findings[0].category == Category.AUTH_OR_PERMISSIONS
    assert not report.findings[0].facts.get("other_client")


def test_consumer_timeout_cites_its_own_lines_not_a_neighbours_close() -> None:
    report = _diagnose("rabbitmq-consumer-timeout")
    top = report.findings[0]
    assert top.rule_id == "CD-L08"
    assert "5.0 s in effect" in top.title  # RabbitMQ's "Timeout used: 5000 ms"
    texts = [e.text for e in top.evidence]
    assert any("timed out waiting for delivery acknowledgement" in t for t in texts)
    assert any("PreconditionFailed" in t for t in texts)
    assert not any("client unexpectedly closed TCP connection" in t for t in texts)


def test_a_cut_is_not_joined_to_another_connections_earlier_close() -> None:
    # Celery 3.1 through the fault proxy (ground truth: proxy.jsonl): every cut the proxy made is one
    # incident holding the worker's loss and the broker's closes of the worker's own connections, said
    # to be the network's, even where another client's missed-heartbeat close came 1.9 s before
    folder = SHARED / "celery31-idle-cut"
    report = _diagnose("celery31-idle-cut")
    cuts = sorted({json.loads(line)["ts"][:19] for line in (folder / "proxy.jsonl").read_text().splitlines()
                   if json.loads(line)["kind"] == "proxy_cut"})
    worker = [i for i in report.incidents if any(Path(e.source).name == "worker.log" for e in i.events)]
    assert len(worker) == len(cuts) == 4
    for incident in worker:
        assert incident.closed_by.value == "network" and incident.verdict_id == "V09"
        assert not any("missed heartbeats" in e.text for e in incident.events)
    top = report.findings[0]
    assert top.rule_id == "CD-L01"


@pytest.mark.parametrize("with_broker_log", [False, True])
def test_worker_that_stopped_hearing_the_broker_is_a_path_loss(with_broker_log: bool) -> None:
    # Celery 4.4.7 through a 20 s blackhole (proxy.jsonl): the client's own "Too many heartbeats missed"
    # while idle is the broker's frames not arriving, not heartbeats the worker failed to send
    folder = SHARED / "celery44-blackhole"
    logs = [str(folder / "worker.log")] + ([str(folder / "broker.log")] if with_broker_log else [])
    report = diagnose(DiagnoseOptions(logs=logs))
    top = report.findings[0]
    assert top.category == Category.NETWORK_PATH_LOSS and top.rule_id == "CD-L02"
    assert not any(f.category == Category.HEARTBEAT_MISCONFIG and f.role == Role.CAUSE
                   and any("worker.log" in e.source for e in f.evidence) for f in report.findings)
