"""Default idle timeouts of common middleboxes, for ``--idle-timeout PROFILE``.

A flow idle for longer than these is dropped (silently, or with an RST); the connection's own
traffic (AMQP heartbeats, Redis health checks) must come more often than that. TCP keepalive
probes do not count for the L4/L7 load balancers below: they track payload bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from celery_doctor.model import DoctorError


@dataclass(frozen=True)
class Middlebox:
    name: str
    idle_timeout_s: int
    label: str
    source: str


PROFILES: dict[str, Middlebox] = {m.name: m for m in (
    Middlebox("aws-elb", 60, "AWS Classic Load Balancer (also the ALB default)",
              "https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/config-idle-timeout.html"),
    Middlebox("aws-alb", 60, "AWS Application Load Balancer",
              "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html"),
    Middlebox("aws-nlb", 350, "AWS Network Load Balancer, TCP listener",
              "https://docs.aws.amazon.com/elasticloadbalancing/latest/network/update-idle-timeout.html"),
    Middlebox("azure-lb", 240, "Azure Load Balancer (4 min default; drops silently unless TCP reset is on)",
              "https://learn.microsoft.com/azure/load-balancer/load-balancer-tcp-idle-timeout"),
    Middlebox("gcp-nat", 1200, "Google Cloud NAT, tcpEstablishedIdleTimeoutSec default",
              "https://cloud.google.com/compute/docs/reference/rest/v1/routers (RouterNat)"),
    Middlebox("gcp-vpc", 600, "Google Cloud VPC firewall connection tracking (10 min)",
              "https://cloud.google.com/compute/docs/troubleshooting/general-tips"),
    Middlebox("docker-swarm", 900, "Docker Swarm routing mesh (IPVS)", "moby/moby#31208"),
)}


class IdleTimeoutError(DoctorError):
    """An --idle-timeout that is neither seconds nor a known profile."""


def parse_idle_timeout(value: str | None) -> Middlebox | None:
    """'aws-elb' or '300' (seconds) -> Middlebox; None stays None."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower()
    if text in PROFILES:
        return PROFILES[text]
    try:
        seconds = float(text.rstrip("s"))
    except ValueError:
        raise IdleTimeoutError(f"--idle-timeout {value!r}: give seconds or one of {', '.join(PROFILES)}") from None
    if not math.isfinite(seconds) or not 0 < seconds < 1e9:  # nan, 1e309: no middlebox waits that long
        raise IdleTimeoutError(f"--idle-timeout {value!r}: must be a number of seconds, more than 0")
    return Middlebox("custom", int(seconds), f"a middlebox with a {int(seconds)} s idle timeout", "--idle-timeout")
