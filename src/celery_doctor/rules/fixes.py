"""Fix snippets written in the setting names of the user's Celery version.

Celery 4.0 renamed the settings to lowercase; 3.1 only knows the uppercase names. A fix that
uses a name the user's version ignores would itself be a silent no-op, so every snippet goes
through :func:`setting`.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

# new name -> 3.1 name, for the settings our fixes touch
OLD_NAMES = {
    "broker_heartbeat": "BROKER_HEARTBEAT",
    "broker_heartbeat_checkrate": "BROKER_HEARTBEAT_CHECKRATE",
    "broker_pool_limit": "BROKER_POOL_LIMIT",
    "broker_transport_options": "BROKER_TRANSPORT_OPTIONS",
    "broker_connection_timeout": "BROKER_CONNECTION_TIMEOUT",
    "broker_connection_retry": "BROKER_CONNECTION_RETRY",
    "broker_connection_max_retries": "BROKER_CONNECTION_MAX_RETRIES",
    "broker_url": "BROKER_URL",
    "broker_use_ssl": "BROKER_USE_SSL",
    "task_acks_late": "CELERY_ACKS_LATE",
    "worker_prefetch_multiplier": "CELERYD_PREFETCH_MULTIPLIER",
    "result_backend_transport_options": "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS",
}


def uses_old_names(celery_version: str | None) -> bool:
    if not celery_version:
        return False
    try:
        return Version(celery_version) < Version("4.0")
    except InvalidVersion:
        return False


def setting(name: str, celery_version: str | None) -> str:
    """The name to write for ``name`` (a 4.0+ name) in the user's version."""
    return OLD_NAMES.get(name, name.upper()) if uses_old_names(celery_version) else name


def snippet(values: dict[str, str], celery_version: str | None, comment: str | None = None) -> str:
    """A celeryconfig-style snippet; ``values`` holds Python source for each value."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"{setting(name, celery_version)} = {value}" for name, value in values.items()]
    return "\n".join(lines)
