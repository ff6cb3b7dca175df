"""A busy broker's abrupt closes (publishers that exit without closing): counted past the first of
each window, never lost from the totals, and said as counted, on a real RabbitMQ churn recording."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from celery_doctor import pipeline
from celery_doctor.ingest import counting, parallel, reader
from conftest import FIXTURES

ABRUPT = b"client unexpectedly closed TCP connection"
STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})", re.M)


def churn_log(path: Path, copies: int) -> bytes:
    """The recorded excerpt, ``copies`` times, each copy later than the last (as a longer recording)."""
    excerpt = (FIXTURES / "rabbitmq-churn" / "broker.log").read_bytes()
    stamps = [datetime.strptime(m.decode(), "%Y-%m-%d %H:%M:%S.%f") for m in STAMP.findall(excerpt)]
    span = stamps[-1] - stamps[0] + timedelta(seconds=1)

    def shifted(k: int) -> bytes:
        def move(m: re.Match[bytes]) -> bytes:
            t = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S.%f") + span * k
            return t.strftime("%Y-%m-%d %H:%M:%S.%f").encode()
        return STAMP.sub(move, excerpt)

    data = b"".join(shifted(k) for k in range(copies))
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("budget", [2, 0])
def test_abrupt_closes_past_a_windows_first_are_counted_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                budget: int) -> None:
    """Budget 0: the floor, two a window; the file's first two closes are read through the head's
    scan of lifecycle lines (their records begin with "closing AMQP connection"), and the window's
    count still goes by the kind they made (it was dropped: 1,847 closes of a 2 GB log)."""
    data = churn_log(tmp_path / "broker.log", 12)  # 2.4 MB, 540 abrupt closes
    # the scan's windows and ranges made small (as a gigabyte's are to it): 600 KB windows (~130 closes
    # each, past REPEAT_KEEP), a pool of two
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("CHUNK", 600_011), ("RANGE_MIN", 1024 * 1024 + 7), ("RANGE_MAX", 1024 * 1024 + 7),
                        ("SPLIT_MIN", 1024 * 1024), ("NUMPY_MIN", 1024 * 1024)):
        monkeypatch.setattr(parallel, name, value)
    monkeypatch.setattr(counting, "SMALL", 4096)
    monkeypatch.setattr(reader, "REPEAT_MIN", 1024 * 1024)  # as if it were a big input
    # and the budget made small (a gigabyte's 8 MB windows keep three each)
    monkeypatch.setattr(reader, "REPEAT_BUDGET", budget)
    keep = reader.repeat_keep(len(data))
    assert keep is not None and reader.REPEAT_FLOOR <= keep < reader.REPEAT_KEEP
    report = pipeline.analyse_logs([str(tmp_path / "broker.log")])
    kept = [e for e in report.events if e.kind.value == "client_closed_abruptly"]
    counted = report.sources[0].meta["counted"]["client_closed_abruptly"]
    ranges = len(parallel.plan([len(data)], 2))
    windows = -(-len(data) // 600_011) + ranges  # a range's last window is its own
    # a window with REPEAT_KEEP closes or fewer keeps them all (a range's short last one may)
    assert counted > 0 and 0 < len(kept) <= keep * windows + reader.REPEAT_KEEP * ranges
    # every abrupt close is either an event or counted: none is lost from the totals
    events = report.summary["events_by_kind"]["client_closed_abruptly"]
    assert events + counted == data.count(ABRUPT)
    by_window = report.sources[0].meta["counted_by_window"]
    assert sum(n for _, _, n, kind in by_window if kind == "client_closed_abruptly") == counted
    assert any(f"{counted} client_closed_abruptly" in w for w in report.warnings)
    # the accepts read after a close lie ahead of the scan by design: no clock went backwards
    assert not any("backwards" in w for w in report.warnings), report.warnings
    benign = next(f for f in report.findings if f.category.value == "benign_client_disconnect")
    assert f"and {counted} more the scan counted" in benign.explanation and benign.facts["counted_closes"] == counted


@pytest.mark.parametrize("copies", [1, 12])
def test_an_input_under_the_size_that_counts_keeps_every_abrupt_close(tmp_path: Path, copies: int) -> None:
    """A paste (the excerpt alone, read record by record) and a log of a few MB (under REPEAT_MIN,
    scanned window by window) keep every close as an event."""
    data = churn_log(tmp_path / "broker.log", copies)
    report = pipeline.analyse_logs([str(tmp_path / "broker.log")])
    assert "counted" not in report.sources[0].meta
    assert report.summary["events_by_kind"]["client_closed_abruptly"] == data.count(ABRUPT) == 45 * copies


def test_what_a_window_keeps_shrinks_as_the_input_grows() -> None:
    """Past REPEAT_MIN a window keeps fewer repeats the bigger the input, so one expression's kept
    hits stay near REPEAT_BUDGET in all (the events, the analysis and the report do not grow with
    the log), and never fewer than REPEAT_FLOOR a window."""
    assert reader.repeat_keep(reader.REPEAT_MIN - 1) is None
    assert reader.repeat_keep(reader.REPEAT_MIN) == reader.REPEAT_KEEP
    sizes = [reader.REPEAT_MIN << k for k in range(8)]  # 32 MB to 4 GB
    keeps = [reader.repeat_keep(size) for size in sizes]
    assert keeps == sorted(keeps, reverse=True) and keeps[-1] == reader.REPEAT_FLOOR
    for size, keep in zip(sizes, keeps, strict=True):
        assert keep is not None
        windows = size // reader.CHUNK
        assert keep * windows <= max(reader.REPEAT_BUDGET, reader.REPEAT_FLOOR * windows)


def test_a_worker_retrying_a_dead_broker_is_one_outage_counted(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker retrying a broker that stays down writes one refused connect every few seconds for
    hours: past a window's first few they are counted (none lost), the outage stays one incident,
    and memory stays flat. The retry record is a real one (tests/fixtures/rabbitmq-broker-restart)."""
    real = (FIXTURES / "rabbitmq-broker-restart" / "worker.log").read_text().splitlines()
    head = "\n".join(real[:real.index(next(ln for ln in real if "Cannot connect" in ln))]) + "\n"
    retry = next(i for i, ln in enumerate(real) if "Errno 111" in ln)
    record = real[retry:retry + 3]  # the refused connect, "Trying again ...", a blank line
    start = datetime.strptime(record[0][1:24], "%Y-%m-%d %H:%M:%S,%f")
    lines = []
    for k in range(60_000):  # 2 s apart: 33 hours, ~13 MB (a day's retries fill REPEAT_MIN)
        at = start + timedelta(seconds=2 * k)
        lines.append(f"[{at:%Y-%m-%d %H:%M:%S},{at.microsecond // 1000:03d}" + record[0][24:])
        lines.append(record[1])
        lines.append("")
    path = tmp_path / "worker.log"
    path.write_text(head + "\n".join(lines) + "\n")
    monkeypatch.setattr(reader, "REPEAT_MIN", 1024 * 1024)  # as if it were a big input
    report = pipeline.analyse_logs([str(path)])
    kept = report.summary["events_by_kind"]["cannot_connect"]
    counted = report.sources[0].meta["counted"]["cannot_connect"]
    assert kept + counted == path.read_text().count("Cannot connect to ") and counted > 50_000
    assert report.summary["incidents"] == 1
    assert any(f"{counted} cannot_connect" in w for w in report.warnings)


