"""forked.share: a forked child computes every other task; the answer never depends on it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from celery_doctor import forked


def test_the_results_are_those_of_the_tasks_in_order() -> None:
    tasks = [lambda k=k: (k, os.getpid()) for k in range(7)]
    results = forked.share(tasks)
    assert [k for k, _ in results] == list(range(7))
    pids = {pid for _, pid in results}
    # the odd ones ran in one other process (this machine has two cores: see .ci/run)
    assert forked.cores() >= 2
    assert {pid for k, pid in results if k % 2 == 0} == {os.getpid()}
    assert len(pids) == 2


def test_a_child_that_fails_or_dies_costs_time_not_the_answer() -> None:
    parent = os.getpid()

    def fails_in_the_child() -> str:
        if os.getpid() != parent:
            raise RuntimeError("only in the child")
        return "here"

    def dies_in_the_child() -> str:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return "here too"

    assert forked.share([lambda: 0, fails_in_the_child]) == [0, "here"]
    assert forked.share([lambda: 0, dies_in_the_child, lambda: 2]) == [0, "here too", 2]
    # an answer that does not pickle: computed here as well
    assert forked.share([lambda: 0, lambda: (lambda: None).__class__])[1] is type(lambda: None)


def test_an_error_here_stops_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "child-finished"

    def slow() -> None:
        time.sleep(2)
        marker.write_text("done")

    def broken() -> None:
        raise ValueError("a task of the parent's")

    with pytest.raises(ValueError):
        forked.share([broken, slow])
    time.sleep(2.5)
    assert not marker.exists()  # killed, not left to run on: no orphan


@pytest.mark.parametrize("case", ["rabbitmq-idle-cut", "rabbitmq-broker-restart", "redis-server-timeout"])
def test_shared_rules_and_report_give_the_same_report(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules and the JSON timeline computed half in a child: the same report, byte for byte,
    on recorded logs of real runs (tests/fixtures/README.md)."""
    from celery_doctor.pipeline import analyse_logs
    from celery_doctor.report import json as json_report
    from celery_doctor.report import render
    from celery_doctor.rules import logs_rules
    from conftest import FIXTURES

    paths = sorted(str(p) for p in (FIXTURES / case).glob("*.log"))
    assert paths
    alone = render(analyse_logs(paths), "json")
    monkeypatch.setattr(logs_rules, "SHARED_FROM", 0)
    monkeypatch.setattr(json_report, "SHARED_FROM", 0)
    calls: list[int] = []
    real = forked.share

    def counted(tasks):  # type: ignore[no-untyped-def]
        calls.append(len(tasks))
        return real(tasks)

    monkeypatch.setattr(forked, "share", counted)
    shared = render(analyse_logs(paths), "json")
    assert len(calls) == 2  # the rules, and the report's timeline
    assert shared == alone
    assert '"findings": [' in shared
