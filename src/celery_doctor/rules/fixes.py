"""Fix snippets written in the setting names of the user's Celery version.

Celery 4.0 renamed the settings to lowercase; 3.1 only knows the uppercase names. A fix that
uses a name the user's version ignores would itself be a silent no-op, so every snippet goes
through :func:`setting`, which reads the names from the generated settings data.
"""

from __future__ import annotations

import re
from functools import cache

from packaging.version import InvalidVersion, Version

from celery_doctor.settings import catalogue


@cache
def _old_names() -> dict[str, str]:
    """new name -> its 3.x name, from Celery's own old->new maps."""
    out: dict[str, str] = {}
    for old, new in catalogue.any_to_new().items():
        out.setdefault(new, old)
    return out


def uses_old_names(celery_version: str | None) -> bool:
    if not celery_version:
        return False
    try:
        return Version(celery_version) < Version("4.0")
    except InvalidVersion:
        return False


def setting(name: str, celery_version: str | None) -> str:
    """The name to write for ``name`` (a 4.0+ name) in the user's version."""
    return _old_names().get(name, name.upper()) if uses_old_names(celery_version) else name


def in_old_names(text: str) -> str:
    """A snippet rewritten in the upper-case names of Celery 3.x, for a config file written in them:
    Celery 4+ refuses a file that mixes both styles (ImproperlyConfigured, celery/app/utils.py)."""
    old = _old_names()
    return re.sub(r"^([a-z_]+)(\s*=)", lambda m: old.get(m.group(1), m.group(1)) + m.group(2), text, flags=re.M)


def snippet(values: dict[str, str], celery_version: str | None, comment: str | None = None) -> str:
    """A celeryconfig-style snippet; ``values`` holds Python source for each value."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"{setting(name, celery_version)} = {value}" for name, value in values.items()]
    return "\n".join(lines)


HEARTBEAT_RULE = """
How py-amqp keeps an idle connection busy (checked in amqp/connection.py `heartbeat_tick` and
celery/worker/loops.py): the worker calls `heartbeat_tick(rate)` every H / rate seconds, where H is
the negotiated heartbeat (the smaller of client and server when both are set; RabbitMQ offers 60 s)
and rate is `broker_heartbeat_checkrate` (3.0 by default in Celery 3.1 to 5.x). py-amqp 5.x (read in
5.4.2) sends a frame when more than H / rate passed since the last bytes sent; 1.4 sends one on any
tick that follows a tick with nothing sent. Either way the longest silence the worker leaves is two
ticks: 2 × H / rate. A middlebox with idle timeout T must see a frame well inside T, so the fix
proposes the H that leaves at most T / 2 of silence: H = T × rate / 4 (at most 60 s, at least 1 s),
and the same value appears in every finding and every format. Network-side, the fix names where the
idle timeout is set: AWS ELB/ALB `idle_timeout.timeout_seconds`, NLB `tcp.idle_timeout.seconds`,
Azure Load Balancer `idleTimeoutInMinutes`, Google Cloud NAT `tcpEstablishedIdleTimeoutSec`,
HAProxy `timeout client` / `timeout server`.
"""
CHECKRATE_DEFAULT = 3.0
RABBITMQ_SERVER_HEARTBEAT = 60  # RabbitMQ's default: the negotiated value is never above it


def worst_silence_s(heartbeat_s: float, checkrate: float = CHECKRATE_DEFAULT) -> float:
    """The longest the worker's connection stays silent with heartbeat ``heartbeat_s``."""
    return 2 * heartbeat_s / (checkrate or CHECKRATE_DEFAULT)


def heartbeat_for_idle(idle_timeout_s: float, checkrate: float = CHECKRATE_DEFAULT) -> int:
    """The broker_heartbeat that keeps a flow with idle timeout ``idle_timeout_s`` alive."""
    value = int(idle_timeout_s * (checkrate or CHECKRATE_DEFAULT) / 4)
    return max(1, min(value, RABBITMQ_SERVER_HEARTBEAT))


# Where the idle timeout of each kind of middlebox is set (the network-side fix).
PROVIDER_SETTINGS = (
    "AWS Classic/Application Load Balancer: the load balancer attribute idle_timeout.timeout_seconds "
    "(default 60 s)",
    "AWS Network Load Balancer: the listener's TCP idle timeout, tcp.idle_timeout.seconds (default 350 s)",
    "Azure Load Balancer: the rule's idleTimeoutInMinutes (default 4 min), with enableTcpReset",
    "Google Cloud: Cloud NAT tcpEstablishedIdleTimeoutSec (default 1200 s); internal TCP LB / firewall "
    "connection tracking idle timeout",
    "HAProxy: `timeout client` and `timeout server` (the shorter one wins; `timeout tunnel` for TCP mode)",
)


def redis_keepalive(idle_s: float) -> tuple[int, str]:
    """TCP keepalive for kombu's Redis connections, first probe at a third of the idle timeout.

    Redis has no heartbeat; ``socket_keepalive: True`` alone probes after the kernel default of
    two hours, long after any NAT forgot the flow. ``repro --middlebox kernel --verify-fix``
    proves this on a real conntrack NAT (tests/test_repro_runs.py): no cut, no lost task.
    Returns the probe interval and the broker_transport_options value (Python source)."""
    first = max(1, int(idle_s / 3))
    return first, ("{'socket_keepalive': True, 'socket_keepalive_options': "
                   f"{{socket.TCP_KEEPIDLE: {first}, socket.TCP_KEEPINTVL: {first}, socket.TCP_KEEPCNT: 3}}}}")
