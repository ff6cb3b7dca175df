"""The scan's speed path gives the same answers as the plain way of reading a log.

Each speed-up of the big-file scan (windows read into one reused buffer, byte ranges scanned by a
pool of forked workers, newlines counted by numpy, connection-error words marked only after
tracebacks, the stdlib matcher where Hyperscan cannot load) must leave the events and the line
numbers a report cites unchanged. Here the windows and ranges are made small, so a few-MB file
crosses hundreds of window and range boundaries, and every cited line is checked against a naive
count of the file's newlines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from celery_doctor.ingest import counting, parallel, read_logs, reader
from conftest import FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import shapes  # the bench's generators: the same shapes the bench measures

SHAPES = ("worker", "compose", "json", "rabbitmq", "redis", "celery31")
SIZE = 3 * 1024 * 1024

# an application's own logged exception on the broker connection (no catalogue line above it):
# found through the traceback and the connection-error word after it
APP_TRACEBACK = (
    "[{ts}: ERROR/MainProcess] shop.tasks.publish: could not publish the receipt\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/venv/lib/python3.11/site-packages/amqp/transport.py", line 342, in _read\n'
    "    s = recv(n - len(rbuf))\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
)
# the same traceback in a task's own failure: never a connection failure of the worker
TASK_TRACEBACK = (
    "[{ts}: ERROR/ForkPoolWorker-2] Task shop.tasks.publish[9f1c] raised unexpected: "
    "ConnectionResetError(104, 'Connection reset by peer')\n" + APP_TRACEBACK.split("\n", 1)[1]
)


def write_tracebacks(path: Path, blocks: int, each: int = 5) -> int:
    """Worker traffic with, in every block, ``each`` application tracebacks on the broker
    connection and as many tasks' own failures with the same error; returns how many of the
    first kind."""
    clock = shapes.Clock()
    with path.open("w") as out:
        for k in range(blocks):
            lines = list(shapes.worker_traffic(clock, k * 1000))
            step = len(lines) // each
            for part in range(each):
                out.write("".join(lines[part * step : (part + 1) * step]))
                clock.tick(30)
                out.write(APP_TRACEBACK.format(ts=clock.celery()))
                clock.tick(1)
                out.write(TASK_TRACEBACK.format(ts=clock.celery()))
    return blocks * each


def generated(tmp_path: Path, shape: str) -> Path:
    path = tmp_path / f"{shape}.log"
    if shape == "tracebacks":
        write_tracebacks(path, 24)
    else:
        shapes.write_one(shapes.SHAPES[shape], path, SIZE)
    return path


def events_of(path: Path) -> list[tuple[int, str, str | None, str]]:
    result = read_logs([str(path)])
    return [(e.line, e.kind.value, e.ts.isoformat() if e.ts else None, e.text) for e in result.events]


@pytest.mark.parametrize("shape", [*SHAPES, "tracebacks"])
def test_cited_lines_match_a_naive_count_across_windows_and_ranges(
    tmp_path: Path, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = generated(tmp_path, shape)
    whole = events_of(path)  # the default: one range, 16 MB windows (the file is smaller)
    # windows of ~200 KB (an odd size: they end mid-line), ranges of ~512 KB, a pool of two
    # workers (whatever the machine) and numpy's count from 1 MB in all
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (
        ("CHUNK", 200_003),
        ("RANGE_MIN", 512 * 1024 + 7),
        ("RANGE_MAX", 512 * 1024 + 7),
        ("SPLIT_MIN", 1024 * 1024),
        ("NUMPY_MIN", 1024 * 1024),
    ):
        monkeypatch.setattr(parallel, name, value)
    monkeypatch.setattr(counting, "SMALL", 4096)
    # connection-error words marked over whole windows (in the main pass after a window with
    # many tracebacks) past 2 tracebacks a window, not only after each traceback
    monkeypatch.setattr(reader, "WINDOW_MARKS", 2)
    monkeypatch.setattr(reader, "NEAR_FIRST", 100)  # the lines after a broker's incident: searched in pieces
    assert len(parallel.plan([path.stat().st_size], 2)) >= 5  # really split
    split = events_of(path)
    assert split == whole
    data = path.read_bytes()
    lines = data.split(b"\n")
    assert whole, shape
    for line, kind, _, text in whole:
        first = text.splitlines()[0].strip()
        raw = lines[line - 1].decode("utf-8", errors="replace")
        assert first and first in raw, (shape, line, kind, first, raw)
    assert read_logs([str(path)]).sources[0].lines == data.count(b"\n")


def test_an_application_traceback_on_the_broker_connection_is_found_and_a_task_failure_is_not(tmp_path: Path) -> None:
    path = tmp_path / "tracebacks.log"
    count = write_tracebacks(path, 24)
    lost = [e for e in read_logs([str(path)]).events if e.kind.value == "connection_lost"]
    assert len(lost) == count
    assert all("could not publish" in e.text and "ConnectionResetError" in (e.error or "") for e in lost)


def test_newline_counts_agree() -> None:
    data = bytearray(b"ab\ncd\n\n" * 500_000 + b"tail")
    assert counting.enable()  # numpy is a dependency: it must load here
    for start, end in ((0, len(data)), (1, len(data) - 1), (3, 3 + 2 * counting.SMALL + 5), (10, 20)):
        assert counting.newlines(data, start, end) == bytes(data).count(b"\n", start, end)


def test_piece_counts_agree() -> None:
    """The shared cover's piece counts: numpy's sorted windows and the Counter give the same."""
    from collections import Counter

    data = (FIXTURES / "rabbitmq-short-lived-publishers" / "broker.log").read_bytes()[:40_000] + b"\xff\x00abc"
    pieces = sorted({data[i:i + 5] for i in range(0, len(data) - 5, 37)} | {b"zzzzz", b"\xff\x00abc"})
    assert counting.enable()
    windows = Counter(data[i:i + 5] for i in range(len(data) - 4))
    assert counting.occurrences(data, pieces, 5) == {p: windows[p] for p in pieces}
    assert counting.occurrences(b"aaaaaaa", [b"aaaaa"], 5) == {b"aaaaa": 3}  # overlaps counted


@pytest.mark.parametrize("shape", ["tracebacks", "rabbitmq", "redis", "compose"])
def test_the_stdlib_fallback_gives_the_same_events_as_hyperscan(tmp_path: Path, shape: str) -> None:
    """Where no Hyperscan wheel loads: the same events, line numbers and texts (the connection-error
    words after a traceback are found by the pattern alone)."""
    path = generated(tmp_path, shape)
    probe = (
        "import sys, json; sys.modules['hyperscan'] = None\n"
        "from celery_doctor.ingest import matcher, read_logs\n"
        f"r = read_logs([{str(path)!r}])\n"
        "print(json.dumps([matcher.ENGINE, [[e.line, e.kind.value, e.text] for e in r.events]]))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    engine, events = json.loads(done.stdout)
    assert engine == "stdlib bytes.find"
    assert events == [[e.line, e.kind.value, e.text] for e in read_logs([str(path)]).events]
    assert events


@pytest.mark.parametrize("fill", [b"x", "é".encode(), b"ab\r\n", b"\xff"])
def test_a_pasted_celery_report_is_looked_for_in_the_bytes_first(
    tmp_path: Path, fill: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`logs` looks for a `celery report` pasted inside each file given: the bytes are searched
    for its first line before any text is decoded (a gigabyte log: 7 ms, not 80). Wherever the
    report sits (across the 1 MB reads, at the end of the text read, past it), the answer is the
    one the text read gives."""
    from celery_doctor.settings import runtime_report

    monkeypatch.setattr(runtime_report, "MAX_BYTES", 3 * 1024 * 1024)
    report = b"software -> celery:5.4.0 (opalescent) kombu:5.3.4 py:3.11.7\nplatform -> system:Linux\n"
    mb = 1 << 20
    for offset in (0, mb - 18, mb - 1, mb, 2 * mb + 7, 3 * mb - 200, 3 * mb + 100, 9 * mb):
        data = bytearray(fill * (10 * mb // len(fill)))
        data[offset:offset] = b"\n" + report
        path = tmp_path / "pasted.log"
        path.write_bytes(bytes(data))
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            expected = runtime_report.find_report(handle.read(runtime_report.MAX_BYTES), str(path))
        found = runtime_report.find_report_in_file(str(path))
        assert (found is None) == (expected is None), (fill, offset)
        assert found is None or found.versions == expected.versions  # type: ignore[union-attr]


def test_several_files_at_once_keep_their_own_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One pool over the ranges of every file given (a worker, a broker and a Redis log): each
    event's line is counted in its own file, as when each file is read alone."""
    paths = [generated(tmp_path, shape) for shape in ("worker", "rabbitmq", "redis", "celery31")]
    alone = {str(p): events_of(p) for p in paths}
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("CHUNK", 200_003), ("RANGE_MIN", 700_001), ("RANGE_MAX", 700_001), ("SPLIT_MIN", 1024 * 1024)):
        monkeypatch.setattr(parallel, name, value)
    together = read_logs([str(p) for p in paths])
    for path in paths:
        mine = [
            (e.line, e.kind.value, e.ts.isoformat() if e.ts else None, e.text)
            for e in together.events
            if e.source == str(path)
        ]
        assert mine == alone[str(path)], path.name
        lines = path.read_bytes().split(b"\n")
        for line, _, _, text in mine:
            assert text.splitlines()[0].strip() in lines[line - 1].decode("utf-8", errors="replace")
    assert [s.lines for s in together.sources] == [p.read_bytes().count(b"\n") for p in paths]


@pytest.mark.parametrize("where", [0.0, 0.37, 0.999])
def test_a_celery_report_inside_a_big_log_is_found_by_the_scan(tmp_path: Path, where: float,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan's matcher looks for the report's first line with the catalogue (no second read of
    every file): wherever it sits in a log split into windows and ranges, `logs` reads the report;
    a log without one is not read again for it."""
    from celery_doctor.pipeline import analyse_logs
    from celery_doctor.settings import runtime_report

    log = generated(tmp_path, "worker")
    data = bytearray(log.read_bytes())
    at = data.index(b"\n", int(len(data) * where)) + 1
    data[at:at] = b"software -> celery:5.4.0 (opalescent) kombu:5.3.4 py:3.11.7\nplatform -> system:Linux\n"
    pasted = tmp_path / "pasted.log"
    pasted.write_bytes(bytes(data))
    monkeypatch.setattr(runtime_report, "MAX_BYTES", len(data))  # the text read covers the whole file
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("CHUNK", 200_003), ("RANGE_MIN", 512 * 1024 + 7), ("RANGE_MAX", 512 * 1024 + 7),
                        ("SPLIT_MIN", 1024 * 1024)):
        monkeypatch.setattr(parallel, name, value)
    read = read_logs([str(pasted), str(log)])
    assert read.without_report == {str(log)}
    report = analyse_logs([str(pasted), str(log)])
    assert any(w.startswith(f"{pasted}: a `celery report`") for w in report.warnings)
    assert not any(w.startswith(f"{log}: a `celery report`") for w in report.warnings)


# a task's own failure whose traceback chains into a connection error (the line above the second
# traceback is not the task's), and an application's ValueError between the others
CHAINED_TASK_TRACEBACK = (
    "[{ts}: ERROR/ForkPoolWorker-1] Task shop.tasks.sync[77aa] raised unexpected: ConnectionResetError(104)\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/tasks.py", line 12, in sync\n'
    "    parse(body)\n"
    "ValueError: bad body\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/venv/lib/python3.11/site-packages/kombu/connection.py", line 472, in _reraise_as_library_errors\n'
    "    yield\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
)
# a task's logger.exception() when its HTTP upstream resets it (chained, as urllib3 under requests
# logs it): the application's connection, not the worker's
LOGGED_UPSTREAM_TRACEBACK = (
    "[{ts}: ERROR/ForkPoolWorker-3] shop.tasks.sync[0f0e0d0c-7d3c-4a1b-9f2e-000000000001]: upstream failed\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/venv/lib/python3.11/site-packages/urllib3/connectionpool.py", line 536, in _make_request\n'
    "    response = conn.getresponse()\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
    "\n"
    "During handling of the above exception, another exception occurred:\n"
    "\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/tasks.py", line 31, in sync\n'
    "    session.post(url)\n"
    "requests.exceptions.ConnectionError: ('Connection aborted.', "
    "ConnectionResetError(104, 'Connection reset by peer'))\n"
)
# the same failure logged by a module's logger (no task id in the header)
MODULE_LOGGED_UPSTREAM_TRACEBACK = LOGGED_UPSTREAM_TRACEBACK.replace(
    "shop.tasks.sync[0f0e0d0c-7d3c-4a1b-9f2e-000000000001]: upstream failed", "shop.clients.stock: upstream failed")
# the same logger's traceback through kombu (a task publishing): the broker connection
LOGGED_PUBLISH_TRACEBACK = (
    "[{ts}: ERROR/ForkPoolWorker-3] shop.tasks.sync[0f0e0d0c-7d3c-4a1b-9f2e-000000000002]: could not publish\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/venv/lib/python3.11/site-packages/kombu/messaging.py", line 209, in _publish\n'
    "    return channel.basic_publish(\n"
    "ConnectionResetError: [Errno 104] Connection reset by peer\n"
)
VALUE_TRACEBACK = (
    "[{ts}: ERROR/MainProcess] shop.tasks.parse: bad input\n"
    "Traceback (most recent call last):\n"
    '  File "/srv/app/shop/tasks.py", line 30, in parse\n'
    "    int(value)\n"
    "ValueError: invalid literal for int() with base 10: 'x'\n"
)


@pytest.mark.parametrize("wrap", ["bare", "kubectl"])
def test_dense_tracebacks_are_judged_as_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   wrap: str) -> None:
    """Many tracebacks a window (marks over the whole window, each taken with the tracebacks before
    it) give the same events as a few (each traceback followed on its own), with the stdlib engine
    too, and as the record-by-record reading of a small input: application failures on the broker
    connection found (logged by a task through kombu, too), tasks' own failures (chained or not,
    raised or logged on their HTTP upstream) and other errors not; bare, and behind a collector's
    prefix (kubectl logs --timestamps: no record starts at a line's first byte)."""
    clock = shapes.Clock()
    path = tmp_path / "dense.log"
    with path.open("w") as out:
        for k in range(30):
            block = "".join(list(shapes.worker_traffic(clock, k * 1000))[:300])
            for template in (VALUE_TRACEBACK, CHAINED_TASK_TRACEBACK, VALUE_TRACEBACK, APP_TRACEBACK,
                             LOGGED_UPSTREAM_TRACEBACK, TASK_TRACEBACK, VALUE_TRACEBACK, LOGGED_PUBLISH_TRACEBACK,
                             MODULE_LOGGED_UPSTREAM_TRACEBACK):
                clock.tick(2)
                block += template.format(ts=clock.celery())
            out.write(shapes.kubectl(block, clock) if wrap == "kubectl" else block)
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("CHUNK", 100_003), ("RANGE_MIN", 300_007), ("RANGE_MAX", 300_007), ("SPLIT_MIN", 512 * 1024)):
        monkeypatch.setattr(parallel, name, value)
    monkeypatch.setattr(reader, "WINDOW_MARKS", 10**9)  # never dense: each traceback on its own
    alone = events_of(path)
    monkeypatch.setattr(reader, "WINDOW_MARKS", 2)  # always dense
    dense = events_of(path)
    assert dense == alone
    lost = [text for _, kind, _, text in dense if kind == "connection_lost"]
    assert len(lost) == 60 and all("could not publish" in text for text in lost)
    # read record by record (a small input: celery_family.application_traceback on the decoded
    # record), the same tracebacks make the same events
    small = tmp_path / "small.log"
    small.write_bytes(path.read_bytes()[: 200 * 1024])
    cut = small.read_bytes().count(b"\n")
    assert [(line, kind) for line, kind, _, _ in events_of(small)] == [
        (line, kind) for line, kind, _, _ in dense if line < cut - 20]
    probe = ("import sys, json; sys.modules['hyperscan'] = None\n"
             "from celery_doctor.ingest import read_logs, reader\n"
             "reader.WINDOW_MARKS = 2\n"
             f"r = read_logs([{str(path)!r}])\n"
             "print(json.dumps([[e.line, e.kind.value] for e in r.events]))")
    fallback = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                         check=True).stdout)
    assert fallback == [[line, kind] for line, kind, _, _ in dense]
