"""`broker --timeout T` is the wall-clock budget of the whole probe: against servers that stall,
trickle their bytes or never end a body, every probe ends within T + 1 s, with one clear line
(exit 2) or a report; a stall is reported as a stall, never as a refused login; a Redis
without HELLO (before 6) is probed over RESP2."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from celery_doctor.cli import main
from misbehaving_servers import misbehaving_servers

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    with misbehaving_servers(lifetime=300) as ports:
        yield ports


def probe(*args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(main, ["broker", *args, "--timeout", str(TIMEOUT)], catch_exceptions=True)
    elapsed = time.monotonic() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr and "S3cr3t" not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr, elapsed


@pytest.mark.parametrize("scheme,name,needle", [
    ("amqp", "silent", "no AMQP answer"),
    ("amqp", "amqp_start_stall", "did not complete the AMQP handshake"),
    ("amqp", "amqp_start_trickle", "did not complete the AMQP handshake"),
    ("redis", "silent", "no Redis answer"),
    ("redis", "redis_slow", "Redis"),
    ("redis", "redis_trickle", "did not complete the Redis handshake"),
])
def test_a_stalled_or_trickling_server_ends_within_the_budget(servers: dict[str, int], scheme: str, name: str,
                                                               needle: str) -> None:
    path = "//" if scheme == "amqp" else "/0"
    code, _out, err, elapsed = probe(f"{scheme}://guest:S3cr3tPass@127.0.0.1:{servers[name]}{path}")
    assert elapsed < TIMEOUT + 1, elapsed
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err and "refused the login" not in err


def test_a_redis_without_hello_is_probed_over_resp2(servers: dict[str, int]) -> None:
    code, out, err, elapsed = probe(f"redis://127.0.0.1:{servers['redis_no_hello']}/0", "--format", "json")
    assert code in (0, 1), err
    broker = json.loads(out)["data"]["broker"]
    assert broker["facts"]["protocol"] == "RESP2" and broker["version"] == "5.0.14"
    assert broker["facts"]["config"]["timeout"] == 300
    assert elapsed < TIMEOUT + 1


@pytest.mark.broker
@pytest.mark.parametrize("name", ["http_trickle", "http_odd_json", "http_endless", "silent"])
def test_a_misbehaving_management_api_costs_at_most_the_budget(servers: dict[str, int], rabbitmq_url: str,
                                                               name: str) -> None:
    code, out, err, elapsed = probe(rabbitmq_url, "--management", f"http://u:S3cr3t/ab@127.0.0.1:{servers[name]}",
                                    "--format", "json")
    assert elapsed < TIMEOUT + 1, elapsed
    assert code in (0, 1), err
    doc = json.loads(out)
    assert doc["data"]["broker"]["logged_in"] is True  # the AMQP facts survive a bad management API
    broker = doc["data"]["broker"]
    if name == "http_odd_json":  # an object with the wrong shapes inside: read as absent, not as values
        assert broker["facts"]["management"]["available"] is True and isinstance(broker["version"], str)
        assert broker["facts"]["churn"]["connections_now"] is None
    else:
        assert any("management" in note for note in broker["notes"])
