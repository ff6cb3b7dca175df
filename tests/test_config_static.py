"""Static audit: predictions checked against what the real Celery 5.7.0 does with the same files."""

from __future__ import annotations

import runpy
import types
from pathlib import Path

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured

from celery_doctor.model import Category, Severity
from celery_doctor.pipeline import check_config as config_report
from celery_doctor.settings import analysis, static_reader

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def _module(path: Path, **env: str) -> types.ModuleType:
    module = types.ModuleType(path.stem)
    module.__dict__.update({k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("__")})
    return module


def _celery_error(path: Path, namespace: str | None = None) -> str | None:
    app = Celery("probe", set_as_current=False)
    app.config_from_object(_module(path), namespace=namespace)
    try:
        app.conf.broker_url  # noqa: B018 - the first access runs detect_settings
    except ImproperlyConfigured as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", ["celeryconfig_31.py", "celeryconfig_mixed.py", "celeryconfig_typos.py"])
def test_mixed_names_prediction_matches_celery(name: str) -> None:
    result = analysis.analyse(static_reader.read([str(CONFIGS / name)]))
    assert result.mix_error == _celery_error(CONFIGS / name)


def test_mixed_names_in_code_match_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_BROKER_URL", "amqp://127.0.0.1//")
    app = runpy.run_path(str(CONFIGS / "app_conf.py"))["app"]
    with pytest.raises(ImproperlyConfigured) as raised:
        app.conf.broker_heartbeat  # noqa: B018
    result = analysis.analyse(static_reader.read([str(CONFIGS / "app_conf.py")]))
    assert result.mix_error == str(raised.value)
    report = config_report([str(CONFIGS / "app_conf.py")])
    top = report.findings[0]
    assert top.severity is Severity.CRITICAL and str(raised.value) in top.explanation
    assert {e.line for e in top.evidence} == {14, 17}


@pytest.mark.parametrize(("project", "namespace"), [("django_ns", "CELERY"), ("django_nons", None)])
def test_django_namespace_effective_broker_matches_celery(project: str, namespace: str | None) -> None:
    settings = CONFIGS / project / "proj" / "settings.py"
    app = Celery("probe", set_as_current=False)
    app.config_from_object(_module(settings), namespace=namespace)
    result = analysis.analyse(static_reader.read([str(settings)]))
    assert result.facts.namespace == namespace
    real_heartbeat = app.conf.broker_heartbeat
    ours, origin = result.value("broker_heartbeat")
    assert ours == real_heartbeat
    assert (origin == "default") == (namespace is None)
    report = config_report([str(settings)])
    ignored = [f for f in report.findings if "namespace='CELERY'" in f.title]
    if namespace:
        assert not ignored
        assert app.conf.worker_prefetch_multiplier == 1  # the old name is still read under the namespace
    else:
        assert app.conf.broker_url is None  # Celery falls back to amqp://guest@localhost
        assert ignored and ignored[0].severity is Severity.CRITICAL
        assert "amqp://guest@localhost:5672//" in ignored[0].explanation
        assert {e.line for e in ignored[0].evidence} >= {11, 12, 14}


def test_typos_get_suggestions_and_undeclared_keys_pass() -> None:
    report = config_report([str(CONFIGS / "celeryconfig_typos.py")])
    titles = {f.facts.get("written"): f for f in report.findings if f.facts.get("written")}
    assert titles["broker_hearbeat"].facts["suggestion"] == "broker_heartbeat"
    assert titles["worker_prefetch_multipler"].facts["suggestion"] == "worker_prefetch_multiplier"
    assert "redis_backend_health_check_interval" not in titles
    cats = {f.category for f in report.findings}
    assert Category.POOL_EXHAUSTION_OR_MISUSE in cats and Category.NETWORK_IDLE_TIMEOUT in cats


def test_31_config_removed_settings_defaults_and_idle_timeout() -> None:
    report = config_report([str(CONFIGS / "celeryconfig_31.py")], idle_timeout="aws-elb")
    by_title = {f.title: f for f in report.findings}
    assert any("CELERYD_FORCE_EXECV no longer exists" in t for t in by_title)
    assert any("CELERY_ENABLE_UTC no longer exists" in t for t in by_title)
    amqp = next(f for f in report.findings if "amqp result backend" in f.title)
    assert amqp.evidence[0].line == 16
    heartbeat = next(f for f in report.findings if f.category is Category.HEARTBEAT_MISCONFIG)
    assert heartbeat.severity is Severity.HIGH and heartbeat.evidence[0].line == 11
    old = [f for f in report.findings if f.facts.get("honoured") is True]
    assert {f.facts["old"]: f.facts["new"] for f in old}["CELERYD_PREFETCH_MULTIPLIER"] == "worker_prefetch_multiplier"
    assert report.summary["from"] == "3.1.26.post2"  # guessed from the 3.x names
    assert any(f.facts.get("setting") == "worker_cancel_long_running_tasks_on_connection_loss" for f in report.findings)


def test_default_heartbeat_too_long_for_a_middlebox() -> None:
    report = config_report([str(CONFIGS / "django_nons" / "proj" / "settings.py")], idle_timeout="aws-elb")
    cut = [f for f in report.findings if f.category is Category.NETWORK_IDLE_TIMEOUT]
    assert cut and cut[0].facts["value"] == 120 and cut[0].facts["idle_timeout_s"] == 60


def test_dynamic_values_are_unknown_with_their_origin() -> None:
    report = config_report([str(CONFIGS / "app_conf.py")])
    rows = {r["written"]: r for r in report.data["config"]["settings"]}
    assert rows["broker_url"]["value"] == "unknown (from environment variable ORDERS_BROKER_URL)"
    assert "CONCURRENCY" in rows["worker_concurrency"]["value"]


def test_old_names_for_a_31_target_flag_new_names() -> None:
    report = config_report([str(CONFIGS / "celeryconfig_typos.py")], to_version="3.1")
    assert any(f.facts.get("written") == "broker_url" and f.facts.get("honoured") is False for f in report.findings)
