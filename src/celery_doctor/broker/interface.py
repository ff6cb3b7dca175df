"""The broker stage's contract: a URL in, :class:`~celery_doctor.model.BrokerFacts` out.

Each broker family is one module with one :class:`BrokerProbe` subclass. What they share lives
here: URL parsing, a DNS lookup that cannot hang, turning socket errors into one plain sentence,
and scrubbing the password out of whatever a client library says.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from celery_doctor.model import BrokerFacts, DoctorError
from celery_doctor.redact import MASK, redact

CELERY_DEFAULT_HEARTBEAT = 120  # Celery's broker_heartbeat default (seconds), since 3.1


class BrokerError(DoctorError):
    """The broker could not be probed at all: bad URL, or nothing usable answered."""


class BadURLError(BrokerError):
    pass


class UnreachableError(BrokerError):
    """Nothing that speaks the broker's protocol answered; ``reason`` says how it failed."""

    REASONS = ("dns", "refused", "timeout", "no_greeting", "tls", "closed", "unreachable", "stalled")

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ProbeOptions:
    timeout: float = 5.0  # wall-clock budget of the whole probe (DNS, handshake, requests, churn sample)
    heartbeat: int = CELERY_DEFAULT_HEARTBEAT  # what the user's Celery asks for
    management_url: str | None = None  # RabbitMQ management API; None = broker host :15672
    churn_interval: float = 5.0  # seconds between the two churn samples (0 = one sample)
    sentinel_master: str | None = None  # Redis Sentinel master name


class Budget:
    """The probe's wall-clock budget. A per-read socket timeout does not bound a server that
    trickles one byte a second, so every socket the probe opens is registered here and shut
    down when the budget runs out: the blocked read returns at once and the probe says so."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def remaining(self, floor: float = 0.05) -> float:
        return max(floor, self.deadline - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

    def guard(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the budget runs out (at once if it already has)."""
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._fire)
                self._timer.daemon = True
                self._timer.start()
        if self.fired:
            self._fire()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._sockets = []


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


# Characters that end the authority of a URL (RFC 3986): unencoded in a password, kombu and
# redis-py read a different host, port and password than the user meant.
_AUTHORITY_ENDS = "/?#"


def split_authority(url: str) -> tuple[str, str, str]:
    """``(scheme, userinfo, rest)`` with the userinfo everything before the *last* ``@`` of the
    authority, as kombu and redis-py read it; ``rest`` is host, port, path and query."""
    scheme, sep, after = url.partition("://")
    if not sep:
        return "", "", url
    at = after.rfind("@")
    if at == -1:
        return scheme, "", after
    return scheme, after[:at], after[at + 1:]


def parse_url(url: str, default_ports: dict[str, int], tls_schemes: set[str]) -> BrokerTarget:
    """Parse one broker URL; raises :class:`BadURLError` with a one-line reason (never the password)."""
    url = url.strip()
    scheme_raw, userinfo, rest = split_authority(url)
    user_raw, colon, password_raw = userinfo.partition(":")
    username = unquote(user_raw) if user_raw else None
    password = unquote(password_raw) if colon else None
    secrets = tuple(s for s in {password_raw, password or ""} if s)
    scheme = scheme_raw.lower()
    hostport = rest
    for end in _AUTHORITY_ENDS:
        hostport = hostport.split(end, 1)[0]
    shown = f"{scheme}://" + (f"{user_raw}:{MASK}@" if colon else f"{user_raw}@" if userinfo else "") + hostport

    def bad(reason: str) -> BadURLError:
        return BadURLError(redact(f"bad broker URL {shown}: {reason}", secrets))

    if scheme not in default_ports:
        known = ", ".join(f"{s}://" for s in sorted(default_ports))
        raise bad(f"scheme must be one of {known}")
    if any(c in userinfo for c in _AUTHORITY_ENDS) or any(c.isspace() for c in userinfo):
        odd = sorted({c for c in userinfo if c in _AUTHORITY_ENDS or c.isspace()})
        names = ", ".join(repr(c) for c in odd)
        raise bad(f"the user or password holds {names}, which kombu and redis-py read as the end of the "
                  "host part: percent-encode it (urllib.parse.quote(password, safe=''))")
    try:
        parts = urlsplit(f"{scheme}://{'x@' if userinfo else ''}{rest}")
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    host = parts.hostname or ""
    if not host:
        raise bad("no host")
    return BrokerTarget(
        scheme=scheme,
        host=host,
        port=port or default_ports[scheme],
        username=username,
        password=password,
        path=unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path),
        tls=scheme in tls_schemes,
        url=shown + (parts.path or ""),
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
        raise UnreachableError("dns", f"DNS lookup of {host} gave no answer within {_seconds(timeout)} s")
    if "error" in result:
        raise UnreachableError("dns", f"DNS lookup of {host} failed: {_strerror(result['error'])}")
    infos = result["infos"]
    assert isinstance(infos, list)
    return str(infos[0][4][0])


def _seconds(value: float) -> str:
    """A budget's remainder as people read it (2.99998 -> 3)."""
    return f"{round(value, 1):g}"


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
        self.budget = Budget(options.timeout)  # starts now: the probe runs right after parsing

    def step_timeout(self) -> float:
        """The socket timeout for the next step: what is left of the budget, a little less, so a
        server that says nothing ends as a socket timeout ("no answer") and only one that keeps
        the socket busy without finishing meets the budget's guard ("stalled")."""
        return max(0.05, self.budget.remaining() - 0.25)

    def stalled(self, where: str, stage: str) -> UnreachableError:
        return UnreachableError(
            "stalled", f"{where} accepted the TCP connection but did not complete the {stage} within the "
            f"{self.options.timeout:g} s budget (--timeout): no reply, or one stalled or trickled (the server "
            "there may not speak the protocol, may want TLS, or a proxy holds the connection)")

    @abstractmethod
    def parse(self, url: str) -> BrokerTarget: ...

    @abstractmethod
    def probe(self) -> BrokerFacts: ...
