"""Run `logs` over every real case in ../shared/cases and compare with the confirmed labels.

    python scripts/eval_cases.py [CASES_DIR]

Prints one row per case: expected vs found closed_by, phase and top category. A development
aid (the test suite asserts the cases whose logs allow a verdict).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from celery_doctor.model import DoctorError
from celery_doctor.pipeline import analyse_logs

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    cases_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "cases"
    rows = []
    for case in sorted(p for p in cases_dir.iterdir() if (p / "case.json").exists()):
        truth = json.loads((case / "case.json").read_text())
        logs = sorted(str(p) for p in (case / "logs").glob("*") if not p.name.startswith("."))
        if not logs:
            continue
        try:
            report = analyse_logs(logs)
        except DoctorError as exc:
            rows.append(f"ERR {case.name[:44]:44} {exc}")
            continue
        top = report.findings[0].category.value if report.findings else "-"
        closed = ",".join(sorted({i.closed_by.value for i in report.incidents})) or "-"
        phase = ",".join(sorted({i.phase.value for i in report.incidents})) or "-"
        ok = "ok " if top == truth["root_cause_category"] else "   "
        rows.append(f"{ok}{case.name[:44]:44} closed {truth['closed_by']:8}->{closed:16} "
                    f"phase {truth['phase']:8}->{phase:16} cause {truth['root_cause_category']}->{top}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
