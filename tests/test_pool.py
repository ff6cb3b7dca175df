"""The scan's pool of forked workers (ingest/parallel.py): every range once, a worker's error
raised in the parent, a worker's death said, never a hang or a worker left behind."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from celery_doctor.ingest import parallel, read_logs
from conftest import children_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import shapes  # the bench's generators


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "workers", lambda: 2)
    for name, value in (("RANGE_MIN", 256 * 1024), ("RANGE_MAX", 256 * 1024), ("SPLIT_MIN", 1024 * 1024)):
        monkeypatch.setattr(parallel, name, value)


def _children() -> set[int]:
    return children_of(os.getpid())


def _in_the_workers(monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]) -> None:
    """``fault`` runs in a forked worker before it scans any range but a file's first."""
    real, parent = parallel.scan_range, os.getpid()

    def faulty(path: str, template, index: int, start: int, end: int):  # type: ignore[no-untyped-def]
        if start > 0 and os.getpid() != parent:
            fault()
        return real(path, template, index, start, end)

    monkeypatch.setattr(parallel, "scan_range", faulty)  # inherited by the forked workers


def test_every_range_is_scanned_once_by_the_pool(tmp_path: Path, small_ranges: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "worker.log"
    truth = shapes.generate("worker", 3, log)
    ranges = parallel.plan([log.stat().st_size], 2)
    assert len(ranges) >= 8
    pools: list[int] = []
    real = parallel._Pool

    def counted(tasks, size):  # type: ignore[no-untyped-def]
        pools.append(size)
        return real(tasks, size)

    monkeypatch.setattr(parallel, "_Pool", counted)
    pooled = read_logs([str(log)])
    assert pools == [2]  # the ranges went through the pool, to two workers
    monkeypatch.setattr(parallel, "workers", lambda: 1)  # the same ranges in this process
    alone = read_logs([str(log)])
    assert [(e.line, e.kind, e.text) for e in pooled.events] == [(e.line, e.kind, e.text) for e in alone.events]
    assert sum(e.kind.value == "connection_lost" for e in pooled.events) == truth["injected"]
    assert pooled.sources[0].lines == alone.sources[0].lines == log.read_bytes().count(b"\n")
    assert not _children()


def test_a_workers_error_is_raised_here_and_the_others_stop(tmp_path: Path, small_ranges: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "worker.log"
    shapes.generate("worker", 3, log)

    def failing() -> None:
        raise OSError(5, "Input/output error")

    _in_the_workers(monkeypatch, failing)
    with pytest.raises(OSError, match="Input/output error"):
        read_logs([str(log)])
    assert not _children()


def test_a_worker_killed_mid_scan_is_said_not_waited_for(tmp_path: Path, small_ranges: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "worker.log"
    shapes.generate("worker", 3, log)
    _in_the_workers(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(parallel.WorkerDied, match="killed by SIGKILL"):
        read_logs([str(log)])
    assert not _children()
