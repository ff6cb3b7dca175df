"""Fix snippets written in the setting names of the user's Celery version.

Celery 4.0 renamed the settings to lowercase; 3.1 only knows the uppercase names. A fix that
uses a name the user's version ignores would itself be a silent no-op, so every snippet goes
through :func:`setting`, which reads the names from the generated settings data.
"""

from __future__ import annotations

from functools import cache

from packaging.version import InvalidVersion, Version

from celery_doctor.settings import catalogue


@cache
def _old_names() -> dict[str, str]:
    """new name -> its 3.x name, from Celery's own old->new maps."""
    out: dict[str, str] = {}
    for old, new in catalogue.any_to_new().items():
        out.setdefault(new, old)
    return out


def uses_old_names(celery_version: str | None) -> bool:
    if not celery_version:
        return False
    try:
        return Version(celery_version) < Version("4.0")
    except InvalidVersion:
        return False


def setting(name: str, celery_version: str | None) -> str:
    """The name to write for ``name`` (a 4.0+ name) in the user's version."""
    return _old_names().get(name, name.upper()) if uses_old_names(celery_version) else name


def snippet(values: dict[str, str], celery_version: str | None, comment: str | None = None) -> str:
    """A celeryconfig-style snippet; ``values`` holds Python source for each value."""
    lines = [f"# {comment}"] if comment else []
    lines += [f"{setting(name, celery_version)} = {value}" for name, value in values.items()]
    return "\n".join(lines)
