"""Property tests for the other inputs: URLs and key=value secrets (redaction), logs, configs
and migrate. Each asserts the promises of docs/fuzz.md: no exception but the stage's own
error (exit 2, one line), strict JSON, no planted secret, and a migrated file that parses and
migrates to itself. Small example budgets; scripts/fuzz.py runs the long campaign.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celery_doctor.cli import main
from celery_doctor.redact import redact
from celery_doctor.settings.migrate import migrate_source

FAST = settings(max_examples=150, deadline=None)
CLI = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ROOT = Path(__file__).resolve().parent.parent
MARK = "S3cr3t"

# a password is any line of text (no newline; "://" would start another URL in free text)
password_part = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                        max_size=8).filter(lambda s: "://" not in s)


@st.composite
def passwords(draw: st.DrawFn) -> str:
    pw = draw(password_part) + MARK + draw(password_part)
    return pw if "://" not in pw else MARK


@FAST
@given(pw=passwords(), scheme=st.sampled_from(["amqp", "amqps", "redis", "rediss", "sentinel", "https", "sqs"]),
       user=st.sampled_from(["", "user", "default", "__token__"]),
       host=st.sampled_from(["rabbit.internal:5672//", "127.0.0.1:6379/0", "[::1]:5671/vh", "h"]),
       wrap=st.sampled_from(["{}", "Cannot connect to {}: refused.", "'{}'", '"broker_url": "{}"',
                             "<Connection: {} at 0x7f>"]))
@example(pw="ab@S3cr3t", scheme="amqp", user="user", host="h//", wrap="{}")
# the key=value pass masks "0" (the value of a key named like a token), and "*** S3cr3t=" must not
# then pass for a password already masked
@example(pw="0 S3cr3t=", scheme="amqp", user="__token__", host="rabbit.internal:5672//", wrap="{}")
def test_no_url_password_survives_redaction(pw: str, scheme: str, user: str, host: str, wrap: str) -> None:
    text = wrap.format(f"{scheme}://{user}:{pw}@{host}")
    assert MARK not in redact(text), (text, redact(text))


@FAST
@given(pw=passwords(), key=st.sampled_from(["password", "BROKER_PASSWORD", "token", "api_key", "secret",
                                            "aws_secret_access_key", "redis_password"]),
       quote=st.sampled_from(["'", '"']), sep=st.sampled_from(["=", ": ", " = ", "':", '": ']))
def test_no_quoted_secret_value_survives_redaction(pw: str, key: str, quote: str, sep: str) -> None:
    inner = pw.replace("\\", "\\\\").replace(quote, "\\" + quote)  # as repr(), json.dumps or Python source quote it
    text = f"{key}{sep}{quote}{inner}{quote}, region='eu'"
    assert MARK not in redact(text), (text, redact(text))


@FAST
@given(pw=passwords().filter(lambda p: not any(c.isspace() for c in p)),
       key=st.sampled_from(["password", "token", "PASSWORD", "api-key", "--password"]),
       tail=st.sampled_from(["", " next=1", ", x: 2", "; region=eu", ")"]))
def test_no_unquoted_secret_value_survives_redaction(pw: str, key: str, tail: str) -> None:
    text = f"error: {key}{' ' if key.startswith('--') else '='}{pw}{tail}"
    assert MARK not in redact(text), (text, redact(text))


@FAST
@given(text=st.text(max_size=200))
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def _fixture_logs() -> list[bytes]:
    out = []
    for folder in ("examples", "tests/fixtures"):
        for path in sorted((ROOT / folder).rglob("*.log"))[:12]:
            out.append(path.read_bytes()[:20_000])
    return out or [b"[2024-05-01 10:00:00,000: ERROR/MainProcess] consumer: Connection to broker lost.\n"]


@st.composite
def mutated_log(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(_fixture_logs()))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        chunk = draw(st.sampled_from([b"9" * 40, b"\x00", b"\xff\xfe", b"-13-", b"23:59:60", b"+99:00", b"\n",
                                      b"Traceback (most recent call last):\n", b"succeeded in 1e999s",
                                      b"timeout: " + b"9" * 5000 + b"s", b'{"ts": 1e20}\n', b"[" * 3000]))
        op = draw(st.sampled_from(["insert", "replace", "delete"]))
        if op == "insert":
            data = data[:at] + chunk + data[at:]
        elif op == "replace":
            data = data[:at] + chunk + data[at + len(chunk):]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 200)):]
    return data


def _strict(text: str) -> Any:
    def reject(token: str) -> None:
        raise AssertionError(f"not strict JSON: {token}")
    return json.loads(text, parse_constant=reject)


@CLI
@given(data=mutated_log(), fmt=st.sampled_from(["json", "text", "html"]))
def test_mutated_logs_give_an_answer_or_one_line(tmp_path_factory: Any, data: bytes, fmt: str) -> None:
    path = tmp_path_factory.mktemp("log") / "worker.log"
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["logs", str(path), "--format", fmt])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), result.stderr[-300:]
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1
    elif fmt == "json":
        _strict(result.stdout)


names = st.sampled_from(["BROKER_URL", "CELERY_RESULT_BACKEND", "BROKER_HEARTBEAT", "CELERYD_PREFETCH_MULTIPLIER",
                         "broker_url", "CELERY_ACKS_LATE", "BROKER_TRANSPORT_OPTIONS", "x"])
exprs = st.recursive(
    st.one_of(st.integers(-10, 10**6).map(str), st.sampled_from(["'amqp://u:S3cr3t@h//'", "None", "True", "1e309",
                                                                  "os.environ.get('X', 'y')", "b'b'", "f'{x=}'"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
                            st.tuples(inner, inner).map(lambda ab: f"({ab[0]} + {ab[1]})"),
                            st.tuples(names, inner).map(lambda kv: "{" + f"'{kv[0]}': {kv[1]}" + "}"),
                            st.tuples(names, inner).map(lambda kv: f"dict({kv[0]}={kv[1]})")),
    max_leaves=12)
statements = st.one_of(
    st.tuples(names, exprs).map(lambda t: f"{t[0]} = {t[1]}"),
    st.tuples(names, exprs).map(lambda t: f"app.conf.update({t[0]}={t[1]})"),
    st.tuples(names, names).map(lambda t: f"print(f'{{{t[0]}=}}', {t[1]})"),
    st.sampled_from(["import os", "from celery import Celery", "app = Celery('p')",
                     "class Config:\n    BROKER_URL = 'x'", "# comment", "if True:\n    BROKER_HEARTBEAT = 10"]))


@FAST
@given(lines=st.lists(statements, min_size=1, max_size=8))
def test_migrate_output_parses_and_migrating_again_changes_nothing(lines: list[str]) -> None:
    source = "import os\n" + "\n".join(lines) + "\n"
    try:
        ast.parse(source)
    except SyntaxError:
        return  # not Python: the CLI says so (tested with the CLI below)
    first = migrate_source(source, "celeryconfig.py", classes=frozenset({"Config"}))
    ast.parse(first.migrated)
    again = migrate_source(first.migrated, "celeryconfig.py", classes=frozenset({"Config"}))
    assert again.migrated == first.migrated


@CLI
@given(lines=st.lists(statements, min_size=1, max_size=8), fmt=st.sampled_from(["json", "text"]))
def test_any_config_gives_a_report_or_one_line(tmp_path_factory: Any, lines: list[str], fmt: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "celeryconfig.py"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for args in (["config", str(path), "--format", fmt], ["config", "migrate", str(path), "--format",
                                                           "json" if fmt == "json" else "diff"]):
        result = CliRunner().invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code in (0, 1, 2), result.stderr[-300:]
        assert MARK not in result.stdout + result.stderr
        if result.exit_code == 2:
            assert len(result.stderr.strip().splitlines()) == 1
        elif fmt == "json":
            _strict(result.stdout)
