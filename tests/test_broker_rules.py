"""Broker rules on states the local brokers cannot safely be put in (replica, eviction, limits)."""

from __future__ import annotations

from celery_doctor.model import BrokerFacts, Category, Severity
from celery_doctor.rules.broker_rules import broker_findings


def _redis(**facts: object) -> BrokerFacts:
    return BrokerFacts(kind="redis", url="redis://h:6379/0", host="h", port=6379, reachable=True,
                       logged_in=True, facts={"login": {"ok": True}, **facts})


def test_replica_role_is_a_failover_finding() -> None:
    facts = _redis(info={"role": "slave", "master_host": "10.0.0.1", "master_port": 6379})
    finding = broker_findings(facts)[0]
    assert finding.category == Category.BROKER_RESTART_OR_FAILOVER
    assert finding.severity == Severity.HIGH


def test_allkeys_eviction_and_small_pubsub_buffer() -> None:
    facts = _redis(
        info={"role": "master", "used_memory": 10, "maxmemory": 100},
        config={"maxmemory": 100, "maxmemory-policy": "allkeys-lru",
                "client-output-buffer-limit": {"pubsub": {"hard_bytes": 1048576,
                                                          "soft_bytes": 0, "soft_seconds": 0}}})
    titles = [f.title for f in broker_findings(facts)
              if f.category == Category.BROKER_RESOURCE_ALARM]
    assert any("evict" in t for t in titles)
    assert any("pub/sub" in t for t in titles)


def test_noeviction_near_the_limit_and_rejected_connections() -> None:
    facts = _redis(info={"role": "master", "used_memory": 97, "maxmemory": 100,
                         "maxmemory_policy": "noeviction", "rejected_connections": 4,
                         "connected_clients": 3, "maxclients": 10000})
    cats = {(f.category, f.severity) for f in broker_findings(facts)}
    assert (Category.BROKER_RESOURCE_ALARM, Severity.HIGH) in cats
    # a counter since start, not sampled twice: worth a look, not a present fault
    assert (Category.POOL_EXHAUSTION_OR_MISUSE, Severity.MEDIUM) in cats
    facts.facts["rejections"] = {"since_start": 6, "during_probe": 2, "interval_s": 5.0}
    rising = [f for f in broker_findings(facts) if f.category == Category.POOL_EXHAUSTION_OR_MISUSE]
    assert [(f.severity, f.title) for f in rising] == [
        (Severity.HIGH, "Redis rejected 2 connections during the 5 s probe")]
    facts.facts["rejections"] = {"since_start": 4, "during_probe": 0, "interval_s": 5.0}
    past = [f for f in broker_findings(facts) if f.category == Category.POOL_EXHAUSTION_OR_MISUSE]
    assert [f.severity for f in past] == [Severity.LOW] and "none during the 5 s probe" in past[0].title


def test_rabbitmq_sockets_near_limit_and_guest_from_afar() -> None:
    facts = BrokerFacts(
        kind="rabbitmq", url="amqp://guest:***@10.1.1.1:5672//", host="10.1.1.1", port=5672,
        reachable=True, logged_in=False,
        facts={"user": "guest", "vhost": "/",
               "login": {"ok": False, "code": 403,
                         "error": "ACCESS_REFUSED - Login was refused using authentication "
                                  "mechanism PLAIN."},
               "nodes": [{"name": "rabbit@a", "sockets_used": 820, "sockets_total": 832}]})
    findings = broker_findings(facts)
    assert findings[0].category == Category.AUTH_OR_PERMISSIONS
    assert "localhost" in findings[0].title
    assert any(f.category == Category.BROKER_RESOURCE_ALARM and "sockets" in f.title
               for f in findings)


def test_healthy_facts_give_no_findings() -> None:
    facts = _redis(info={"role": "master", "connected_clients": 2, "maxclients": 10000},
                   config={"timeout": 0, "tcp-keepalive": 300, "maxclients": 10000,
                           "maxmemory": 0, "maxmemory-policy": "noeviction"})
    assert broker_findings(facts) == []
