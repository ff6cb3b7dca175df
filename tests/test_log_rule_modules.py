"""The one-module log rules (rules/logs/), each on its fixtures (tests/fixtures/rules/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_doctor.model import Category, DoctorError, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from celery_doctor.rules.fixes import heartbeat_for_idle
from conftest import FIXTURES

RULES = FIXTURES / "rules"


@pytest.mark.parametrize(("folder", "category", "rule_id"), [
    ("vhost-down-connect", Category.BROKER_RESTART_OR_FAILOVER, "CD-L24"),
    ("vhost-down-forced", Category.BROKER_RESTART_OR_FAILOVER, "CD-L24"),
    ("silent-idle-amqp", Category.NETWORK_IDLE_TIMEOUT, "CD-L25"),
    ("silent-idle-kombu", Category.NETWORK_IDLE_TIMEOUT, "CD-L25"),
    # a plain scheme on the port that speaks TLS (6380, 5671): CD-L50 names it more precisely than CD-L26
    ("connect-close-redis", Category.TLS_OR_PROXY, "CD-L50"),
    ("connect-close-amqps", Category.TLS_OR_PROXY, "CD-L50"),
    ("connect-close-plain-port", Category.TLS_OR_PROXY, "CD-L26"),
    ("stale-producer-pidbox", Category.POOL_EXHAUSTION_OR_MISUSE, "CD-L27"),
    ("stale-producer-web", Category.POOL_EXHAUSTION_OR_MISUSE, "CD-L27"),
    ("oom-publisher", Category.BROKER_RESOURCE_ALARM, "CD-L20"),
    ("maxclients-recorded", Category.BROKER_RESOURCE_ALARM, "CD-L20"),
    ("replica-recorded", Category.BROKER_RESTART_OR_FAILOVER, "CD-L40"),
    ("replica-paste", Category.BROKER_RESTART_OR_FAILOVER, "CD-L40"),
    ("replica-attack", Category.BROKER_RESTART_OR_FAILOVER, "CD-L40"),
    ("replica-slave-old", Category.BROKER_RESTART_OR_FAILOVER, "CD-L40"),
    ("redis-cluster-crossslot", Category.VERSION_INCOMPATIBILITY, "CD-L70"),
    ("redis-cluster-moved-publish", Category.VERSION_INCOMPATIBILITY, "CD-L70"),
    ("redis-old-server-unknown-command", Category.VERSION_INCOMPATIBILITY, "CD-L70"),
    ("redis-pool-full-backend", Category.POOL_EXHAUSTION_OR_MISUSE, "CD-L71"),
    ("redis-pool-blocking-publish", Category.POOL_EXHAUSTION_OR_MISUSE, "CD-L71"),
    ("redis-tls-no-cert-reqs", Category.TLS_OR_PROXY, "CD-L72"),
    ("redis-tls-kwargs-plain-scheme", Category.TLS_OR_PROXY, "CD-L72"),
    ("rabbitmq-connection-limit-worker", Category.BROKER_RESOURCE_ALARM, "CD-L73"),
    ("rabbitmq-connection-limit-broker", Category.BROKER_RESOURCE_ALARM, "CD-L73"),
    ("rabbitmq-channel-max-broker", Category.POOL_EXHAUSTION_OR_MISUSE, "CD-L73"),
    ("redis-plan-quota-upstash", Category.BROKER_RESOURCE_ALARM, "CD-L20"),
    ("consumer-cancelled-queue-deleted", Category.BROKER_RESTART_OR_FAILOVER, "CD-L74"),
    ("rabbitmq-partition-pause-minority", Category.BROKER_RESTART_OR_FAILOVER, "CD-L76"),
    ("rabbitmq-partition-ignore", Category.BROKER_RESTART_OR_FAILOVER, "CD-L76"),
    ("redis-loading-recorded", Category.BROKER_RESTART_OR_FAILOVER, "CD-L78"),
    ("redis-loading-paste", Category.BROKER_RESTART_OR_FAILOVER, "CD-L78"),
    ("redis-loading-reply-code", Category.BROKER_RESTART_OR_FAILOVER, "CD-L78"),
    ("mixed-names-recorded-old-into-new", Category.OLD_SETTING_NAMES_IGNORED, "CD-L79"),
    ("mixed-names-recorded-new-into-old", Category.OLD_SETTING_NAMES_IGNORED, "CD-L79"),
    ("mixed-names-prose", Category.OLD_SETTING_NAMES_IGNORED, "CD-L79"),
])
def test_rule_names_the_cause_on_its_fixture(folder: str, category: Category, rule_id: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / folder)]))
    causes = [f for f in report.findings if f.role == Role.CAUSE]
    assert causes[0].category == category and causes[0].rule_id == rule_id


def test_vhost_down_is_not_a_permission_problem() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "vhost-down-connect")]))
    assert not any(f.category == Category.AUTH_OR_PERMISSIONS for f in report.findings)


def test_connect_time_close_is_not_a_redis_idle_timeout() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "connect-close-redis")]))
    assert not any(f.category == Category.REDIS_SERVER_TIMEOUT for f in report.findings)


def test_silent_idle_drops_derive_the_heartbeat_from_the_idle_time() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "silent-idle-amqp")]))
    top = report.findings[0]
    assert 349 <= top.facts["idle_timeout_s"] <= 351
    assert top.fix is not None and f"broker_heartbeat = {heartbeat_for_idle(top.facts['idle_timeout_s'])}" in (
        top.fix.snippet or "")


def test_default_url_with_a_config_naming_another_broker_is_confident(tmp_path: Path) -> None:
    logs = FIXTURES / "threads" / "152-djangobootstrap82-default-guest-url" / "logs"
    alone = diagnose(DiagnoseOptions(logs=[str(logs)])).findings[0]
    config = tmp_path / "settings.py"
    config.write_text("CELERY_BROKER_URL = 'amqp://app:pw@mq.internal:5672/prod'\n")
    both = diagnose(DiagnoseOptions(logs=[str(logs)], config=str(config))).findings[0]
    assert alone.category == both.category == Category.OLD_SETTING_NAMES_IGNORED
    assert alone.confidence <= 0.6 < 0.7 <= both.confidence
    assert any(e.source == str(config) and e.line == 1 for e in both.evidence)


@pytest.mark.parametrize("folder", ["broker-gone-refused-amqp", "broker-gone-refused-redis",
                                    "broker-gone-refused-celery2", "forced-shutdown-undated-bare"])
def test_broker_that_went_away_is_a_restart(folder: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / folder)]))
    top = next(f for f in report.findings if f.role == Role.CAUSE)
    assert top.category == Category.BROKER_RESTART_OR_FAILOVER and top.rule_id == "CD-L04"
    # refusals without the broker's own log (or without times) are said below certainty
    assert 0.6 <= top.confidence <= 0.75
    assert top.evidence


@pytest.mark.parametrize("folder", ["broker-gone-dns-not-restart", "heartbeats-forced-undated-not-restart"])
def test_timeouts_and_heartbeat_forced_are_no_restart(folder: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / folder)]))
    assert not any(f.category == Category.BROKER_RESTART_OR_FAILOVER for f in report.findings)


def test_connection_dropped_seconds_after_login_is_a_short_lived_client() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "short-lived-publisher-rabbit38")]))
    assert not any(f.role == Role.CAUSE for f in report.findings)  # nothing failed
    top = report.findings[0]
    assert top.category == Category.BENIGN_CLIENT_DISCONNECT and top.rule_id == "CD-L10"
    # a worker reconnecting in a loop looks the same from the broker: an even bet, never a confident claim
    assert top.confidence == 0.5 and top.facts["short_lived"] == 2


def test_long_lived_connection_dropped_is_not_called_benign() -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "long-lived-abrupt-rabbit38")]))
    benign = [f for f in report.findings if f.category == Category.BENIGN_CLIENT_DISCONNECT]
    assert all(f.confidence < 0.5 for f in benign)
    assert any(f.role == Role.CAUSE and f.category == Category.UNKNOWN for f in report.findings)


@pytest.mark.parametrize("text", [
    # Sentry's issue title for redis-py's ResponseError (getsentry/self-hosted#3888)
    "responseError(\"OOM command not allowed when used memory > 'maxmemory'.\")\n",
    # a repr as logged by `Task ... raised unexpected: %r` with its module joined by a colon (celery#2811)
    "redis.exceptions:ResponseError max number of clients reached\n",
    # a Django debug page pasted as text: the class on one line, the server's reply on the next (rdrf#2095)
    "OperationalError\nmax number of clients reached\n/env/lib/python3.8/site-packages/kombu/connection.py in "
    "_reraise_as_library_errors, line 452\n",
    "ResponseError('MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on "
    "disk.')\n",
    # Upstash's reply as a bare line (wotschofsky/domain-digger#36; the older wording of the same quota)
    "UpstashError: ERR max daily request limit exceeded. Limit: 10000, Usage: 10001.\n",
    "redis.exceptions.ResponseError: max requests limit exceeded. Limit: 10000, Usage: 10000\n",
])
def test_redis_refusal_quoted_in_any_wrapper_is_a_resource_limit(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.category == Category.BROKER_RESOURCE_ALARM and top.rule_id == "CD-L20"
    assert top.evidence and top.evidence[0].line in (1, 2)


def test_an_unrelated_repr_is_not_a_resource_limit(tmp_path: Path) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text("ValueError('invalid literal for int() with base 10')\n")
    try:
        report = diagnose(DiagnoseOptions(logs=[str(paste)]))
    except Exception:  # nothing readable: a clear error, never a cause
        return
    assert not any(f.category == Category.BROKER_RESOURCE_ALARM for f in report.findings)


@pytest.mark.parametrize("text", [
    # Redis 6+ (acl.c authCommand) through Celery's consumer (bookwyrm#1509)
    "[2021-10-05 22:49:24,364: ERROR/MainProcess] consumer: Cannot connect to redis://:**@redis_broker:6379/0: "
    "AUTH <password> called without any password configured for the default user. Are you sure your "
    "configuration is correct?.\n",
    # Redis before 6 (server.c authCommand), same consumer line (weibospider#206)
    "[2020-04-25 19:53:50,902: ERROR/MainProcess] consumer: Cannot connect to redis://:**@localhost:6379/6: "
    "Client sent AUTH, but no password is set.\n",
    # redis-py maps both replies to AuthenticationError (redis/_parsers/base.py NO_AUTH_SET_ERROR); pasted bare
    "redis.exceptions.AuthenticationError: AUTH <password> called without any password configured for the "
    "default user. Are you sure your configuration is correct?\n",
])
def test_password_sent_to_a_redis_without_one_is_a_refused_login(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "worker.log"
    paste.write_text(text)
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.category == Category.AUTH_OR_PERMISSIONS and top.rule_id == "CD-L05"
    assert top.fix is not None and "has no password" in top.fix.text and "redis://" in (top.fix.snippet or "")


@pytest.mark.parametrize("text", [
    # an error tracker's layout: the exception first, frames below with paths relative to site-packages
    "KeyError: 'async'\n  File \"kombu/transport/base.py\", line 123, in __getattr__\n    return self[key]\n\n"
    "AttributeError: async\n  File \"celery/worker/worker.py\", line 99, in __init__\n"
    "    self.setup_instance(**self.prepare_args(**kwargs))\n",
    # a paste that starts inside the traceback: frames, then the exception, no header
    "   self.should_use_eventloop() if use_eventloop is None\n"
    "  File \"/usr/local/lib/python2.7/dist-packages/celery/worker/worker.py\", line 241, in should_use_eventloop\n"
    "    self._conninfo.transport.implements.async and\n"
    "  File \"/home/app/.local/lib/python2.7/site-packages/kombu/transport/base.py\", line 125, in __getattr__\n"
    "    raise AttributeError(key)\nAttributeError: async\n",
])
def test_known_bug_read_from_a_traceback_without_its_header(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.category == Category.VERSION_INCOMPATIBILITY and top.rule_id == "CD-K01"


def test_user_code_frames_alone_are_not_read_as_a_worker_crash(tmp_path: Path) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text("  File \"/app/tasks.py\", line 12, in run\n    total = int(value)\n"
                     "ValueError: invalid literal for int() with base 10: 'x'\n")
    with pytest.raises(DoctorError):
        diagnose(DiagnoseOptions(logs=[str(paste)]))


@pytest.mark.parametrize("text", [
    # the bare exception line (kombu 4.4+, kombu/transport/redis.py _get_client)
    "kombu.exceptions.VersionMismatch: Redis transport requires redis-py versions 3.2.0 or later. You have 2.10.5\n",
    # the message alone, as a chat or README quotes it
    " Redis transport requires redis-py versions 3.2.0 or later. You have 2.10.6\n",
    # a Django error page as text: class on one line, message on the next, then the location
    "Request Method: | GET\n-- | --\nhttps://example.org/\n2.2.4\nVersionMismatch\nRedis transport requires "
    "redis-py versions 3.2.0 or later. You have 2.10.5\n/srv/venv/lib/python3.6/site-packages/kombu/transport/"
    "redis.py in _get_client, line 980\n",
])
def test_kombu_refusing_the_installed_redis_py_is_a_version_problem(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.category == Category.VERSION_INCOMPATIBILITY and top.rule_id == "CD-K01"
    assert any("requires redis-py versions" in e.text for e in top.evidence)


def test_error_page_message_on_the_line_after_its_class_is_read() -> None:
    from celery_doctor.rules.logs.traceback import parse

    tb = parse("OperationalError\nmax number of clients reached\n/env/lib/python3.8/site-packages/kombu/"
               "connection.py in _reraise_as_library_errors, line 452")
    assert tb.raised[0].name == "OperationalError" and tb.raised[0].text == "max number of clients reached"
    # a traceback's own exception line keeps its text, and a frame after a bare name is no message
    tb = parse('KeyError\n  File "kombu/transport/base.py", line 123, in __getattr__')
    assert tb.raised[0].text == ""


def test_replicaof_names_who_asked_for_it() -> None:
    # an exposed server made a replica of a stranger's: the address that asked is the lead
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "replica-attack")]))
    top = report.findings[0]
    assert top.facts["replicaof_from"] == ["109.237.96.124"]
    assert "109.237.96.124" in top.explanation and "REPLICAOF NO ONE" in (top.fix.text if top.fix else "")
    assert any("REPLICAOF 185.246.90.205:8886 enabled" in e.text for e in top.evidence)


def test_undated_forced_close_names_the_reason_rabbitmq_gave(tmp_path: Path) -> None:
    paste = tmp_path / "error.txt"  # rabbitmqctl close_connection / the management UI (rabbit_reader.erl)
    paste.write_text("amqp.exceptions.ConnectionForced: (0, 0): (320) CONNECTION_FORCED - Closed via management "
                     "plugin\n")
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.category == Category.BROKER_RESTART_OR_FAILOVER and top.rule_id == "CD-L04"
    assert top.title == "The broker closed the connections on purpose"
    assert "Closed via management plugin" in top.explanation
    shutdown = diagnose(DiagnoseOptions(logs=[str(RULES / "forced-shutdown-undated-bare")])).findings[0]
    assert "shutdown" in shutdown.title and "'shutdown'" in shutdown.explanation


def test_cut_traceback_of_a_forced_close_is_cited_first_with_its_reason(tmp_path: Path) -> None:
    # the paste starts inside the traceback (no header, no time), then the dated reconnects (celery#8541's shape)
    log = tmp_path / "worker.log"
    log.write_text(
        "    raise error_for_code(reply_code, reply_text,\n"
        "amqp.exceptions.ConnectionForced: (0, 0): (320) CONNECTION_FORCED - broker forced connection closure "
        "with reason 'shutdown'\n"
        "[2024-02-01 10:00:00,100: INFO/MainProcess] Connected to amqp://app:**@rabbit:5672//\n"
        "[2024-02-01 10:00:01,000: INFO/MainProcess] celery@w1 ready.\n"
        "[2024-02-01 10:20:00,010: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish "
        "the connection...\n"
        "[2024-02-01 10:20:00,020: ERROR/MainProcess] consumer: Cannot connect to amqp://app:**@rabbit:5672//: "
        "[Errno 111] Connection refused.\nTrying again in 2.00 seconds... (1/100)\n\n"
        "[2024-02-01 10:20:02,040: ERROR/MainProcess] consumer: Cannot connect to amqp://app:**@rabbit:5672//: "
        "[Errno 111] Connection refused.\nTrying again in 4.00 seconds... (2/100)\n\n")
    top = diagnose(DiagnoseOptions(logs=[str(log)])).findings[0]
    assert top.category == Category.BROKER_RESTART_OR_FAILOVER and top.rule_id == "CD-L04"
    assert "CONNECTION_FORCED" in top.evidence[0].text and "'shutdown'" in top.explanation
    assert top.confidence == 0.75


@pytest.mark.parametrize("folder", ["refused-throughout-amqp", "refused-throughout-gcp-redis"])
def test_refused_at_every_attempt_is_a_broker_not_listening_said_as_an_even_bet(folder: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / folder)]))
    top = next(f for f in report.findings if f.role == Role.CAUSE)
    assert top.category == Category.BROKER_RESTART_OR_FAILOVER and top.rule_id == "CD-L04"
    assert top.confidence == pytest.approx(0.45) and top.facts["refused_only"]
    assert report.incidents and report.incidents[0].ts is not None  # the collector's prefix did not hide the times


@pytest.mark.parametrize("text", [
    # one refusal only: no retries seen
    "[2024-03-11 08:00:02,411: ERROR/MainProcess] consumer: Cannot connect to amqp://app:**@rabbitmq:5672//: "
    "[Errno 111] Connection refused.\nTrying again in 2.00 seconds... (1/100)\n",
    # Celery's default URL: the setting not in effect (CD-L22), not a broker that is down
    "[2024-03-11 08:00:02,411: ERROR/MainProcess] consumer: Cannot connect to amqp://guest:**@127.0.0.1:5672//: "
    "[Errno 111] Connection refused.\nTrying again in 2.00 seconds... (1/100)\n\n"
    "[2024-03-11 08:00:04,430: ERROR/MainProcess] consumer: Cannot connect to amqp://guest:**@127.0.0.1:5672//: "
    "[Errno 111] Connection refused.\nTrying again in 4.00 seconds... (2/100)\n",
])
def test_single_or_default_url_refusals_are_not_called_a_broker_down(tmp_path: Path, text: str) -> None:
    log = tmp_path / "worker.log"
    log.write_text(text)
    report = diagnose(DiagnoseOptions(logs=[str(log)]))
    assert not any(f.facts.get("refused_only") for f in report.findings)


def _timeout_crash(ts: str) -> str:
    return (f"[{ts}: ERROR/MainProcess] Unrecoverable error: TimeoutError('Timeout reading from socket',)\n"
            "Traceback (most recent call last):\n"
            '  File "lib/python2.7/site-packages/kombu/connection.py", line 275, in drain_events\n'
            "    return self.transport.drain_events(self.connection, **kwargs)\n"
            "TimeoutError: Timeout reading from socket\n")


def test_one_client_side_read_timeout_is_no_confident_path_loss(tmp_path: Path) -> None:
    # celery#3046: a stalled server (busy, swapping, forking for a snapshot) looks the same from the client
    log = tmp_path / "worker.log"
    log.write_text(_timeout_crash("2016-02-08 19:12:36,069"))
    report = diagnose(DiagnoseOptions(logs=[str(log)]))
    assert all(f.confidence <= 0.5 for f in report.findings if f.category == Category.NETWORK_PATH_LOSS)


def test_a_cluster_refusal_in_mingle_is_no_rabbitmq_transient_queue() -> None:
    """A worker dying in mingle's hello on a Redis reply is the cluster, never RabbitMQ 4.3's refusal."""
    report = diagnose(DiagnoseOptions(logs=[str(RULES / "redis-cluster-crossslot")]))
    assert report.findings[0].rule_id == "CD-L70" and report.findings[0].confidence >= 0.8
    assert not any(f.rule_id == "CD-L52" for f in report.findings)


@pytest.mark.parametrize("text", [
    # a command kombu never sends, refused by a managed Redis: not the broker's incompatibility
    "redis.exceptions.ResponseError: unknown command 'CONFIG', with args beginning with: 'GET' 'maxmemory'\n",
    # a script in the user's own code on an old server (rapidpro#108)
    "ResponseError: unknown command 'EVAL'\n",
])
def test_unknown_command_kombu_does_not_send_is_not_called_incompatible(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    try:
        report = diagnose(DiagnoseOptions(logs=[str(paste)]))
    except DoctorError:
        return
    assert not any(f.rule_id == "CD-L70" for f in report.findings)


@pytest.mark.parametrize("text", [
    # MySQL's refusal inside a task (Django's OperationalError 1040) is the database, not redis-py's pool
    "[2024-01-02 10:00:00,000: ERROR/ForkPoolWorker-1] Task app.sync[1] raised unexpected: "
    "OperationalError(1040, 'Too many connections')\n",
    # the server's maxclients is CD-L20's, not the client's pool
    "redis.exceptions.ConnectionError: max number of clients reached\n",
])
def test_other_too_many_connections_are_not_the_client_pool(tmp_path: Path, text: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    try:
        report = diagnose(DiagnoseOptions(logs=[str(paste)]))
    except DoctorError:
        return
    assert not any(f.rule_id == "CD-L71" for f in report.findings)


def test_pool_refusal_in_the_result_backend_names_its_setting() -> None:
    top = diagnose(DiagnoseOptions(logs=[str(RULES / "redis-pool-full-backend")])).findings[0]
    assert top.rule_id == "CD-L71" and top.facts["backend"] is True
    assert top.fix is not None and "redis_max_connections" in top.fix.text


REFUSED_AFTER_LOGIN = """[2020-08-10 06:09:50,469: INFO/MainProcess] Connected to amqp://app:**@10.0.0.9:5672/app
[2020-08-10 06:09:51,546: INFO/MainProcess] celery@web-1 ready.
[2020-08-10 07:40:02,118: CRITICAL/MainProcess] Unrecoverable error: AccessRefused(403, 'ACCESS_REFUSED - Login \
was refused using authentication mechanism PLAIN. For details see the broker logfile.', (0, 0), '')
"""


def test_refusal_after_the_same_worker_logged_in_is_no_confident_password_problem(tmp_path: Path) -> None:
    """A login that worked earlier in the same log and fails later: the broker's user changed, or the
    worker no longer sends the configured credentials; the log cannot tell which."""
    log = tmp_path / "worker.log"
    log.write_text(REFUSED_AFTER_LOGIN)
    report = diagnose(DiagnoseOptions(logs=[str(log)]))
    auth = next(f for f in report.findings if f.category == Category.AUTH_OR_PERMISSIONS)
    assert 0.5 < auth.confidence < 0.7
    alt = next(f for f in report.findings if f.category == Category.OLD_SETTING_NAMES_IGNORED)
    assert alt.confidence < auth.confidence and "06:09:50" in alt.explanation


def test_refusal_with_no_earlier_login_stays_a_confident_password_problem(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(REFUSED_AFTER_LOGIN.split("\n", 2)[2])
    report = diagnose(DiagnoseOptions(logs=[str(log)]))
    auth = next(f for f in report.findings if f.category == Category.AUTH_OR_PERMISSIONS)
    assert auth.confidence >= 0.9
    assert not any(f.category == Category.OLD_SETTING_NAMES_IGNORED for f in report.findings)


@pytest.mark.parametrize(("text", "kind"), [
    # Celery 4.3's wording of the backend's refusal (celery#5371)
    ("ValueError: A rediss:// URL must have parameter ssl_cert_reqs be CERT_REQUIRED, CERT_OPTIONAL, or CERT_NONE\n",
     "missing"),
    # a lower-case value read by a release before 5.1 (celery#5988)
    ("AttributeError: module 'ssl' has no attribute 'none'\n", "lowercase"),
    # redis-py's own check of the flag
    ("redis.exceptions.RedisError: Invalid SSL Certificate Requirements Flag: CERT_MAYBE\n", "plain"),
])
def test_refused_redis_tls_options_are_named_as_written(tmp_path: Path, text: str, kind: str) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text(text)
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.rule_id == "CD-L72" and top.category == Category.TLS_OR_PROXY and top.facts["kind"] == kind


def test_an_unrelated_ssl_attribute_error_is_no_tls_option_refusal(tmp_path: Path) -> None:
    paste = tmp_path / "paste.txt"
    paste.write_text("AttributeError: module 'ssl' has no attribute 'PROTOCOL_SSLv3'\n")
    try:
        report = diagnose(DiagnoseOptions(logs=[str(paste)]))
    except DoctorError:
        return
    assert not any(f.rule_id == "CD-L72" for f in report.findings)


@pytest.mark.parametrize("folder", ["rabbitmq-connection-limit-worker", "rabbitmq-connection-limit-broker"])
def test_a_connection_limit_is_no_refused_login(folder: str) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / folder)]))
    assert not any(f.category == Category.AUTH_OR_PERMISSIONS for f in report.findings)
    assert report.findings[0].facts["what"] == "connections"


def test_a_user_channel_limit_quoted_bare_is_the_channel_count(tmp_path: Path) -> None:
    paste = tmp_path / "paste.txt"  # rabbit_reader.erl, per-user max-channels (3.8.10+)
    paste.write_text("amqp.exceptions.NotAllowed: Channel.open: (530) NOT_ALLOWED - number of channels opened for "
                     "user 'app' has reached the maximum allowed user limit of (100)\n")
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.rule_id == "CD-L73" and top.category == Category.POOL_EXHAUSTION_OR_MISUSE
    assert top.facts["limit"] == "100"


def test_consumer_cancel_quoted_bare_is_said_as_an_even_bet(tmp_path: Path) -> None:
    """The cancel alone cannot tell a deleted queue from a node or leader gone: said below 0.7."""
    paste = tmp_path / "paste.txt"
    paste.write_text("amqp.exceptions.ConsumerCancelled: Basic.cancel: (0) None1\n")
    top = diagnose(DiagnoseOptions(logs=[str(paste)])).findings[0]
    assert top.rule_id == "CD-L74" and top.confidence < 0.7


@pytest.mark.parametrize(("where", "low", "high"), [
    ("frame-error-threads-worker", 0.4, 0.5),  # the client's frame-end error alone: a lead
    ("frame-unexpected-broker", 0.55, 0.65),  # RabbitMQ saw two publishes interleaved on one channel
])
def test_broken_framing_is_a_shared_connection_said_below_confident(where: str, low: float, high: float) -> None:
    report = diagnose(DiagnoseOptions(logs=[str(RULES / where)]))
    frame = next(f for f in report.findings if f.rule_id == "CD-L75")
    assert frame.category == Category.POOL_EXHAUSTION_OR_MISUSE and low <= frame.confidence <= high
    assert not any(f.category == Category.BROKER_RESTART_OR_FAILOVER and f.confidence >= 0.7 for f in report.findings)


def test_amqplib_framing_error_quoted_bare_is_read(tmp_path: Path) -> None:
    paste = tmp_path / "paste.txt"  # amqplib 1.0 (celery#922, celery#679)
    paste.write_text("Exception: Framing Error, received 0x00 while expecting 0xce\n")
    report = diagnose(DiagnoseOptions(logs=[str(paste)]))
    assert any(f.rule_id == "CD-L75" and f.confidence <= 0.5 for f in report.findings)


def test_partition_names_the_paused_node_and_the_peer() -> None:
    top = diagnose(DiagnoseOptions(logs=[str(RULES / "rabbitmq-partition-pause-minority")])).findings[0]
    assert top.rule_id == "CD-L76" and top.facts["paused"] is True and top.facts["peers"] == ["rabbit@mq1"]
    assert "pause_minority" in top.explanation
    alone = diagnose(DiagnoseOptions(logs=[str(RULES / "rabbitmq-partition-ignore")])).findings[0]
    assert alone.facts["paused"] is False and alone.confidence < 0.8


def test_every_redis_limit_pattern_holds_one_of_the_words_its_cheap_test_looks_for() -> None:
    """CD-L20 reads an event's patterns only when one of WORDS is in it: each alternative of each
    pattern must hold one, or a limit it names would never be seen."""
    from celery_doctor.rules.logs.redis_limits import LIMITS, WORDS

    for name, pattern in LIMITS:
        for branch in pattern.pattern.split("|"):
            assert any(word in branch for word in WORDS), (name, branch)