def test_lines_read_ahead_after_a_close_are_no_clock_going_backwards(tmp_path: Path) -> None:
    """A Redis with `timeout` set closes idle clients between accepts: the accepts read after each
    close (to pair reconnects) lie ahead of the scan, and must not be taken for time going back.
    The lines are the real ones of tests/fixtures/redis-server-timeout."""
    real = (FIXTURES / "redis-server-timeout" / "broker.log").read_text().splitlines()
    head = real[:next(i for i, ln in enumerate(real) if "Closing idle client" in ln)]
    accepted = next(ln for ln in real if " - Accepted " in ln)
    closing = next(ln for ln in real if "Closing idle client" in ln)
    start = datetime.strptime(closing[7:31], "%d %b %Y %H:%M:%S.%f")
    lines = list(head)
    for k in range(20_000):  # ~1.5 MB: scanned window by window, not as a paste
        at = start + timedelta(milliseconds=300 * k)
        stamp = at.strftime("%d %b %Y %H:%M:%S.") + f"{at.microsecond // 1000:03d}"
        lines += [accepted[:7] + stamp + accepted[31:], closing[:7] + stamp + closing[31:]]
    path = tmp_path / "redis.log"
    path.write_text("\n".join(lines) + "\n")
    report = pipeline.analyse_logs([str(path)])
    assert report.summary["events_by_kind"]["server_closed_idle"] == 20_000
    assert not any("backwards" in w for w in report.warnings), report.warnings
    assert report.findings[0].category.value == "redis_server_timeout"


