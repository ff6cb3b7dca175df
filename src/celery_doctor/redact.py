"""The one place that removes secrets. Every report passes through :func:`redact`.

Secrets reach us inside log lines, URLs in settings, broker error messages and the
user's own config values; the rules below are deliberately broad, since a false
positive costs a few characters and a miss leaks a credential.

Passwords hold any character people type (``@ / : ; , ' " ( ) }`` spaces, non-ASCII), so
no rule stops at the first "odd" character:

- URLs are read the way kombu and redis-py read them: the userinfo is everything between
  ``scheme://`` and the *last* ``@`` of the authority, the password everything after the
  first ``:`` of the userinfo. In free text the authority cannot end before that last ``@``
  on the same line (unless another URL starts first), so that is where the mask ends.
- ``key = value`` secrets end where the value really ends: at its closing quote (escapes
  honoured) when quoted, else at the end of the line or where the next ``key:``/``key=`` starts.
- ``Bearer``/``Basic`` credentials and SASL ``\\x00user\\x00password`` blobs end at the end of
  the token or line, whatever characters they hold.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from enum import Enum
from typing import Any

MASK = "***"

# The start of a URL: RFC 3986 scheme, then "://".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://")
# The user part of a userinfo: no ":", "@", "/", whitespace or quote (RFC 3986 would percent-encode them).
_USER = re.compile(r"[^:@/\s'\"<>]*")
# How far after "scheme://" the last "@" of an authority is looked for (one line at most).
_AUTHORITY_WINDOW = 512

_SECRET_KEY = (
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key"
    r"|credentials?|authorization|auth[_\-]?token|session[_\-]?key|signature)"
)
# password=..., "password": "...", PASSWORD: ..., token=..., --password ...
# The value itself is matched by _value_end (quoted or not), not by the pattern.
_KEY_VALUE = re.compile(
    r"(?=[PpSsTtAaCc-])(?<![/.])"  # cheap first-character test (speed); not a path like /etc/passwd
    r"(?P<head>(?i:" + _SECRET_KEY + r")[\w\-]*['\"]?\s*[:=]\s*|--(?i:password|passwd|token|secret)(?:[ =]|\s+))"
)
# An unquoted value ends at the end of the line, or where the next "key:"/"key=" begins.
# (or, in JSON text, where the string holding it closes: the quote before a comma, brace or line end)
_NEXT_KEY = re.compile(r"[,;]?\s+(?=[A-Za-z_][\w.\-]*['\"]?\s*[:=](?!//))|[,;]?\s+--[A-Za-z]|\n"
                       r"|(?<!\\)\"(?=\s*[,}\]]|\s*$)")
_AFTER_QUOTE = frozenset(" \t\r\n,;:)}]>.&|#'\"\\")
# "Authorization: Bearer <token>": the token is part of the value whatever it holds
_AUTH_SCHEME = re.compile(r"(?i:bearer|basic|token|digest|negotiate|aws4-hmac-sha256)\s+\S+")
# Authorization: Basic xxx / Bearer xxx / Token xxx (any characters up to whitespace)
_AUTH_HEADER = re.compile(
    r"(?=[Bb])(?i:(?P<head>\b(?:basic|bearer)\s+))(?P<secret>\S{6,}?)(?P<tail>['\",;)\]}>]*)(?=\s|$)")
# AMQPLAIN/PLAIN SASL responses echoed by brokers: "\x00user\x00password" (escaped or raw NULs)
_SASL = re.compile(
    r"(?P<head>(?:\\x00|\x00)[^\\\x00\s]*(?:\\x00|\x00))(?P<secret>[^\n]+?)(?P<tail>['\"]?\)*\.?[ \t]*)$",
    re.MULTILINE)
# AWS access key ids (the other half of an AWS secret; useless alone but identifying)
_AWS_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA")
_AWS_KEY_ID = re.compile(r"\b(?:" + "|".join(_AWS_PREFIXES) + r")[0-9A-Z]{16}\b")

# celery.consumer.lost, rabbitmq.conn.forced_code: dotted lower-case words, as no signature secret is
_CATALOGUE_ID = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+){1,5}")
_ALREADY_MASKED = {MASK, "**", "*", "****", "<redacted>", "None", "null", "none", "''", '""', "", "[]", "{}"}


def _masked(secret: str) -> bool:
    """Already masked (by us or by the program that logged it): masking again must change nothing,
    since the final pass over a rendered report sees text the first pass produced."""
    secret = secret.strip()
    return secret in _ALREADY_MASKED or set(secret) <= {"*"}


def _redact_urls(text: str) -> str:
    """Mask the password of every ``scheme://user:password@host`` in ``text``."""
    if "://" not in text:
        return text
    out: list[str] = []
    pos = 0
    schemes = list(_SCHEME.finditer(text))
    for index, scheme in enumerate(schemes):
        start = scheme.end()
        if start < pos:
            continue
        user = _USER.match(text, start)
        colon = user.end() if user else start
        if colon >= len(text) or text[colon] != ":":
            continue
        # the authority cannot reach past the line, the next URL or the window
        limit = min(len(text), start + _AUTHORITY_WINDOW)
        newline = text.find("\n", start)
        if newline != -1:
            limit = min(limit, newline)
        if index + 1 < len(schemes):
            limit = min(limit, schemes[index + 1].start())
        at = text.rfind("@", colon + 1, limit)
        if at == -1:
            continue
        secret = text[colon + 1:at]
        if _masked(secret):
            continue
        out.append(text[pos:colon + 1])
        out.append(MASK)
        pos = at
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """Where a secret value starting at ``start`` really ends."""
    if start >= len(text):
        return start
    if text.startswith(('\\"', "\\'"), start):  # quoted inside a JSON string: \"...\"
        close = text.find(text[start:start + 2], start + 2)
        newline = text.find("\n", start)
        if close != -1 and (newline == -1 or close < newline):
            return close + 2
    quote = text[start]
    if quote in "'\"":
        i = start + 1
        while i < len(text):
            c = text[i]
            if c == "\\":
                i += 2
                continue
            # a closing quote is followed by a delimiter; "ab'cd" inside '...' is not the end
            if c == quote and (i + 1 == len(text) or text[i + 1] in _AFTER_QUOTE):
                return i + 1
            if c == "\n":
                return i
            i += 1
        return len(text)
    scheme = _AUTH_SCHEME.match(text, start)
    found = _NEXT_KEY.search(text, scheme.end() if scheme else start)
    return found.start() if found else len(text)


