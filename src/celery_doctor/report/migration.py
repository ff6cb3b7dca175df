"""`config migrate` output: the diff itself (applicable), or JSON, plus the summary lines for stderr.

The diff is the user's own file, so it is printed as the file has it: a masked password in a
``-`` line would make the patch fail to apply. Everything else (JSON, the summary lines) is
redacted like every report.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from celery_doctor.redact import redact, redact_data
from celery_doctor.report.interface import ReportError

if TYPE_CHECKING:
    from celery_doctor.pipeline import MigrationResult

MIGRATE_FORMATS = ("diff", "json")


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def migration_notes(result: MigrationResult) -> list[str]:
    """What happened, one line each, for stderr (so stdout stays a clean diff)."""
    m = result.migration
    renamed = _count(len(m.renamed), "name")
    if result.written:
        done = f"{m.path}: {renamed} renamed" + (f", original kept in {result.backup}" if result.backup else "")
    elif m.changed:
        done = f"{m.path}: {renamed} to rename (apply with `git apply`, `patch -p1`, or --write)"
    else:
        done = f"{m.path}: nothing to rename"
    lines = [done]
    lines += [f"{m.path}:{line}: cannot convert {name}: {why}" for line, name, why in m.unconvertible]
    lines += [f"note: {note}" for note in m.notes]
    return [redact(line) for line in lines]


def render_migration(result: MigrationResult, fmt: str) -> str:
    """stdout of `config migrate`: the diff (empty once written), or the JSON document."""
    m = result.migration
    if fmt == "diff":
        return "" if result.written else m.diff()
    if fmt == "json":
        payload = {"file": m.path, "changed": m.changed, "written": result.written, "backup": result.backup,
                   "renamed": [{"line": n, "old": o, "new": w} for n, o, w in m.renamed],
                   "unconvertible": [{"line": n, "name": o, "why": w} for n, o, w in m.unconvertible],
                   "notes": m.notes, "diff": m.diff()}
        return json.dumps(redact_data(payload), indent=2) + "\n"
    raise ReportError(f"unknown migrate format {fmt!r} (choose from {', '.join(MIGRATE_FORMATS)})")
