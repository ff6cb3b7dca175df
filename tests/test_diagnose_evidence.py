"""diagnose's evidence model: a cause must explain the observed failures, one input's many
findings are one piece of evidence, the probe's own refused login is about the probe URL, and
one heartbeat is proposed in every format."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from celery_doctor.model import Category, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from celery_doctor.rules import registry
from celery_doctor.rules.fixes import heartbeat_for_idle, worst_silence_s
from conftest import FIXTURES, ROOT, console_script

IDLE_CUT = str(ROOT / "examples" / "idle-cut")
OLD_CONFIG = str(FIXTURES / "configs" / "celeryconfig_31.py")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=180)


def test_config_hygiene_is_never_the_headline_beside_failures_it_does_not_explain() -> None:
    report = diagnose(DiagnoseOptions(logs=[IDLE_CUT], config=OLD_CONFIG, from_version="3.1", to_version="5.5"))
    top = report.findings[0]
    assert top.category == Category.NETWORK_IDLE_TIMEOUT and top.role == Role.CAUSE
    assert report.summary["top_cause"] == "network_idle_timeout"
    from_config = [f for f in report.findings if f.facts.get("source") == "config"]
    assert from_config and all(f.role == Role.CONFIG for f in from_config)
    # the config's "heartbeats are off" became the cause's evidence instead of a rival finding
    assert any(e.source == OLD_CONFIG for e in top.evidence)


def test_many_findings_of_one_input_do_not_add_up_to_certainty() -> None:
    report = diagnose(DiagnoseOptions(config=OLD_CONFIG, from_version="3.1", to_version="5.5"))
    changed = [f for f in report.findings if f.category == Category.VERSION_INCOMPATIBILITY]
    assert len(changed) > 3
    assert max(f.confidence for f in report.findings) < 1.0
    assert report.summary["answer"] == "risk"
    assert all(f.role == Role.RISK for f in changed)


def _heartbeats(text: str) -> set[str]:
    return set(re.findall(r"(?:broker_heartbeat|BROKER_HEARTBEAT)\s*=\s*(\d+)", text))


def test_one_heartbeat_value_in_every_format(tmp_path: Path) -> None:
    seen = {}
    for fmt in ("text", "markdown", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        result = cli("diagnose", "--logs", IDLE_CUT, "--config", OLD_CONFIG, "--from", "3.1", "--to", "5.5",
                     "--format", fmt, "--output", str(out))
        assert result.returncode == 1, result.stderr
        seen[fmt] = _heartbeats(out.read_text())
    doc = json.loads((tmp_path / "report.json").read_text())
    cut = doc["findings"][0]
    expected = str(heartbeat_for_idle(cut["facts"]["idle_timeout_s"]))
    proposed = {v for f in doc["findings"] if f.get("fix") for v in _heartbeats(f["fix"].get("snippet") or "")}
    assert proposed == {expected}
    # besides the proposal, a report may only quote the config's own line (heartbeats off) as evidence
    assert all(values - {"0"} == {expected} for values in seen.values()), seen
    # the value keeps the worker's longest silence inside the observed idle time, with margin
    assert worst_silence_s(int(expected)) <= cut["facts"]["idle_timeout_s"] / 2
    assert "idle_timeout.timeout_seconds" in cut["fix"]["text"] and "timeout client" in cut["fix"]["text"]


def test_probe_login_refused_beside_worker_logins_is_about_the_probe_url(rabbitmq_url: str) -> None:
    wrong = re.sub(r"//([^:@/]+):([^@]*)@", r"//\1:WRONG-pw@", rabbitmq_url)
    assert wrong != rabbitmq_url
    report = diagnose(DiagnoseOptions(logs=[IDLE_CUT], broker=wrong))
    assert report.findings[0].category == Category.NETWORK_IDLE_TIMEOUT
    probe = [f for f in report.findings if f.facts.get("source") == "broker"
             and f.category == Category.AUTH_OR_PERMISSIONS]
    assert probe and probe[0].role == Role.CONTEXT and probe[0].rule_id == "CD-X01"
    assert probe[0].contradicting and all("Connected to" in e.text for e in probe[0].contradicting)
    assert all(f.category != Category.AUTH_OR_PERMISSIONS for f in report.findings if f.role == Role.CAUSE)


def test_every_finding_names_its_rule_and_every_rule_is_registered() -> None:
    report = diagnose(DiagnoseOptions(logs=[IDLE_CUT], config=OLD_CONFIG, from_version="3.1", to_version="5.5"))
    assert all(f.rule_id in registry.REGISTRY for f in report.findings), [f.rule_id for f in report.findings]
    assert all(info.summary for info in registry.REGISTRY.values())
