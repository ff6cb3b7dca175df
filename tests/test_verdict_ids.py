"""Each branch of the "who closed it" rules has an id on the Incident, so a test can say
which one fired (recorded runs with real brokers, tests/fixtures/*)."""

from __future__ import annotations

import pytest

from celery_doctor.model import ClosedBy
from celery_doctor.pipeline import analyse_logs
from conftest import FIXTURES


@pytest.mark.parametrize(("fixture", "files", "verdict", "closed_by"), [
    ("rabbitmq-idle-cut", ("worker.log", "broker.log", "proxy.jsonl"), "V01", ClosedBy.NETWORK),
    # without the proxy's ground truth: the reset on the client and the broker's "client closed" coincide
    ("rabbitmq-idle-cut", ("worker.log", "broker.log"), "V09", ClosedBy.NETWORK),
    ("rabbitmq-blackhole", ("worker.log", "broker.log"), "V07", ClosedBy.NETWORK),
    ("rabbitmq-auth-failure", ("worker.log", "broker.log"), "V02", ClosedBy.BROKER),
    ("rabbitmq-broker-restart", ("worker.log", "broker.log"), "V03", ClosedBy.BROKER),
    ("rabbitmq-long-task-heartbeat", ("worker.log", "broker.log"), "V08", ClosedBy.BROKER),
    ("redis-server-timeout", ("worker.log", "broker.log"), "V04", ClosedBy.BROKER),
])
def test_the_branch_that_decided_is_named(fixture: str, files: tuple[str, ...], verdict: str,
                                          closed_by: ClosedBy) -> None:
    paths = [str(FIXTURES / fixture / f) for f in files if (FIXTURES / fixture / f).exists()]
    assert len(paths) == len(files), f"fixture {fixture} lost a file"
    incidents = analyse_logs(paths).incidents
    assert incidents
    assert {i.verdict_id for i in incidents} == {verdict}
    assert {i.closed_by for i in incidents} == {closed_by}
