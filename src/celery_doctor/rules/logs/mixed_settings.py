"""Celery refused the configuration because it mixes old setting names (CELERYD_CONCURRENCY,
BROKER_URL, CELERY_RESULT_BACKEND) with the lowercase names of 4.0+: the worker stops with
ImproperlyConfigured before it ever connects. The classic half-done migration of an upgrade."""

from __future__ import annotations

import re
from collections.abc import Iterable

from celery_doctor.model import Category, Finding, Fix, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

# celery/app/utils.py E_MIX_OLD_INTO_NEW / E_MIX_NEW_INTO_OLD (their list of renames follows a blank line,
# so it is a record of its own: `celery-doctor config` names them from the settings instead)
MIXED = re.compile(r"Cannot mix new (and old setting keys|setting names with old setting names)")


@rule("CD-L79", "logs", Category.OLD_SETTING_NAMES_IGNORED)
def mixed_setting_names(ctx: LogContext) -> Iterable[Finding]:
    """Celery refused a configuration that mixes old and new setting names (ImproperlyConfigured)."""
    hits = [e for e in all_events(ctx) if e.side != Side.BROKER and MIXED.search(f"{e.error or ''}\n{e.text}")]
    if not hits:
        return []
    to_new = any("and old setting keys" in f"{e.error or ''}\n{e.text}" for e in hits)
    return [Finding(
        category=Category.OLD_SETTING_NAMES_IGNORED, severity=Severity.HIGH,
        title="Celery refused a configuration that mixes old and new setting names",
        explanation=("Celery stopped with ImproperlyConfigured: 'Cannot mix new " + (
            "and old setting keys'. Most settings use the lowercase names of 4.0+, some still the old "
            "upper-case ones" if to_new else "setting names with old setting names'. Most settings use the old "
            "upper-case names, some the new lowercase ones") + ". The worker never connects to the broker "
                     "with such a configuration; it is a migration left half done, usually after an upgrade."),
        evidence=evidence_of(hits),
        fix=Fix(text="Rename every setting to the new names in one go (`celery-doctor config migrate FILE` rewrites "
                     "them; `celery-doctor config PATH` lists the old ones). With Django's namespace='CELERY' the "
                     "new names are CELERY_ plus the upper-case new name (worker_concurrency -> "
                     "CELERY_WORKER_CONCURRENCY).",
                verify="celery-doctor config PATH (no old names left)"),
        confidence=0.9,
        facts={"source": "logs", "direction": "old_into_new" if to_new else "new_into_old"},
    )]
