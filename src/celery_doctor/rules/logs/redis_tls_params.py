"""The TLS options of a Redis URL are refused before any connection is tried.

Celery's Redis result backend will not take a rediss:// URL without ``ssl_cert_reqs`` (the broker
transport takes it: only the backend refuses, so a worker can crash while the web app that only
publishes runs); releases before 5.1 read the value as an attribute of Python's ssl module, so
``required`` fails where ``CERT_REQUIRED`` works; Celery 4.3.0rc2 did not apply the
``broker_use_ssl`` / ``redis_backend_use_ssl`` dicts to the backend (celery/celery#5395). redis-py
refuses ssl_* options on a plain redis:// connection and an unknown certificate flag. None of these
is a network or certificate failure: the URL is refused as written."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# celery/backends/redis.py E_REDIS_SSL_CERT_REQS_MISSING_INVALID (4.3: "... ssl_cert_reqs be CERT_...")
MISSING = re.compile(r"rediss:// URL must have parameter ssl_cert_reqs")
# celery/backends/redis.py before 5.1: getattr(ssl, ssl_cert_reqs)
LOWERCASE = re.compile(r"module 'ssl' has no attribute '(required|optional|none)'")
# redis-py: ssl_* given to a plain Connection; SSLConnection's own check of the flag
PLAIN = re.compile(r"unexpected keyword argument '(ssl_\w+)'")
BAD_FLAG = re.compile(r"Invalid SSL Certificate Requirements Flag: ?(\S+)")


@rule("CD-L72", "logs", Category.TLS_OR_PROXY)
def redis_tls_params_refused(ctx: LogContext) -> Iterable[Finding]:
    """The Redis URL's TLS options are refused as written: a rediss:// URL without ssl_cert_reqs,
    a lower-case value an older Celery cannot read, ssl_* options on a plain redis:// URL."""
    client = [e for e in all_events(ctx) if e.side != Side.BROKER]
    missing = [e for e in client if MISSING.search(f"{e.error or ''}\n{e.text}")]
    lower = [(e, m.group(1)) for e in client if (m := LOWERCASE.search(f"{e.error or ''}\n{e.text}"))]
    plain = [e for e in client if PLAIN.search(e.text) or BAD_FLAG.search(e.text)]
    if not (missing or lower or plain):
        return []
    if missing:
        title = "The rediss:// URL has no ssl_cert_reqs, which Celery's Redis backend requires"
        explanation = (
            "Celery refused a rediss:// URL without (or with an unreadable) ssl_cert_reqs. The Redis "
            "result backend insists on it (the broker transport does not, so a worker that stores "
            "results crashes while a publisher runs); nothing was sent over the network. If you pass "
            "the options as broker_use_ssl / redis_backend_use_ssl instead, Celery 4.3.0rc2 did not "
            "apply them to the backend (celery/celery#5395): put them in the URL or upgrade."
        )
        fix = (
            "Add the parameter to every rediss:// URL, the result backend's included: "
            "rediss://:PASSWORD@HOST:6380/0?ssl_cert_reqs=CERT_REQUIRED (CERT_OPTIONAL or CERT_NONE to skip "
            "verification), or set redis_backend_use_ssl = {'ssl_cert_reqs': ssl.CERT_REQUIRED}."
        )
    elif lower:
        value = lower[0][1]
        title = f"This Celery cannot read ssl_cert_reqs={value}"
        explanation = (
            f"Celery looked ssl_cert_reqs={value} up as an attribute of Python's ssl module and failed: "
            "releases before 5.1 accept only the constant names, although the documentation names the "
            "lower-case spellings. The URL is refused before connecting."
        )
        fix = (
            f"Write ssl_cert_reqs=CERT_{value.upper()} in the URL (every release reads it), or upgrade Celery to 5.1+."
        )
    else:
        title = "redis-py refused the TLS options of a plain redis:// URL"
        explanation = (
            "redis-py was handed ssl_* options for a connection that is not TLS (a redis:// URL, or "
            "TLS options with an unknown certificate flag), and refused them before connecting. "
            "Celery warns of the same mismatch ('SSL connection parameters have been provided but the "
            "specified URL scheme is redis://')."
        )
        fix = (
            "Use the rediss:// scheme when you pass ssl_* options (or drop them for a plain server), with "
            "ssl_cert_reqs one of CERT_REQUIRED, CERT_OPTIONAL, CERT_NONE."
        )
    return [
        Finding(
            category=Category.TLS_OR_PROXY,
            severity=Severity.HIGH,
            title=title,
            explanation=explanation,
            evidence=evidence_of([*missing, *(e for e, _ in lower), *plain]),
            fix=Fix(text=fix, verify="celery-doctor broker 'rediss://HOST:6380/0?ssl_cert_reqs=CERT_REQUIRED'"),
            confidence=0.85,
            facts={"source": "logs", "kind": "missing" if missing else "lowercase" if lower else "plain"},
        )
    ]
