"""Secret shapes planted in every input by the redaction tests and scripts/fuzz.py.

Each secret holds the marker ``S3cr3t`` after (and before) a character that used to end a
redaction pattern early, so a grep for the marker finds a leak of the whole secret or of
any fragment. None is a real credential.
"""

from __future__ import annotations

import json

MARKER = "S3cr3t"

# passwords as people type them: the marker after the character a pattern might stop at
PLAIN = {
    "plain": "S3cr3tPass",
    "at_after": "ab@S3cr3tPass", "at_twice": "a@b@S3cr3tPass", "at_before": "S3cr3tPass@ab",
    "colon_after": "ab:S3cr3tPass", "slash_after": "ab/S3cr3tPass", "slash_before": "S3cr3tPass/ab",
    "percent_literal": "S3cr3t%Pass", "hash_after": "ab#S3cr3tPass", "question_after": "ab?S3cr3tPass",
    "unicode": "pässS3cr3tPassé€", "space_after": "ab S3cr3tPass", "quote_after": "ab'S3cr3tPass",
    "dquote_after": 'ab"S3cr3tPass', "semicolon_after": "ab;S3cr3tPass", "amp_after": "ab&S3cr3tPass",
    "brace_after": "ab}S3cr3tPass", "comma_after": "ab,S3cr3tPass", "paren_after": "ab)S3cr3tPass",
    "star_after": "***S3cr3tPass", "backslash_after": "ab\\S3cr3tPass", "dollar": "$S3cr3tPass$",
    "bracket_after": "ab]S3cr3tPass", "equals_after": "ab=S3cr3tPass", "pipe_after": "ab|S3cr3tPass",
    "tilde_caret": "~^S3cr3tPass", "lt_gt": "<ab>S3cr3tPass", "plus_after": "ab+S3cr3tPass",
}
# URL-encoded forms (what a correct broker_url holds)
ENCODED = {
    "enc_at": "ab%40S3cr3tPass", "enc_slash": "ab%2FS3cr3tPass", "enc_colon": "ab%3AS3cr3tPass",
    "enc_percent": "S3cr3t%25Pass", "enc_hash": "ab%23S3cr3tPass", "enc_unicode": "p%C3%A4ssS3cr3tPass",
    "enc_space": "ab%20S3cr3tPass",
}
SHAPES = {**PLAIN, **ENCODED}


def urls(pw: str) -> list[str]:
    return [f"amqp://user:{pw}@rabbit.internal:5672//", f"redis://:{pw}@redis.internal:6379/0",
            f"rediss://default:{pw}@cache.internal:6380/0?ssl_cert_reqs=required",
            f"sentinel://:{pw}@s1.internal:26379;sentinel://:{pw}@s2.internal:26379",
            f"amqps://user:{pw}@rabbit.internal:5671/vhost", f"sqs://AKIAFUZZKEYID0000000:{pw}@",
            f"https://__token__:{pw}@gitlab.internal/api/v4/projects/1/packages/pypi/simple"]


def worker_log(shapes: dict[str, str]) -> str:
    """A Celery worker log whose errors quote each secret in each way a log line does."""
    out = []
    second = 0
    for pw in shapes.values():
        for url in urls(pw):
            ts = f"2024-05-01 10:{second // 60:02d}:{second % 60:02d}"
            second += 1
            out.append(f"[{ts},000: ERROR/MainProcess] consumer: Cannot connect to {url}: "
                       "[Errno 111] Connection refused.")
            out.append(f"[{ts},100: INFO/MainProcess] Connected to {url}")
            out.append(f"[{ts},200: ERROR/MainProcess] consumer: Connection to broker lost. "
                       "Trying to re-establish the connection...")
            out.append("Traceback (most recent call last):")
            out.append('  File "/app/x.py", line 1, in f')
            out.append(f"kombu.exceptions.OperationalError: <Connection: {url} at 0x7f> password={pw} token: {pw}")
        out.append(f"[{ts},300: ERROR/MainProcess] consumer: Cannot connect to amqp://user:**@h//: "
                   f"AccessRefused(403, 'ACCESS_REFUSED - Login was refused using authentication mechanism "
                   f"PLAIN. password={pw}')")
        out.append(f"[{ts},400: CRITICAL/MainProcess] Unrecoverable error: "
                   f"AccessRefused(403, \"PLAIN \\x00user\\x00{pw}\")")
        out.append(f"[{ts},500: ERROR/MainProcess] consumer: Cannot connect to redis://h:6379/0: "
                   f"Error 111 connecting; BROKER_PASSWORD = '{pw}', 'password': '{pw}', --password {pw}, "
                   f"Authorization: Bearer {pw}xxxxxxxx, SECRET_KEY={pw} aws_secret_access_key={pw} api_key={pw}")
        out.append(f"[{ts},600: WARNING/MainProcess] Authorization: Bearer {pw}xyz; X-Api-Key: {pw}")
    return "\n".join(out) + "\n"


