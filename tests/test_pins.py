"""celery-doctor pins: real requirement sets at real upgrade points, the ladder, and bad input."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from celery_doctor.cli import main
from celery_doctor.pins.catalogue import Catalogue
from celery_doctor.pins.checks import assess
from celery_doctor.pins.interface import PinsError
from celery_doctor.pins.ladder import plan
from celery_doctor.pins.readers import read_file, read_interpreter
from celery_doctor.pins.readers.pyproject import poetry_range
from conftest import FIXTURES

PINS = FIXTURES / "pins"
CAT = Catalogue.shipped()


def run(*args: str) -> tuple[int, dict | str]:
    result = CliRunner().invoke(main, ["pins", *args, "--format", "json"])
    try:
        return result.exit_code, json.loads(result.output)
    except json.JSONDecodeError:
        return result.exit_code, result.output


def known_bad_ids(report: dict) -> set[str]:
    return {f["title"].rsplit("[", 1)[1].rstrip("]") for f in report["findings"] if f["title"].endswith("]")}


def sources(report: dict) -> set[str]:
    return {e["text"] for f in report["findings"] for e in f["evidence"] if e["source"] == "source"}


# -- the shipped data ---------------------------------------------------------------------------


def test_release_data_covers_every_line_from_celery_31():
    versions = CAT.versions("celery")
    assert versions[0].startswith("3.1")
    for line in ("3.1.25", "4.1.0", "4.4.7", "5.0.5", "5.2.7", "5.3.6", "5.5.3", "5.6.3"):
        assert CAT.release("celery", line) is not None
    assert {"kombu", "amqp", "billiard", "vine", "redis", "librabbitmq"} <= set(CAT.packages())


def test_release_data_is_what_the_packages_declare():
    # celery 4.4.7's METADATA pins vine==1.3.0 and caps kombu below 4.7
    deps = {r.name: str(r.specifier) for r in CAT.release("celery", "4.4.7").dependencies("3.8")}
    assert deps["vine"] == "==1.3.0"
    assert "<4.7" in deps["kombu"]
    # Requires-Python is kept: celery 5.3 refuses Python 3.7
    assert CAT.release("celery", "5.3.6").supports_python("3.7.9") is False
    assert CAT.release("celery", "5.3.6").supports_python("3.11.7") is True


def test_every_known_bad_entry_names_a_source_and_how_it_was_verified():
    assert len(CAT.known_bad) >= 15
    for entry in CAT.known_bad:
        assert entry.source and all(s.startswith("https://github.com/") for s in entry.source), entry.id
        assert entry.verified and entry.symptom and entry.fixed_in, entry.id
        for name in entry.when:
            if name in CAT.packages():
                spec = SpecifierSet(entry.when[name])
                assert any(spec.contains(v, prereleases=True) for v in CAT.versions(name)), entry.id


# -- readers ------------------------------------------------------------------------------------


def test_requirements_with_include_and_comments():
    env = read_file(str(PINS / "requirements-redis4-celery44.txt"))
    assert env.pins["redis"].version == "4.1.0" and env.pins["redis"].line == 7
    assert env.pins["requests"].version == "2.26.0"  # from the -r include


def test_uv_lock_made_by_uv():
    env = read_file(str(PINS / "uv-celery536" / "uv.lock"))
    assert env.format == "uv.lock"
    assert env.pins["celery"].version == "5.3.6" and env.pins["kombu"].version == "5.3.4"
    assert env.python_spec == ">=3.11"
    assert "redis" in env.pins["celery"].extras


def test_poetry_lock_and_pyproject():
    env = read_file(str(PINS / "poetry-celery44" / "poetry.lock"))
    assert env.format == "poetry.lock" and env.pins["redis"].version == "4.1.0"
    project = read_file(str(PINS / "poetry-celery44" / "pyproject.toml"))
    assert SpecifierSet(project.pins["celery"].specifier) == SpecifierSet(">=4.4.7,<5.0")
    assert "redis" in project.pins["celery"].extras
    assert poetry_range("^0.2.3") == ">=0.2.3,<0.3" and poetry_range("~1.4") == ">=1.4,<1.5"


def test_pipfile_lock():
    env = read_file(str(PINS / "Pipfile.lock"))
    assert env.pins["kombu"].version == "4.2.0" and env.python_spec == "==3.6.*"


def test_probe_reads_this_interpreter_and_imports_the_transport():
    env = read_interpreter(None, "redis://127.0.0.1:6379/0")
    assert env.installed and env.python == ".".join(map(str, sys.version_info[:3]))
    assert env.pins["celery"].version and env.pins["kombu"].version
    assert env.probe["transport"] == {"ok": True, "transport": "kombu.transport.redis.Transport",
                                      "url_scheme": "redis"}


def test_probe_source_parses_with_the_python34_grammar():
    """The probe must run in old interpreters: no f-strings, annotations or walrus (3.4 grammar)."""
    source = (Path(__file__).parent.parent / "src/celery_doctor/probe/pins_probe.py").read_text()
    ast.parse(source, feature_version=(3, 4))
    with pytest.raises(SyntaxError):  # the check has teeth
        ast.parse('x = f"{1}"', feature_version=(3, 4))


# -- checks at real upgrade points --------------------------------------------------------------


def test_2019_project_on_celery43_is_clean_on_its_own_python_but_not_on_311():
    env = read_file(str(PINS / "requirements-2019-celery43.txt"))
    assert [p.title for p in assess(env, CAT, "3.7.5").problems if p.severity == "high"] == []
    on_311 = assess(env, CAT, "3.11.7").problems
    assert any(p.kind == "known_bad" and "billiard" in p.packages for p in on_311)


def test_unpinned_kombu_under_celery41_resolves_into_the_async_break():
    code, report = run("-r", str(PINS / "requirements-celery41-unpinned-kombu.txt"))
    assert code == 1
    assert "celery-lt-4.1.1_kombu-4.2" in known_bad_ids(report)
    assert "https://github.com/celery/kombu/issues/873" in sources(report)
    assert report["data"]["resolved"]["kombu"].startswith("4.")


def test_pipfile_lock_celery41_kombu42():
    code, report = run("-r", str(PINS / "Pipfile.lock"))
    assert code == 1 and "celery-lt-4.1.1_kombu-4.2" in known_bad_ids(report)


def test_freeze_with_vine5_under_celery447():
    _code, report = run("-r", str(PINS / "freeze-celery447-vine5.txt"))
    titles = [f["title"] for f in report["findings"]]
    assert "vine5_celery4" in known_bad_ids(report)
    assert any("outside the range celery 4.4.7 declares (==1.3.0)" in t for t in titles)
    assert "https://github.com/celery/py-amqp/issues/340" in sources(report)


def test_celery31_with_unpinned_redis_picks_redis3_and_breaks():
    _code, report = run("-r", str(PINS / "requirements-celery31-redis.txt"))
    assert "redis3_kombu30" in known_bad_ids(report)


def test_amqp_504():
    _code, report = run("-r", str(PINS / "requirements-celery50-amqp504.txt"))
    assert "amqp504" in known_bad_ids(report)
    assert "https://github.com/celery/kombu/issues/1290" in sources(report)


def test_kombu534_in_uv_lock_hits_the_redis_reconnect_bug_only_for_redis():
    _, report = run("-r", str(PINS / "uv-celery536" / "uv.lock"), "--broker", "redis://127.0.0.1:6379/0")
    assert "kombu-lt-5.4_redis-reconnect" in known_bad_ids(report)
    _code, report = run("-r", str(PINS / "uv-celery536" / "uv.lock"), "--broker", "amqp://guest@127.0.0.1//")
    assert "kombu-lt-5.4_redis-reconnect" not in known_bad_ids(report)


def test_redis8_forced_under_kombu562_is_outside_the_redis_extra():
    _code, report = run("-r", str(PINS / "requirements-redis8-kombu562.txt"), "--broker", "redis://h:6379/0")
    assert any("redis 8.1.0 is outside the range kombu[redis] 5.6.2 declares" in f["title"]
               for f in report["findings"])


def test_redis4_under_celery44_is_inside_every_declared_range():
    env = read_file(str(PINS / "requirements-redis4-celery44.txt"))
    assert [p for p in assess(env, CAT, "3.8.10").problems if p.kind == "declared"] == []


def test_missing_redis_for_a_redis_broker():
    env = read_file(str(PINS / "requirements-celery50-amqp504.txt"))
    problems = assess(env, CAT, None, "redis://127.0.0.1:6379/0").problems
    assert any(p.kind == "transport" and "redis" in p.title for p in problems)


# -- the ladder ---------------------------------------------------------------------------------


def test_ladder_from_celery31_passes_the_bridge_release_first():
    steps = plan(CAT, "3.1.18", "5.5", python="2.7.18")
    assert steps[0].celery.startswith("3.1.2") and steps[0].pins["redis"].startswith("2.")
    assert [s.celery.split(".")[0] for s in steps] == sorted(s.celery.split(".")[0] for s in steps)
    assert steps[-1].celery.startswith("5.5")
    for step in steps:
        assert set(step.pins) >= {"celery", "kombu", "amqp", "billiard", "redis"}
        assert step.python in step.pythons
        # every pinned set satisfies what each of its releases declares, and hits no known-bad entry
        env_text = "\n".join(f"{n}=={v}" for n, v in step.pins.items())
        problems = _assess_text(env_text, step.python + ".0")
        assert [p.title for p in problems if p.severity in ("high", "critical")] == [], step


def _assess_text(text: str, python: str):
    from celery_doctor.pins.readers.requirements_txt import read_requirements

    return assess(read_requirements(Path("<step>"), text), CAT, python).problems


def test_ladder_cli_writes_constraints(tmp_path):
    _code, report = run("-r", str(PINS / "requirements-2019-celery43.txt"), "--to", "5.4",
                       "--write-constraints", str(tmp_path))
    steps = report["data"]["ladder"]
    assert steps[0]["celery"] == "4.4.7" and steps[-1]["celery"].startswith("5.4")
    files = sorted(tmp_path.iterdir())
    assert len(files) == len(steps)
    assert f"celery=={steps[-1]['celery']}" in files[-1].read_text()


def test_constraints_install_with_pip(tmp_path):
    """pip itself accepts the newest step's constraints file (a dry-run resolve, no install)."""
    _code, report = run("-r", str(PINS / "uv-celery536" / "uv.lock"), "--to", "5.6",
                       "--write-constraints", str(tmp_path))
    last = sorted(tmp_path.iterdir())[-1]
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet",
                           "-r", str(last), "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-500:]
    chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"]
              for i in json.loads((tmp_path / "r.json").read_text())["install"]}
    assert chosen["celery"] == report["data"]["ladder"][-1]["celery"]


