"""Incidents: one per connection, and context (a shutdown, a broker stop) is evidence only when it
really came first. Logs are written in the layouts the real recordings use."""
# ruff: noqa: E501  (log lines are kept verbatim)

from __future__ import annotations

from pathlib import Path

from celery_doctor.incidents import SAME_MOMENT_S
from celery_doctor.model import Phase
from celery_doctor.pipeline import analyse_logs

RABBIT = "2026-11-23 22:34:{s} [warning] <0.{pid}.0> closing AMQP connection <0.{pid}.0> ({port} -> 127.0.0.1:5672, vhost: '/', user: 'guest'):\n2026-11-23 22:34:{s} [warning] <0.{pid}.0> client unexpectedly closed TCP connection\n"
WORKER_HEAD = ("[2026-11-23 22:34:00,000: INFO/MainProcess] Connected to amqp://guest:**@127.0.0.1:5672//\n"
               "[2026-11-23 22:34:00,050: INFO/MainProcess] celery@vm ready.\n")
LOST = "[2026-11-23 22:34:{s}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... (ConnectionResetError(104, 'Connection reset by peer'))\n"
CONNECTED = "[2026-11-23 22:34:{s}: INFO/MainProcess] Connected to amqp://guest:**@127.0.0.1:5672//\n"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_closes_of_different_connections_seconds_apart_are_different_incidents(tmp_path: Path) -> None:
    broker = RABBIT.format(s="10.000000+00:00", pid=100, port="127.0.0.1:40001") + \
        RABBIT.format(s="13.000000+00:00", pid=200, port="127.0.0.1:40002")
    report = analyse_logs([_write(tmp_path, "rabbit.log", broker)])
    assert len(report.incidents) == 2
    assert [e.detail["conn"] for i in report.incidents for e in i.events] == ["<0.100.0>", "<0.200.0>"]


def test_one_cut_that_closes_several_connections_at_once_is_one_incident(tmp_path: Path) -> None:
    broker = RABBIT.format(s="10.000000+00:00", pid=100, port="127.0.0.1:40001") + \
        RABBIT.format(s="10.004000+00:00", pid=200, port="127.0.0.1:40002")
    report = analyse_logs([_write(tmp_path, "rabbit.log", broker)])
    assert len(report.incidents) == 1


def test_churn_of_short_lived_connections_one_second_apart_does_not_chain(tmp_path: Path) -> None:
    """20 publishers that each close 1.0 s after the previous one: a close joins an incident only
    within SAME_MOMENT_S of the cut's first close, so no incident spans more than that (chained
    from neighbour to neighbour, all 20 were one incident of 19 s)."""
    broker = "".join(RABBIT.format(s=f"{10 + n:02d}.000000+00:00", pid=100 + n, port=f"127.0.0.1:{40001 + n}")
                     for n in range(20))
    report = analyse_logs([_write(tmp_path, "rabbit.log", broker)])
    spans = [(max(e.at for e in i.events) - min(e.at for e in i.events)).total_seconds() for i in report.incidents]
    assert len(report.incidents) == 10 and max(spans) <= SAME_MOMENT_S


def test_a_client_that_connected_again_fails_anew(tmp_path: Path) -> None:
    worker = WORKER_HEAD + LOST.format(s="10,000") + CONNECTED.format(s="10,500") + LOST.format(s="13,000")
    report = analyse_logs([_write(tmp_path, "worker.log", worker)])
    assert len(report.incidents) == 2
    assert report.incidents[0].outage_s == 0.5


def test_a_shutdown_after_the_failure_does_not_make_it_a_shutdown(tmp_path: Path) -> None:
    shutdown = "[2026-11-23 22:34:{s}: WARNING/MainProcess] worker: Warm shutdown (MainProcess)\n"
    task = "[2026-11-23 22:34:09,000: INFO/MainProcess] Task proj.add[0f4c3a2e-1111-2222-3333-444455556666] received\n"
    after = analyse_logs([_write(tmp_path, "after.log", WORKER_HEAD + task + LOST.format(s="10,000") + shutdown.format(s="12,000"))])
    assert after.incidents[0].phase != Phase.SHUTDOWN
    before = analyse_logs([_write(tmp_path, "before.log", WORKER_HEAD + task + shutdown.format(s="09,500") + LOST.format(s="10,000"))])
    assert before.incidents[0].phase == Phase.SHUTDOWN