@pytest.mark.parametrize(("close", "into"), [(3, 1), (17, 20), (40, 40)])
def test_a_line_across_a_windows_edge_is_found_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   close: int, into: int) -> None:
    """Windows (and ranges) are cut at any byte: an abrupt close whose line the edge cuts in two is
    found once, by the window that holds its start, never by neither (a gigabyte of churn lost two
    of 236,913) nor by both. The real recording, read window by window (past the size pastes are
    read record by record at), with windows whose first edge falls ``into`` bytes inside the
    ``close``-th abrupt close's words."""
    data = churn_log(tmp_path / "broker.log", 3)  # ~600 KB, 135 abrupt closes
    starts = [m.start() for m in re.finditer(re.escape(ABRUPT), data)]
    chunk = starts[close] + into
    monkeypatch.setattr(parallel, "CHUNK", chunk)
    monkeypatch.setattr(parallel, "SPLIT_MIN", 1 << 40)  # one process, every window in turn
    report = pipeline.analyse_logs([str(tmp_path / "broker.log")])
    assert "counted" not in report.sources[0].meta
    closes = [e for e in report.events if e.kind.value == "client_closed_abruptly"]
    assert len(closes) == len(starts) == data.count(ABRUPT)
    assert len({e.line for e in closes}) == len(closes)
    cut = data[:chunk].count(b"\n") + 1  # the line the first edge cuts; its record (the event) begins
    assert any(e.line == cut - 1 for e in closes)  # the line before: "closing AMQP connection ...:"


def test_a_real_failure_is_never_counted_however_big_the_input(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an expression with more than REPEAT_KEEP hits in a window repeats: a worker's own
    failures, a few a window, are all events even where a window keeps only REPEAT_FLOOR of a
    repeated line (a 2 GB input; 86 of its 683 incidents were counted away when the floor applied
    to every expression). The bench's worker shape, a failure every 3 MB, in 8 MB windows."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import shapes  # the bench's generators

    truth = shapes.generate("worker", 14, tmp_path / "worker.log")
    monkeypatch.setattr(reader, "REPEAT_MIN", 1024 * 1024)  # as if it were a big input
    monkeypatch.setattr(reader, "REPEAT_BUDGET", 1)  # and a huge one: the floor
    assert reader.repeat_keep((tmp_path / "worker.log").stat().st_size) == reader.REPEAT_FLOOR
    assert int(truth["injected"]) > reader.REPEAT_FLOOR + 1  # more than the floor in the first window
    report = pipeline.analyse_logs([str(tmp_path / "worker.log")])
    assert len(report.incidents) == truth["injected"]
    assert "counted" not in report.sources[0].meta
