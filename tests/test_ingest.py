"""Ingest: every supported layout becomes the right Events; bad input is a warning, not a crash."""
# ruff: noqa: E501  (log lines are kept verbatim)

from __future__ import annotations

import gzip
import itertools
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from celery_doctor.ingest import IngestError, read_logs
from celery_doctor.model import Kind, Side
from conftest import FIXTURES, console_script

WORKER_5X = """\
[2026-11-23 21:19:50,001: INFO/MainProcess] Connected to amqp://guest:**@rabbit:5672//
[2026-11-23 21:19:50,100: INFO/MainProcess] Task proj.add[0f4c3a2e-1111-2222-3333-444455556666] received
[2026-11-23 21:19:50,200: INFO/ForkPoolWorker-1] Task proj.add[0f4c3a2e-1111-2222-3333-444455556666] succeeded in 0.1s: 3
[2026-11-23 21:20:59,470: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...
Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/amqp/transport.py", line 342, in _read
    s = recv(n - len(rbuf))
ConnectionResetError: [Errno 104] Connection reset by peer
[2026-11-23 21:20:59,480: INFO/MainProcess] Connected to amqp://guest:**@rabbit:5672//
"""

RABBIT_39 = """\
2026-11-23 21:20:59.470899+00:00 [warning] <0.828.0> closing AMQP connection <0.828.0> (10.0.0.5:53412 -> 10.0.0.2:5672, vhost: '/', user: 'guest'):
2026-11-23 21:20:59.470899+00:00 [warning] <0.828.0> client unexpectedly closed TCP connection
2026-11-23 21:21:30.000001+00:00 [error] <0.900.0> closing AMQP connection <0.900.0> (10.0.0.6:40000 -> 10.0.0.2:5672):
2026-11-23 21:21:30.000001+00:00 [error] <0.900.0> missed heartbeats from client, timeout: 60s
"""

RABBIT_LAGER = """\
2019-01-01 10:00:00.123 [error] <0.1234.0> closing AMQP connection <0.1234.0> (172.18.0.5:41234 -> 172.18.0.2:5672):
missed heartbeats from client, timeout: 60s
2019-01-01 10:00:05.000 [info] <0.1300.0> accepting AMQP connection <0.1300.0> (172.18.0.5:41300 -> 172.18.0.2:5672)
"""

RABBIT_36 = """\
=ERROR REPORT==== 23-Nov-2017::10:00:00 ===
closing AMQP connection <0.2500.1> (172.19.0.4:42882 -> 172.19.0.3:5672):
missed heartbeats from client, timeout: 60s

=INFO REPORT==== 23-Nov-2017::10:00:07 ===
accepting AMQP connection <0.2600.1> (172.19.0.4:42890 -> 172.19.0.3:5672)
"""

REDIS_7 = """\
1234:M 23 Nov 2026 21:19:59.123 * Ready to accept connections tcp
1234:M 23 Nov 2026 21:25:00.000 - Closing idle client
1234:signal-handler (1700000000) Received SIGTERM scheduling shutdown...
"""

REDIS_OLD = """\
[4711] 23 Nov 10:00:00.123 * Server started, Redis version 2.8.4
[4711] 23 Nov 10:05:00.000 - Closing idle client
"""


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def kinds(result, side: Side | None = None) -> list[Kind]:
    return [e.kind for e in result.events if side is None or e.side == side]


def test_celery_worker_log_with_traceback_attached(tmp_path: Path) -> None:
    result = read_logs([write(tmp_path, "worker.log", WORKER_5X)])
    assert kinds(result) == [Kind.CONNECTED, Kind.CONNECTION_LOST, Kind.CONNECTED]
    lost = result.events[1]
    assert lost.line == 4
    assert lost.ts == datetime(2026, 11, 23, 21, 20, 59, 470000, tzinfo=UTC)
    assert lost.error == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert lost.detail["errno"] == 104
    assert lost.detail["last_activity_ts"].startswith("2026-11-23T21:19:50.2")
    assert "Traceback" in lost.text
    assert result.sources[0].format == "celery" and result.sources[0].meta["naive_tz"] is True


@pytest.mark.parametrize("text, expected", [
    (RABBIT_39, [Kind.CLIENT_CLOSED_ABRUPTLY, Kind.HEARTBEAT_MISSED_CLIENT]),
    (RABBIT_LAGER, [Kind.HEARTBEAT_MISSED_CLIENT, Kind.CONNECTION_ACCEPTED]),
    (RABBIT_36, [Kind.HEARTBEAT_MISSED_CLIENT, Kind.CONNECTION_ACCEPTED]),
], ids=["3.9+", "lager", "3.6"])
def test_rabbitmq_layouts(tmp_path: Path, text: str, expected: list[Kind]) -> None:
    result = read_logs([write(tmp_path, "rabbit.log", text)])
    assert kinds(result, Side.BROKER) == expected
    heartbeat = next(e for e in result.events if e.kind == Kind.HEARTBEAT_MISSED_CLIENT)
    assert heartbeat.detail["timeout_s"] == 60
    assert heartbeat.peer and heartbeat.peer.endswith(("41234", "42882", "40000"))


