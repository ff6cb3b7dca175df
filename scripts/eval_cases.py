"""Diagnose every labelled real incident and score the answers against the confirmed causes.

    python scripts/eval_cases.py [DIR ...] [--json] [--verbose]

DIR (a folder of case folders, or a case folder itself) defaults to ../shared/cases (the
development set) and tests/fixtures/threads (the public-thread corpus). Each case folder
holds ``case.json`` (``root_cause_category``: the confirmed cause in the vocabulary of
ARCHITECTURE.md, or ``unknown`` when the thread never settled it), ``logs/`` and optionally
``config.py`` (a config the thread showed, readable by the static reader). Cases without
logs are skipped: the logs are what diagnose judges.

Prints one row per case, then top-1 and top-3 accuracy, the confident wrong answers (a top
cause at >= 0.7 that is not the label; for an ``unknown`` label, any cause claimed above 0.5),
a calibration table: for every cause diagnose named, its confidence bucket against the
fraction that named the confirmed cause, and how many right answers cite one of the case's
deciding lines (``evidence_lines``) among their evidence.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from celery_doctor.model import DoctorError, Finding
from celery_doctor.pipeline import DiagnoseOptions, diagnose

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = [ROOT.parent / "shared" / "cases", ROOT / "tests" / "fixtures" / "threads"]
CONFIDENT = 0.7
UNKNOWN_LIMIT = 0.5  # on an unsettled thread no cause may be claimed above this
VERDICTS = ("benign_client_disconnect", "no_incident")  # answers that are not a cause of a failure
BUCKETS = ((0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 1.01))


@dataclass
class Scored:
    name: str
    label: str
    top: str
    confidence: float
    causes: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    cites_deciding: bool | None = None  # the answer's evidence holds a deciding line (None: no lines listed)

    @property
    def right(self) -> bool:
        if self.label == "unknown":
            return self.top in ("unknown", "-") or self.confidence <= UNKNOWN_LIMIT
        return self.top == self.label

    @property
    def in_top3(self) -> bool:
        if self.label == "unknown":
            return self.right
        return self.label in [c for c, _ in self.causes[:3]]

    @property
    def confident_wrong(self) -> bool:
        if self.label == "unknown":
            return self.top not in ("unknown", "-") and self.confidence > UNKNOWN_LIMIT
        return not self.right and self.confidence >= CONFIDENT


def cases(dirs: list[Path]) -> list[Path]:
    found = []
    for d in dirs:
        if (d / "case.json").exists():  # a case folder itself (a shell glob over case folders)
            found.append(d)
        elif d.is_dir():
            found += sorted(p for p in d.iterdir() if (p / "case.json").exists())
    return found


def score(case: Path) -> Scored | None:
    truth = json.loads((case / "case.json").read_text())
    logs = sorted(str(p) for p in (case / "logs").glob("*") if p.is_file() and not p.name.startswith("."))
    if not logs:
        return None
    label = truth["root_cause_category"]
    config = case / "config.py"
    options = DiagnoseOptions(logs=logs, config=str(config) if config.exists() else None)
    try:
        report = diagnose(options)
    except DoctorError as exc:
        return Scored(case.name, label, "-", 0.0, error=str(exc))
    causes = [(f.category.value, f.confidence) for f in report.findings if _is_cause(f)]
    if not causes:  # no cause claimed: the answer is the verdict the report leads with (benign, no incident)
        causes = [(f.category.value, f.confidence) for f in report.findings
                  if f.category.value in VERDICTS][:1]
    top, conf = causes[0] if causes else ("-", 0.0)
    deciding = [_squash(line) for line in truth.get("evidence_lines") or [] if line.strip()]
    answer = next((f for f in report.findings if f.category.value == top), None)
    cited = None
    if deciding and answer is not None and label != "unknown":
        texts = [_squash(e.text) for e in answer.evidence]
        cited = any(_holds(t, d) for d in deciding for t in texts if t)
    return Scored(case.name, label, top, conf, causes, cites_deciding=cited)


def _holds(evidence: str, deciding: str) -> bool:
    """Whether a cited record holds a deciding line: its words (a collector's prefix, quotes and
    punctuation aside), as the thread's excerpt may carry a prefix or a repr the record does not."""
    words = [w for w in re.findall(r"[A-Za-z0-9_.]{3,}", deciding.rsplit("| ", 1)[-1])]
    have = set(re.findall(r"[A-Za-z0-9_.]{3,}", evidence))
    return bool(words) and sum(w in have for w in words) >= 0.8 * len(words)


def _squash(text: str) -> str:
    """Whitespace-insensitive, as pastes rewrap lines."""
    return " ".join(text.split()).strip("`'\" ")


def _is_cause(finding: Finding) -> bool:
    role = getattr(finding, "role", None)  # older reports had no role: any non-verdict category
    if role is not None:
        return bool(role == "cause")
    return finding.category.value not in ("no_incident", "benign_client_disconnect")


def calibration(rows: list[Scored]) -> list[tuple[str, int, int]]:
    """(bucket, causes named in it, of those the confirmed one) over every named cause."""
    table = []
    for lo, hi in BUCKETS:
        # "unknown" is no claim (the tool says it cannot tell), so it is not scored here
        hits = [(row.label, cat) for row in rows for cat, c in row.causes if lo <= c < hi and cat != "unknown"]
        right = sum(1 for label, cat in hits if cat == label)
        table.append((f"{lo:.1f}-{min(hi, 1.0):.1f}", len(hits), right))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    rows = [r for r in (score(c) for c in cases(args.dirs or DEFAULT_DIRS)) if r is not None]
    if not rows:
        print("no case with logs found", file=sys.stderr)
        return 2
    top1 = sum(r.right for r in rows)
    top3 = sum(r.in_top3 for r in rows)
    wrong = [r for r in rows if r.confident_wrong]
    table = calibration(rows)
    checked = [r for r in rows if r.right and r.cites_deciding is not None]
    cited = sum(1 for r in checked if r.cites_deciding)
    if args.json:
        print(json.dumps({"cases": len(rows), "top1": top1, "top3": top3,
                          "confident_wrong": [r.name for r in wrong],
                          "cites_deciding_line": {"right_answers_checked": len(checked), "cited": cited},
                          "calibration": [{"bucket": b, "named": n, "right": k} for b, n, k in table]}, indent=1))
        return 0
    for r in rows:
        mark = "ok " if r.right else ("XX " if r.confident_wrong else "   ")
        print(f"{mark}{r.name[:52]:52} {r.label:28} -> {r.top} ({r.confidence:.2f})"
              + (f"  ERROR {r.error}" if r.error else ""))
    n = len(rows)
    print(f"\ncases with logs: {n}")
    print(f"top-1: {top1}/{n} ({top1 / n:.0%})   top-3: {top3}/{n} ({top3 / n:.0%})")
    print(f"confident wrong (>= {CONFIDENT}, or a cause > {UNKNOWN_LIMIT} on an unsettled thread): "
          f"{len(wrong)}" + (f"  {', '.join(r.name for r in wrong)}" if wrong else ""))
    print(f"right answers whose evidence cites a deciding line of case.json: {cited}/{len(checked)}"
          + (f"  (not: {', '.join(r.name for r in checked if not r.cites_deciding)})" if cited < len(checked) else ""))
    print("\ncalibration (every cause named)\n bucket    named  right  fraction")
    for bucket, named, right in table:
        print(f" {bucket:9} {named:5}  {right:5}  " + (f"{right / named:.2f}" if named else "-"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
