"""What the 6xx blind batch (tests/fixtures/threads/6*) showed missing: Redis's LOADING reply read as
no failure or an unexplained one, Django's copy-and-paste traceback ("Exception Type:" /
"Exception Value:") read as no log at all, and Celery's refusal of mixed old and new setting names
(616) read as nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_doctor.ingest import read_logs
from celery_doctor.ingest.interface import IngestError
from celery_doctor.model import Category, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES

THREADS = FIXTURES / "threads"
RULES = FIXTURES / "rules"


def _logs(prefix: str) -> list[str]:
    folder = next(THREADS.glob(f"{prefix}-*"))
    return sorted(str(p) for p in (folder / "logs").iterdir())


def test_loading_in_a_task_handler_error_is_a_redis_restart() -> None:
    # 607: the worker's only lines are "Task handler raised error: BusyLoadingError(...)" (no consumer line)
    top = next(f for f in diagnose(DiagnoseOptions(logs=_logs("607"))).findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L78" and top.category == Category.BROKER_RESTART_OR_FAILOVER
    assert 0.7 <= top.confidence < 0.9  # no server log: the start itself is not seen
    assert "BusyLoadingError('Redis is loading the dataset in memory')" in "\n".join(e.text for e in top.evidence)


def test_the_servers_own_start_raises_the_loading_reading_and_is_cited() -> None:
    top = next(f for f in diagnose(DiagnoseOptions(logs=[str(RULES / "redis-loading-recorded")])).findings
               if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L78" and top.confidence == 0.9
    cited = "\n".join(e.text for e in top.evidence)
    assert "Redis is loading the dataset in memory" in cited and "Ready to accept connections" in cited


def test_the_worker_alone_still_names_the_restart() -> None:
    # without the server's log the consumer's refusals alone were "1 connection failure the logs cannot explain"
    top = next(f for f in diagnose(DiagnoseOptions(logs=[str(RULES / "redis-loading-recorded" / "worker.log")]))
               .findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L78" and top.confidence == 0.8


@pytest.mark.parametrize("text", [
    "Redis is loading the data in memory soon",  # not the server's wording
    "loading the dataset in memory took 3 s",
])
def test_other_loading_words_are_not_the_reply(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text(f"[2023-03-08 09:02:25,130: ERROR/MainProcess] consumer: Connection to broker lost. {text}\n")
    assert not any(f.rule_id == "CD-L78" for f in diagnose(DiagnoseOptions(logs=[str(paste)])).findings)


@pytest.mark.parametrize(("page", "error"), [
    # Django < 3 (technical_500.html's textarea, 611's shape): frames "File ... in f" / "  NN. code"
    ('File "/usr/lib/python2.7/site-packages/django_redis/cache.py" in _decorator\n  39.             raise e.parent\n\n'
     "Exception Type: ConnectionError at /helper/listing/list_591.5917864/\n"
     "Exception Value: Error while reading from socket: (u'Connection closed by server.',)\n",
     "ConnectionError: Error while reading from socket: (u'Connection closed by server.',)"),
    # Django 3+ (Python's frames, technical_500.txt), and no request: "Exception Type: X" without " at /path"
    ('Traceback (most recent call last):\n  File "/app/kombu/connection.py", line 446, in _reraise_as_library_errors\n'
     "    yield\n\nException Type: OperationalError\n"
     "Exception Value: Error 111 connecting to redis:6379. Connection refused.\n",
     "OperationalError: Error 111 connecting to redis:6379. Connection refused."),
])
def test_djangos_copy_and_paste_view_is_read_as_its_exception(tmp_path: Path, page: str, error: str) -> None:
    paste = tmp_path / "django.log"
    paste.write_text("Traceback:\n\n" + page)
    logs = read_logs([str(paste)])
    found = [e for e in logs.events if error in f"{e.error}\n{e.text}"]
    assert found and found[0].line == page.count("\n") + 2  # cited at the value's own line


def test_a_line_that_only_starts_like_django_is_left_alone(tmp_path: Path) -> None:
    paste = tmp_path / "notes.log"
    paste.write_text("Exception Type: see below\nException Value: none\n")
    with pytest.raises(IngestError):  # nothing readable: no exception was invented from prose
        read_logs([str(paste)])


@pytest.mark.parametrize(("folder", "wording"), [
    ("mixed-names-recorded-old-into-new", "and old setting keys"),
    ("mixed-names-recorded-new-into-old", "setting names with old setting names"),
])
def test_mixed_setting_names_stop_the_worker_before_it_connects(folder: str, wording: str) -> None:
    findings = diagnose(DiagnoseOptions(logs=[str(RULES / folder)])).findings
    top = next(f for f in findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L79" and top.category == Category.OLD_SETTING_NAMES_IGNORED
    assert wording in top.explanation and "never connects" in top.explanation
    assert f"Cannot mix new {wording}" in "\n".join(e.text for e in top.evidence)
    # the refusal is the answer, not a connection failure of unknown kind
    assert not any(f.role == Role.CAUSE and f.category == Category.UNKNOWN and f.confidence >= top.confidence
                   for f in findings)


def test_the_threads_quote_of_the_refusal_is_enough() -> None:
    top = next(f for f in diagnose(DiagnoseOptions(logs=_logs("616"))).findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-L79" and top.confidence >= 0.7


def test_a_paste_cut_inside_redis_pys_command_execution_is_a_failure_not_none() -> None:
    # 615: celery's result backend unsubscribing through redis-py 3.x PubSub._execute, cut before the error
    findings = diagnose(DiagnoseOptions(logs=_logs("615"))).findings
    assert findings[0].rule_id == "CD-L77" and findings[0].category == Category.UNKNOWN
    assert "in _execute" in findings[0].evidence[0].text
    assert not any(f.category == Category.NO_INCIDENT for f in findings)


@pytest.mark.parametrize(("frames", "cut_at"), [
    # redis-py 4.x+ (paperless-ngx#4869's frames): _execute retries through retry.py and drops the connection
    ('  File "/usr/local/lib/python3.11/site-packages/redis/client.py", line 800, in _execute\n'
     "    return conn.retry.call_with_retry(\n"
     '  File "/usr/local/lib/python3.11/site-packages/redis/retry.py", line 49, in call_with_retry\n'
     "    fail(error)\n"
     '  File "/usr/local/lib/python3.11/site-packages/redis/client.py", line 802, in <lambda>\n'
     "    lambda error: self._disconnect_raise_connect(conn, error),\n"
     '  File "/usr/local/lib/python3.11/site-packages/redis/client.py", line 789, in _disconnect_raise_connect\n'
     "    raise error\n", "in _disconnect_raise_connect"),
    # redis-py 4.x Redis.execute_command (intelmq#2446's frames), cut inside the retry
    ('  File "/opt/venv/lib/python3.9/site-packages/redis/client.py", line 1258, in execute_command\n'
     "    return conn.retry.call_with_retry(\n"
     '  File "/opt/venv/lib/python3.9/site-packages/redis/retry.py", line 49, in call_with_retry\n'
     "    fail(error)\n", "in call_with_retry"),
])
def test_redis_pys_connection_dropping_frames_count_as_connection_code(tmp_path: Path, frames: str,
                                                                      cut_at: str) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text(frames)  # cut above and below, as 615 was: its frames alone
    findings = diagnose(DiagnoseOptions(logs=[str(paste)])).findings
    assert findings[0].rule_id == "CD-L77" and cut_at in findings[0].evidence[0].text


def test_a_cut_in_execute_command_alone_names_no_connection_failure(tmp_path: Path) -> None:
    # every Redis command passes execute_command: an OOM or MISCONF reply would too
    paste = tmp_path / "worker.log"
    paste.write_text('  File "/usr/local/lib/python3.8/site-packages/redis/client.py", line 901, in execute_command\n'
                     "    return self.parse_response(conn, command_name, **options)\n")
    assert not any(f.rule_id == "CD-L77" for f in diagnose(DiagnoseOptions(logs=[str(paste)])).findings)


def _keyerror_in_channel(line: int) -> str:
    return ("[2021-12-19 19:26:44,924: WARNING/MainProcess] consumer: Connection to broker lost. Trying to "
            "re-establish the connection...\nTraceback (most recent call last):\n"
            f'  File "/venv/lib/python3.8/site-packages/amqp/connection.py", line {line}, in channel\n'
            "    return self.channels[channel_id]\nKeyError: None\n")


@pytest.mark.parametrize("prefix", ["617", "618"])
def test_the_frame_line_of_the_caught_keyerror_names_amqp_508(prefix: str) -> None:
    top = next(f for f in diagnose(DiagnoseOptions(logs=_logs(prefix))).findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-K01" and top.facts["known_bad"] == "amqp-5.0.8_channel-id-reused"
    assert top.confidence >= 0.7 and "amqp!=5.0.8" in (top.fix.text if top.fix else "")


@pytest.mark.parametrize("line", [508, 511, 515])  # 5.0.7, 5.0.9, 5.2-5.3: the same caught KeyError elsewhere
def test_the_caught_keyerror_on_another_line_is_not_508(tmp_path: Path, line: int) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text(_keyerror_in_channel(line))
    assert not any(f.facts.get("known_bad") == "amqp-5.0.8_channel-id-reused"
                   for f in diagnose(DiagnoseOptions(logs=[str(paste)])).findings)


def test_an_environment_with_amqp_508_is_flagged_by_pins(tmp_path: Path) -> None:
    from celery_doctor.pins.catalogue import Catalogue
    from celery_doctor.pins.checks import known_bad_hits

    hits = known_bad_hits({"celery": "5.2.1", "kombu": "5.2.2", "amqp": "5.0.8"}, [], "amqp",
                          Catalogue.shipped().known_bad)
    assert "amqp-5.0.8_channel-id-reused" in {entry.id for entry, _ in hits}
    assert "amqp-5.0.8_channel-id-reused" not in {entry.id for entry, _ in known_bad_hits(
        {"celery": "5.2.1", "kombu": "5.2.2", "amqp": "5.0.9"}, [], "amqp", Catalogue.shipped().known_bad)}


@pytest.mark.parametrize("paste", [
    "KeyError: connection.blocked\n",  # 619's title
    # py-amqp#245's traceback (Python 2: the u'' repr)
    '  File "/opt/fs/venv/lib/python2.7/site-packages/amqp/channel.py", line 1755, in _basic_publish\n'
    "    if client_properties['capabilities']['connection.blocked']:\n"
    "KeyError: u'connection.blocked'\n",
])
def test_a_publish_keyerror_on_connection_blocked_is_amqp_240(tmp_path: Path, paste: str) -> None:
    log = tmp_path / "worker.log"
    log.write_text(paste)
    top = next(f for f in diagnose(DiagnoseOptions(logs=[str(log)])).findings if f.role == Role.CAUSE)
    assert top.rule_id == "CD-K01" and top.facts["known_bad"] == "amqp-2.4.0_connection-blocked-keyerror"


def test_the_capability_in_py_amqps_debug_start_line_is_no_error(tmp_path: Path) -> None:
    # awx#1245's DEBUG lines carry 'connection.blocked': True in the server's capabilities
    log = tmp_path / "worker.log"
    log.write_text("[2018-02-14 08:17:33,712: DEBUG/ForkPoolWorker-43] Start from server, version: 0.9, properties: "
                   "{'capabilities': {'exchange_exchange_bindings': True, 'connection.blocked': True}, "
                   "'product': 'RabbitMQ', 'version': '3.7.3'}, mechanisms: ['PLAIN', 'AMQPLAIN'], locales: "
                   "[u'en_US']\n")
    assert not any(f.facts.get("known_bad") for f in diagnose(DiagnoseOptions(logs=[str(log)])).findings)