def test_rabbitmq_39_continuation_lines_are_one_record(tmp_path: Path) -> None:
    result = read_logs([write(tmp_path, "rabbit.log", RABBIT_39)])
    abrupt = result.events[0]
    assert abrupt.line == 1 and abrupt.peer == "10.0.0.5:53412"
    assert abrupt.ts == datetime(2026, 11, 23, 21, 20, 59, 470899, tzinfo=UTC)
    assert "client unexpectedly closed" in abrupt.text


def test_redis_layouts_and_guessed_year(tmp_path: Path) -> None:
    new = read_logs([write(tmp_path, "redis.log", REDIS_7)])
    assert kinds(new) == [Kind.BROKER_START, Kind.SERVER_CLOSED_IDLE]
    old = read_logs([write(tmp_path, "old.log", REDIS_OLD)])
    assert kinds(old) == [Kind.BROKER_START, Kind.SERVER_CLOSED_IDLE]
    assert any("no year" in w for w in old.sources[0].warnings)


def test_docker_compose_interleaved_services_become_sources(tmp_path: Path) -> None:
    text = (FIXTURES.parent.parent.parent / "shared/cases/003-celery3649-gevent-beat-missed-heartbeats/logs"
            / "rabbitmq.log").read_text()
    worker = "".join(f"celery-worker-1  | {line}\n" for line in WORKER_5X.splitlines())
    result = read_logs([write(tmp_path, "compose.log", text + worker)])
    sources = {e.source.rsplit(":", 1)[-1]: e.side for e in result.events}
    assert sources == {"rabbitmq_1": Side.BROKER, "celery-worker-1": Side.CLIENT}


def test_heroku_drain_and_kubectl_and_journald_prefixes(tmp_path: Path) -> None:
    heroku = "".join(f"2026-11-23T21:20:59.{i:06d}+00:00 app[worker.1]: {ln}\n"
                     for i, ln in enumerate(WORKER_5X.splitlines()))
    kubectl = "".join(f"2026-11-23T21:20:59.000000000Z {ln}\n" for ln in WORKER_5X.splitlines())
    journald = "".join(f"2026-11-23T21:20:59+0000 host celery[811]: {ln}\n" for ln in WORKER_5X.splitlines())
    for name, text in (("heroku", heroku), ("kubectl", kubectl), ("journald", journald)):
        result = read_logs([write(tmp_path, f"{name}.log", text)])
        assert Kind.CONNECTION_LOST in kinds(result), name
        assert name in result.sources[0].format


def test_json_lines_worker_log(tmp_path: Path) -> None:
    text = ('{"asctime": "2026-11-23 21:20:59,470", "levelname": "WARNING", "message": '
            '"consumer: Connection to broker lost. Trying to re-establish the connection...", '
            '"exc_info": "Traceback...\\nConnectionResetError: [Errno 104] Connection reset by peer"}\n'
            '{"asctime": "2026-11-23 21:21:00,000", "levelname": "INFO", "message": "Connected to redis://h:6379/0"}\n')
    result = read_logs([write(tmp_path, "worker.json", text)])
    assert kinds(result) == [Kind.CONNECTION_LOST, Kind.CONNECTED]
    assert result.events[0].error == "ConnectionResetError: [Errno 104] Connection reset by peer"


def test_gzip_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "worker.log.gz"
    path.write_bytes(gzip.compress(WORKER_5X.encode()))
    assert kinds(read_logs([str(path)])) == [Kind.CONNECTED, Kind.CONNECTION_LOST, Kind.CONNECTED]
    out = subprocess.run([console_script(), "logs", "-", "--format", "json"], input=WORKER_5X,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1) and '"connection_lost"' in out.stdout


def test_bad_inputs_warn_and_the_rest_is_analysed(tmp_path: Path) -> None:
    good = write(tmp_path, "worker.log", WORKER_5X)
    junk = write(tmp_path, "junk.bin", bytes(range(256)) * 100)
    truncated = write(tmp_path, "cut.log.gz", gzip.compress(WORKER_5X.encode() * 50)[:300])
    empty = write(tmp_path, "empty.log", "")
    unknown = write(tmp_path, "notes.txt", "hello\nthis is not a log\n")
    long_line = write(tmp_path, "long.log", "[2026-11-23 21:00:00,000: INFO/MainProcess] " + "x" * 10_000_000
                      + "\n" + WORKER_5X)
    mixed = write(tmp_path, "mixed.log", WORKER_5X.encode() + "caf\xe9 \xff\n".encode("latin-1"))
    missing = str(tmp_path / "nope.log")
    result = read_logs([good, junk, truncated, empty, unknown, long_line, mixed, missing, str(tmp_path)])
    warned = {Path(s.name).name: " ".join(s.warnings) for s in result.sources}
    assert "binary" in warned["junk.bin"]
    assert "ends early" in warned["cut.log.gz"] or "empty" in warned["cut.log.gz"]
    assert "empty" in warned["empty.log"]
    assert "unknown log format" in warned["notes.txt"]
    assert "no such file" in warned["nope.log"]
    assert "directory" in warned[tmp_path.name]
    by_source = {Path(e.source).name for e in result.events if e.kind == Kind.CONNECTION_LOST}
    assert {"worker.log", "long.log", "mixed.log"} <= by_source


