"""`config migrate` output: the diff itself (applicable), or JSON, plus the summary lines for stderr.

The diff is the user's own file, but stdout ends up in CI logs, tickets and chat: secrets in it
are masked like in every report. A masked password in a ``-`` line makes that hunk fail to apply,
so the notes say so, and ``--show-secrets`` prints the file's text as it is (an applicable patch);
``--write`` applies the change without printing anything.
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


def diff_masks_secrets(result: MigrationResult) -> bool:
    """Whether the printed (masked) diff differs from the file's own text."""
    diff = result.migration.diff()
    return redact(diff) != diff


def migration_notes(result: MigrationResult, show_secrets: bool = False) -> list[str]:
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
    if m.changed and not result.written and not show_secrets and diff_masks_secrets(result):
        lines.append("note: secrets in the diff are masked (***), so the hunks holding them will not apply; "
                     "use --write, or --show-secrets for the file's text as it is")
    return [redact(line) for line in lines]


def render_migration(result: MigrationResult, fmt: str, show_secrets: bool = False) -> str:
    """stdout of `config migrate`: the diff (empty once written), or the JSON document."""
    m = result.migration
    if fmt == "diff":
        if result.written:
            return ""
        return m.diff() if show_secrets else redact(m.diff())
    if fmt == "json":
        payload = {"file": m.path, "changed": m.changed, "written": result.written, "backup": result.backup,
                   "renamed": [{"line": n, "old": o, "new": w} for n, o, w in m.renamed],
                   "unconvertible": [{"line": n, "name": o, "why": w} for n, o, w in m.unconvertible],
                   "notes": m.notes, "diff": m.diff()}
        return json.dumps(redact_data(payload), indent=2) + "\n"
    raise ReportError(f"unknown migrate format {fmt!r} (choose from {', '.join(MIGRATE_FORMATS)})")
