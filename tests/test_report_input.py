"""`celery report` output as an input of diagnose: given with --report or found inside a pasted
log, its versions matched against the known-bad catalogue `pins` ships (CD-K02, and CD-K01's
confirmation), its settings judged as what is really in effect, its secrets never shown.

The reports are real: printed by Celery 5.3.4 and 5.7 here (a worker on a Redis this test
starts and restarts, the local RabbitMQ), or pasted in public threads (fixtures' READMEs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import celery
import pytest

from celery_doctor.model import Category, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from celery_doctor.report import render
from celery_doctor.settings.runtime_report import find_report, read_runtime, read_runtime_text
from conftest import CELERY, FIXTURES, free_port, start_worker

REPORTS = FIXTURES / "configs" / "reports"
RULES = FIXTURES / "rules"
ROOT_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _by_rule(findings: list, rule_id: str) -> list:
    return [f for f in findings if f.rule_id == rule_id]


# -- reading -----------------------------------------------------------------------------------


def test_report_pasted_in_markdown_ends_at_the_fence() -> None:
    """skeldir's evidence pack: a Celery 5.6 report inside a fenced block, with another command after."""
    text = (REPORTS / "skeldir_celery56_report.md").read_text()
    report = find_report(text, "pack.md")
    assert report is not None and report.versions["celery"] == "5.6.0" and report.versions["kombu"] == "5.6.1"
    assert report.transport == "sqla"
    assert report.settings["broker_transport_options"] == {"max_overflow": 0, "pool_recycle": 300, "pool_size": 5}
    assert report.settings["include"] == ["app.tasks.housekeeping", "app.tasks.maintenance", "app.tasks.llm"]
    # nothing after the closing fence is a setting
    assert "Command" not in report.settings and "Error" not in report.settings
    assert text.splitlines()[report.last_line - 1] == "task_default_routing_key: '********'"


def test_report_above_a_traceback_stops_before_the_exception_line() -> None:
    text = (RULES / "report-in-paste" / "issue-paste.md").read_text()
    report = find_report(text, "paste")
    assert report is not None
    assert report.versions == {
        "celery": "4.2.1",
        "kombu": "4.2.1",
        "python": "3.7.1",
        "billiard": "3.5.0.5",
        "redis": "3.0.1",
    }
    assert set(report.settings) == {"broker_url", "result_backend", "worker_concurrency"}
    # an exception line is not a setting even right after the report
    glued = read_runtime_text(
        "software -> celery:5.3.4 (emerald-rush) kombu:5.3.4 py:3.11.4\n"
        "settings -> transport:redis results:disabled\n\nbroker_heartbeat: 0\n"
        "KeyError: 'async'\nbroker_pool_limit: 5\n",
        "glued",
    )
    assert glued.settings == {"broker_heartbeat": 0}


def test_celery_534_report_read_as_printed(tmp_path: Path) -> None:
    report = read_runtime(str(REPORTS / "celery534_redis_report.txt"))
    assert report.versions == {
        "celery": "5.3.4",
        "kombu": "5.3.4",
        "python": "3.11.7",
        "billiard": "4.3.2",
        "redis": "5.0.1",
    }
    assert report.transport == "redis" and report.settings["broker_url"] == "redis://127.0.0.1:6391/0"
    assert report.named()["kombu"] == ("5.3.4", 2, "software -> celery:5.3.4 (emerald-rush) kombu:5.3.4 py:3.11.7")


# -- versions -> the known-bad catalogue -------------------------------------------------------------


def test_report_alone_names_the_known_bad_combination_as_a_risk() -> None:
    report = diagnose(DiagnoseOptions(reports=[str(REPORTS / "celery534_redis_report.txt")]))
    hits = _by_rule(report.findings, "CD-K02")
    assert [f.facts["known_bad"] for f in hits] == ["kombu-lt-5.4_redis-reconnect"]
    assert hits[0].role == Role.RISK and hits[0].confidence == pytest.approx(0.9)
    assert hits[0].fix is not None and "kombu 5.4.0" in hits[0].fix.text
    assert hits[0].evidence[0].line == 2 and "kombu:5.3.4" in hits[0].evidence[0].text
    assert "report" in report.summary["inputs"]