def test_nothing_readable_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nothing readable"):
        read_logs([write(tmp_path, "junk.bin", b"\x00\x01" * 1000), str(tmp_path / "missing.log")])
    out = subprocess.run([console_script(), "logs", str(tmp_path / "junk.bin")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_out_of_order_timestamps_are_sorted_and_reported(tmp_path: Path) -> None:
    lines = WORKER_5X.splitlines()
    shuffled = "\n".join([lines[3], *lines[4:8], lines[0]]) + "\n"
    result = read_logs([write(tmp_path, "w.log", shuffled)])
    assert any("backwards" in w for w in result.sources[0].warnings)


def test_split_scan_gives_the_same_events_as_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are scanned in byte ranges cut anywhere (mid-line, mid-traceback) by several
    processes; the events, their line numbers and the line count must not change. (1,200 losses
    in 1.2 MB: past reader.REPEAT_KEEP a window counts them instead, tests/test_churn.py; here
    every one is read, so that each boundary is crossed by events.)"""
    from celery_doctor.ingest import reader
    from celery_doctor.ingest.parallel import join, scan_range
    from celery_doctor.ingest.reader import Scanner, SourceState
    from celery_doctor.model import SourceInfo

    monkeypatch.setattr(reader, "REPEAT_KEEP", 10**9)

    text = (FIXTURES / "rabbitmq-idle-cut" / "worker.log").read_text()
    path = write(tmp_path, "big.log", text * 400)  # ~1.2 MB, 1200 connection losses
    size = Path(path).stat().st_size

    def state() -> SourceState:
        info = SourceInfo(name=path, format="celery", meta={"layout": "celery"})
        return SourceState(info=info, family="celery", prefix=None, year=2026)

    one = state()
    scanner = Scanner(one)
    scanner.feed(Path(path).read_bytes())
    scanner.finish()
    split = state()
    data = Path(path).read_bytes()
    inside = data.index(b"In Celery 5.1 we introduced", size // 2)  # a cut inside a multi-line record
    cuts = [0, size // 3 + 17, inside + 3, size]
    parts = [scan_range(path, split, 0, a, b) for a, b in itertools.pairwise(cuts)]
    join([(path, split, size)], parts)
    assert [(e.line, e.kind) for e in split.events] == [(e.line, e.kind) for e in one.events]
    assert len(one.events) >= 2400
    assert split.info.lines == one.info.lines == text.count("\n") * 400


def test_custom_task_ids_are_tracked_as_running(tmp_path: Path) -> None:
    """apply_async(task_id=...) allows any string: a running task must still be seen."""
    text = ("[2026-11-23 23:30:48,597: INFO/MainProcess] Task doctor.sleep[nightly-report-0042] received\n"
            "[2026-11-23 23:30:54,609: WARNING/MainProcess] consumer: Connection to broker lost. "
            "Trying to re-establish the connection... (ConnectionResetError(104, 'Connection reset by peer'))\n")
    lost = read_logs([write(tmp_path, "w.log", text)]).events[0]
    assert lost.detail["running_tasks"][0]["id"] == "nightly-report-0042"


def test_undated_connection_errors_are_unknown_not_healthy(tmp_path: Path) -> None:
    """A pasted traceback without times cannot be placed, but must never read as 'no incident'."""
    from celery_doctor.model import Category
    from celery_doctor.pipeline import analyse_logs

    path = write(tmp_path, "paste.txt", "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                 "ConnectionResetError: [Errno 104] Connection reset by peer\n")
    report = analyse_logs([path])
    top = report.findings[0]
    assert top.category == Category.UNKNOWN
    assert [(e.line, e.text) for e in top.evidence] == [(3, "ConnectionResetError: [Errno 104] Connection reset by peer")]


def test_a_truncated_gz_yields_what_decompresses_and_warns(tmp_path: Path) -> None:
    """A log cut mid-stream (full disk, interrupted copy): read what zcat would recover, then warn."""
    import zlib as _zlib

    from celery_doctor.pipeline import analyse_logs

    recording = (Path(__file__).resolve().parents[1] / "examples" / "broker-restart" / "broker.log").read_bytes()
    for name, text in (("small", recording), ("large", recording * 400)):  # a paste, and the streamed path
        packed = gzip.compress(text)
        cut = tmp_path / f"{name}.log.gz"
        cut.write_bytes(packed[: len(packed) * 2 // 3])
        recovered = _zlib.decompressobj(_zlib.MAX_WBITS | 16).decompress(cut.read_bytes())  # what zcat prints
        report = analyse_logs([str(cut)])
        source = next(s for s in report.sources if s.name == str(cut))
        assert source.events > 0, name
        assert source.lines >= recovered.count(b"\n"), (name, source.lines, recovered.count(b"\n"))
        assert any("compressed data ends early" in w for w in report.warnings), (name, report.warnings)