def rabbit_log(shapes: dict[str, str]) -> str:
    out = []
    for i, pw in enumerate(shapes.values()):
        ts = f"2024-05-01 10:{i // 60:02d}:{i % 60:02d}"
        out += [
            f"{ts}.000000+00:00 [error] <0.1.{i}> Error on AMQP connection <0.1.{i}> "
            f"(1.2.3.4:1 -> 5.6.7.8:5672, state: starting):",
            f"PLAIN login refused: user 'user' - invalid credentials \\x00user\\x00{pw}",
            f"{ts}.500000+00:00 [warning] <0.2.{i}> closing AMQP connection <0.2.{i}> "
            f"(1.2.3.4:2 -> 5.6.7.8:5672, vhost: '/', user: 'user'):",
            f"client unexpectedly closed TCP connection amqp://user:{pw}@rabbit//",
        ]
    return "\n".join(out) + "\n"


def json_log(shapes: dict[str, str]) -> str:
    rows = []
    for i, pw in enumerate(shapes.values()):
        ts = f"2024-05-01T10:{i // 60:02d}:{i % 60:02d}Z"
        rows += [
            {"ts": ts, "levelname": "ERROR", "message": f"Cannot connect to amqp://user:{pw}@h//: refused",
             "password": pw, "broker_url": f"amqp://user:{pw}@h//",
             "exc_info": f"OperationalError: redis://:{pw}@h:6379/0 reset by peer"},
            {"ts": ts, "message": f"Connection to broker lost redis://default:{pw}@h:6379/0",
             "exc_info": f"ConnectionResetError: amqp://u:{pw}@h// Connection reset by peer password: {pw}"},
        ]
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def _py(pw: str) -> str:
    """``pw`` as the inside of a single-quoted Python string."""
    return pw.replace("\\", "\\\\").replace("'", "\\'")


def config_py(shapes: dict[str, str], *, old_names: bool = False) -> str:
    lines = ["import os", "from celery import Celery"]
    for i, pw in enumerate(shapes.values()):
        p = _py(pw)
        if old_names:
            lines += [f"BROKER_URL = 'amqp://user:{p}@rabbit{i}.internal:5672//'",
                      f"CELERY_RESULT_BACKEND = 'redis://:{p}@redis{i}.internal:6379/1'",
                      f"BROKER_TRANSPORT_OPTIONS = {{'password': '{p}', 'region': 'eu-west-1'}}"]
            continue
        lines += [
            f"broker_url = 'amqp://user:{p}@rabbit{i}.internal:5672//'",
            f"result_backend = 'rediss://default:{p}@cache{i}.internal:6380/0?ssl_cert_reqs=required'",
            f"broker_password = '{p}'",
            f"SECRET_KEY = 'django-insecure-{p}'",
            f"broker_transport_options = {{'sentinel_kwargs': {{'password': '{p}'}}, 'master_name': 'm{i}'}}",
            f"broker_use_ssl = {{'keyfile': '/k.pem', 'certfile': '/c.pem', 'password': '{p}'}}",
            f"brokr_url{i} = 'amqp://user:{p}@typo.internal//'",
        ]
    return "\n".join(lines) + "\n"


def requirements_txt(shapes: dict[str, str]) -> str:
    lines = ["celery==5.4.0", "kombu==5.4.2"]
    for pw in shapes.values():
        lines += [f"--extra-index-url https://__token__:{pw}@gitlab.internal/simple",
                  f"mylib @ git+https://user:{pw}@github.com/x/mylib.git@v1"]
    return "\n".join(lines) + "\n"
