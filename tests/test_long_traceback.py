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


def test_a_long_traceback_in_a_big_log_gives_its_exception(tmp_path: Path) -> None:
    # past the size read record by record (the scan path): Celery 4's loss line names no exception,
    # the traceback's last line does, 100+ lines below it
    frames = "".join(f'  File "/usr/lib/python3.8/site-packages/kombu/x{n}.py", line {n}, in f\n    f()\n'
                     for n in range(80))
    record = ("[2026-12-01 10:00:{s:02d},000: WARNING/MainProcess] consumer: Connection to broker lost. "
              "Trying to re-establish the connection...\nTraceback (most recent call last):\n" + frames
              + "ConnectionResetError: [Errno 104] Connection reset by peer\n")
    filler = "[2026-12-01 10:00:{s:02d},500: INFO/MainProcess] Task app.t[1] succeeded in 0.01s: None\n"
    with (tmp_path / "worker.log").open("w") as out:
        for i in range(12000):  # ~1 MB: read by the scanner, not record by record
            out.write(filler.format(s=i % 60))
        out.write(record.format(s=30))
        for _ in range(100):
            out.write(filler.format(s=31))
    report = analyse_logs([str(tmp_path / "worker.log")])
    lost = [e for e in report.events if e.kind.value == "connection_lost"]
    assert len(lost) == 1
    assert lost[0].error is not None and "reset by peer" in lost[0].error
    assert lost[0].line == 12001
