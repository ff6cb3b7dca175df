"""The shipped per-release settings data agrees with the Celery installed here (5.7.0)."""

from __future__ import annotations

import datetime

import celery
import pytest
from celery.app import defaults as celery_defaults
from celery.app import utils as celery_utils

from celery_doctor.settings import catalogue


def _plain(value: object) -> object:
    if isinstance(value, (tuple, set, frozenset)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return value


def test_data_covers_the_installed_release() -> None:
    assert celery.__version__ in catalogue.releases()
    assert catalogue.releases()[0] == "3.1.0"


def test_names_types_and_defaults_match_installed_celery() -> None:
    ours = catalogue.table(celery.__version__)
    theirs = dict(celery_defaults.flatten(celery_defaults.NAMESPACES))
    assert set(ours) == set(theirs)
    for name, option in theirs.items():
        entry = ours[name]
        assert entry["type"] == (option.type if isinstance(option.type, str) else option.type.__name__), name
        if "expr" in entry:  # non-literal defaults are kept as source text
            assert eval(entry["expr"], {"timedelta": datetime.timedelta}) == option.default, name
        else:
            assert entry["default"] == _plain(option.default), name


def test_old_to_new_map_matches_celery_to_new_key() -> None:
    assert catalogue.to_new(celery.__version__) == celery_defaults._TO_NEW_KEY
    assert set(catalogue.to_new(celery.__version__)) == set(celery_utils._OLD_SETTING_KEYS)


@pytest.mark.parametrize(("name", "version", "expected"), [
    ("BROKER_HEARTBEAT", "3.1.26.post2", None),  # heartbeats off by default in 3.1
    ("broker_heartbeat", "4.0.0", 120),
    ("accept_content", "4.0.0", ["json", "pickle", "msgpack", "yaml"]),
    ("accept_content", "4.0.1", ["json"]),  # CELERYSA-0003
    ("CELERY_TASK_SERIALIZER", "3.1.26.post2", "pickle"),
    ("task_serializer", "4.0.0", "json"),
])
def test_changed_defaults_are_in_the_data(name: str, version: str, expected: object) -> None:
    found = catalogue.default(name, version)
    assert found is not None and found[0] == expected


def test_releases_resolve_from_short_specs() -> None:
    assert catalogue.resolve("3.1") == "3.1.26.post2"
    assert catalogue.resolve("4") == "4.4.7"
    assert catalogue.resolve("5.0.0") == "5.0.0"
    assert catalogue.resolve(None) == catalogue.newest()


def test_settings_added_and_removed_over_time() -> None:
    assert catalogue.first_release_with("worker_cancel_long_running_tasks_on_connection_loss") == "5.1.0"
    assert catalogue.first_release_with("broker_connection_retry_on_startup") == "5.3.0"
    assert catalogue.last_release_with("CELERYD_FORCE_EXECV") == "3.1.26.post2"
    assert "CELERYD_FORCE_EXECV" not in catalogue.any_to_new()  # 4.0 dropped it without a new name
    assert catalogue.to_new("4.4.7")["CELERY_RESULT_BACKEND"] == "result_backend"
