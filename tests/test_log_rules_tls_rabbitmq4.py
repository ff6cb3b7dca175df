"""CD-L50 (TLS mismatch), CD-L51 (global QoS refused), CD-L52 (transient queues refused), CD-L53
(the broker's service name stopped resolving) and CD-K01 on a traceback cut before its exception
line, each on the fixtures of tests/fixtures/rules/README.md (the messages as their sources emit
them) and on the public threads they were built for."""

from __future__ import annotations

import pytest

from celery_doctor.model import Category, Finding, Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES

RULES = FIXTURES / "rules"
THREADS = FIXTURES / "threads"


def _causes(folder: str, base: object = RULES) -> list[Finding]:
    report = diagnose(DiagnoseOptions(logs=[str(base / folder)]))  # type: ignore[operator]
    return [f for f in report.findings if f.role == Role.CAUSE]


@pytest.mark.parametrize(
    ("folder", "server_side"),
    [
        ("tls-redis-plain-client", True),  # Redis 7: "Error accepting a client connection: ... wrong version number"
        ("tls-rabbit-plain-client", True),  # Erlang ssl: SERVER ALERT, {unsupported_record_type,65}
        ("tls-rabbit-tls-client", True),  # rabbit_reader: {bad_header,<<22,3,...>>} + the client's WRONG_VERSION_NUMBER
        ("tls-rabbit41-tls-client", True),  # RabbitMQ 4.1+: "TLS client detected on non-TLS AMQP port"
        ("connect-close-redis", False),  # redis:// on 6380 (the TLS port), closed at connect
    ],
)
def test_tls_mismatch_is_named_with_the_deciding_lines(folder: str, server_side: bool) -> None:
    top = _causes(folder)[0]
    assert top.category == Category.TLS_OR_PROXY and top.rule_id == "CD-L50"
    assert top.facts["server_side"] is server_side
    assert top.confidence >= (0.9 if server_side else 0.7)
    deciding = ("wrong version number", "unsupported_record_type", "bad_header", "TLS client detected", ":6380")
    assert any(any(word in e.text for word in deciding) for e in top.evidence)


def test_certificate_failures_stay_below_confident() -> None:
    """CERTIFICATE_VERIFY_FAILED is a CA (or name) problem or the py-amqp 5.0.3+ default: said, not certain."""
    top = _causes("tls-cert-verify")[0]
    assert top.category == Category.TLS_OR_PROXY and top.rule_id == "CD-L50"
    assert 0.5 <= top.confidence < 0.7
    assert "5.0.3" in top.explanation


def test_a_refused_handshake_is_tls() -> None:
    top = _causes("tls-handshake-refused")[0]
    assert (top.category, top.rule_id) == (Category.TLS_OR_PROXY, "CD-L50") and 0.7 <= top.confidence < 0.9


def test_one_close_at_connect_on_a_plain_port_is_weaker_than_a_repeated_one() -> None:
    once = _causes("connect-close-plain-port")[0]
    assert (once.category, once.rule_id) == (Category.TLS_OR_PROXY, "CD-L26") and once.confidence <= 0.5


def test_a_handshake_timeout_claims_nothing_confidently() -> None:
    """Amazon MQ over amqps, handshakes timing out (py-amqp#451, unsettled): at most 0.5 for TLS."""
    causes = _causes("313-pyamqp451-amazonmq-ecs-handshake-timeout", THREADS)
    assert all(f.confidence <= 0.5 for f in causes)


@pytest.mark.parametrize("folder", ["global-qos-quorum", "global-qos-consume-loss"])
def test_global_qos_refused_by_a_quorum_queue(folder: str) -> None:
    top = _causes(folder)[0]
    assert (top.category, top.rule_id) == (Category.VERSION_INCOMPATIBILITY, "CD-L51") and top.confidence >= 0.85
    assert any("does not support global qos" in e.text for e in top.evidence)
    assert top.fix is not None and "5.5" in top.fix.text


@pytest.mark.parametrize("folder", ["transient-queue-client", "transient-queue-broker"])
def test_transient_queues_refused_by_rabbitmq_43(folder: str) -> None:
    causes = _causes(folder)
    top = causes[0]
    assert (top.category, top.rule_id) == (Category.VERSION_INCOMPATIBILITY, "CD-L52") and top.confidence >= 0.85
    # 541 INTERNAL_ERROR here is no vhost that is down
    assert not any(f.rule_id == "CD-L24" for f in causes)


def test_a_loss_in_mingles_hello_without_the_brokers_text_is_said_at_half() -> None:
    top = _causes("transient-mingle-cut")[0]
    assert (top.rule_id, top.confidence) == ("CD-L52", 0.5)
    assert "RabbitMQ log" in top.explanation


def test_a_loss_in_mingles_hello_over_redis_is_not_rabbitmq_43() -> None:
    assert not any(f.rule_id == "CD-L52" for f in _causes("transient-mingle-redis"))


