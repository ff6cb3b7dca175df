"""`logs` on real recorded incidents: the verdict must match what the recorder really did.

Each fixture's truth.json was written by scripts/record_incident.py from its own actions
(never from an analysis), so these tests compare the engine with the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_doctor.model import Category, Kind
from celery_doctor.pipeline import analyse_logs
from conftest import FIXTURES

RECORDINGS = sorted(p.parent for p in FIXTURES.glob("*/truth.json"))


def _truth(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


@pytest.mark.parametrize("folder", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_worker_and_broker_logs_give_the_recorded_verdict(folder: Path) -> None:
    expected = _truth(folder)["expected"]
    report = analyse_logs([str(folder / "worker.log"), str(folder / "broker.log")])
    assert report.findings, "every run ends with at least one finding (or no_incident)"
    assert report.findings[0].category == Category(expected["category"])
    if expected["closed_by"] is None:
        assert report.incidents == []
    else:
        assert report.incidents, "a recorded failure must produce incidents"
        assert {i.closed_by.value for i in report.incidents} == {expected["closed_by"]}
        assert {i.phase.value for i in report.incidents} == {expected["phase"]}


@pytest.mark.parametrize("folder", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_cited_evidence_lines_are_the_real_lines(folder: Path) -> None:
    report = analyse_logs([str(folder / "worker.log"), str(folder / "broker.log")])
    for finding in report.findings:
        for ev in finding.evidence:
            lines = Path(ev.source).read_text(encoding="utf-8", errors="replace").splitlines()
            assert lines[ev.line - 1] == ev.text.splitlines()[0], (ev.source, ev.line)


def test_idle_cut_recurs_at_the_middlebox_timeout() -> None:
    folder = FIXTURES / "rabbitmq-idle-cut"
    fault_idle_s = float(_truth(folder)["fault"].split(":")[1])
    report = analyse_logs([str(folder / "worker.log"), str(folder / "broker.log")])
    assert len(report.incidents) >= 3
    for incident in report.incidents:
        assert incident.idle_before_s == pytest.approx(fault_idle_s, abs=1.0)
        assert {e.side.value for e in incident.events} == {"client", "broker"}
        assert incident.period_s == pytest.approx(fault_idle_s, abs=1.0)
    top = report.findings[0]
    assert top.facts["idle_timeout_s"] == pytest.approx(fault_idle_s, abs=1.0)
    assert "broker_heartbeat" in (top.fix.snippet if top.fix and top.fix.snippet else "")


def test_long_task_is_seen_running_when_the_broker_closed() -> None:
    folder = FIXTURES / "rabbitmq-long-task-heartbeat"
    report = analyse_logs([str(folder / "worker.log"), str(folder / "broker.log")])
    first = report.incidents[0]
    kinds = [e.kind for e in first.events]
    # the broker closes first; the worker notices only when the task returns
    assert kinds.index(Kind.HEARTBEAT_MISSED_CLIENT) < kinds.index(Kind.CONNECTION_LOST)


def test_proxy_log_adds_ground_truth_without_changing_the_verdict() -> None:
    folder = FIXTURES / "rabbitmq-idle-cut"
    report = analyse_logs([str(folder / n) for n in ("worker.log", "broker.log", "proxy.jsonl")])
    assert report.findings[0].category == Category.NETWORK_IDLE_TIMEOUT
    assert any(e.kind == Kind.PROXY_CUT for i in report.incidents for e in i.events)
