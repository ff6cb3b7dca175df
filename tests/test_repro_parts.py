"""The repro harness's pure parts: ledger accounting, scenario plans, the verdict each fault
must produce, config layering, broker-log filtering, and the CLI's refusal of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from celery_doctor.model import Category, Event, Kind, Side
from celery_doctor.repro import brokers, ledger, scenarios
from celery_doctor.repro.harness import _uses_old_names, _without_restart, config_module
from celery_doctor.repro.proxy import parse_fault


def _rows(*rows: tuple[str, str, dict]) -> list[dict]:
    return [{"ev": ev, "id": tid, "ts": n, **extra} for n, (ev, tid, extra) in enumerate(rows)]


def test_ledger_names_lost_stranded_and_duplicated_tasks() -> None:
    rows = _rows(
        ("published", "t1", {"ok": True}), ("started", "t1", {}), ("succeeded", "t1", {}),
        ("acked", "t1", {"ok": True}),
        ("published", "t2", {"ok": True}),  # never ran, gone from the broker: lost
        ("published", "t3", {"ok": True}),  # never ran, still queued: stranded
        ("published", "t4", {"ok": True}), ("started", "t4", {}), ("succeeded", "t4", {}),
        ("acked", "t4", {"ok": False, "error": "ConnectionResetError: reset"}),
        ("started", "t4", {"redelivered": True}), ("succeeded", "t4", {}),
        ("published", "t5", {"ok": False, "error": "OSError: Socket closed"}),
    )
    tasks = ledger.build(rows)
    summary = ledger.summarise(tasks, ledger.BrokerLeftovers(queued=["t3"], checked=True))
    assert (summary["confirmed"], summary["publish_failed"]) == (4, 1)
    assert summary["lost"] == 1 and summary["names"]["lost"] == ["t2"]
    assert summary["stranded"] == 1 and summary["names"]["stranded"] == ["t3"]
    assert summary["duplicated"] == 1 and summary["names"]["duplicated"] == {"t4": 2}
    assert summary["extra_executions"] == 1 and summary["redelivered"] == 1
    assert summary["ack_failed"] == 1 and summary["names"]["ack_failed"] == ["t4"]
    assert summary["names"]["publish_failed"] == ["t5"]
    assert "1 lost" in ledger.verdict_line(summary)


def test_ledger_without_a_broker_check_calls_missing_tasks_unaccounted_not_lost() -> None:
    tasks = ledger.build(_rows(("published", "t1", {"ok": True})))
    summary = ledger.summarise(tasks, ledger.BrokerLeftovers(checked=False, note="down"))
    assert summary["lost"] == 0 and summary["unaccounted"] == 1


def test_ledger_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({"ev": "published", "id": "a", "ok": True}) + "\n{\"ev\": \"sta")
    assert [r["id"] for r in ledger.read_lines(path)] == ["a"]


def test_a_retried_publish_that_went_through_counts_as_confirmed() -> None:
    tasks = ledger.build(_rows(("published", "t", {"ok": False, "error": "x"}), ("published", "t", {"ok": True})))
    assert tasks["t"].published is True


@pytest.mark.parametrize("spec,heartbeat", [("idle-cut:3:rst", 0.0), ("blackhole:2:8", 2.0)])
def test_default_heartbeat_lets_the_fault_show(spec: str, heartbeat: float) -> None:
    plan = scenarios.plan("idle", parse_fault(spec))
    assert plan.heartbeat == heartbeat
    assert sum(s.seconds for s in plan.steps if s.op == "wait") < 25


def test_idle_wait_covers_three_idle_periods() -> None:
    plan = scenarios.plan("idle", parse_fault("idle-cut:3"))
    wait = next(s for s in plan.steps if s.op == "wait")
    assert wait.seconds >= 3 * 3


def test_long_task_defaults_to_solo_late_acks_and_outlasts_the_heartbeat() -> None:
    plan = scenarios.plan("long-task", None)
    task = next(s for s in plan.steps if s.op == "publish")
    assert plan.pool == "solo" and plan.acks_late and plan.heartbeat > 0
    assert task.args[0] > 2 * plan.heartbeat


def test_unknown_scenario_is_a_doctor_error() -> None:
    with pytest.raises(scenarios.ScenarioError):
        scenarios.plan("soak", None)


def _proxy_event(kind: Kind) -> Event:
    return Event(ts=datetime.now(UTC), source="proxy", line=1, side=Side.PROXY, kind=kind, text="")


def test_expected_category_follows_what_the_proxy_really_did() -> None:
    fault = parse_fault("idle-cut:5:rst")
    plan = scenarios.plan("idle", fault, heartbeat=1)
    fired, _ = scenarios.expected_categories(fault, "idle", plan, [_proxy_event(Kind.PROXY_CUT)])
    quiet, _ = scenarios.expected_categories(fault, "idle", plan, [_proxy_event(Kind.CONNECTED)])
    assert fired == {Category.NETWORK_IDLE_TIMEOUT}
    assert quiet == {Category.NO_INCIDENT}  # heartbeats kept the flow busy: nothing to name
    hole = parse_fault("blackhole:1:5")
    assert scenarios.expected_categories(hole, "idle", plan, [_proxy_event(Kind.PROXY_BLACKHOLE)])[0] == {
        Category.NETWORK_PATH_LOSS}
    long_plan = scenarios.plan("long-task", None)
    assert scenarios.expected_categories(None, "long-task", long_plan, [])[0] == {
        Category.LONG_TASK_BLOCKS_HEARTBEAT}


def test_publisher_proxy_never_runs_the_restart_hook() -> None:
    assert _without_restart(parse_fault("broker-restart")) is None
    assert _without_restart(parse_fault("latency:5+broker-restart")).spec == "latency:5"  # type: ignore[union-attr]


def test_config_module_layers_overrides_in_the_users_naming_style(tmp_path: Path) -> None:
    old = tmp_path / "oldconfig.py"
    old.write_text("BROKER_URL = 'amqp://prod//'\nCELERY_ACKS_LATE = True\nBROKER_HEARTBEAT = 10\n")
    out = tmp_path / "gen_old.py"
    config_module(out, user_config=old, overrides={"broker_url": "amqp://proxy//", "task_default_queue": "q",
                                                   "broker_connection_retry_on_startup": True})
    namespace: dict = {}
    exec(out.read_text(), namespace)
    assert namespace["BROKER_URL"] == "amqp://proxy//" and namespace["CELERY_DEFAULT_QUEUE"] == "q"
    assert namespace["BROKER_HEARTBEAT"] == 10 and namespace["CELERY_ACKS_LATE"] is True
    assert "broker_connection_retry_on_startup" not in namespace  # no old name: left out
    new = tmp_path / "newconfig.py"
    new.write_text("broker_url = 'amqp://prod//'\nbroker_transport_options = {'visibility_timeout': 60}\n")
    config_module(tmp_path / "gen_new.py", user_config=new, overrides={"broker_url": "amqp://proxy//"},
                  merge_transport={"confirm_publish": True})
    namespace = {}
    exec((tmp_path / "gen_new.py").read_text(), namespace)
    assert namespace["broker_url"] == "amqp://proxy//"
    assert namespace["broker_transport_options"] == {"visibility_timeout": 60, "confirm_publish": True}
    assert _uses_old_names(old.read_text()) and not _uses_old_names(new.read_text())


def test_broker_url_is_routed_through_the_proxy_with_credentials_kept() -> None:
    target = brokers._target("amqp://user:s3cret@rabbit.example:5672/vh", "--broker")
    assert target.kind == "rabbitmq" and target.port == 5672
    assert target.through(("127.0.0.1", 40000)) == "amqp://user:s3cret@127.0.0.1:40000/vh"
    with pytest.raises(brokers.BrokerSetupError):
        brokers._target("kafka://x:1", "--broker")


def test_rabbitmq_log_keeps_only_the_runs_connections_and_global_lines() -> None:
    ts = "2026-01-01 10:00:00.000000+00:00"
    lines = [
        f"{ts} [info] <0.1.0> accepting AMQP connection <0.1.0> (127.0.0.1:40001 -> 127.0.0.1:5672)",
        f"{ts} [info] <0.2.0> accepting AMQP connection <0.2.0> (127.0.0.1:50002 -> 127.0.0.1:5672)",
        f"{ts} [error] <0.1.0> closing AMQP connection <0.1.0> (127.0.0.1:40001 -> 127.0.0.1:5672):",
        f"{ts} [error] <0.1.0> missed heartbeats from client, timeout: 2s",
        f"{ts} [warning] <0.2.0> client unexpectedly closed TCP connection",
        f"{ts} [info] <0.300.0> Stopping RabbitMQ applications and their dependencies",
    ]
    kept = brokers.rabbitmq_lines_for(lines, {40001})
    assert kept == [lines[0], lines[2], lines[3], lines[5]]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery_doctor.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args,message", [
    (("repro", "--fault", "idle-cut:abc"), "SECONDS must be a number"),
    (("repro", "--compare"), "--compare needs --config"),
    (("repro", "--config", "/nonexistent/celeryconfig.py"), "no such file"),
    (("repro", "--broker", "kafka://127.0.0.1:9092"), "amqp:// and redis://"),
    (("proxy", "--listen", "nowhere", "--duration", "0"), "expected HOST:PORT"),
])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_repro_without_celery_says_what_to_install(tmp_path: Path, rabbitmq_url: str) -> None:
    from conftest import console_script

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    bare = tmp_path / "bare" / "bin" / "python"
    done = subprocess.run([console_script(), "repro", "--python", str(bare), "--broker", rabbitmq_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"Celery is not importable by {bare}" in done.stderr
    assert "--python" in done.stderr and "celery-doctor[repro]" in done.stderr


def test_middlebox_choice_says_why() -> None:
    from celery_doctor.repro import middlebox

    ok, why = middlebox.choose(parse_fault("idle-cut:5:rst"), "127.0.0.1")
    assert ok and "kernel middlebox" in why  # these machines run as root with nftables installed
    cases = (("refuse", "no idle cut"), ("idle-cut:5:fin", "FIN"), ("latency:5+idle-cut:5", "idle cuts only"))
    for spec, words in cases:
        ok, why = middlebox.choose(parse_fault(spec), "127.0.0.1")
        assert not ok and words in why and why.startswith("the userspace proxy")
    assert middlebox.choose(parse_fault("idle-cut:5"), "10.0.0.9")[0] is False
    assert middlebox.choose(parse_fault("idle-cut:5"), "127.0.0.1", wanted=False)[0] is False


def test_ledger_tells_a_second_copy_from_a_redelivery() -> None:
    rows = _rows(("planned", "a", {}), ("sending", "a", {}), ("published", "a", {"ok": True}),
                 ("started", "a", {}), ("succeeded", "a", {}), ("started", "a", {"redelivered": False}),
                 ("planned", "b", {}), ("sending", "b", {}), ("published", "b", {"ok": True}),
                 ("started", "b", {}), ("started", "b", {"redelivered": True}), ("succeeded", "b", {}),
                 ("planned", "c", {}), ("sending", "c", {}), ("started", "c", {}), ("succeeded", "c", {}),
                 ("planned", "d", {}))
    summary = ledger.summarise(ledger.build(rows), ledger.BrokerLeftovers(checked=True))
    assert summary["duplicated_by_publish"] == 1 and summary["names"]["duplicated_by_publish"] == ["a"]
    assert summary["duplicated_by_redelivery"] == 1
    assert summary["executed_without_publish_record"] == 1  # c: publisher died inside the call
    assert summary["states"] == {"executed": 1, "duplicated": 2, "started_not_succeeded": 0, "stranded": 0,
                                 "lost": 0, "publish_failed": 0, "publish_interrupted": 0, "not_sent": 1,
                                 "unaccounted": 0}
    assert sum(summary["states"].values()) == summary["planned"] == 4
    assert "1 never sent" in ledger.verdict_line(summary) and "published twice" in ledger.verdict_line(summary)


def test_proxy_default_listen_port_is_not_rabbitmqs_management_port(rabbitmq_url: str) -> None:
    # the management plugin holds 15672 on this machine: the old default failed right here
    from conftest import console_script

    done = subprocess.run([console_script(), "proxy", "--duration", "1"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    port = int(done.stderr.split("proxy listening on 127.0.0.1:")[1].split()[0])
    assert port not in (0, 15672, 5672)


def _facts(rows: list[dict], **kw: object):
    from celery_doctor.repro.brokers import BrokerTarget
    from celery_doctor.repro.facts import Canary, RunFacts, WorkerState

    target = BrokerTarget(url="amqp://guest:guest@127.0.0.1:5672//", kind="rabbitmq", host="127.0.0.1",
                          port=5672, chosen_because="test")
    fault = parse_fault("reset-under-load:0.02")
    return RunFacts(label="minimal", scenario="load", fault=fault, target=target, versions={"celery": "5.7.0"},
                    python=sys.executable, config=None, plan=scenarios.plan("load", fault), effective={},
                    tasks=ledger.build(rows), leftovers=ledger.BrokerLeftovers(checked=True), worker=WorkerState(),
                    canary=Canary(published=True, executed=True), worker_events=[], publisher_events=[],
                    middlebox="proxy", middlebox_why="test", queue="q", directory=Path("/nonexistent"),
                    kept=False, logs=[], wall_s=1.0, **kw)  # type: ignore[arg-type]


def test_a_second_copy_and_a_redelivery_are_named_apart_in_the_finding() -> None:
    from celery_doctor.model import Finding, Fix, Severity
    from celery_doctor.rules import repro_rules

    # a: published twice (two copies, neither redelivered); b: redelivered after a lost ack
    rows = _rows(("planned", "a", {}), ("published", "a", {"ok": True}), ("received", "a", {}), ("started", "a", {}),
                 ("succeeded", "a", {}), ("received", "a", {}), ("started", "a", {"redelivered": False}),
                 ("succeeded", "a", {}), ("planned", "b", {}), ("published", "b", {"ok": True}),
                 ("started", "b", {}), ("started", "b", {"redelivered": True}), ("succeeded", "b", {}))
    facts = _facts(rows)
    summary = ledger.summarise(facts.tasks, facts.leftovers)
    found = [Finding(category=Category.NETWORK_PATH_LOSS, severity=Severity.HIGH, title="Busy connections reset",
                     explanation="", fix=Fix(text="Look at the middlebox."))]
    repro_rules.duplicate_note(summary, found)
    text = found[0].explanation
    assert "1 task(s) ran twice because the publisher sent them twice" in text
    assert "1 ran again because the broker redelivered them" in text
    assert found[0].facts["duplicated_by_publish"] == 1 and found[0].facts["duplicated_by_redelivery"] == 1
    assert "late acks" not in (found[0].fix.text if found[0].fix else "")


def test_only_proven_fixes_carry_a_rerun() -> None:
    """Redis through the userspace proxy: the keepalive fix is proposed but cannot be proven
    there (no rerun options, the reason instead); on the kernel NAT it carries its options;
    health checks are never proposed. A long task on RabbitMQ in the solo pool gets both of its
    fixes as reruns; on Redis none."""
    import dataclasses

    from celery_doctor.model import Finding, Severity
    from celery_doctor.repro.brokers import BrokerTarget
    from celery_doctor.rules import repro_rules

    redis = BrokerTarget(url="redis://127.0.0.1:6379/0", kind="redis", host="127.0.0.1", port=6379,
                         chosen_because="test")
    facts = dataclasses.replace(_facts([]), target=redis, fault=parse_fault("idle-cut:5:silent"), scenario="idle")
    fix, options = repro_rules.fix_for(facts, 5.0)
    assert options is None and "socket_keepalive" in (fix.snippet or "") and "health_check" not in (fix.snippet or "")
    assert "--middlebox kernel" in (fix.verify or "")
    fix, options = repro_rules.fix_for(dataclasses.replace(facts, middlebox="kernel"), 5.0)
    assert options is not None and options["transport_options"]["socket_keepalive"] is True  # type: ignore[index]

    def long_task() -> list[Finding]:
        return [Finding(category=Category.LONG_TASK_BLOCKS_HEARTBEAT, severity=Severity.HIGH, title="t",
                        explanation="")]

    solo = dataclasses.replace(_facts([]), scenario="long-task", fault=None,
                               plan=scenarios.plan("long-task", None, heartbeat=2))
    found = long_task()
    repro_rules.long_task_fix(solo, found)
    assert found[0].facts["repro_fix"] == {"pool": "prefork"} and found[0].facts["repro_fix_also"] == [
        {"heartbeat": 0.0}]
    found = long_task()
    repro_rules.long_task_fix(dataclasses.replace(solo, target=redis), found)
    assert "repro_fix" not in found[0].facts
