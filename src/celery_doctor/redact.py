"""The one place that removes secrets. Every report passes through :func:`redact`.

Secrets reach us inside log lines, URLs in settings, broker error messages and the
user's own config values; the rules below are deliberately broad, since a false
positive costs a few characters and a miss leaks a credential.
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from typing import Any

MASK = "***"

# scheme://user:password@host  -> scheme://user:***@host (also a password with no user)
_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@\s'\"]*:)(?P<secret>[^@\s'\"/]+)(?=@)")
# password=..., "password": "...", PASSWORD: ..., token=..., --password ...
_KEY_VALUE = re.compile(
    r"(?=[PpSsTtAa-])(?<![/.])"  # cheap first-character test (speed); not a path like /etc/passwd
    r"(?P<head>(?i:(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key)"
    r"[\w\-]*)['\"]?\s*[:=]\s*['\"]?|--(?:password|token)[ =])"
    r"(?P<secret>[^\s'\",;&)}\]]+)"
)
# Authorization: Basic xxx / Bearer xxx
_AUTH_HEADER = re.compile(r"(?=[Bb])(?i:(?P<head>\b(?:basic|bearer)\s+)(?P<secret>[A-Za-z0-9+/=._\-]{8,}))")
# AMQPLAIN/PLAIN SASL responses echoed by brokers: "\x00user\x00password"
_SASL = re.compile(r"(?P<head>\\x00[^\\\s]+\\x00)(?P<secret>[^\\\s'\"]+)")

_RULES = (_URL_PASSWORD, _AUTH_HEADER, _KEY_VALUE, _SASL)
_ALREADY_MASKED = {MASK, "**", "*", "****", "<redacted>", "None", "null", "none", "''", '""'}


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if secret in _ALREADY_MASKED or set(secret) == {"*"}:
        return match.group(0)
    return match.group("head") + MASK


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` with every credential replaced by ``***``."""
    for secret in extra_secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    for rule in _RULES:
        text = rule.sub(_mask, text)
    return text


def redact_data(value: Any, extra_secrets: tuple[str, ...] = ()) -> Any:
    """Redact every string inside a JSON-like structure (dict keys stay as they are)."""
    if isinstance(value, str):
        return redact(value, extra_secrets)
    if isinstance(value, dict):
        out = {}
        # {"name": "broker_password", "value": "..."} rows: the key is in another field
        named = any(isinstance(value.get(k), str) and _is_secret_key(value[k]) for k in ("name", "key", "setting"))
        for key, item in value.items():
            if named and key in ("value", "effective", "intended", "default") and isinstance(item, str) and item:
                out[key] = MASK
                continue
            if isinstance(key, str) and _is_secret_key(key) and isinstance(item, str) and item:
                out[key] = MASK
            else:
                out[key] = redact_data(item, extra_secrets)
        return out
    if isinstance(value, list | tuple):
        return [redact_data(item, extra_secrets) for item in value]
    return value


def _is_secret_key(key: str) -> bool:
    return bool(re.search(r"(?i)password|passwd|secret|token|api[_\-]?key", key))


def redact_object(value: Any) -> Any:
    """A copy of any report object (dataclasses included) with every string redacted: renderers
    wrap long lines, so secrets must go before rendering, not only after."""
    if isinstance(value, Enum):  # str-based enums stay enums
        return value
    if isinstance(value, str):
        return redact(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: redact_object(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return redact_data(value)
    if isinstance(value, list | tuple):
        return type(value)(redact_object(item) for item in value)
    return value
