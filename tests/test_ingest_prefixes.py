"""Collector prefixes and wrappers around real worker lines (the recorded idle-cut worker log):
each gives the same events as the bare log, with the collector's time only where the inner line
has none."""
# ruff: noqa: E501  (log lines are kept verbatim)

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_doctor.ingest import read_logs
from celery_doctor.model import Kind
from conftest import FIXTURES

PASTES_DIR = FIXTURES / "pastes"

WORKER = (FIXTURES / "rabbitmq-idle-cut" / "worker.log").read_text().splitlines()[:14]
REDIS_WORKER = (FIXTURES / "redis-idle-cut" / "worker.log").read_text().splitlines()[:14]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def kinds(path: str) -> list[tuple[Kind, str | None]]:
    return [(e.kind, e.error) for e in read_logs([path]).events]



@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Kind, str | None]]:
    path = tmp_path_factory.mktemp("bare") / "worker.log"
    path.write_text("\n".join(WORKER) + "\n")
    found = kinds(str(path))
    assert Kind.CONNECTION_LOST in [k for k, _ in found]
    return found


def _cri(lines: list[str]) -> str:
    out = []
    for i, line in enumerate(lines):
        stamp = f"2026-11-23T22:32:{29 + i:02d}.123456789Z"
        if len(line) > 60:  # containerd splits long lines: P parts, then the F end
            out += [f"{stamp} stderr P {line[:40]}", f"{stamp} stderr F {line[40:]}"]
        else:
            out.append(f"{stamp} stderr F {line}")
    return "\n".join(out) + "\n"


