"""The real incidents of ../shared/cases: every log reads without error, and where the pasted
logs carry the evidence, the verdict matches the confirmed cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from celery_doctor.ingest import IngestError
from celery_doctor.model import Category, ClosedBy
from celery_doctor.pipeline import analyse_logs
from conftest import CASES

WITH_LOGS = sorted(p for p in CASES.glob("*/logs") if any(not f.name.startswith(".") for f in p.iterdir()))
# Cases whose pasted excerpt holds the lines that show the cause (the others lack the other side's
# log, the timestamps, or the deciding line, and must not be guessed).
DECIDABLE = {"003", "011", "014", "018", "019", "020", "024"}


def _logs(folder: Path) -> list[str]:
    return sorted(str(f) for f in folder.iterdir() if not f.name.startswith("."))


def _case(folder: Path) -> dict:
    return json.loads((folder.parent / "case.json").read_text())


@pytest.mark.parametrize("folder", WITH_LOGS, ids=[p.parent.name[:3] for p in WITH_LOGS])
def test_case_logs_read_without_error(folder: Path) -> None:
    try:
        report = analyse_logs(_logs(folder))
    except IngestError as exc:  # only for excerpts with no dated line at all
        assert "nothing readable" in str(exc)
        return
    assert report.findings


@pytest.mark.parametrize("folder", [p for p in WITH_LOGS if p.parent.name[:3] in DECIDABLE],
                         ids=lambda p: p.parent.name[:3])
def test_decidable_cases_get_the_confirmed_cause(folder: Path) -> None:
    case = _case(folder)
    report = analyse_logs(_logs(folder))
    assert report.findings[0].category == Category(case["root_cause_category"])
    verdicts = {i.closed_by for i in report.incidents}
    assert ClosedBy(case["closed_by"]) in verdicts


@pytest.mark.parametrize("folder", [p for p in WITH_LOGS if p.parent.name[:3] not in DECIDABLE],
                         ids=lambda p: p.parent.name[:3])
def test_undecidable_cases_are_not_guessed(folder: Path) -> None:
    """Where the excerpt cannot tell, the top finding must not name a confident cause."""
    try:
        report = analyse_logs(_logs(folder))
    except IngestError:
        return
    top = report.findings[0]
    assert top.category in (Category.UNKNOWN, Category.NO_INCIDENT) or top.confidence < 0.5
