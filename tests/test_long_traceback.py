"""A long chained traceback stays one record: Celery 5 on Python 3.11 logs 100+ lines for one
startup failure (redis-py's error, then kombu's "direct cause"), and a record cut at a fixed line
count used to leave its tail as a stray undated event (with a kind of its own)."""

from __future__ import annotations

from pathlib import Path

from celery_doctor.pipeline import analyse_logs
from conftest import FIXTURES

RECORDED = FIXTURES / "rules" / "maxclients-recorded" / "worker.log"


def test_recorded_chained_traceback_is_one_event_with_both_exceptions() -> None:
    assert len(RECORDED.read_text().splitlines()) > 100
    report = analyse_logs([str(RECORDED)])
    assert report.undated == []
    lost = [e for e in report.events if e.line == 3]
    assert len(lost) == 1
    assert lost[0].detail["exceptions"] == ["redis.exceptions.ConnectionError: max number of clients reached",
                                            "kombu.exceptions.OperationalError: max number of clients reached"]
    assert not report.warnings


def test_a_pasted_huge_traceback_keeps_its_end_in_bounded_memory(tmp_path: Path) -> None:
    frames = "".join(f'  File "/app/deep.py", line {n}, in recurse\n    return recurse(n - 1)\n' for n in range(2000))
    log = tmp_path / "worker.log"
    log.write_text("[2026-12-01 10:00:00,000: ERROR/MainProcess] consumer: Cannot connect to "
                   "amqp://guest:**@rabbit:5672//: timed out.\nTraceback (most recent call last):\n" + frames
                   + "RecursionError: maximum recursion depth exceeded\n"
                   "[2026-12-01 10:00:02,000: INFO/MainProcess] Connected to amqp://guest:**@rabbit:5672//\n")
    report = analyse_logs([str(log)])
    first = next(e for e in report.events if e.line == 1)
    assert first.text.endswith("RecursionError: maximum recursion depth exceeded")
    assert len(first.text.splitlines()) < 100
    assert report.undated == []
    assert any(e.line == 4004 for e in report.events)  # the next record keeps its own line number