# -- bad input: one line, exit 2 ----------------------------------------------------------------


@pytest.mark.parametrize("content,name,needle", [
    ("[[package]\nname = ", "poetry.lock", "not a valid poetry.lock"),
    ("version = 1\nrequires-python = '>=3.9'\n[[package]]\nversion = '1'\n", "uv.lock", "lacks name"),
    ("{not json", "Pipfile.lock", "not a valid Pipfile.lock"),
    ("celery==9.9.9\n", "requirements.txt", "celery 9.9.9 does not exist"),
    ("kombo==4.6.4\ncelery==4.3.0\n", "requirements.txt", "did you mean kombu"),
    ("celery=4.3.0\n", "requirements.txt", "not a requirement line"),
    ("django==3.2\n", "requirements.txt", "neither celery nor kombu"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, name, needle):
    path = tmp_path / name
    path.write_text(content)
    result = CliRunner().invoke(main, ["pins", "-r", str(path)])
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args,needle", [
    (["--python", "/nonexistent/python"], "no such interpreter"),
    (["--python", shutil.which("true") or "/bin/true"], "not a Python interpreter"),
    (["-r", "missing.txt"], "no such file"),
    (["-r", str(PINS / "Pipfile.lock"), "--to", "9.9"], "no such celery release"),
    (["-r", str(PINS / "Pipfile.lock"), "--to", "3.1"], "not newer"),
    (["-r", str(PINS / "Pipfile.lock"), "--broker", "kafka://x"], "unsupported URL scheme"),
    (["-r", str(PINS / "Pipfile.lock"), "--check-install"], "needs --to"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, needle):
    result = CliRunner().invoke(main, ["pins", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_text_output_shows_the_ladder():
    result = CliRunner().invoke(main, ["pins", "-r", str(PINS / "Pipfile.lock"), "--to", "4.4"])
    assert result.exit_code == 1
    assert "Upgrade ladder" in result.output and "4.4.7" in result.output
    assert "kombu/issues/873" in result.output


def test_pins_error_is_a_doctor_error():
    with pytest.raises(PinsError):
        plan(CAT, "4.4.7", "4.4.7")


def test_ladder_with_an_amqp_broker_keeps_contemporaneous_kombu():
    """The Redis-only reconnect bug does not push an AMQP user's kombu forward; it still plans every step."""
    steps = plan(CAT, "4.1.0", "5.7", python="3.6.15", broker="amqp")
    by_celery = {s.celery: s for s in steps}
    assert by_celery["5.2.7"].pins["kombu"].startswith("5.2.")
    redis_steps = plan(CAT, "4.1.0", "5.7", python="3.6.15", broker="redis")
    assert {s.celery: s for s in redis_steps}["5.2.7"].pins["kombu"] >= "5.4"


def test_ladder_notes_follow_the_moves_the_input_really_makes() -> None:
    """'redis-py 2 -> 3' only where redis crosses 2 -> 3; step 1 says what moves from the input;
    a step that lowers a package says so."""
    from celery_doctor.pipeline import check_pins

    modern = check_pins(str(PINS / "requirements-2019-celery43.txt"), None, "5.7", None, False, None).data["ladder"]
    notes = [c for step in modern for c in step["changes"]]
    assert not any(c.startswith("redis-py 2 -> 3") for c in notes)  # the input already has redis 3.3.8
    assert modern[0]["changes"][0].startswith("Moves celery 4.3.0 -> 4.4.7;") and "redis 3.3.8 -> 3.5.3" in \
        modern[0]["changes"][0]
    lowered = [c for step in modern for c in step["changes"] if "DOWNGRADE" in c]
    assert lowered  # the data steps redis 5.3.1 back to 5.2.1 for celery 5.5.3
    for line in lowered:
        old, new = line.split("DOWNGRADE")[0].rsplit(" (", 1)[0].rsplit("; ", 1)[-1].split(" ", 1)[1].split(" -> ")
        assert Version(new) < Version(old)
    old_redis = check_pins(str(PINS / "requirements-celery31-redis.txt"), None, "5.7", None, False, None)
    crossing = [step for step in old_redis.data["ladder"]
                if any(c.startswith("redis-py 2 -> 3") for c in step["changes"])]
    assert len(crossing) == 1
    before, after = crossing[0]["changes"][0].split("redis ", 1)[1].split(";")[0].rstrip(".").split(" -> ")
    assert before.startswith("2.") and after.split(" ")[0].startswith("3.")


def test_celery_doctors_own_dependencies_are_not_the_users() -> None:
    """Run in celery-doctor's own environment, pins says so and does not blame the user for them."""
    from celery_doctor.model import Severity
    from celery_doctor.pipeline import check_pins

    report = check_pins(None, None, None, None, False, None)
    assert any("also holds celery-doctor" in w and "libcst" in w for w in report.warnings)
    ours = [f for f in report.findings if "celery-doctor's own dependency" in f.title]
    for finding in ours:
        assert finding.severity == Severity.INFO
    assert not any("pyyaml" in f.title and f.severity.rank >= Severity.MEDIUM.rank for f in report.findings)