WRAPPERS = {
    "cri": _cri,
    "docker-json": lambda lines: "".join(json.dumps({"log": ln + "\n", "stream": "stderr",
                                                     "time": "2026-11-23T22:32:29.000000001Z"}) + "\n" for ln in lines),
    "journald-json": lambda lines: "".join(json.dumps({"MESSAGE": ln, "__REALTIME_TIMESTAMP": "1795473149000000",
                                                       "_SYSTEMD_UNIT": "celery.service"}) + "\n" for ln in lines),
    # docker compose logs -t (the bar, then docker's RFC3339NanoFixed time)
    "docker-compose": lambda lines: "".join(f"shop-worker-1  | 2026-11-23T22:32:29.{i:09d}Z {ln}\n"
                                            for i, ln in enumerate(lines)),
    "cf": lambda lines: "".join(f"2026-11-23T17:32:29.93-0500 [APP/PROC/WEB/4] ERR {ln}\n" for ln in lines),
    "syslog": lambda lines: "".join(f"Nov 23 22:32:29.{i:06d} host celery[811]: {ln}\n" for i, ln in enumerate(lines)),
    "viewer": lambda lines: "".join(f"2026-11-23T22:32:29.225+00:00 {ln}\n" for ln in lines),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrapped_worker_log_gives_the_same_events(tmp_path: Path, name: str, bare: list) -> None:
    path = write(tmp_path, f"{name}.log", WRAPPERS[name](WORKER))
    result = read_logs([path])
    assert name in result.sources[0].format
    assert [(e.kind, e.error) for e in result.events] == bare
    assert all(e.ts is not None and e.ts.year == 2026 for e in result.events)


def test_cri_partial_lines_are_joined(tmp_path: Path) -> None:
    path = write(tmp_path, "cri.log", _cri(WORKER))
    lost = next(e for e in read_logs([path]).events if e.kind == Kind.CONNECTION_LOST)
    assert "Connection to broker lost. Trying to re-establish" in lost.text
    assert lost.error == "ConnectionResetError(104, 'Connection reset by peer')"


def test_prefix_time_dates_a_cut_header(tmp_path: Path) -> None:
    """A kubectl --timestamps line whose Celery header was cut still has the collector's time."""
    text = "2026-11-23T22:32:38.921000000Z ERROR/MainProcess] consumer: Cannot connect to amqp://guest:**@mq:5672//: [Errno 111] Connection refused.\n"
    (event,) = read_logs([write(tmp_path, "k.log", text)]).events
    assert event.kind == Kind.CANNOT_CONNECT and event.ts is not None and event.ts.second == 38


def test_hard_wrapped_lines_still_match(tmp_path: Path) -> None:
    """A mail client wrapped the line inside the message: the catalogue matches the record."""
    text = ("[2026-11-23 22:32:38,921: ERROR/MainProcess] consumer: Cannot connect to\n"
            "amqp://guest:**@127.0.0.1:5672//: [Errno 111] Connection refused.\n"
            "Trying again in 2.00 seconds... (1/100)\n"
            "[2026-11-23 22:32:41,000: WARNING/MainProcess] consumer: Connection to broker\n"
            "lost. Trying to re-establish the connection...\n")
    events = read_logs([write(tmp_path, "mail.txt", text)]).events
    assert [e.kind for e in events] == [Kind.CANNOT_CONNECT, Kind.CONNECTION_LOST]
    assert events[0].error == "[Errno 111] Connection refused"


@pytest.mark.parametrize("repr_, family", [("network:ConnectionError", "network"), ("network:TimeoutError", "network"),
                                           ("auth:AuthenticationError", "auth")])
def test_redis_py_8_bare_reprs_are_the_error(tmp_path: Path, repr_: str, family: str) -> None:
    """redis-py 8 exceptions repr as 'type:Class' (redis/exceptions.py), so Celery 5 appends that."""
    text = (f"[2026-11-23 22:35:10,006: INFO/MainProcess] Connected to redis://127.0.0.1:6379/0\n"
            f"[2026-11-23 22:36:10,006: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection... ({repr_})\n"
            f"[2026-11-23 22:36:11,000: CRITICAL/MainProcess] Couldn't ack 7, reason:{repr_}\n")
    events = read_logs([write(tmp_path, "w.log", text)]).events
    assert [e.error for e in events[1:]] == [repr_, repr_]
    assert events[1].kind == (Kind.AUTH_REFUSED if family == "auth" else Kind.CONNECTION_LOST)


def test_compose_interleaves_worker_and_rabbit_multiline_reports(tmp_path: Path) -> None:
    """docker compose logs: worker and RabbitMQ 3.6 (multi-line reports) interleaved, each line prefixed."""
    rabbit = ["=ERROR REPORT==== 23-Nov-2026::22:32:38 ===",
              "closing AMQP connection <0.2500.1> (172.19.0.4:42882 -> 172.19.0.3:5672):",
              "missed heartbeats from client, timeout: 60s", ""]
    lines = [f"worker_1    | {WORKER[0]}", *(f"rabbitmq_1  | {r}" for r in rabbit), *(f"worker_1    | {w}" for w in WORKER[1:])]
    result = read_logs([write(tmp_path, "compose.log", "\n".join(lines) + "\n")])
    by_source = {e.source.rsplit(":", 1)[-1]: e.kind for e in result.events if e.kind in
                 (Kind.HEARTBEAT_MISSED_CLIENT, Kind.CONNECTION_LOST)}
    assert by_source == {"rabbitmq_1": Kind.HEARTBEAT_MISSED_CLIENT, "worker_1": Kind.CONNECTION_LOST}


def test_traceback_split_into_one_warning_record_per_line_is_one_record(tmp_path: Path) -> None:
    """worker_redirect_stdouts: each printed traceback line is its own WARNING record (case 003's
    layout); the record ends with the exception line, so it is one connection_lost with its error."""
    case = FIXTURES.parent.parent.parent / "shared/cases/003-celery3649-gevent-beat-missed-heartbeats/logs/worker.log"
    head = case.read_text().splitlines()[:5]
    tail = ["celery_1    | [2016-12-03 17:28:52,157: WARNING/MainProcess] ConnectionResetError: [Errno 104] Connection reset by peer",
            "celery_1    | [2016-12-03 17:28:52,160: INFO/MainProcess] Connected to amqp://guest:**@rabbitmq:5672//"]
    events = read_logs([write(tmp_path, "w.log", "\n".join(head + tail) + "\n")]).events
    assert [(e.line, e.kind) for e in events] == [(1, Kind.CONNECTION_LOST), (7, Kind.CONNECTED)]
    assert events[0].error == "ConnectionResetError: [Errno 104] Connection reset by peer"


def test_compose_worker_with_a_time_of_day_layout_beside_redis(tmp_path: Path) -> None:
    """The worker's layout has no date (paste 43's), the Redis service's lines do: both services are
    read, the worker's traceback stays with its record and gives the error."""
    worker = (PASTES_DIR / "43-compose-sentry-time-only-layout.txt").read_text().splitlines()[:3]
    lines = [*worker,
             'worker_1                       |   File "/usr/local/lib/python2.7/site-packages/redis/connection.py", line 177, in _read_from_socket',
             "worker_1                       |     raise socket.error(SERVER_CLOSED_CONNECTION_ERROR)",
             "worker_1                       | error: Connection closed by server.",
             "redis_1                        | 1:M 05 Sep 2020 11:27:04.101 # Client id=123 addr=172.18.0.9:40122 fd=12 name= age=600 idle=0 flags=P db=0 sub=0 psub=1 multi=-1 qbuf=0 qbuf-free=0 obl=0 oll=11 omem=33554432 events=rw cmd=psubscribe scheduled to be closed ASAP for overcoming of output buffer limits."]
    result = read_logs([write(tmp_path, "compose.log", "\n".join(lines) + "\n")])
    got = {e.source.rsplit(":", 1)[-1]: (e.kind, e.error) for e in result.events}
    assert got == {"worker_1": (Kind.CONNECTION_LOST, "error: Connection closed by server."),
                   "redis_1": (Kind.SERVER_CLOSED_LIMIT, None)}