def test_a_header_less_shutdown_line_is_not_glued_to_the_task_line(tmp_path: Path) -> None:
    """Glued, 'Task ... received' + 'worker: Warm shutdown' became a dated shutdown before the loss;
    printed to stderr, its place among the log's records proves no order."""
    worker = (WORKER_HEAD + "[2026-11-23 22:34:09,000: INFO/MainProcess] Task proj.add[0f4c3a2e-1111-2222-3333-444455556666] received\n"
              + "worker: Warm shutdown (MainProcess)\n" + LOST.format(s="10,000"))
    report = analyse_logs([_write(tmp_path, "w.log", worker)])
    assert report.incidents[0].phase != Phase.SHUTDOWN
    assert [e.text for e in report.undated] == ["worker: Warm shutdown (MainProcess)"]


def test_worker_and_broker_pasted_together_get_their_own_clocks(tmp_path: Path) -> None:
    """One paste, worker lines in local time (UTC+2, no zone) above the broker's UTC lines: each
    side becomes its own source, the two-hour offset is found, and the cuts match up."""
    worker = ("[2026-11-23 23:32:29,886: INFO/MainProcess] Connected to amqp://app:**@mq:5672//\n"
              "[2026-11-23 23:32:38,921: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... (ConnectionResetError(104, 'Connection reset by peer'))\n"
              "[2026-11-23 23:32:39,950: INFO/MainProcess] Connected to amqp://app:**@mq:5672//\n"
              "[2026-11-23 23:40:38,921: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... (ConnectionResetError(104, 'Connection reset by peer'))\n")
    broker = ("2026-11-23 21:32:29.880000+00:00 [info] <0.100.0> accepting AMQP connection <0.100.0> (10.0.0.5:48150 -> 10.0.0.2:5672)\n"
              "2026-11-23 21:32:38.922290+00:00 [warning] <0.100.0> closing AMQP connection <0.100.0> (10.0.0.5:48150 -> 10.0.0.2:5672, vhost: '/', user: 'app'):\n"
              "2026-11-23 21:32:38.922290+00:00 [warning] <0.100.0> client unexpectedly closed TCP connection\n"
              "2026-11-23 21:32:39.940000+00:00 [info] <0.200.0> accepting AMQP connection <0.200.0> (10.0.0.5:48160 -> 10.0.0.2:5672)\n"
              "2026-11-23 21:40:38.922290+00:00 [warning] <0.200.0> closing AMQP connection <0.200.0> (10.0.0.5:48160 -> 10.0.0.2:5672, vhost: '/', user: 'app'):\n"
              "2026-11-23 21:40:38.922290+00:00 [warning] <0.200.0> client unexpectedly closed TCP connection\n")
    report = analyse_logs([_write(tmp_path, "paste.txt", "Worker:\n" + worker + "\nRabbitMQ (UTC):\n" + broker)])
    offsets = {s.name.rsplit(":", 1)[-1]: s.offset_s for s in report.sources}
    assert abs(offsets["rabbitmq"] - 7200) < 1
    assert [i.closed_by.value for i in report.incidents] == ["network", "network"]


def test_every_error_family_pattern_holds_one_of_the_words_its_cheap_test_looks_for() -> None:
    """A family's pattern runs only on text holding one of its FAMILY_WORDS: every top-level
    alternative of every pattern must hold one as plain text, or that family would never be named."""
    from celery_doctor import incidents

    def alternatives(pattern: str) -> list[str]:
        out, depth, part = [], 0, ""
        for char in pattern:
            depth += char == "("
            depth -= char == ")"
            if char == "|" and depth == 0:
                out.append(part)
                part = ""
            else:
                part += char
        return [*out, part]

    assert set(incidents.FAMILY_WORDS) == {name for name, _ in incidents.ERROR_FAMILIES}
    for name, pattern in incidents.ERROR_FAMILIES:
        for branch in alternatives(pattern.pattern.lower()):
            assert any(word in branch for word in incidents.FAMILY_WORDS[name]), (name, branch)
