"""A refused login pasted as a bare exception, with no log header or time, is still a refused login
(rule CD-L05), less confident than one the worker's dated log shows failing every attempt.
Exception texts as py-amqp (amqp/exceptions.py, the broker's 403 reply) and redis-py
(redis/exceptions.py, Redis 6+ ACL replies) print them."""
# ruff: noqa: E501  (pasted lines are kept verbatim)

from __future__ import annotations

from pathlib import Path

import pytest

from celery_doctor.model import Category
from celery_doctor.pipeline import analyse_logs

AMQP_TRACEBACK = """Traceback (most recent call last):
  File "/usr/local/lib/python3.9/site-packages/kombu/connection.py", line 448, in _reraise_as_library_errors
    yield
  File "/usr/local/lib/python3.9/site-packages/amqp/connection.py", line 639, in _on_close
    raise error_for_code(reply_code, reply_text,
amqp.exceptions.AccessRefused: (0, 0): (403) ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.
"""
REDIS_AUTH = "redis.exceptions.AuthenticationError: invalid username-password pair or user is disabled.\n"
REDIS_WRONGPASS = "> redis.exceptions.ResponseError: WRONGPASS invalid username-password pair or user is disabled.\n"
VHOST_DOWN = "amqp.exceptions.InternalError: (0, 0): (541) INTERNAL_ERROR - access to vhost '/' refused for user 'app': vhost '/' is down\n"


@pytest.mark.parametrize(("text", "url"), [
    (AMQP_TRACEBACK, "amqp://"), (REDIS_AUTH, "redis://"), (REDIS_WRONGPASS, "redis://"),
])
def test_a_pasted_refusal_is_auth_with_the_brokers_own_url(tmp_path: Path, text: str, url: str) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(text)
    report = analyse_logs([str(path)])
    top = report.findings[0]
    assert top.category == Category.AUTH_OR_PERMISSIONS and top.rule_id == "CD-L05"
    assert 0.5 < top.confidence < 0.95  # text alone: below the dated rule's 0.95
    assert top.fix is not None and url in (top.fix.snippet or "")
    assert any("ACCESS_REFUSED" in e.text or "username-password" in e.text for e in top.evidence)


def test_a_vhost_that_is_down_is_not_a_refused_login(tmp_path: Path) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(VHOST_DOWN)
    report = analyse_logs([str(path)])
    assert all(f.category != Category.AUTH_OR_PERMISSIONS for f in report.findings)
