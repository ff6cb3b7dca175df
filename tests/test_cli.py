"""The command line as users meet it: console script, `celery doctor`, exit statuses."""

from __future__ import annotations

import subprocess
import sys

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