def _redact_key_values(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _KEY_VALUE.finditer(text):
        if match.start() < pos:
            continue
        head_end = match.end()
        end = _value_end(text, head_end)
        value = text[head_end:end]
        if value.startswith(('\\"', "\\'")) and value.endswith(value[:2]) and len(value) >= 4:
            if not _masked(value[2:-2]):
                out.append(text[pos:head_end] + value[:2] + MASK + value[:2])
                pos = end
            continue
        inner = value[1:-1] if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0] else value
        if not inner.strip() or _masked(inner) or inner.startswith("${"):
            continue
        if _CATALOGUE_ID.fullmatch(inner) and match.group("head").lower().startswith(("signature", '"signature')):
            continue  # an event's "signature" is the id of the catalogue line that matched it, not a secret
        out.append(text[pos:head_end])
        out.append(value[0] + MASK + value[0] if inner is not value else MASK)
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _sub(rule: re.Pattern[str], text: str) -> str:
    def mask(match: re.Match[str]) -> str:
        secret = match.group("secret")
        if _masked(secret):
            return match.group(0)
        tail = match.groupdict().get("tail") or ""
        return match.group("head") + MASK + tail

    return rule.sub(mask, text)


CACHED_LEN = 4096  # shorter strings are remembered: a report repeats them (sources, kinds, texts redacted twice)


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` with every credential replaced by ``***``."""
    if not extra_secrets and len(text) <= CACHED_LEN:
        return _redact_short(text)
    for secret in extra_secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return _redact_rules(text)


@functools.lru_cache(maxsize=16384)
def _redact_short(text: str) -> str:
    return _redact_rules(text)


# Every match of _KEY_VALUE holds one of these words, every match of _AUTH_HEADER one of the last
# two, in any case (casefold, as re's IGNORECASE, folds 'ſ' to 's' and the Kelvin sign to 'k'): a
# text without them skips those scans, which cost most of a report's redaction (2,000 log lines)
_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "authorization", "signature")
_AUTH_WORDS = ("basic", "bearer")


def _redact_rules(text: str) -> str:
    folded = text.casefold()
    # key=value first: a value may hold an "@" that would otherwise look like a URL's last "@"
    if any(word in folded for word in _KEY_WORDS):
        text = _redact_key_values(text)
    text = _redact_urls(text)
    if any(word in folded for word in _AUTH_WORDS):
        text = _sub(_AUTH_HEADER, text)
    if "x00" in text or "\x00" in text:
        text = _sub(_SASL, text)
    if "A" in text and any(prefix in text for prefix in _AWS_PREFIXES):  # the scan is slow: 30 ms a MB
        text = _AWS_KEY_ID.sub(MASK, text)
    return text


def redact_data(value: Any, extra_secrets: tuple[str, ...] = ()) -> Any:
    """Redact every string inside a JSON-like structure; a key whose name says secret masks its value."""
    if isinstance(value, str):
        return redact(value, extra_secrets)
    if isinstance(value, dict):
        return _redact_dict(value, extra_secrets)
    if isinstance(value, list | tuple):
        return [_redact_item(item, extra_secrets) for item in value]
    return value


def _redact_item(item: Any, extra_secrets: tuple[str, ...]) -> Any:
    kind = type(item)
    if kind is str:
        return redact(item, extra_secrets)
    if kind is int or kind is float or kind is bool or item is None:  # most leaves of a report
        return item
    return redact_data(item, extra_secrets)


def _redact_dict(value: dict[Any, Any], extra_secrets: tuple[str, ...]) -> dict[Any, Any]:
    out = {}
    # {"name": "broker_password", "value": "..."} rows: the key is in another field
    named = any(isinstance(value.get(k), str) and _is_secret_key(value[k]) for k in ("name", "key", "setting"))
    for key, item in value.items():
        if isinstance(key, str):
            if item and isinstance(item, str) and (
                    _is_secret_key(key) or (named and key in ("value", "effective", "intended", "default"))):
                out[key] = MASK
                continue
            # a key may be text from the input (a source's name); a short identifier holds no secret
            if not (len(key) < 20 and key.isidentifier()):
                key = redact(key, extra_secrets)
        out[key] = _redact_item(item, extra_secrets)
    return out


_SECRET_NAME = re.compile(r"(?i)password|passwd|secret|token|api[_\-]?key|credential|authorization")


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return _SECRET_NAME.search(key) is not None


@functools.lru_cache(maxsize=256)
def _init_fields(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind) if f.init)


def redact_object(value: Any) -> Any:
    """A copy of any report object (dataclasses included) with every string redacted: renderers
    wrap long lines, so secrets must go before rendering, not only after."""
    if isinstance(value, Enum):  # str-based enums stay enums
        return value
    if isinstance(value, str):
        return redact(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {name: redact_object(getattr(value, name)) for name in _init_fields(type(value))}
        return dataclasses.replace(value, **changes)
    if isinstance(value, dict):
        return redact_data(value)
    if isinstance(value, list | tuple):
        return type(value)(redact_object(item) for item in value)
    return value


def redact_exception(exc: BaseException, extra_secrets: tuple[str, ...] = ()) -> str:
    """The text of an exception raised by a client library (kombu, amqp, redis-py, http.client),
    which may quote the URL, the password or the SASL response, made safe to print."""
    text = str(exc) or type(exc).__name__
    return redact(text, extra_secrets)
