"""What the 5xx blind batch (tests/fixtures/threads/5*) showed missing: a heartbeat verdict that
claimed "no task was running" from the broker's log alone, a green pool known only from traceback
frames, a stale-pooled-producer reading that rested on an idleness it could not see, and "no
connection failure" said of a traceback cut inside the connection code."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_doctor.ingest import read_logs
from celery_doctor.ingest.frames import cut_connection_frame
from celery_doctor.model import Category, Finding, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES

THREADS = FIXTURES / "threads"
RULES = FIXTURES / "rules"


def _logs(prefix: str) -> list[str]:
    folder = next(THREADS.glob(f"{prefix}-*"))
    return sorted(str(p) for p in (folder / "logs").iterdir())


def _rule(report_findings: list[Finding], rule_id: str) -> Finding:
    return next(f for f in report_findings if f.rule_id == rule_id)


@pytest.mark.parametrize("prefix", ["501", "503", "506", "521"])
def test_missed_heartbeats_seen_only_by_the_broker_are_an_even_bet(prefix: str) -> None:
    # RabbitMQ's log shows no tasks: an idle connection that sends nothing and a long task holding
    # the sending thread read the same from it (521 has a client paste, but without times)
    findings = diagnose(DiagnoseOptions(logs=_logs(prefix))).findings
    top = next(f for f in findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L03" and top.category == Category.HEARTBEAT_MISCONFIG
    assert top.confidence <= 0.5
    assert "only the broker's log covers that moment" in top.explanation
    assert "missed heartbeats from client" in "\n".join(e.text for e in top.evidence)


def test_a_green_pool_known_from_its_frames_keeps_the_not_sending_reading() -> None:
    # the worker paste is only a gevent pidbox traceback (no banner, no event of its own): its frames
    # name the pool whose pidbox loop sends no heartbeats, so the broker's close is read with it
    findings = diagnose(DiagnoseOptions(logs=[str(RULES / "heartbeat-green-frames")])).findings
    top = next(f for f in findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L03" and top.category == Category.HEARTBEAT_MISCONFIG
    assert top.confidence >= 0.7
    assert "while no task was running" in top.explanation


@pytest.mark.parametrize(("frame", "pool"), [
    ('  File "/usr/local/lib/python3.5/site-packages/gevent/hub.py", line 846, in switch', "gevent"),
    ('  File "src/gevent/greenlet.py", line 766, in gevent._greenlet.Greenlet.run', "gevent"),
    ('  File "../lib/python2.7/site-packages/eventlet/hubs/poll.py", line 115, in wait', "eventlet"),
])
def test_traceback_frames_name_a_green_pool_without_a_banner(tmp_path: Path, frame: str, pool: str) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text("[2019-04-24 11:25:29,241: WARNING/MainProcess] Traceback (most recent call last):\n"
                     f"{frame}\n    listener.cb(fileno)\n")
    source = read_logs([str(paste)]).sources[0]
    assert source.meta["pool"] == pool and source.meta["pool_from"] == "traceback frames"


def test_the_banner_pool_wins_over_frames(tmp_path: Path) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text(" -------------- celery@host v5.3.6 (emerald-rush)\n"
                     "- ** ---------- .> concurrency: 4 (prefork)\n"
                     "[2024-01-01 10:00:00,000: WARNING/MainProcess] Traceback (most recent call last):\n"
                     '  File "/usr/lib/python3/site-packages/gevent/hub.py", line 846, in switch\n')
    assert read_logs([str(paste)]).sources[0].meta["pool"] == "prefork"


def test_pool_resizes_are_catalogued(tmp_path: Path) -> None:
    # celery/worker/autoscale.py (_grow/_shrink) and billiard/process.py (_bootstrap), at INFO
    log = tmp_path / "worker.log"
    log.write_text("[2019-01-10 17:02:19,757: INFO/MainProcess] Scaling up 1 processes.\n"
                   "[2019-01-10 17:12:19,757: INFO/MainProcess] Scaling down 2 processes.\n"
                   "[2012-01-27 12:29:01,399: INFO/PoolWorker-1] child process calling self.run()\n"
                   "[2017-10-10 12:00:00,001: INFO/ForkPoolWorker-3] child process 9105 calling self.run()\n"
                   "[2011-10-03 18:53:04,622: INFO/PoolWorker-92] process exiting with exitcode 0\n")
    events = read_logs([str(log)]).events
    assert [e.signature for e in events] == ["celery.autoscale.resize"] * 2 + ["billiard.process.start"] * 2 + [
        "billiard.process.exit"]


def test_a_reset_pidbox_reply_right_after_the_autoscaler_forked_is_not_called_a_stale_pool() -> None:
    findings = diagnose(DiagnoseOptions(logs=_logs("516"))).findings
    stale = _rule(findings, "CD-L27")
    assert stale.confidence <= 0.5 and stale.facts["pool_resized"]
    assert "Scaling up 1 processes." in stale.explanation


def test_an_undated_reset_pidbox_reply_cannot_show_the_idle_it_rests_on() -> None:
    findings = diagnose(DiagnoseOptions(logs=_logs("515"))).findings
    assert all(f.confidence <= 0.5 for f in findings if f.role == Role.CAUSE)
    stale = _rule(findings, "CD-L27")
    assert stale.facts["undated"] and "carry no times" in stale.explanation


def test_a_dated_reset_pidbox_reply_after_idle_keeps_the_stale_pool_reading() -> None:
    findings = diagnose(DiagnoseOptions(logs=[str(RULES / "stale-producer-pidbox")])).findings
    stale = _rule(findings, "CD-L27")
    assert stale.confidence == pytest.approx(0.6) and not stale.facts["pool_resized"] and not stale.facts["undated"]


@pytest.mark.parametrize("prefix", ["510", "512"])
def test_a_traceback_cut_inside_the_connection_code_is_a_failure_not_no_incident(prefix: str) -> None:
    findings = diagnose(DiagnoseOptions(logs=_logs(prefix))).findings
    assert not any(f.category == Category.NO_INCIDENT for f in findings)
    top = findings[0]
    assert top.rule_id == "CD-L77" and top.category == Category.UNKNOWN and top.confidence == pytest.approx(0.3)
    assert any(("kombu/" in e.text or "amqp/" in e.text) and e.text.startswith('File "') for e in top.evidence)


CUT = ('Traceback (most recent call last):\n'
       '  File "/usr/lib/python3/site-packages/celery/worker/consumer/consumer.py", line 318, in start\n'
       '    blueprint.start(self)\n'
       '  File "{path}", line 42, in {func}\n'
       '    {code}\n')


@pytest.mark.parametrize(("path", "func", "code"), [
    ("/usr/lib/python3/site-packages/kombu/connection.py", "ensure_connection", "return retry_over_time("),
    ("/usr/lib/python3/site-packages/amqp/transport.py", "_read", "s = recv(n - len(rbuf))"),
    ("/usr/lib/python3/site-packages/redis/connection.py", "read_response", "response = self._parser.read_response()"),
])
def test_connection_frames_without_an_exception_line_are_a_cut_failure(path: str, func: str, code: str) -> None:
    text = CUT.format(path=path, func=func, code=code)
    cut = cut_connection_frame(text)
    assert cut is not None and cut[0] == 4 and path in cut[1]
    # the same traceback ending on its exception is read by the catalogue, or is no connection error
    assert cut_connection_frame(text + "OSError: Socket closed\n") is None
    assert cut_connection_frame(text + "amqp.exceptions.AccessRefused: (0, 0): (403) ACCESS_REFUSED\n") is None


def test_frames_outside_the_connection_code_are_not_a_connection_failure() -> None:
    text = CUT.format(path="/srv/app/tasks.py", func="run", code="compute()")
    assert cut_connection_frame(text) is None