def test_the_same_bug_on_amqp_is_not_claimed() -> None:
    """The reconnect bug hits the Redis transport only: the same kombu on AMQP is not flagged."""
    text = (REPORTS / "celery534_redis_report.txt").read_text().replace("transport:redis", "transport:amqp")
    report = read_runtime_text(text, "amqp.txt")
    from celery_doctor.rules.logs.known_bugs import known_bad_versions

    named = {k: (v, None) for k, (v, _, _) in report.named().items()}
    assert not list(known_bad_versions(named, None))  # type: ignore[arg-type]


def test_logs_that_show_the_stall_make_it_the_cause() -> None:
    """celery#8091's shape: tasks, a loss, a reconnect, then nothing for half an hour; kombu 5.2.3."""
    folder = RULES / "known-bad-report-stall"
    report = diagnose(DiagnoseOptions(logs=[str(folder / "worker.log")], reports=[str(folder / "report.txt")]))
    top = report.findings[0]
    assert top.rule_id == "CD-K02" and top.role == Role.CAUSE and top.confidence >= 0.85
    assert top.category == Category.VERSION_INCOMPATIBILITY
    assert any("Connected to redis://redis:6379/0" in e.text for e in top.evidence)
    assert any(e.source.endswith("report.txt") and "kombu:5.2.3" in e.text for e in top.evidence)


def test_logs_that_show_consumption_resuming_speak_against_it() -> None:
    """A real run (Celery 5.3.4, kombu 5.3.4, redis-py 5.0.1, a Redis restarted under the worker):
    the worker kept consuming, so the catalogue's match is said with the line against it."""
    folder = RULES / "known-bad-report-resumed"
    report = diagnose(DiagnoseOptions(logs=[str(folder)]))  # the report is found among the logs
    assert report.findings[0].category == Category.BROKER_RESTART_OR_FAILOVER
    hit = _by_rule(report.findings, "CD-K02")[0]
    assert hit.role == Role.CONFIG and hit.confidence <= 0.5
    assert hit.contradicting and "received after the reconnect" in hit.contradicting[0].text


def test_report_in_a_paste_confirms_the_traceback_match() -> None:
    inside = diagnose(DiagnoseOptions(logs=[str(RULES / "report-in-paste" / "issue-paste.md")]))
    against = diagnose(DiagnoseOptions(logs=[str(RULES / "report-in-paste-against" / "issue-paste.md")]))
    top, other = inside.findings[0], against.findings[0]
    assert top.rule_id == other.rule_id == "CD-K01"
    assert top.confidence == pytest.approx(0.95) and "celery report" in top.explanation
    assert other.confidence <= 0.5 and other.contradicting
    # the report is a report, not an unreadable log
    assert not any("unknown log format" in w for w in inside.warnings)
    assert any("a `celery report` (lines 4-12)" in w for w in inside.warnings)


# -- settings: what is really in effect ----------------------------------------------------------


def test_report_heartbeat_is_the_effective_value_beside_an_idle_cut(tmp_path: Path) -> None:
    """The file says 30 s; the running app reports 0: the idle cut is explained by the report's line."""
    config = tmp_path / "celeryconfig.py"
    config.write_text("broker_url = 'amqp://celery:pw@127.0.0.1:5672//'\nbroker_heartbeat = 30\n")
    pasted = tmp_path / "report.txt"
    pasted.write_text((REPORTS / "celery57_amqp_failover_report.txt").read_text())
    logs = str(FIXTURES / "rabbitmq-idle-cut")
    report = diagnose(DiagnoseOptions(logs=[logs], config=str(config), reports=[str(pasted)]))
    idle = next(f for f in report.findings if f.category == Category.NETWORK_IDLE_TIMEOUT)
    assert idle.role == Role.CAUSE
    assert any(e.source == str(pasted) and e.text.startswith("broker_heartbeat: 0") for e in idle.evidence)
    assert "disables heartbeats" in idle.explanation
    # the file's 30 is what was meant, the report's 0 what ran: shown side by side
    row = next(r for r in report.data["config"]["effective"] if r["setting"] == "broker_heartbeat")
    assert row["value"] == 0 and row["intended"] == "30" and row["origin"] == "celery report"
    # a password the report censors is not "another value" than the file's
    assert not any(f.facts.get("setting") == "broker_url" and "intended" in f.facts for f in report.findings)


