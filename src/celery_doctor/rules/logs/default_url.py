"""The worker tried Celery's built-in default broker (``amqp://guest:**@localhost:5672//`` or
127.0.0.1) and could not connect: the broker setting the user wrote is not in effect (wrong
namespace, a missing environment variable, config_from_object never called, an old name)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.fixes import snippet
from celery_doctor.rules.registry import rule

DEFAULT = re.compile(r"Cannot connect to amqp://guest:\*\*@(?:localhost|127\.0\.0\.1):5672//")


@rule("CD-L22", "logs", Category.OLD_SETTING_NAMES_IGNORED)
def default_broker_url(ctx: LogContext) -> Iterable[Finding]:
    """Connect errors name Celery's default guest@localhost URL: the configured broker is not in effect."""
    hits = [e for e in all_events(ctx) if e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT
            and DEFAULT.search(e.text)]
    if not hits:
        return []
    connected_elsewhere = any(e.kind == Kind.CONNECTED and "guest:**@localhost" not in e.text
                              and "guest:**@127.0.0.1" not in e.text for e in ctx.timeline.events)
    return [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.HIGH,
        title="The worker uses Celery's default broker URL: your broker setting is not in effect",
        explanation=("Every connect attempt goes to amqp://guest@localhost:5672//, the URL Celery uses when no "
                     "broker is configured. The broker you meant is not reaching the worker: the environment "
                     "variable is missing (CELERY_BROKER_URL in this container), the settings use a namespace the "
                     "app does not read (config_from_object(..., namespace='CELERY') needs CELERY_BROKER_URL), "
                     "or the config module is never loaded. (If you meant a broker on this host, it is not "
                     "running.)"),
        evidence=evidence_of(hits),
        fix=Fix(text="Check the effective value with `celery-doctor config --app MODULE` (or `celery -A proj "
                     "inspect conf`); set the URL where the app really reads it.",
                snippet=snippet({"broker_url": "'amqp://USER:PASSWORD@HOST:5672/VHOST'"}, ctx.celery_version,
                                 "in the module config_from_object loads (with its namespace prefix)"),
                verify="celery-doctor config --app MODULE shows broker_url from your file, not the default"),
        # without the config, "no broker runs on this host" fits the same lines: a possible cause until
        # the config shows a broker_url elsewhere (rules/combine.py raises it then)
        confidence=0.45 if connected_elsewhere else 0.5,
        facts={"default_url": True, "source": "logs"},
    )]
