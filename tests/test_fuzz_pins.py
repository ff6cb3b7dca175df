"""Property tests for the pins readers: any requirement or lock file, however malformed, is read
or refused with PinsError (one line, exit 2), never another exception, never a hang.

Documents are generated with the real formats' keys holding values of every shape (a string
where a table belongs, a number where a name belongs...), and the shipped fixtures are mutated
byte by byte. Budgets are small so the suite stays fast; scripts/fuzz.py runs the long campaign.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celery_doctor.cli import main
from celery_doctor.pins.interface import PinsError
from celery_doctor.pins.readers import read_file

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLI = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FIXTURES = Path(__file__).parent / "fixtures" / "pins"

names = st.sampled_from(["celery", "kombu", "amqp", "vine", "billiard", "redis", "librabbitmq", "python", "x", ""])
versions = st.one_of(st.sampled_from(["5.4.0", "4.4.7", "^5.3", "~4.1", ">=5,<6", "*", "^", "==", "1e309"]),
                     st.text(max_size=8), st.integers(), st.floats(allow_nan=False, allow_infinity=False))
scalars = st.one_of(st.text(max_size=10), st.integers(-10**20, 10**20), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False), versions)
values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                     st.dictionaries(st.one_of(names, st.text(max_size=6)), inner, max_size=3)),
    max_leaves=8)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(valid, valid, values)


requirement = st.one_of(
    st.builds(lambda n, v: f"{n}{v}", names, st.sampled_from(["==5.4.0", ">=4", "", "[redis]==5.4"])),
    st.text(max_size=12))
package = st.fixed_dictionaries({"name": maybe(names), "version": maybe(versions)}, optional={
    "dependencies": maybe(st.dictionaries(names, maybe(st.one_of(versions, st.fixed_dictionaries(
        {"version": versions}, optional={"extras": maybe(st.lists(st.text(max_size=5)))})))) | st.lists(values)),
    "source": maybe(st.dictionaries(st.sampled_from(["registry", "git", "editable", "virtual"]), st.text(max_size=5))),
    "extras": values,
})
pyproject = st.fixed_dictionaries({}, optional={
    "project": maybe(st.fixed_dictionaries({}, optional={
        "dependencies": maybe(st.lists(requirement, max_size=4)),
        "optional-dependencies": maybe(st.dictionaries(st.text(max_size=4), maybe(st.lists(requirement)))),
        "requires-python": maybe(st.sampled_from([">=3.9", "^3.11", "abc"]))})),
    "tool": maybe(st.fixed_dictionaries({"poetry": maybe(st.fixed_dictionaries({}, optional={
        "dependencies": maybe(st.dictionaries(names, maybe(versions))),
        "group": maybe(st.dictionaries(st.text(max_size=4), maybe(st.fixed_dictionaries(
            {"dependencies": maybe(st.dictionaries(names, values))}))))}))})),
    "dependency-groups": values,
})
lock = st.fixed_dictionaries({"package": maybe(st.lists(package, max_size=4))}, optional={
    "metadata": maybe(st.fixed_dictionaries({"python-versions": maybe(versions)})),
    "requires-python": maybe(versions), "version": values})
pipfile = st.fixed_dictionaries({"default": maybe(st.dictionaries(names, maybe(st.fixed_dictionaries(
    {"version": maybe(versions)}, optional={"extras": values}))))}, optional={
    "_meta": maybe(st.fixed_dictionaries({"requires": maybe(st.dictionaries(
        st.sampled_from(["python_version", "python_full_version"]), maybe(versions)))})),
    "develop": values})


def toml(value: Any) -> str:
    """A tiny TOML writer for the generated documents (inline tables and arrays only)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml(v)}" for k, v in value.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in doc.items())


def read_or_refuse(path: Path) -> None:
    try:
        env = read_file(str(path))
    except PinsError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    for pin in env.pins.values():
        assert isinstance(pin.name, str) and (pin.version is None or isinstance(pin.version, str))


@FAST
@given(doc=pyproject)
def test_any_pyproject_is_read_or_refused(tmp_path_factory: Any, doc: dict[str, Any]) -> None:
    path = tmp_path_factory.mktemp("p") / "pyproject.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    read_or_refuse(path)


@FAST
@given(doc=lock, fmt=st.sampled_from(["poetry.lock", "uv.lock"]))
def test_any_toml_lock_is_read_or_refused(tmp_path_factory: Any, doc: dict[str, Any], fmt: str) -> None:
    path = tmp_path_factory.mktemp("l") / fmt
    path.write_text(toml_document(doc), encoding="utf-8")
    read_or_refuse(path)


@FAST
@given(doc=st.one_of(pipfile, values))
def test_any_pipfile_lock_is_read_or_refused(tmp_path_factory: Any, doc: Any) -> None:
    path = tmp_path_factory.mktemp("j") / "Pipfile.lock"
    path.write_text(json.dumps(doc), encoding="utf-8")
    read_or_refuse(path)


@FAST
@given(lines=st.lists(st.one_of(requirement, st.sampled_from(
    ["-r other.txt", "-r missing.txt", "-c other.txt", "-e git+https://x/y#egg=celery", "--hash=sha256:0",
     "celery==5.4.0; python_version ~= 'abc'", "celery==" + "9" * 5000, "kombu>=", "celery @ file:///x"])),
    max_size=6), other=st.binary(max_size=40))
def test_any_requirements_file_is_read_or_refused(tmp_path_factory: Any, lines: list[str], other: bytes) -> None:
    d = tmp_path_factory.mktemp("r")
    (d / "other.txt").write_bytes(other)
    (d / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    read_or_refuse(d / "requirements.txt")


def _fixture_texts() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file() and path.stat().st_size < 200_000:
            name = path.name if path.name in ("poetry.lock", "uv.lock", "Pipfile.lock", "pyproject.toml") \
                else "requirements.txt"
            out.append((name, path.read_bytes()))
    return out


@st.composite
def mutated_fixture(draw: st.DrawFn) -> tuple[str, bytes]:
    name, data = draw(st.sampled_from(_fixture_texts()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        chunk = draw(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"=", b"\n", b"\x00", b"\xe9", b"^", b"1e309",
                                      b"[[package]]\n", b"name = 1\n", b"-r x\n", b"9" * 50]))
        if op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif op == "insert":
            data = data[:at] + chunk + data[at:]
        elif op == "replace":
            data = data[:at] + chunk + data[at + len(chunk):]
        else:
            data = data[:at] + data[at:at + 200] + data[at:]
    return name, data


@CLI
@given(case=mutated_fixture(), fmt=st.sampled_from(["text", "json"]))
def test_mutated_fixtures_through_the_whole_pins_command(tmp_path_factory: Any, case: tuple[str, bytes],
                                                         fmt: str) -> None:
    name, data = case
    path = tmp_path_factory.mktemp("m") / name
    path.write_bytes(data)
    result = CliRunner().invoke(main, ["pins", "-r", str(path), "--format", fmt])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr[-400:])
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    elif fmt == "json":
        json.loads(result.stdout, parse_constant=_reject)


def _reject(token: str) -> None:
    raise AssertionError(f"not strict JSON: {token}")
