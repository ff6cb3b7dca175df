"""`celery-doctor config`: bad input is one line and exit 2; effective settings from a real import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = CONFIGS) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("CELERY_BROKER_URL", None) if env is None else None
    return subprocess.run([sys.executable, "-m", "celery_doctor.cli", "config", *args], capture_output=True,
                          text=True, timeout=60, env=full_env, cwd=cwd)


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("celery-doctor: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(("args", "needles"), [
    (["broken.py"], ["broken.py:", "syntax error"]),
    (["py2_config.py"], ["Python 2"]),
    (["missing.py"], ["no such file"]),
    (["migrate", "py2_config.py"], ["Python 2"]),
    (["--app", "no_such_module"], ["No module named 'no_such_module'"]),
    (["--app", "raising_app"], ["RuntimeError", "DATABASE_URL"]),
    (["--app", "hang_app", "--timeout", "3"], ["did not finish within 3s"]),
    (["--app", "eff_app", "--python", str(CONFIGS / "celeryconfig_eff.py")], ["--python"]),
    (["celeryconfig_31.py", "--to", "9.9"], ["9.9"]),
    (["celeryconfig_31.py", "--idle-timeout", "forever"], ["aws-elb"]),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], needles: list[str]) -> None:
    _one_line_error(run(*args), *needles)


def test_static_json_report_without_secrets() -> None:
    proc = run("celeryconfig_31.py", "--format", "json", "--idle-timeout", "aws-nlb")
    assert proc.returncode == 1, proc.stderr
    assert "s3cretpw" not in proc.stdout
    report = json.loads(proc.stdout)
    assert report["command"] == "config"
    statuses = {row["written"]: row["status"] for row in report["data"]["config"]["settings"]}
    assert statuses["CELERYD_FORCE_EXECV"] == "removed" and statuses["BROKER_HEARTBEAT"] == "old_name"


def test_project_directory_reads_settings_and_celery_py() -> None:
    proc = run(str(CONFIGS / "django_nons"), "--format", "json")
    report = json.loads(proc.stdout)
    assert report["data"]["config"]["effective_broker_url"] == "amqp://guest@localhost:5672//"
    assert any("namespace='CELERY'" in f["title"] for f in report["findings"])


def test_effective_settings_with_env_override() -> None:
    proc = run("--app", "eff_app", "--format", "json",
               env={"CELERY_BROKER_URL": "redis://:envsecret@127.0.0.1:6379/5", "BROKER_URL": "amqp://x@h//"})
    assert proc.returncode == 1, proc.stderr
    assert "envsecret" not in proc.stdout
    report = json.loads(proc.stdout)
    rows = {r["setting"]: r for r in report["data"]["effective"]}
    assert rows["broker_url"]["origin"] == "env:CELERY_BROKER_URL"
    assert rows["broker_heartbeat"] == {**rows["broker_heartbeat"], "value": 30, "origin": "config"}
    assert rows["worker_prefetch_multiplier"]["value"] == 2  # app.conf.X in the app module
    assert "deprecated_settings" not in rows  # Celery's bookkeeping in app.conf, not a setting
    titles = [f["title"] for f in report["findings"]]
    assert any(t.startswith("broker_url: intended") for t in titles)
    assert any("BROKER_URL is set in the environment" in t for t in titles)


def test_effective_reports_celerys_own_refusal() -> None:
    proc = run("--app", "mixed_app", "--format", "json")
    report = json.loads(proc.stdout)
    assert any("cannot load this app's configuration" in f["title"] and "Cannot mix new and old" in f["explanation"]
               for f in report["findings"])