# -- secrets ---------------------------------------------------------------------------------------


def test_a_report_with_uncensored_secrets_never_shows_them(tmp_path: Path) -> None:
    text = (REPORTS / "celery57_amqp_failover_report.txt").read_text()
    text = text.replace("amqp://celery:********@", "amqp://celery:Pl41n-Pw@")
    text += "broker_transport_options2: {'sentinel_kwargs': {'password': 'S3nt1nelPw'}}\n"
    text += "CELERY_BROKER_URL: 'redis://:R3disPw@cache:6379/0'\n"
    pasted = tmp_path / "report.txt"
    pasted.write_text(text)
    report = diagnose(DiagnoseOptions(reports=[str(pasted)]))
    for fmt in ("text", "markdown", "json", "html"):
        out = render(report, fmt)
        for secret in ("Pl41n-Pw", "S3nt1nelPw", "R3disPw"):
            assert secret not in out, (fmt, secret)


# -- the command line ------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("celery-doctor")), *args], capture_output=True, text=True, timeout=120
    )


def test_cli_report_option_and_its_errors(tmp_path: Path) -> None:
    ok = _cli("diagnose", "--report", str(REPORTS / "celery534_redis_report.txt"), "--format", "json")
    assert ok.returncode == 1, ok.stderr  # a HIGH known bug is at or above --fail-on medium
    doc = json.loads(ok.stdout)
    assert doc["data"]["report"]["reports"][0]["versions"]["kombu"] == "5.3.4"
    assert any(f["rule_id"] == "CD-K02" for f in doc["findings"])
    missing = _cli("diagnose", "--report", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such file" in missing.stderr
    other = tmp_path / "notes.txt"
    other.write_text("just some notes\n")
    bad = _cli("diagnose", "--report", str(other))
    assert bad.returncode == 2 and "neither `celery report` output" in bad.stderr and "Traceback" not in bad.stderr


# -- a fresh report from the Celery installed here, against a real RabbitMQ ------------------------


def test_fresh_report_of_a_failover_app_keeps_the_first_url_only(tmp_path: Path) -> None:
    """Celery censors broker_url with kombu's as_uri(), which prints the first URL of a failover list:
    the report alone cannot show the other nodes (the config file must)."""
    (tmp_path / "foapp.py").write_text(
        "from celery import Celery\n"
        "app = Celery('foapp', broker='amqp://guest:guest@127.0.0.1:5672//;amqp://guest:guest@127.0.0.2:5672//')\n"
        "app.conf.broker_failover_strategy = 'shuffle'\n"
    )
    out = subprocess.run(
        [CELERY, "-A", "foapp", "report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    ).stdout
    report = read_runtime_text(out, "report")
    assert report.versions["celery"] == celery.__version__
    assert report.settings["broker_url"] == "amqp://guest:********@127.0.0.1:5672//"
    assert report.settings["broker_failover_strategy"] == "shuffle"
    assert "guest:guest" not in out




def test_real_redis_restart_under_a_worker_is_a_restart_not_the_stall(tmp_path: Path) -> None:
    """Record it live: this interpreter's Celery on a Redis started here, restarted under it; the
    worker consumes again, so the restart is the cause and no stall is claimed."""
    port = free_port()
    (tmp_path / "rapp.py").write_text(
        f"from celery import Celery\napp = Celery('rapp', broker='redis://127.0.0.1:{port}/0')\n"
        f"app.conf.task_default_queue = 'cd-report-{uuid.uuid4().hex[:6]}'\n"
        "app.conf.broker_connection_retry_on_startup = True\n"
        "@app.task\ndef ping(n):\n    return n\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def redis_server() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return proc

    def publish(n: int) -> None:
        subprocess.run(
            [sys.executable, "-c", f"from rapp import ping; ping.delay({n})"],
            cwd=tmp_path,
            env=env,
            timeout=30,
            check=True,
        )

    server = redis_server()
    worker = start_worker("rapp", tmp_path, tmp_path / "worker.log", env=env)
    try:
        time.sleep(3)
        publish(1)
        publish(2)
        time.sleep(1)
        server.terminate()
        server.wait(10)
        time.sleep(2)
        server = redis_server()
        time.sleep(5)
        for n in (3, 4):
            publish(n)
        time.sleep(2)
        (tmp_path / "report.txt").write_text(
            subprocess.run(
                [CELERY, "-A", "rapp", "report"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(20)
        server.terminate()
        server.wait(10)
    report = diagnose(DiagnoseOptions(logs=[str(tmp_path / "worker.log")], reports=[str(tmp_path / "report.txt")]))
    assert report.findings[0].category == Category.BROKER_RESTART_OR_FAILOVER
    assert not any(f.rule_id == "CD-K02" and f.role == Role.CAUSE for f in report.findings)


def test_every_format_shows_what_the_report_says_is_running() -> None:
    report = diagnose(DiagnoseOptions(reports=[str(REPORTS / "celery3707_report.txt")]))
    line = "Running (celery report, celery3707_report.txt): celery:4.0.2 kombu:4.0.2"
    for fmt in ("text", "markdown", "html"):
        assert line in render(report, fmt, width=200), fmt
    assert "it lists no settings" in render(report, "markdown")
    assert json.loads(render(report, "json"))["data"]["report"]["reports"][0]["lines"] == [3, 7]


def test_a_report_from_another_environment_than_the_logs_is_said() -> None:
    """The worker banner (Celery 5.7.0, recorded here) beside a report of Celery 5.3.4: said, and the
    banner's version is the one the logs are judged with."""
    report = diagnose(
        DiagnoseOptions(
            logs=[str(RULES / "never-ready-console" / "worker.log")],
            reports=[str(REPORTS / "celery534_redis_report.txt")],
        )
    )
    assert any("the worker banner says Celery 5.7.0, the report 5.3.4" in w for w in report.warnings)
    assert report.data["logs"]["versions"]["celery"]["version"] == "celery 5.7.0"


def test_the_logs_command_reads_a_report_pasted_in_a_log() -> None:
    from celery_doctor.pipeline import analyse_logs

    logs = analyse_logs([str(RULES / "report-in-paste" / "issue-paste.md")])
    assert logs.data["versions"]["redis"]["how"] == ["celery report"]
    assert logs.findings[0].rule_id == "CD-K01" and logs.findings[0].confidence == pytest.approx(0.95)
    assert any("a `celery report` (lines 4-12): its versions are used" in w for w in logs.warnings)


def test_a_report_piped_into_logs_stdin() -> None:
    paste = (RULES / "report-in-paste" / "issue-paste.md").read_text()
    out = subprocess.run(
        [str(Path(sys.executable).with_name("celery-doctor")), "diagnose", "--logs", "-", "--format", "json"],
        input=paste,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert "report" in doc["summary"]["inputs"] and doc["findings"][0]["rule_id"] == "CD-K01"
    assert any(e["source"] == "stdin" and "kombu:4.2.1" in e["text"] for e in doc["findings"][0]["evidence"])
    alone = subprocess.run(
        [str(Path(sys.executable).with_name("celery-doctor")), "diagnose", "--logs", "-", "--format", "json"],
        input=(REPORTS / "celery534_redis_report.txt").read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alone.returncode == 1 and any(f["rule_id"] == "CD-K02" for f in json.loads(alone.stdout)["findings"])


@pytest.mark.parametrize("name", ["inspect_conf_heartbeat0.txt", "inspect_conf_heartbeat0.json"])
def test_inspect_conf_as_report_explains_the_idle_cut(name: str) -> None:
    """`celery inspect conf` (text and --json) of a live worker recorded here with broker_heartbeat = 0."""
    report = diagnose(DiagnoseOptions(logs=[str(ROOT_EXAMPLES / "idle-cut")], reports=[str(REPORTS / name)]))
    top = report.findings[0]
    assert top.category == Category.NETWORK_IDLE_TIMEOUT and "disables heartbeats" in top.explanation
    assert any(e.source.endswith(name) and "broker_heartbeat" in e.text for e in top.evidence)
    assert report.data["report"]["reports"][0]["workers"] == ["cdconf@localhost"]
