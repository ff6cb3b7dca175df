#!/usr/bin/env python
"""Diagnose every recorded run in tests/fixtures/recorded/ three ways and compare with its truth.json.

    python scripts/eval_recorded.py [-o tests/fixtures/recorded/EVAL-after.txt]

Modes: the logs alone (worker/publisher and broker logs: never proxy.jsonl, which a user does not
have); the logs with the run's config file (--config); the logs with a misleading broker probe
(--broker with a wrong password, on the same broker kind). The truth is read only to score.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REC = ROOT / "tests" / "fixtures" / "recorded"
DOCTOR = str(ROOT / ".venv" / "bin" / "celery-doctor")
WRONG = {"amqp": "amqp://guest:WRONG@127.0.0.1:5672//", "redis": "redis://:WRONG@127.0.0.1:6379/0"}


def logs_of(run: Path) -> list[str]:
    return [str(p) for p in sorted(run.glob("*.log"))]


def diagnose(run: Path, extra: list[str]) -> dict[str, object]:
    cmd = [DOCTOR, "diagnose", "--logs", *logs_of(run), *extra, "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    try:
        return dict(json.loads(out.stdout))
    except json.JSONDecodeError:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    lines: list[str] = []
    right = total = confident_wrong = 0
    for truth_file in sorted(REC.glob("*/truth.json")):
        run = truth_file.parent
        truth = json.loads(truth_file.read_text())
        expected = truth["expected"]["category"]
        kind = "redis" if "redis" in run.name else "amqp"
        modes = {"logs": []}
        if (run / "celeryconfig.py").exists():
            modes["logs+config"] = ["--config", str(run / "celeryconfig.py")]
        modes["logs+wrong-broker"] = ["--broker", WRONG[kind], "--timeout", "3"]
        lines.append(f"== {run.name}  (truth: {expected})")
        for mode, extra in modes.items():
            report = diagnose(run, extra)
            findings = report.get("findings") or []
            assert isinstance(findings, list)
            total += 1
            if not findings:
                lines.append(f"  {mode:18} -> no findings {report.get('error', '')}")
                continue
            top = findings[0]
            ok = top["category"] == expected
            right += ok
            if not ok and top["confidence"] >= 0.7:
                confident_wrong += 1
            cited = ", ".join(f"{Path(e['source']).name}:{e['line']}" for e in top["evidence"][:6])
            others = ", ".join(f"{f['category']} {f['confidence']:.2f}" for f in findings[1:4])
            mark = "OK " if ok else "BAD"
            lines.append(
                f"  {mark} {mode:18} -> {top['category']} {top['confidence']:.2f} [{top.get('rule_id', '')}]"
                f" {top['title'][:90]}"
            )
            lines.append(f"      cites: {cited}")
            lines.append(f"      next: {others}")
    lines.append(f"\ntop-1 right: {right}/{total}; confident wrong (>= 0.7): {confident_wrong}")
    text = "\n".join(lines) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
