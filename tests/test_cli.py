"""The command line as users meet it: console script, `celery doctor`, exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from celery_doctor import cli, pipeline
from celery_doctor.status import ExitStatus
from conftest import console_script


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_console_script_and_celery_plugin_reach_the_same_commands() -> None:
    own = run(console_script(), "--help")
    plugin = run(sys.executable, "-m", "celery", "doctor", "--help")
    assert own.returncode == 0 and plugin.returncode == 0, plugin.stderr
    for command in ("logs", "config", "broker", "pins", "repro", "diagnose"):
        assert command in own.stdout and command in plugin.stdout


def test_bad_usage_is_one_line_and_exit_2() -> None:
    result = run(console_script(), "diagnose")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


# --- exit statuses, in-process through raw_main (the console script's own entry) -------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_exit_statuses_are_the_documented_numbers() -> None:
    assert [(s.name, int(s)) for s in ExitStatus] == [
        ("OK", 0), ("FINDINGS", 1), ("BAD_INPUT", 2), ("INTERNAL", 70), ("INTERRUPTED", 130)]


def test_findings_and_fail_on_choose_between_ok_and_findings(capsys: pytest.CaptureFixture[str]) -> None:
    log = str(EXAMPLES / "idle-cut" / "worker.log")
    assert cli.raw_main(["logs", log, "--format", "json"]) is ExitStatus.FINDINGS
    assert cli.raw_main(["logs", log, "--format", "json", "--fail-on", "critical"]) is ExitStatus.OK
    assert '"findings"' in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["logs"], ["logs", "--bogus", "x"], ["nope"], ["logs", "--format", "xml", "x.log"], ["diagnose"],
    ["logs", "/nonexistent/worker.log"],
])
def test_usage_and_input_errors_are_one_line_and_bad_input(args: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.raw_main(args) is ExitStatus.BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("celery-doctor: error: "), err
    assert "Usage:" not in err and "Traceback" not in err


def test_an_escaping_exception_is_one_redacted_internal_line(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot reach amqp://guest:s3cr3t-pw@rabbit:5672//")

    monkeypatch.setattr(pipeline, "analyse_logs", broken)
    monkeypatch.delenv("CELERY_DOCTOR_DEBUG", raising=False)
    assert cli.raw_main(["logs", str(EXAMPLES / "idle-cut" / "worker.log")]) is ExitStatus.INTERNAL
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("celery-doctor: internal error: RuntimeError: ")
    assert "s3cr3t-pw" not in err and "Traceback" not in err

    monkeypatch.setenv("CELERY_DOCTOR_DEBUG", "1")
    assert cli.raw_main(["logs", str(EXAMPLES / "idle-cut" / "worker.log")]) is ExitStatus.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err and "s3cr3t-pw" not in err


def test_ctrl_c_is_interrupted(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "analyse_logs", interrupted)
    assert cli.raw_main(["logs", str(EXAMPLES / "idle-cut" / "worker.log")]) is ExitStatus.INTERRUPTED
    assert capsys.readouterr().err == "celery-doctor: interrupted\n"


def test_the_celery_plugin_gives_the_same_one_line_error() -> None:
    # celery's own click group invokes ours: DoctorGroup.invoke must catch as raw_main does
    result = run(sys.executable, "-m", "celery", "doctor", "logs", "/nonexistent/worker.log")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("celery-doctor: error: "), result.stderr


def test_diagnose_takes_several_logs_after_one_flag_as_a_shell_glob_passes_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    logs = sorted(str(p) for p in (EXAMPLES / "idle-cut").glob("*.log"))
    assert len(logs) == 2
    assert cli.raw_main(["diagnose", "--logs", *logs, "--format", "json"]) is ExitStatus.FINDINGS
    payload = json.loads(capsys.readouterr().out)
    assert sorted(s["name"] for s in payload["sources"] if s["events"]) == logs
    assert payload["findings"][0]["category"] == "network_idle_timeout"


@pytest.mark.parametrize("command", ["logs", "diagnose"])
def test_a_glob_or_folder_that_names_nothing_says_so(command: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    flag = ["--logs"] if command == "diagnose" else []
    pattern = str(tmp_path / "worker-*.log")
    assert cli.raw_main([command, *flag, pattern]) is ExitStatus.BAD_INPUT
    assert capsys.readouterr().err == f"celery-doctor: error: nothing matches {pattern}\n"
    assert cli.raw_main([command, *flag, str(tmp_path)]) is ExitStatus.BAD_INPUT
    assert capsys.readouterr().err == f"celery-doctor: error: {tmp_path}: no log files in this folder\n"


def test_config_help_lists_every_audit_option() -> None:
    shown = run(console_script(), "config", "--help")
    assert shown.returncode == 0
    check = cli.config.commands["check"]
    for param in check.params:
        if isinstance(param, click.Option):
            assert param.opts[-1] in shown.stdout, param.opts
    assert "migrate" in shown.stdout and "[PATHS]" not in shown.stdout


def test_progress_shows_on_a_terminal_and_never_on_a_pipe() -> None:
    import os
    import pty

    args = [console_script(), "broker", "redis://127.0.0.1:6379/0", "--churn-interval", "1.5", "--format", "json"]
    piped = run(*args)
    assert piped.returncode in (0, 1) and piped.stderr == "", piped.stderr
    master, slave = pty.openpty()
    try:
        shown = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, timeout=60)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert shown.returncode in (0, 1)
    assert b"probing redis://127.0.0.1:6379/0" in seen
    assert json.loads(shown.stdout)["command"] == "broker"  # stdout stays the report alone


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "html"])
def test_counts_read_right_in_every_format(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs = sorted(str(p) for p in (EXAMPLES / "broker-restart").glob("*.log"))
    cli.raw_main(["diagnose", "--logs", *logs, "--format", fmt])
    out = capsys.readouterr().out
    assert "1 incident began" in out and "(s)" not in out and "1 incidents" not in out
