"""No secret in any output: every shape of secret, planted in every input, checked in every
format, on stdout, stderr and --output files, on the success and the error paths.

The commands run in-process (click's runner, separate stdout and stderr) so the whole matrix
stays fast; test_cli covers the installed console script itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from celery_doctor.cli import main
from celery_doctor.redact import redact, redact_data
from secret_shapes import (
    MARKER,
    SHAPES,
    config_py,
    json_log,
    rabbit_log,
    requirements_txt,
    urls,
    worker_log,
)

FORMATS = ("text", "json", "markdown", "html")


def run(args: list[str], tmp_path: Path, output: bool = False) -> tuple[int, str]:
    """Run one command; return its exit status and everything it wrote anywhere."""
    out_file = tmp_path / "report.out"
    if output:
        args = [*args, "--output", str(out_file)]
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    written = out_file.read_text(encoding="utf-8", errors="replace") if output and out_file.exists() else ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: escaped {type(result.exception).__name__}: {redact(str(result.exception))}")
    return result.exit_code, result.stdout + "\n" + result.stderr + "\n" + written


def leaks(text: str) -> list[str]:
    return [line[:160] for line in text.splitlines() if MARKER in line]


# -- the redaction rules themselves ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_url_form_keeps_no_fragment_of_the_password(name: str) -> None:
    pw = SHAPES[name]
    for url in urls(pw):
        for text in (url, f"Cannot connect to {url}: [Errno 111] Connection refused.", f"'{url}'",
                     f'{{"broker_url": "{url}"}}', f"<Connection: {url} at 0x7f>"):
            assert MARKER not in redact(text), (name, text, redact(text))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_key_value_form_is_masked_to_the_real_end_of_the_value(name: str) -> None:
    pw = SHAPES[name]
    escaped = pw.replace("\\", "\\\\").replace("'", "\\'")
    forms = [f"password={pw}", f"password={pw} next=1", f"token: {pw}", f"BROKER_PASSWORD = '{escaped}'",
             f"{{'password': '{escaped}'}}", f'{{"password": {redact_json(pw)}}}', f"--password {pw}, x",
             f"Authorization: Bearer {pw}xxxxxxxx", f"api_key={pw};region=x",
             f"PLAIN \\x00user\\x00{pw}", f"AccessRefused(403, \"PLAIN \\x00user\\x00{pw}\")",
             f"dict(password='{escaped}', region='eu')"]
    if " " not in pw:  # a bare Bearer token is token68 (RFC 6750): it ends at the first space
        forms.append(f"Bearer {pw}zzzzzz")
    for text in forms:
        assert MARKER not in redact(text), (name, text, redact(text))


def redact_json(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def test_masking_keeps_what_is_not_secret() -> None:
    assert redact("amqp://guest:guest@10.0.0.5:5672//") == "amqp://guest:***@10.0.0.5:5672//"
    assert redact("redis://10.0.0.5:6379/0 timeout 0") == "redis://10.0.0.5:6379/0 timeout 0"
    assert redact("Connected to amqp://guest:**@127.0.0.1:5672//") == "Connected to amqp://guest:**@127.0.0.1:5672//"
    assert redact("sentinel://:a@b@s1:26379;sentinel://:c@s2:26379") == "sentinel://:***@s1:26379;sentinel://:***@s2:26379"
    assert redact("password=${REDIS_PASSWORD}") == "password=${REDIS_PASSWORD}"
    assert redact("'password': 'x;y', 'region': 'eu'") == "'password': '***', 'region': 'eu'"
    assert redact_data({"password": "S3cr3t;x", "n": 1}) == {"password": "***", "n": 1}


# -- every input, command, format and channel -------------------------------------------------

@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("planted")
    (d / "worker.log").write_text(worker_log(SHAPES), encoding="utf-8")
    (d / "rabbit.log").write_text(rabbit_log(SHAPES), encoding="utf-8")
    (d / "app.jsonl").write_text(json_log(SHAPES), encoding="utf-8")
    (d / "celeryconfig.py").write_text(config_py(SHAPES), encoding="utf-8")
    (d / "old_celeryconfig.py").write_text(config_py(SHAPES, old_names=True), encoding="utf-8")
    (d / "requirements.txt").write_text(requirements_txt(SHAPES), encoding="utf-8")
    return d


@pytest.mark.parametrize("fmt", FORMATS)
def test_logs_config_and_diagnose_print_no_secret(planted: Path, tmp_path: Path, fmt: str) -> None:
    d = planted
    commands = [
        ["logs", str(d / "worker.log"), str(d / "rabbit.log"), str(d / "app.jsonl")],
        ["config", str(d / "celeryconfig.py")],
        ["config", str(d / "old_celeryconfig.py"), "--from", "3.1"],
        ["diagnose", "--logs", str(d / "worker.log"), "--logs", str(d / "rabbit.log"),
         "--config", str(d / "celeryconfig.py")],
        ["pins", "-r", str(d / "requirements.txt"), "--to", "5.5"],
    ]
    for args in commands:
        for output in (False, True):
            code, text = run([*args, "--format", fmt], tmp_path, output)
            assert code in (0, 1, 2), (args, code)
            assert not leaks(text), (args, fmt, output, leaks(text)[:3])


def test_migrate_diff_and_json_print_no_secret(planted: Path, tmp_path: Path) -> None:
    for fmt in ("diff", "json"):
        code, text = run(["config", "migrate", str(planted / "old_celeryconfig.py"), "--format", fmt], tmp_path)
        assert code == 0, text[-300:]
        assert "broker_url" in text  # the rename happened
        assert not leaks(text), leaks(text)[:3]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_broker_error_paths_print_no_secret(name: str, tmp_path: Path) -> None:
    """Bad schemes, bad ports, bad databases, refused connections, bad management URLs."""
    pw = SHAPES[name]
    cases = [
        ["broker", f"amqpx://user:{pw}@127.0.0.1//"],
        ["broker", f"amqp://user:{pw}@127.0.0.1:1//", "--timeout", "1"],
        ["broker", f"amqp://user:{pw}@127.0.0.1:99999//"],
        ["broker", f"redis://:{pw}@127.0.0.1:6379/abc"],
        ["broker", f"redis://:{pw}@127.0.0.1:1/0", "--timeout", "1"],
        ["broker", f"sentinel://:{pw}@127.0.0.1:1;sentinel://:{pw}@127.0.0.1:2", "--timeout", "1"],
        ["broker", f"amqp://user:{pw}@[::1:5672//"],
        ["broker", "amqp://guest:guest@127.0.0.1:1//", "--timeout", "1", "--management",
         f"http://user:{pw}@127.0.0.1:1"],
        ["diagnose", "--broker", f"amqp://user:{pw}@127.0.0.1:1//", "--timeout", "1"],
        ["pins", "--broker", f"amqpx://user:{pw}@h//"],
    ]
    for args in cases:
        for fmt in ("text", "json"):
            code, text = run([*args, "--format", fmt], tmp_path, output=True)
            assert code in (0, 1, 2), (args, code, text[-300:])
            assert not leaks(text), (args, fmt, leaks(text)[:3])


@pytest.mark.parametrize("name", ["slash_after", "question_after", "hash_after", "space_after"])
def test_repro_refuses_an_unencoded_password_without_printing_any_of_it(name: str, tmp_path: Path) -> None:
    code, text = run(["repro", "--broker", f"amqp://user:{SHAPES[name]}@127.0.0.1:5672//", "--duration", "1"],
                     tmp_path)
    assert code == 2 and "percent-encode" in text
    assert not leaks(text) and "ab" not in text.split("error:", 1)[1].split("@")[0].replace("amqp://user:***", "")


def test_an_events_catalogue_signature_is_not_taken_for_a_secret() -> None:
    from celery_doctor.redact import redact

    # the JSON report's event field "signature" names the catalogue line; a real signature is masked
    assert redact('"signature": "celery.consumer.connection_lost"') == '"signature": "celery.consumer.connection_lost"'
    assert "abcDEF123" not in redact('"signature": "abcDEF123+/=="')
    assert "d41d8cd98f00b204" not in redact("signature=d41d8cd98f00b204e9800998ecf8427e")


def test_the_cheap_word_test_holds_every_secret_key_the_patterns_name() -> None:
    """redact skips its key=value and Authorization scans on text without one of a few words: every
    alternative of those patterns must hold one, or a key added to a pattern would go unmasked."""
    import re

    from celery_doctor import redact as module

    keys = re.sub(r"\[[^]]*\]\??|\?", "", module._SECRET_KEY).strip("(?:)").split("|")
    dashed = re.search(r"--\(\?i:([^)]*)\)", module._KEY_VALUE.pattern)
    assert dashed is not None and len(keys) > 10
    for key in [*keys, *dashed.group(1).split("|")]:
        assert any(word in key.casefold() for word in module._KEY_WORDS), key
    auth = re.search(r"\(\?i:\(\?P<head>\\b\(\?:([^)]*)\)", module._AUTH_HEADER.pattern)
    assert auth is not None
    for scheme in auth.group(1).split("|"):
        assert any(word in scheme for word in module._AUTH_WORDS), scheme
    assert redact("Passwd = 'S3cr3t'") == "Passwd = '***'"
    assert "abcdef123456" not in redact("Authorization: Bearer abcdef123456")


def test_the_json_reports_events_are_redacted_as_the_generic_passes_would(tmp_path: Path) -> None:
    """The JSON report writes each event field by field, redacting as it goes: the same document,
    key for key, as converting it generically and redacting every string of it, on logs where
    every shape of secret is planted (and an event's detail, where a rule may keep values)."""
    from celery_doctor import pipeline
    from celery_doctor.report import json as json_report

    (tmp_path / "worker.log").write_text(worker_log(SHAPES))
    (tmp_path / "broker.log").write_text(rabbit_log(SHAPES))
    report = pipeline.analyse_logs([str(tmp_path / "worker.log"), str(tmp_path / "broker.log")])
    assert len(report.events) > 10 and any(e.detail for e in report.events)
    for event in report.events:
        generic = redact_data(json_report.to_jsonable(event))
        if not generic["detail"]:
            del generic["detail"]
        assert json_report._event(event) == generic
        assert list(json_report._event(event)) == list(generic)  # the same keys in the same order
