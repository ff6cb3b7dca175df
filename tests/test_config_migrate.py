"""migrate: configs rewritten by libcst load into the real Celery 5.7.0 with the intended values,
including the files `celery upgrade settings` damages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

from celery import Celery
from click.testing import CliRunner

from celery_doctor.cli import main
from celery_doctor.settings.migrate import migrate_file, migrate_source
from conftest import console_script

CONFIGS = Path(__file__).parent / "fixtures" / "configs"

TRICKY = '''import os
# BROKER_URL comes from the environment; see CELERY_ACKS_LATE below
BROKER_URL = os.environ.get('BROKER_URL', 'amqp://127.0.0.1//')
MY_BROKER_URL = 'amqp://other//'
CELERY_BROKER_URL_DOC = "set BROKER_URL in prod"
CELERYD_PREFETCH_MULTIPLIER = 1; CELERY_ACKS_LATE = True
CELERYD_CONCURRENCY = 2  # was CELERYD_CONCURRENCY = 8
CELERY_ROUTES = {'a.b': {'queue': 'q'}}
CELERY_QUEUES_COPY = CELERY_ROUTES


def helper():
    BROKER_URL = 'local'
    return BROKER_URL
'''


def _load(source: str) -> Celery:
    module = types.ModuleType("migrated_config")
    exec(compile(source, "migrated_config", "exec"), module.__dict__)
    app = Celery("check", set_as_current=False)
    app.config_from_object(module)
    return app


def test_tricky_file_renames_only_setting_identifiers() -> None:
    migration = migrate_source(TRICKY)
    out = migration.migrated
    assert "os.environ.get('BROKER_URL'" in out  # env var name untouched
    assert "# BROKER_URL comes from the environment; see CELERY_ACKS_LATE below" in out  # comment untouched
    assert "MY_BROKER_URL = 'amqp://other//'" in out and "CELERY_BROKER_URL_DOC = \"set BROKER_URL in prod\"" in out
    assert "worker_prefetch_multiplier = 1; task_acks_late = True" in out  # every key on the line
    assert "# was CELERYD_CONCURRENCY = 8" in out
    assert "CELERY_QUEUES_COPY = task_routes" in out  # reads of a renamed global follow it
    assert "    BROKER_URL = 'local'\n    return BROKER_URL" in out  # a local of the same name is not a setting
    app = _load(out)
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late is True
    assert app.conf.worker_concurrency == 2 and app.conf.broker_url == "amqp://127.0.0.1//"
    assert migrate_source(out).migrated == out  # idempotent


def test_celery_upgrade_settings_damages_what_we_get_right(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.py"
    theirs.write_text(TRICKY)
    subprocess.run([sys.executable, "-m", "celery", "upgrade", "settings", str(theirs), "--no-backup"],
                   check=True, capture_output=True, timeout=60)
    damaged = theirs.read_text()
    # Celery's tool replaces substrings, one key per line
    assert "MY_broker_url" in damaged or "os.environ.get('broker_url'" in damaged
    assert "CELERY_ACKS_LATE = True" in damaged  # second key on the line left alone
    ours = migrate_source(TRICKY).migrated
    assert "MY_BROKER_URL" in ours and "task_acks_late = True" in ours


def test_migrated_31_config_loads_with_intended_values() -> None:
    migration = migrate_file(str(CONFIGS / "celeryconfig_31.py"))
    app = _load(migration.migrated)
    conf = app.conf
    assert conf.broker_heartbeat == 0 and conf.broker_pool_limit is None
    assert conf.worker_prefetch_multiplier == 1 and conf.task_acks_late is True
    assert conf.worker_concurrency == 8 and conf.timezone == "Europe/Berlin"
    assert conf.task_default_queue == "billing" and conf.enable_utc is True
    names = {name for _, name, _ in migration.unconvertible}
    assert "CELERYD_FORCE_EXECV" in names and "result_backend = 'amqp'" in names
    assert "CELERYD_FORCE_EXECV = True" in migration.migrated  # reported, not silently dropped


def test_migrated_mixed_config_no_longer_raises() -> None:
    migration = migrate_file(str(CONFIGS / "celeryconfig_mixed.py"))
    app = _load(migration.migrated)
    assert app.conf.task_acks_late is True and app.conf.worker_concurrency == 4


def test_django_form_and_namespace_advice() -> None:
    migration = migrate_file(str(CONFIGS / "django_nons" / "proj" / "settings.py"), django=True)
    assert "CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # old name, still read under the namespace" in migration.migrated
    assert "CELERY_BROKER_HEARTBEAT = 600" in migration.migrated
    assert any("namespace='CELERY'" in note for note in migration.notes)
    module = types.ModuleType("s")
    exec(compile(migration.migrated, "s", "exec"), module.__dict__)
    app = Celery("dj", set_as_current=False)
    app.config_from_object(module, namespace="CELERY")
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.broker_heartbeat == 600
    assert migrate_source(migration.migrated, django=True).migrated == migration.migrated


def test_cli_diff_then_write_keeps_first_backup(tmp_path: Path) -> None:
    target = tmp_path / "celeryconfig.py"
    shutil.copy(CONFIGS / "celeryconfig_31.py", target)
    original = target.read_text()
    runner = CliRunner()
    diff = runner.invoke(main, ["config", "migrate", str(target)])
    assert diff.exit_code == 0 and "+broker_heartbeat = 0" in diff.stdout
    assert "s3cretpw" not in diff.stderr and "s3cretpw" not in diff.stdout  # masked unless --show-secrets
    assert target.read_text() == original  # a diff only
    first = runner.invoke(main, ["config", "migrate", str(target), "--write"])
    assert first.exit_code == 0
    backup = tmp_path / "celeryconfig.py.orig"
    assert backup.read_text() == original
    migrated = target.read_text()
    second = runner.invoke(main, ["config", "migrate", str(target), "--write"])
    assert second.exit_code == 0 and "nothing to rename" in second.output
    assert backup.read_text() == original and target.read_text() == migrated


def test_printed_diff_applies_with_git_apply_and_patch(tmp_path: Path) -> None:
    """With --show-secrets the patch is the user's own file: the password stays in it, or the `-` lines
    would not match (by default it is masked, like every output)."""
    source = (CONFIGS / "celeryconfig_31.py").read_text().rstrip("\n")  # no newline at the end
    for tool in (["git", "apply"], ["patch", "-p1", "--quiet"]):
        work = tmp_path / tool[0]
        work.mkdir()
        (work / "conf").mkdir()
        (work / "conf" / "celeryconfig.py").write_text(source)
        printed = subprocess.run([console_script(), "config", "migrate", "conf/celeryconfig.py", "--show-secrets"],
                                 cwd=work, capture_output=True, text=True, timeout=60)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.startswith("--- a/conf/celeryconfig.py\n+++ b/conf/celeryconfig.py\n")
        assert "s3cretpw" in printed.stdout and "s3cretpw" not in printed.stderr
        applied = subprocess.run(tool, cwd=work, input=printed.stdout, capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
        expected = migrate_file(str(CONFIGS / "celeryconfig_31.py")).migrated.rstrip("\n")
        assert (work / "conf" / "celeryconfig.py").read_text() == expected
