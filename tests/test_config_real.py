"""The audit and migrate on real configs from public projects, against what Celery 5.7 really does
with each project loaded the way the project loads it (tests/config_truth.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import config_truth
from celery_doctor.model import DoctorError
from celery_doctor.settings.migrate import migrate_file

PROJECTS = sorted(config_truth.projects())


@pytest.fixture(scope="module")
def truths() -> dict[str, dict[str, Any]]:
    return {}


def _truth(truths: dict[str, dict[str, Any]], name: str, values: bool = False) -> dict[str, Any]:
    key = f"{name}:values" if values else name
    if key not in truths:
        truths[key] = config_truth.truth_for(name, values=values)
    return truths[key]


@pytest.mark.parametrize("project", PROJECTS)
def test_every_claim_matches_celery(project: str, truths: dict[str, dict[str, Any]]) -> None:
    data, findings = config_truth.audit(project)
    result = config_truth.score(project, data, findings, _truth(truths, project), _truth(truths, project, True))
    assert result["wrong"] == [] and result["missed"] == [], result
    assert result["right"]


def _filled(truth: dict[str, Any]) -> dict[str, Any]:
    """Setting -> what fills it: the marker's name for config objects, the value for code."""
    out = {setting: ("marked", name) for name, setting in truth["honoured"].items() if setting}
    for setting in truth["stored"].values():
        if setting and setting not in out:
            out[setting] = ("code", truth["values"].get(setting))
    return out


