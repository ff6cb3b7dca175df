"""TLS where the other end does not expect it, or a TLS handshake that fails.

What each side logs when the two ends disagree about TLS (checked against the emitting source):

- a plain-text client on a TLS listener: Redis ``Error accepting a client connection:
  error:1408F10B:SSL routines:ssl3_get_record:wrong version number`` (networking.c, OpenSSL's
  reason; 3.x ``error:0A00010B:SSL routines::wrong version number``), RabbitMQ ``TLS server: In
  state hello ... generated SERVER ALERT: Fatal - Unexpected Message`` / ``{unsupported_record_type,
  65}`` (Erlang ssl; 65 is the "A" of "AMQP"); the client sees the server hang up at connect;
- a TLS client on a plain listener: RabbitMQ ``{bad_header,<<22,3,...>>}`` (rabbit_reader.erl; 22,3
  starts a TLS handshake record), 4.1+ ``detected_unexpected_tls_header`` / ``TLS client detected on
  non-TLS AMQP port``; the client's ssl module says ``[SSL: WRONG_VERSION_NUMBER] wrong version
  number``;
- a plain scheme on a port that only speaks TLS: ``redis://...:6380`` (Azure Cache for Redis's TLS
  port) or ``amqp://...:5671`` (AMQPS), closed or timed out at connect;
- a handshake the server refused (``SSLV3_ALERT_HANDSHAKE_FAILURE``: a client certificate required,
  no shared protocol or cipher) or a certificate the client would not trust
  (``CERTIFICATE_VERIFY_FAILED``; py-amqp 5.0.3+ builds a context that verifies by default, so an
  upgrade alone can bring it).

A TLS handshake that times out after the TCP connect is weaker evidence (an overloaded broker or a
lossy path do that too) and is said so, below 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.incidents import error_family
from celery_doctor.model import Category, Event, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

PLAIN_ON_TLS_SERVER = re.compile(
    r"Error accepting a client connection: .*(?:wrong version number|http request|unknown protocol)"
    r"|unsupported_record_type|generated SERVER ALERT: Fatal - Unexpected Message"
)
TLS_ON_PLAIN_SERVER = re.compile(r"bad_header,<<22,3|detected_unexpected_tls_header|TLS client detected on non-TLS")
TLS_ON_PLAIN_CLIENT = re.compile(r"WRONG_VERSION_NUMBER|wrong version number|UNKNOWN_PROTOCOL|unknown protocol")
HANDSHAKE_REFUSED = re.compile(
    r"SSLV3_ALERT_HANDSHAKE_FAILURE|handshake failure|TLSV1_ALERT_\w+|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS_AVAILABLE"
    r"|NO_SHARED_CIPHER|CERTIFICATE_REQUIRED"
)
CERTIFICATE = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSLCertVerificationError"
    r"|[Hh]ostname .{0,40}doesn't match|IP address mismatch"
)
HANDSHAKE_TIMEOUT = re.compile(r"handshake operation timed out|_ssl\.c:\d+: The handshake")
# a plain scheme with the port the service speaks TLS on
PLAIN_SCHEME_TLS_PORT = re.compile(r"\b(?:redis://[^\s/]*:6380|amqp://[^\s/]*:5671)\b")
NOT_TLS = {"refused", "dns", "unreachable", "auth", "vhost"}  # nothing answered, or it answered in AMQP/RESP


def _text(e: Event) -> str:
    return f"{e.error or ''}\n{e.text}"


@rule("CD-L50", "logs", Category.TLS_OR_PROXY)
def tls_mismatch(ctx: LogContext) -> Iterable[Finding]:
    """The two ends disagree about TLS (plain text on a TLS port, TLS on a plain port, a plain
    scheme on a TLS-only port) or the TLS handshake is refused or its certificate not trusted."""
    events = [e for e in all_events(ctx) if e.kind not in (Kind.TASK_RECEIVED, Kind.TASK_SUCCEEDED, Kind.CONNECTED)]
    broker = [e for e in events if e.side == Side.BROKER]
    client = [e for e in events if e.side == Side.CLIENT]
    failing = [
        e for e in client if e.kind in (Kind.CANNOT_CONNECT, Kind.CONNECTION_LOST, Kind.TLS_ERROR, Kind.WORKER_CRASH)
    ]

    def hits(pattern: re.Pattern[str], among: list[Event]) -> list[Event]:
        return [e for e in among if pattern.search(_text(e))]

    plain_server = hits(PLAIN_ON_TLS_SERVER, broker)
    tls_server = hits(TLS_ON_PLAIN_SERVER, broker)
    tls_client = hits(TLS_ON_PLAIN_CLIENT, failing)
    scheme_port = [e for e in failing if PLAIN_SCHEME_TLS_PORT.search(e.text) and error_family(e) not in NOT_TLS]
    refused = hits(HANDSHAKE_REFUSED, failing)
    certificate = hits(CERTIFICATE, failing)
    timeout = hits(HANDSHAKE_TIMEOUT, failing)

    if plain_server or scheme_port:
        shown = plain_server + scheme_port
        where = (
            "the broker logged that a client spoke plain text to its TLS listener"
            if plain_server
            else "the worker uses a plain scheme (redis://, amqp://) on a port that speaks only TLS "
            "(6380: Azure Cache for Redis; 5671: AMQPS), and the server hung up on it: unless broker_use_ssl "
            "took effect for this transport and release, the worker spoke plain text to a TLS listener"
        )
        confidence = 0.92 if plain_server and failing else 0.9 if plain_server else 0.75
        title = "The worker speaks plain text to a TLS port"
        fix = (
            "Use the TLS scheme for that port (rediss://HOST:6380/0 with broker_use_ssl={'ssl_cert_reqs': "
            "ssl.CERT_REQUIRED}, or amqps://HOST:5671// with broker_use_ssl=True), or point the URL at the "
            "plain-text port. Behind Redis Sentinel the TLS options must reach both the sentinels "
            "(broker_transport_options sentinel_kwargs) and the master connection (broker_use_ssl)."
        )
        evidence = shown + [e for e in failing if e not in shown]
    elif tls_server or tls_client:
        shown = tls_server + tls_client
        where = (
            "the broker logged a TLS handshake on its plain AMQP listener"
            if tls_server
            else "the client's TLS layer got an answer that is not TLS ([SSL: WRONG_VERSION_NUMBER])"
        )
        confidence = 0.92 if tls_server and tls_client else 0.9 if tls_server else 0.85
        title = "The worker speaks TLS to a port that does not"
        fix = (
            "Point amqps:// / rediss:// at the broker's TLS port (5671 for RabbitMQ, the tls-port of Redis), "
            "or drop TLS for a plain port; a proxy in front must pass TLS through or terminate it."
        )
        evidence = shown
    elif refused:
        shown = refused
        where = (
            "the server refused the TLS handshake (a client certificate it requires, or no protocol or "
            "cipher in common)"
        )
        confidence = 0.75
        title = "The broker refuses the worker's TLS handshake"
        fix = (
            "Give the client certificate and key the broker requires (broker_use_ssl={'certfile': ..., "
            "'keyfile': ..., 'ca_certs': ...}) and check the TLS versions both ends allow "
            "(RabbitMQ ssl_options.versions, Redis tls-protocols)."
        )
        evidence = shown
    elif certificate:
        shown = certificate
        where = (
            "the worker would not trust the broker's certificate: the CA that signed it is not given "
            "(broker_use_ssl ca_certs) or not in the system store, or the name does not match. py-amqp "
            "5.0.3 and later verify the certificate by default, so this can start with an upgrade alone"
        )
        confidence = 0.6
        title = "The worker does not trust the broker's TLS certificate"
        fix = (
            "Pass the broker's CA bundle (broker_use_ssl={'ca_certs': '/path/ca.pem', 'cert_reqs': "
            "ssl.CERT_REQUIRED}) and connect by the name in its certificate; if it began after upgrading "
            "py-amqp (5.0.3+), that release started verifying: give the CA rather than pinning back."
        )
        evidence = shown
    elif timeout:
        shown = timeout
        where = (
            "the TCP connect succeeded but the TLS handshake did not finish in time: an overloaded broker, "
            "a path that drops packets or a TLS proxy that does not answer; the logs do not tell which"
        )
        confidence = 0.45
        title = "TLS handshakes with the broker time out"
        fix = (
            "Time a handshake by hand (openssl s_client -connect HOST:PORT) from the worker's host; check "
            "the broker's CPU and connection count, and raise broker_connection_timeout if it is only slow."
        )
        evidence = shown
    else:
        return []
    return [
        Finding(
            category=Category.TLS_OR_PROXY,
            severity=Severity.HIGH,
            title=title,
            explanation=(
                f"{where[0].upper() + where[1:]}. The two ends must agree on TLS before AMQP or Redis can say "
                "anything, so every connect fails the same way and no retry or heartbeat helps; this is "
                "configuration, not the network and not the broker's health."
                if confidence >= 0.5
                else f"{where[0].upper() + where[1:]}."
            ),
            evidence=evidence_of(evidence),
            fix=Fix(text=fix, verify="celery-doctor broker URL (connects with the same scheme and TLS options)"),
            confidence=confidence,
            facts={"source": "logs", "server_side": bool(plain_server or tls_server)},
        )
    ]
