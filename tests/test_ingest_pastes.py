"""Real pastes from public threads (tests/fixtures/pastes, sources in pastes.json and README.md):
none is rejected as an unknown format, and each gives the events a person sees in it, dated or
undated, with the error its lines name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_doctor.ingest import read_logs
from conftest import FIXTURES

PASTES = FIXTURES / "pastes"
CORPUS = json.loads((PASTES / "pastes.json").read_text())


def _events(path: Path):
    result = read_logs([str(path)])
    return result, sorted(result.events, key=lambda e: e.line)


@pytest.mark.parametrize("entry", CORPUS, ids=[e["file"][:2] for e in CORPUS])
def test_paste_is_read_and_gives_the_events_a_person_sees(entry: dict) -> None:
    result, events = _events(PASTES / entry["file"])
    warnings = " ".join(w for s in result.sources for w in s.warnings)
    assert "unknown log format" not in warnings, (entry["file"], warnings)
    assert result.sources[0].format not in ("unknown",), entry["file"]
    wanted = entry["expect"]
    connection = [e for e in events if e.kind.value not in ("task_received", "task_succeeded")]
    assert [e.kind.value for e in connection] == [w["kind"] for w in wanted], (entry["file"], connection)
    for event, want in zip(connection, wanted, strict=True):
        assert (event.ts is not None) == want["dated"], (entry["file"], event)
        if "error" in want:
            if want["error"] is None:  # a traceback cut before its exception: never a frame or source line
                assert event.error is None or not event.error.startswith(("File ", "return ", "self.", "s = ")), event
            else:
                assert event.error and want["error"] in event.error, (entry["file"], event.error)
        if "line" in want:
            assert event.line == want["line"], (entry["file"], event.line)


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 40
    assert len({e["url"] for e in CORPUS}) >= 40
    assert all(e["url"].startswith("https://") for e in CORPUS)
    readme = (PASTES / "README.md").read_text()
    assert all(e["file"] in readme and e["url"] in readme for e in CORPUS)


def test_chained_traceback_reports_cause_and_raised() -> None:
    _, events = _events(PASTES / "34-loguru-chained-redis-auth.txt")
    (event,) = events
    assert event.detail["cause"] == "IndexError: pop from empty list"
    raised = "redis.exceptions.AuthenticationError: Authentication required."
    assert event.detail["exceptions"][-1] == event.error == raised


def test_standalone_shutdown_is_not_glued_to_the_task_line_above() -> None:
    _, events = _events(PASTES / "32-ctrl-c-warm-shutdown-standalone.txt")
    (shutdown,) = events
    assert shutdown.text == "worker: Warm shutdown (MainProcess)"


def test_stderr_warning_is_not_part_of_the_task_record() -> None:
    result = read_logs([str(PASTES / "16-stderr-runtimewarning-standalone.txt")])
    assert all("RuntimeWarning" not in e.text for e in result.events)


def test_banner_behind_prefixes_and_markdown_is_read() -> None:
    for name, version in (("44-journald-short-banner.txt", "5.2.7"), ("09-banner-header-after-spaces.txt", "5.3.1")):
        result = read_logs([str(PASTES / name)])
        assert result.sources[0].meta.get("celery_version") == version, name


def test_diagnose_warns_about_unreadable_logs_and_judges_the_config(tmp_path: Path) -> None:
    """An unreadable log is a warning in diagnose while the config can still be judged."""
    from celery_doctor.pipeline import DiagnoseOptions, diagnose

    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    config = tmp_path / "celeryconfig.py"
    config.write_text("BROKER_URL = 'amqp://mq//'\nBROKER_HEARTBEAT = 0\n")
    report = diagnose(DiagnoseOptions(logs=[str(junk)], config=str(config)))
    assert any(w.startswith("logs not used:") and "binary" in w for w in report.warnings)
    assert report.findings and "config" in report.summary["inputs"]


@pytest.mark.parametrize("folder", sorted(p.parent for p in FIXTURES.glob("*/truth.json")), ids=lambda p: p.name)
def test_record_reader_and_chunk_scanner_agree_on_clean_logs(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small inputs are read record by record, large ones by the chunk scanner: on the recorded
    (clean) logs both must give the same events."""
    import celery_doctor.ingest as ingest

    paths = [str(folder / "worker.log"), str(folder / "broker.log")]
    whole = [(e.source, e.line, e.kind, e.ts, e.error) for e in read_logs(paths).events]
    monkeypatch.setattr(ingest, "PASTE_MAX", 0)
    scanned = [(e.source, e.line, e.kind, e.ts, e.error) for e in read_logs(paths).events]
    assert whole == scanned