def test_a_service_name_that_stops_resolving_is_the_broker_container() -> None:
    alone = _causes("service-name-compose")[0]
    after = _causes("service-name-after-connect")[0]
    assert alone.category == after.category == Category.BROKER_RESTART_OR_FAILOVER
    assert alone.rule_id == "CD-L53" and after.rule_id in ("CD-L53", "CD-L04")
    assert alone.confidence <= 0.5 < after.confidence < 0.7
    # a fully qualified name that does not resolve says nothing about a container (celery#5724, unsettled)
    assert not any(f.rule_id == "CD-L53" for f in _causes("315-celery5724-azure-china-redis-dns", THREADS))


@pytest.mark.parametrize("folder", ["known-bug-cut-frames", "known-bug-sslsocket-unrecoverable"])
def test_py_amqp_sslsocket_on_python_37_from_frames_or_message(folder: str) -> None:
    top = _causes(folder)[0]
    assert (top.category, top.rule_id) == (Category.VERSION_INCOMPATIBILITY, "CD-K01")
    assert top.facts["known_bad"] == "amqp-lt-2.4_py37_sslsocket"
    assert top.fix is not None and "2.4.0" in top.fix.text


@pytest.mark.parametrize(
    ("case", "category"),
    [
        ("303-securitymonkey1175-redis-tls-plain-url", Category.TLS_OR_PROXY),
        ("304-celery4792-azure-redis-6380-plain", Category.TLS_OR_PROXY),
        ("305-celery6455-sentinel-tls-wrong-version", Category.TLS_OR_PROXY),
        ("306-celery8016-sentinel-tls-wrong-version-compose", Category.TLS_OR_PROXY),
        ("307-kombu2469-rabbitmq4-global-qos", Category.VERSION_INCOMPATIBILITY),
        ("309-pyamqp206-py37-sslsocket", Category.VERSION_INCOMPATIBILITY),
        ("310-tutor80-rabbitmq-container-quit-dns", Category.BROKER_RESTART_OR_FAILOVER),
        ("320-pretix6537-rabbitmq43-transient-queues", Category.VERSION_INCOMPATIBILITY),
    ],
)
def test_the_threads_these_rules_came_from(case: str, category: Category) -> None:
    assert _causes(case, THREADS)[0].category == category


@pytest.mark.parametrize(
    ("folder", "entry"),
    [
        ("known-bug-username-bare", "kombu52_redis-lt-3.4_username"),
        ("known-bug-can-read-py2", "kombu4_redis-lt-2.10.4_can-read"),
        ("known-bug-sentinel-push-request", "redis-5.0.0_sentinel-push-request"),
        ("325-kombu1419-username-old-redis-py", "kombu52_redis-lt-3.4_username"),
        ("327-kombu2419-credential-provider-redis4", "kombu561_redis-lt-5.3"),
        ("329-flower683-can-read-timeout-old-redis-py", "kombu4_redis-lt-2.10.4_can-read"),
        ("330-redispy2754-sentinel-read-response-disconnect-on-error", "redis-4.5.5_sentinel-disconnect-on-error"),
    ],
)
def test_redis_client_keyword_mismatches_name_their_release(folder: str, entry: str) -> None:
    base = THREADS if folder[:3].isdigit() else RULES
    top = _causes(folder, base)[0]
    assert (top.category, top.rule_id) == (Category.VERSION_INCOMPATIBILITY, "CD-K01")
    assert top.facts["known_bad"] == entry


def test_an_unrecoverable_repr_keeps_its_parentheses() -> None:
    from celery_doctor.rules.logs.traceback import parse

    raised = parse(
        'Unrecoverable error: TypeError("Connection.__init__() got an unexpected keyword argument '
        "'credential_provider'\")"
    ).raised
    assert raised[0].text == "Connection.__init__() got an unexpected keyword argument 'credential_provider'"
    assert parse("Unrecoverable error: OperationalError('[Errno 32] Broken pipe') (worker.py:start)").raised[
        0
    ].text == ("[Errno 32] Broken pipe")


def test_flower_connection_failures_are_not_library_crashes() -> None:
    from celery_doctor.ingest import signatures

    lost = "Failed to capture events: '[Errno 104] Connection reset by peer', trying again in 1 seconds."
    bug = (
        "Failed to capture events: 'can_read() got an unexpected keyword argument 'timeout'', "
        "trying again in 1 seconds."
    )
    assert signatures.match("celery", lost) is None or signatures.match("celery", lost).kind.value != "worker_crash"
    assert signatures.match("celery", bug).id == "flower.events.capture_failed_other"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("folder", "base"),
    [
        ("sentinel-auth-no-master", RULES),
        ("334-dify21191-sentinel-auth-no-master", THREADS),
    ],
)
def test_sentinels_that_refuse_the_login_want_sentinel_kwargs(folder: str, base: object) -> None:
    top = _causes(folder, base)[0]
    assert (top.category, top.rule_id) == (Category.AUTH_OR_PERMISSIONS, "CD-L05")
    assert top.fix is not None and "sentinel_kwargs" in top.fix.text and "sentinel_kwargs" in (top.fix.snippet or "")
    # a master that cannot be found because the sentinels refused the login is no failover
    assert all(f.category != Category.BROKER_RESTART_OR_FAILOVER for f in _causes(folder, base)[:1])
