"""The fix diagnose proposes is written in the names the user's config file uses: Celery 4+ refuses
a file that mixes the 3.x upper-case names with the new ones (ImproperlyConfigured), so a
`broker_heartbeat = 6` added to a 3.x-style file would stop the workers from starting."""

from __future__ import annotations

from celery_doctor.model import Role
from celery_doctor.pipeline import DiagnoseOptions, diagnose
from conftest import FIXTURES, ROOT

IDLE_CUT = [str(p) for p in sorted((ROOT / "examples" / "idle-cut").glob("*.log"))]


def _heartbeat_fix(config: str) -> str:
    report = diagnose(DiagnoseOptions(logs=IDLE_CUT, config=config, from_version="3.1", to_version="5.5"))
    top = report.findings[0]
    assert top.role == Role.CAUSE and top.rule_id == "CD-L01"
    assert top.fix is not None and top.fix.snippet
    return top.fix.snippet


def test_old_style_config_gets_the_fix_in_old_names() -> None:
    snippet = _heartbeat_fix(str(FIXTURES / "configs" / "celeryconfig_31.py"))
    assert "BROKER_HEARTBEAT = " in snippet and "broker_heartbeat" not in snippet


def test_new_style_config_keeps_the_new_names() -> None:
    snippet = _heartbeat_fix(str(FIXTURES / "configs" / "celeryconfig_eff.py"))
    assert "broker_heartbeat = " in snippet and "BROKER_HEARTBEAT" not in snippet


def test_the_configs_own_renames_still_propose_the_new_names() -> None:
    report = diagnose(DiagnoseOptions(logs=IDLE_CUT, config=str(FIXTURES / "configs" / "celeryconfig_31.py"),
                                      from_version="3.1", to_version="5.5"))
    renames = [f for f in report.findings if f.role == Role.CONFIG and f.category.value == "old_setting_names_ignored"]
    assert renames and all(f.fix is None or not f.fix.snippet or f.fix.snippet.split("=")[0].strip().islower()
                           for f in renames)
