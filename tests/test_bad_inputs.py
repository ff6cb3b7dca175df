"""Inputs a careless or hostile user gives (found by fuzzing, see docs/fuzz.md): each ends as a
correct answer or one clear line with exit 2, never a traceback, a hang or non-JSON output.

Each case is written here (not read from elsewhere) so the suite runs from a fresh clone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from celery_doctor.cli import main
from celery_doctor.ingest import times

W = "[{ts},000: ERROR/MainProcess] consumer: Cannot connect to amqp://guest:**@127.0.0.1:5672//: " \
    "[Errno 111] Connection refused.\n"
GOOD = W.format(ts="2024-05-01 10:00:00")


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stdout, result.stderr


def strict_json(text: str) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=reject)


@pytest.mark.parametrize("fields,expected", [
    ((2024, 13, 1, 10, 0, 0), None),  # month 13
    ((2024, 2, 30, 10, 0, 0), None),  # Feb 30
    ((0, 1, 1, 0, 0, 0), None),  # year 0
    ((9999, 12, 31, 23, 59, 59), None),  # the HTML axis and clock offsets would leave datetime's range
    ((2016, 12, 31, 23, 59, 60), "2016-12-31T23:59:59.999999+00:00"),  # a leap second clamps
    ((2024, 5, 1, 10, 0, 0), "2024-05-01T10:00:00+00:00"),
])
def test_impossible_header_times_name_no_moment(fields: tuple[int, ...], expected: str | None) -> None:
    value = times.stamp(*fields)
    assert (value.isoformat() if value else None) == expected


def test_impossible_iso_zones_and_epochs() -> None:
    assert times.parse_iso("9999-12-31T23:00:00-05:00") is None
    assert times.parse_iso("0001-01-01T00:00:00+05:00") is None
    assert times.parse_iso("2016-12-31T23:59:60Z").isoformat() == "2016-12-31T23:59:59.999999+00:00"
    assert times.stamp(2024, 5, 1, 10, 0, 0, 0, times.zone("+99:00")) is None
    assert times.zone("+02:00") is not None and times.zone("+02:00") is not times.IMPOSSIBLE_ZONE
    for value in (1e20, float("inf"), float("nan"), 1e300):
        assert times.epoch(value) is None
    assert times.epoch(1714557600).isoformat() == "2024-05-01T10:00:00+00:00"


@pytest.mark.parametrize("name,text", [
    ("month13.log", W.format(ts="2024-13-01 10:00:00") + GOOD),
    ("leap.log", W.format(ts="2016-12-31 23:59:60") + GOOD),
    ("year0.log", W.format(ts="0000-01-01 00:00:00") + GOOD),
    ("year1.log", W.format(ts="0001-01-01 00:00:00") + GOOD),
    ("year9999.log", W.format(ts="9999-12-31 23:59:59") + GOOD),
    ("zone.log", "2024-05-01 10:00:00,000+99:00 ERROR consumer: Connection to broker lost.\n" + GOOD),
    ("rabbit.log", "2024-05-01 10:00:00.000000+00:00 [error] <0.1.0> closing AMQP connection <0.1.0> "
                   "(1.2.3.4:1 -> 5.6.7.8:5672):\nmissed heartbeats from client, timeout: " + "9" * 5000 + "s\n"),
    ("rabbit2.log", "2024-05-01 10:00:00.000000+00:00 [warning] <0.2.0> closing AMQP connection <0.2.0> "
                    "(1.2.3.4:2 -> 5.6.7.8:5672, duration: '" + "9" * 400 + "ms'):\nclient unexpectedly closed "
                    "TCP connection\n"),
    ("runtime.log", "[2024-05-01 09:59:00,000: INFO/ForkPoolWorker-1] Task t[1] succeeded in " + "9" * 400
                    + "s: None\n" + GOOD),
    ("app.jsonl", '{"ts": 1e20, "message": "Connection to broker lost"}\n{"ts": Infinity, "message": "x"}\n'
                  '{"ts": "9999-12-31T23:00:00-05:00", "message": "Connection to broker lost"}\n'
                  '{"ts": "2024-05-01T10:00:00Z", "message": "Connection to broker lost", "n": NaN, "m": -Infinity}\n'
                  + "[" * 100000 + "\n"),
])
def test_impossible_log_values_never_abort_the_run(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    for fmt in ("text", "json", "html"):
        code, out, err = run(["logs", str(path), "--format", fmt])
        assert code in (0, 1, 2), err
        if code == 2:
            assert len(err.strip().splitlines()) == 1
        elif fmt == "json":
            strict_json(out)


def test_a_fifo_without_a_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    results: list[tuple[int, str, str]] = []
    worker = threading.Thread(target=lambda: results.append(run(["logs", str(fifo)])), daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
        pytest.fail("logs waited on a FIFO with no writer")
    code, _out, err = results[0]
    assert code == 2 and "FIFO" in err and time.monotonic() - started < 10


@pytest.mark.parametrize("args", [["config", "/dev/zero"], ["config", "migrate", "/dev/zero"],
                                  ["pins", "-r", "/dev/zero"], ["logs", "/dev/zero"]])
def test_endless_devices_are_refused(args: list[str]) -> None:
    started = time.monotonic()
    code, _out, err = run(args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("name,text", [
    ("uv.lock", "version = 1\n[[package]]\nname = \"celery\"\nversion = \"5.4.0\"\nx = " + "9" * 5000 + "\n"),
    ("Pipfile.lock", '{"_meta": {}, "default": {"celery": {"version": "==5.4.0"}}, "n": ' + "9" * 5000 + "}"),
    ("pyproject.toml", "[project]\nname = \"x\"\nn = " + "9" * 5000 + "\n"),
])
def test_numbers_longer_than_int_takes_are_a_bad_file(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    code, _out, err = run(["pins", "-r", str(tmp_path / name)])
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_syntax_warning_in_a_broken_config_stays_off_stderr(tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text("x = 3ish\nBROKER_URL = 'amqp://\n")
    code, _out, err = run(["config", str(tmp_path / "celeryconfig.py")])
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_the_final_redaction_pass_keeps_json_valid() -> None:
    from celery_doctor.redact import redact

    for text in ("broker_password = '***'", 'x password = "***" y', "broker_password = 'ab=S3cr3t'",
                 'password = "S3cr3t"', "token: ***", "password=S3cr3t;x"):
        doc = json.dumps({"text": text}, indent=2)
        again = json.loads(redact(doc))
        assert "S3cr3t" not in again["text"] and again["text"] == json.loads(json.dumps({"text": redact(text)}))["text"]


def test_a_utf16_log_gives_the_same_answer_as_its_utf8_copy(tmp_path: Path) -> None:
    source = Path(__file__).resolve().parent.parent / "examples" / "idle-cut" / "worker.log"
    (tmp_path / "utf16.log").write_bytes(source.read_text(encoding="utf-8").encode("utf-16"))
    utf8 = run(["logs", str(source), "--format", "json"])
    utf16 = run(["logs", str(tmp_path / "utf16.log"), "--format", "json"])
    assert utf16[0] == utf8[0]
    first, second = strict_json(utf8[1]), strict_json(utf16[1])
    assert [f["category"] for f in first["findings"]] == [f["category"] for f in second["findings"]]  # type: ignore[index]