@pytest.mark.parametrize("project", PROJECTS)
def test_migrated_project_loads_with_the_same_settings(project: str, truths: dict[str, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    spec = config_truth.projects()[project]
    copy = tmp_path / project
    shutil.copytree(Path(config_truth.REAL) / project, copy)
    target = copy / spec["audit"][0]
    try:
        migration = migrate_file(str(target))
    except DoctorError as exc:  # refused: nothing written, and the reason is one line
        assert "\n" not in str(exc) and "namespace" in str(exc)
        assert target.read_text() == (Path(config_truth.REAL) / project / spec["audit"][0]).read_text()
        return
    target.write_text(migration.migrated)
    assert not migrate_file(str(target)).changed, "a second migrate changed something"
    before, after = _truth(truths, project), config_truth.truth_for(project, str(copy))
    assert after["error"] is None
    was, now = _filled(before), _filled(after)
    # every setting Celery read before is read after, with the same value; names Celery ignored
    # before (CELERY_ENABLE_UTC) may now be read
    for setting, (how, value) in was.items():
        assert setting in now, f"{setting} lost by the migration"
        if how == "code":
            assert now[setting][1] == value
    renamed_to = {new[7:].lower() if new.startswith("CELERY_") else new for _, _, new in migration.renamed}
    assert set(now) - set(was) <= renamed_to


def _titles(paths: list[Path]) -> list[str]:
    from celery_doctor.pipeline import check_config

    return [f.title for f in check_config([str(p) for p in paths]).findings]


def test_class_config_is_read_with_its_loader_and_kwargs() -> None:
    from celery_doctor.pipeline import check_config

    root = Path(config_truth.REAL) / "flask_demo"
    report = check_config([str(root / "celery_config.py")])
    config = report.data["config"]
    assert config["config_object"] == "CeleryConfig" and config["loader"]["kind"] == "class"
    assert config["effective_broker_url"] == "'redis://127.0.0.1:6379/0'"  # Celery(broker=...), as in Celery
    ignored = next(f for f in report.findings if "CELERY_-prefixed" in f.title)
    assert ignored.severity.value == "low" and ignored.facts["harmless"] == ["CELERY_BROKER_URL"]
    # a Redis broker: kombu sends no AMQP heartbeat, so its default is no concern
    assert not any(f.facts.get("setting") == "broker_heartbeat" for f in report.findings)


INHERITED = '''class BaseCeleryConfig(object):
    task_serializer = 'json'
    worker_concurrency = 4
    CELERY_ACKS_LATE = True


class DefaultCeleryConfig(BaseCeleryConfig):
    CELERY_IMPORTS = ('lib.send_email',)
    CELERYD_PREFETCH_MULTIPLIER = 1
    CELERY_DEFAULT_QUEUE = 'mail'
'''
APP = '''from celery import Celery

app = Celery('mail', broker='amqp://127.0.0.1//')
app.config_from_object('celery_config.{name}')
'''


@pytest.mark.parametrize("name", ["DefaultCeleryConfig", "BaseCeleryConfig"])
def test_inherited_class_mix_prediction_matches_celery(tmp_path: Path, name: str) -> None:
    """Celery checks one mapping: the class with its bases; the prediction follows it."""
    from celery_doctor.settings import analysis, static_reader

    (tmp_path / "celery_config.py").write_text(INHERITED)
    (tmp_path / "celery_app.py").write_text(APP.format(name=name))
    result = analysis.analyse(static_reader.read([str(tmp_path / "celery_config.py")]))
    assert result.facts.config_object == name
    import json
    import subprocess
    import sys

    spec = {"app": "celery_app:app"}
    proc = subprocess.run([sys.executable, config_truth.__file__, str(tmp_path), json.dumps(spec)],
                          capture_output=True, text=True, timeout=120, check=True)
    truth = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.mix_error == truth["error"]
    # with its base the subclass has 4 old names to 2 new: Celery picks the old style; the base alone the new
    assert truth["error"] and ("to use the old format" in truth["error"]) == (name == "DefaultCeleryConfig")


def test_conf_update_in_a_function_is_not_a_refusal(tmp_path: Path) -> None:
    """Old names at import time, a new name set later in a method: Celery loads it, we say so."""
    from celery_doctor.settings import analysis, static_reader

    dgs = (Path(config_truth.REAL) / "dgs" / "src" / "gsserver" / "celeryapp.py").read_text()
    app = tmp_path / "celeryapp.py"
    app.write_text(dgs + "\n\nclass Setup:\n    def queues(self):\n        app.conf.task_queues = []\n")
    result = analysis.analyse(static_reader.read([str(app)]))
    assert result.mix_error is None
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, config_truth.__file__, str(tmp_path), json.dumps({"app": "celeryapp:app"})],
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["error"] is None


def _django_without_loader(tmp_path: Path) -> Path:
    copy = tmp_path / "delivery"
    shutil.copytree(Path(config_truth.REAL) / "delivery_project", copy)
    (copy / "configs" / "celery.py").unlink()
    return copy


def test_unknown_namespace_shows_both_readings_and_migrate_agrees(tmp_path: Path) -> None:
    from celery_doctor.pipeline import check_config

    copy = _django_without_loader(tmp_path)
    fragment = copy / "configs" / "extra_configs" / "celery_config.py"
    report = check_config([str(fragment)])
    config = report.data["config"]
    assert config["namespace_known"] is False and config["alternative"]["namespace"] is None
    unknown = next(f for f in report.findings if "no celery.py was found" in f.title)
    readings = {r["namespace"]: r for r in unknown.facts["readings"]}
    assert readings["CELERY"]["effective_broker_url"] == "'redis://redis:6379/0'"
    assert "CELERY_BROKER_URL" in readings[None]["ignored"]
    assert "critical" not in {f.severity.value for f in report.findings}
    with pytest.raises(DoctorError, match=r"no celery\.py that loads it was found"):
        migrate_file(str(fragment))
    # the same tree with celery.py: the namespace is known, and migrate writes the CELERY_ names
    assert migrate_file(str(Path(config_truth.REAL) / "delivery_project" / "configs" / "extra_configs"
                             / "celery_config.py")).migrated.count("CELERY_RESULT_BACKEND") == 1


def test_django_own_names_are_not_celery_settings(tmp_path: Path) -> None:
    settings = tmp_path / "mysite" / "settings.py"
    shutil.copytree(Path(config_truth.REAL) / "magaz" / "mysite", settings.parent)
    settings.write_text(settings.read_text() + "ADMINS = [('ops', 'ops@example.com')]\nMANAGERS = ADMINS\n"
                        "SERVER_EMAIL = 'celery@example.com'\nEMAIL_TIMEOUT = 5\nBROKER_URL = 'redis://r:6379/0'\n")
    titles = _titles([settings])
    assert not [t for t in titles if any(n in t for n in ("ADMINS", "SERVER_EMAIL", "EMAIL_TIMEOUT", "TIME_ZONE"))]
    assert any("BROKER_URL is the old name" in t for t in titles)


def test_lower_case_names_in_django_settings_are_dropped() -> None:
    root = Path(config_truth.REAL) / "delivery_project"
    titles = _titles([root / "configs" / "extra_configs" / "celery_config.py"])
    assert "result_backend never reaches Celery: Django keeps only upper-case settings" in titles


@pytest.mark.parametrize(("url", "expected"), [("memory", "no '://'"), ("redis", "no '://'"),
                                                ("django://", "removed in kombu 4.0"), ("memory://", None)])
def test_broker_urls_kombu_reads_otherwise(tmp_path: Path, url: str, expected: str | None) -> None:
    """kombu's own reading: Connection('memory') is amqp://guest@memory:5672//, 'django://' is no transport."""
    from kombu import Connection

    config = tmp_path / "celeryconfig.py"
    config.write_text(f"broker_url = {url!r}\n")
    titles = [t for t in _titles([config]) if t.startswith("broker_url")]
    if expected is None:
        assert titles == [] and Connection(url).transport_cls == "memory"
        return
    assert len(titles) == 1 and expected in titles[0]
    if "://" not in url:
        assert Connection(url).as_uri() == f"amqp://guest:**@{url}:5672//"
    else:
        with pytest.raises(KeyError, match="No such transport"):
            Connection(url).transport  # noqa: B018


@pytest.mark.parametrize(("requirement", "expected"), [("celery==5.2.7\n", "5.2.7"),
                                                       ("celery[redis]>=5.3,<5.4\n", "5.3.6")])
def test_from_version_is_the_projects_pin(tmp_path: Path, requirement: str, expected: str) -> None:
    from celery_doctor.pipeline import check_config

    shutil.copytree(Path(config_truth.REAL) / "cloudlaunch", tmp_path / "proj")
    (tmp_path / "proj" / "requirements.txt").write_text("django<2\n" + requirement)
    report = check_config([str(tmp_path / "proj" / "cloudlaunch" / "celeryconfig.py")])
    assert report.summary["from"] == expected
    assert any(f"Celery {expected}, pinned in" in w for w in report.warnings)
    # 5.x already sends heartbeats: no "default changed" story from 3.1
    assert not any(f.facts.get("setting") == "broker_heartbeat" for f in report.findings)


def test_without_a_pin_the_guess_is_said(tmp_path: Path) -> None:
    from celery_doctor.pipeline import check_config

    report = check_config([str(Path(config_truth.REAL) / "cloudlaunch" / "cloudlaunch" / "celeryconfig.py")])
    assert any("no pin found: assumed Celery 3.1" in w for w in report.warnings)


def test_yaml_file_given_directly_is_read() -> None:
    from celery_doctor.pipeline import check_config

    report = check_config([str(Path(config_truth.REAL) / "registrar" / "registrar" / "settings" / "registrar.yml")])
    rows = {r["written"]: r for r in report.data["config"]["settings"]}
    assert rows["CELERY_DEFAULT_QUEUE"]["status"] == "old_name" and rows["CELERY_DEFAULT_QUEUE"]["line"] == 20
    assert report.data["config"]["django"] is True  # DATABASES: a Django settings mapping


def test_broker_built_from_host_parts_matches_kombu() -> None:
    """robotice's 3.x BROKER_HOST/USER/VHOST: the URL Celery 5.7 connects to, as kombu builds it."""
    import runpy

    from celery import Celery

    from celery_doctor.pipeline import check_config

    path = Path(config_truth.REAL) / "robotice" / "celeryconfig.py"
    app = Celery("robotice", set_as_current=False)
    app.config_from_object({k: v for k, v in runpy.run_path(str(path)).items() if k.isupper()})
    real = app.connection_for_write().as_uri().replace(":**@", "@")
    report = check_config([str(path)])
    assert report.data["config"]["effective_broker_url"] == repr(real)


@pytest.mark.parametrize("project", PROJECTS)
def test_the_project_directory_gives_the_same_verdicts(project: str, truths: dict[str, dict[str, Any]]) -> None:
    """`config PROJECT_DIR`: the app modules and what their config_from_object calls load."""
    from celery_doctor.pipeline import check_config

    report = check_config([str(Path(config_truth.REAL) / project)])
    findings = [{"title": f.title, "facts": f.facts, "severity": f.severity.value} for f in report.findings]
    result = config_truth.score(project, report.data, findings, _truth(truths, project),
                                _truth(truths, project, True))
    assert result["wrong"] == [] and result["missed"] == [], result


def test_loader_search_skips_virtualenvs(tmp_path: Path) -> None:
    """A .venv inside the project is pruned before it is walked: a decoy app there is never the loader."""
    shutil.copytree(Path(config_truth.REAL) / "cloudlaunch", tmp_path / "proj")
    decoy = tmp_path / "proj" / ".venv" / "lib" / "site" / "decoy.py"
    decoy.parent.mkdir(parents=True)
    decoy.write_text("from celery import Celery\napp = Celery()\n"
                     "app.config_from_object('cloudlaunch.celeryconfig', namespace='CELERY')\n")
    from celery_doctor.settings import static_reader

    facts = static_reader.read([str(tmp_path / "proj" / "cloudlaunch" / "celeryconfig.py")])
    assert facts.loader is not None and facts.loader.source.endswith("cloudlaunch/celery.py")
    assert facts.namespace is None


FACTORY = '''from celery import Celery


class BaseCeleryConfig:
    broker_url = "redis://127.0.0.1:6379/7"
    task_acks_late = True
    broker_heartbeat = 30


class AppCeleryConfig(BaseCeleryConfig):
    worker_prefetch_multiplier = 1
    CELERYD_CONCURRENCY = 3


def create_celery_app(name, config_class):
    app = Celery(name)
    app.config_from_object(config_class)
    return app


celery_app = create_celery_app("etl", AppCeleryConfig)
'''


def test_class_passed_to_an_app_factory(tmp_path: Path) -> None:
    """config_from_object(param) in a factory, the class given at the call: read like the real Celery."""
    import json
    import subprocess
    import sys

    from celery_doctor.pipeline import check_config

    (tmp_path / "etl.py").write_text(FACTORY)
    report = check_config([str(tmp_path / "etl.py")])
    config = report.data["config"]
    assert config["config_object"] == "AppCeleryConfig"
    proc = subprocess.run([sys.executable, config_truth.__file__, str(tmp_path),
                           json.dumps({"app": "etl:celery_app", "config_module": "etl",
                                       "config_object": "AppCeleryConfig"})],
                          capture_output=True, text=True, timeout=120, check=True)
    truth = json.loads(proc.stdout.strip().splitlines()[-1])
    # 4 new names to 1 old in the class and its base: Celery raises, and so do we, with its text
    assert truth["error"] is not None and config["mix_error"] == truth["error"]
    assert config["mix_source"] == "the class AppCeleryConfig"
