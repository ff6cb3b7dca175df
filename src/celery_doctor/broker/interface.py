"""The broker stage's contract: a URL in, :class:`~celery_doctor.model.BrokerFacts` out.

Each broker family is one module with one :class:`BrokerProbe` subclass. What they share lives
here: URL parsing, a DNS lookup that cannot hang, turning socket errors into one plain sentence,
and scrubbing the password out of whatever a client library says.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from urllib.parse import SplitResult, unquote, urlsplit

from celery_doctor.model import BrokerFacts, DoctorError
from celery_doctor.redact import MASK, redact

CELERY_DEFAULT_HEARTBEAT = 120  # Celery's broker_heartbeat default (seconds), since 3.1


class BrokerError(DoctorError):
    """The broker could not be probed at all: bad URL, or nothing usable answered."""


class BadURLError(BrokerError):
    pass


class UnreachableError(BrokerError):
    """Nothing that speaks the broker's protocol answered; ``reason`` says how it failed."""

    REASONS = ("dns", "refused", "timeout", "no_greeting", "tls", "closed", "unreachable")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ProbeOptions:
    timeout: float = 5.0  # every network step (DNS, connect, handshake, each request)
    heartbeat: int = CELERY_DEFAULT_HEARTBEAT  # what the user's Celery asks for
    management_url: str | None = None  # RabbitMQ management API; None = broker host :15672
    churn_interval: float = 5.0  # seconds between the two churn samples (0 = one sample)
    sentinel_master: str | None = None  # Redis Sentinel master name


@dataclass
class BrokerTarget:
    """One parsed broker URL. ``password`` never leaves this object unmasked."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    path: str  # vhost (RabbitMQ) or db number (Redis), already unquoted
    tls: bool
    url: str  # redacted form, safe to print
    extra: list[BrokerTarget] = field(default_factory=list)  # more sentinels

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def secrets(self) -> tuple[str, ...]:
        found = {t.password for t in (self, *self.extra) if t.password}
        return tuple(sorted(found, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """Redact ``text`` with this URL's password(s) as extra secrets."""
        return redact(str(text), self.secrets)


def _mask_url(parts: SplitResult) -> str:
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def parse_url(url: str, default_ports: dict[str, int], tls_schemes: set[str]) -> BrokerTarget:
    """Parse one broker URL; raises :class:`BadURLError` with a one-line reason."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BadURLError(f"bad broker URL {redact(url)}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in default_ports:
        known = ", ".join(f"{s}://" for s in sorted(default_ports))
        raise BadURLError(f"bad broker URL {redact(url)}: scheme must be one of {known}")
    host = parts.hostname or ""
    if not host:
        raise BadURLError(f"bad broker URL {redact(url)}: no host")
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerTarget(
        scheme=scheme,
        host=host,
        port=port or default_ports[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=password,
        path=unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path),
        tls=scheme in tls_schemes,
        url=_mask_url(parts),
    )


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int, timeout: float) -> str:
    """The first address of ``host``, looked up in a thread so a dead resolver cannot hang us."""
    if is_ip(host):
        return host
    result: dict[str, object] = {}

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=lookup, name="celery-doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise UnreachableError("dns", f"DNS lookup of {host} gave no answer within {timeout:g} s")
    if "error" in result:
        raise UnreachableError("dns", f"DNS lookup of {host} failed: {_strerror(result['error'])}")
    infos = result["infos"]
    assert isinstance(infos, list)
    return str(infos[0][4][0])


def _strerror(exc: object) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def classify_network_error(exc: BaseException, target: BrokerTarget, stage: str,
                           timeout: float, protocol: str) -> UnreachableError:
    """Say in one sentence why nothing usable answered at ``target``.

    ``stage`` is how far the client got: "tcp" (connecting), "tls" (handshake) or "greeting"
    (TCP up, waiting for the server's first protocol frame).
    """
    where = target.address
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        reason = getattr(exc, "reason", None) or _strerror(exc)
        return UnreachableError("tls", target.scrub(f"TLS handshake with {where} failed: {reason}"))
    if isinstance(exc, TimeoutError | socket.timeout):
        if stage == "tcp":
            return UnreachableError(
                "timeout",
                f"{where} did not answer the TCP connect within {timeout:g} s "
                "(packets dropped: wrong address, firewall or blackhole)")
        if stage == "tls":
            return UnreachableError(
                "tls", f"TLS handshake with {where} got no answer within {timeout:g} s "
                "(is this a TLS port?)")
        return UnreachableError(
            "no_greeting",
            f"{where} accepted the TCP connection but no {protocol} answer came within "
            f"{timeout:g} s (the server there does not speak {protocol}, wants TLS, or a proxy "
            "holds the connection)")
    if isinstance(exc, ConnectionRefusedError):
        return UnreachableError("refused", f"connection to {where} refused (nothing listening there)")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return UnreachableError("unreachable", f"{where} is unreachable: {_strerror(exc)}")
    if stage == "tcp":
        return UnreachableError("unreachable", target.scrub(f"cannot connect to {where}: {_strerror(exc)}"))
    hint = " (wrong port or protocol, or a TLS port spoken to in plain text?)" if not target.tls else ""
    return UnreachableError(
        "closed",
        target.scrub(f"{where} closed the connection during the {protocol} handshake: "
                     f"{_strerror(exc)}{hint}"))


class BrokerProbe(ABC):
    """Connect to one broker, read what it enforces, return :class:`BrokerFacts`.

    ``probe`` raises :class:`BrokerError` only when the URL is bad or nothing answers;
    a refused login, a missing vhost or a denied command are facts, not errors.
    """

    schemes: tuple[str, ...] = ()

    def __init__(self, url: str, options: ProbeOptions) -> None:
        self.options = options
        self.target = self.parse(url)

    @abstractmethod
    def parse(self, url: str) -> BrokerTarget: ...

    @abstractmethod
    def probe(self) -> BrokerFacts: ...
