"""A busy broker's abrupt closes (publishers that exit without closing): counted past the first of
each window, never lost from the totals, and said as counted, on a real RabbitMQ churn recording."""

from __future__ import annotations

import re
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


def test_abrupt_closes_past_a_windows_first_are_counted_and_said(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = churn_log(tmp_path / "broker.log", 12)  # 2.4 MB, 540 abrupt closes
    # the scan's windows and ranges made small (as a gigabyte's are to it): 200 KB windows, a pool of two
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("CHUNK", 200_003), ("RANGE_MIN", 512 * 1024 + 7), ("RANGE_MAX", 512 * 1024 + 7),
                        ("SPLIT_MIN", 1024 * 1024), ("NUMPY_MIN", 1024 * 1024)):
        monkeypatch.setattr(parallel, name, value)
    monkeypatch.setattr(counting, "SMALL", 4096)
    report = pipeline.analyse_logs([str(tmp_path / "broker.log")])
    kept = [e for e in report.events if e.kind.value == "client_closed_abruptly"]
    counted = report.sources[0].meta["abrupt_closes_counted"]
    windows = -(-len(data) // 200_003) + len(parallel.plan([len(data)], 2))  # a range's last window is its own
    assert counted > 0 and 0 < len(kept) <= reader.CHURN_KEEP * windows
    # every abrupt close is either an event or counted: none is lost from the totals
    events = report.summary["events_by_kind"]["client_closed_abruptly"]
    assert events + counted == data.count(ABRUPT)
    by_window = report.sources[0].meta["abrupt_closes_counted_by_window"]
    assert sum(n for _, _, n in by_window) == counted
    assert any(f"{counted} more connection(s) closed without a close" in w for w in report.warnings)
    benign = next(f for f in report.findings if f.category.value == "benign_client_disconnect")
    assert f"and {counted} more the scan counted" in benign.explanation and benign.facts["counted_closes"] == counted


def test_a_pasted_excerpt_keeps_every_abrupt_close(tmp_path: Path) -> None:
    """A paste is read record by record: the recorded excerpt alone keeps its 45 closes as events."""
    data = churn_log(tmp_path / "broker.log", 1)
    report = pipeline.analyse_logs([str(tmp_path / "broker.log")])
    assert "abrupt_closes_counted" not in report.sources[0].meta
    assert report.summary["events_by_kind"]["client_closed_abruptly"] == data.count(ABRUPT) == 45
