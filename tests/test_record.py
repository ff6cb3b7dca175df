"""The recorder itself: one real, quick recording proves it still produces usable fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(240)
def test_idle_cut_recording_on_rabbitmq_produces_logs_and_truth(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "rabbitmq-idle-cut"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "record_incident.py"), "idle-cut",
         "--broker", "rabbitmq", "--out", str(out), "--repeat", "1"],
        capture_output=True, text=True, timeout=200,
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"worker.log", "broker.log", "proxy.jsonl",
                                               "truth.json"}

    truth = json.loads((out / "truth.json").read_text())
    assert truth["scenario"] == "idle-cut" and truth["broker"] == "rabbitmq"
    assert truth["expected"] == {"category": "network_idle_timeout", "closed_by": "network",
                                 "phase": "idle"}
    assert truth["fault"] == "idle-cut:8:rst"
    assert truth["worker"]["broker_heartbeat"] == 0
    assert truth["versions"]["celery"] and truth["versions"]["amqp"]
    assert [i["kind"] for i in truth["injected"]][:1] == ["proxy_cut"]

    worker = (out / "worker.log").read_text()
    assert "Connection to broker lost" in worker
    assert "Connection reset by peer" in worker
    assert worker.count("Connected to amqp://") >= 2  # it reconnected after the cut
    assert "guest:guest" not in worker

    broker = (out / "broker.log").read_text()
    assert "client unexpectedly closed TCP connection" in broker

    events = [json.loads(line) for line in (out / "proxy.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "proxy_cut" and "RST" in e["message"] for e in events)
