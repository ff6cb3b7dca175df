"""The scan core: the matcher engines agree, lifecycle lines are counted not stored, the report
does not grow with the log, a traceback an application logged is not a connection failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from celery_doctor.ingest import matcher, read_logs, signatures
from conftest import FIXTURES, console_script

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import shapes  # the bench's generators: the same shapes the bench measures


def test_both_engines_find_the_same_lines() -> None:
    """Hyperscan and the stdlib fallback must flag the same lines of a real broker log."""
    data = (FIXTURES / "rabbitmq-short-lived-publishers" / "broker.log").read_bytes() * 3
    data += b"2026-11-23 22:34:43.9+00:00 [error] <0.1.0> access to vhost '/' refused for user 'x'\n"
    exprs = tuple(sorted(set(signatures.expressions("rabbitmq")), key=repr))
    fast = matcher.build(exprs)
    slow = matcher.FindMatcher(exprs)

    def lines(found: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return sorted({(data.count(b"\n", 0, at), ident) for at, ident in found})

    assert matcher.ENGINE.startswith("hyperscan")  # the dependency installs on this platform
    assert lines(fast.hits(data)) == lines(slow.hits(data))
    assert len(lines(fast.hits(data))) > 10
    # search strings chosen on a sample (rare prefixes, the literals a pattern's matches hold): the same lines
    chosen = matcher.build(exprs, data[: len(data) // 2])
    assert lines(chosen.hits(data)) == lines(slow.hits(data))
    # and with a pattern that never matches added, as the window scan may choose (faster engine)
    literals = tuple(e for e in exprs if e[1] is None)
    plain, never = matcher.HyperscanMatcher(literals, data), matcher.HyperscanMatcher(literals, data)
    never._db = matcher._compiled([*[matcher._escape(lit) for lit, _ in literals], matcher.NEVER], keep=False)
    never._how.append((-1, matcher.NONE, None, 0))
    never._plan()  # as _choose does after swapping the search strings
    assert never.hits(data + b"\0\x01" + b"12\x02") == plain.hits(data + b"\0\x01" + b"12\x02") != []
    assert lines(chosen.hits(data, 1000, len(data) - 1000)) == lines(slow.hits(data, 1000, len(data) - 1000))
    granted = [e for e in exprs if e[0] == b"access to vhost"]
    assert granted and granted[0][1] is not None  # the pattern, not the literal: 'granted access to vhost'


def test_found_says_what_the_hits_say() -> None:
    """``found`` (the first hit stops the search) agrees with the hits on both engines, with
    literals only and with a pattern among them, over every slice of a real log's bytes."""
    data = (FIXTURES / "rabbitmq-short-lived-publishers" / "broker.log").read_bytes()
    for exprs in (((b"authenticated", None), (b"closing AMQP", None)), tuple(signatures.expressions("rabbitmq"))):
        engines = (matcher.build(exprs), matcher.FindMatcher(exprs))
        answers = [[engine.found(data, at, at + 90) for at in range(0, len(data), 37)] for engine in engines]
        hits = [bool(engines[1].hits(data, at, at + 90)) for at in range(0, len(data), 37)]
        assert answers[0] == answers[1] == hits
        assert True in hits and False in hits


def test_a_shared_cover_finds_what_the_literals_find(monkeypatch: Any) -> None:
    """The cover of short pieces (one search-string set the window scan may choose) flags the same
    lines as the stdlib fallback, inside whole buffers and inside ranges cut anywhere (a literal that
    crosses the range's edge is not the range's), on real broker and worker logs."""
    for family, logs in (("rabbitmq", ["rabbitmq-short-lived-publishers/broker.log", "rabbitmq-idle-cut/broker.log"]),
                         ("celery", ["rabbitmq-idle-cut/worker.log", "redis-server-timeout/worker.log"])):
        data = b"".join((FIXTURES / name).read_bytes() for name in logs) * 5
        exprs = tuple(sorted(set(signatures.expressions(family, counted=False)), key=repr))
        slow = matcher.FindMatcher(exprs)
        literals = [lit for lit, pattern in exprs if pattern is None]
        assert matcher.shared_cover(literals, data) is not None
        monkeypatch.setattr(matcher, "_fastest", lambda dbs, sample: len(dbs) - 1)  # the cover, whatever the timing
        covered = matcher.HyperscanMatcher(exprs, data, timing=data)
        monkeypatch.undo()
        assert any(kind == matcher.COVER for _, kind, _, _ in covered._how)
        assert covered.hits(data) == slow.hits(data) != []
        for start, end in ((1, len(data) - 1), (len(data) // 3, len(data) // 2), (777, 778 + len(data) // 7)):
            assert covered.hits(data, start, end) == slow.hits(data, start, end), (family, start, end)
        # capped, as a big input's windows ask: each engine lists every expression's first hits, the
        # same ones, and counts the rest; an exempt expression keeps all of its hits
        every = slow.hits(data)
        for engine in (covered, slow, plain := matcher.HyperscanMatcher(exprs, data)):
            counted: dict[int, int] = {}
            listed = engine.hits(data, 0, len(data), 2, counted)
            assert listed == [hit for k, hit in enumerate(every) if sum(h[1] == hit[1] for h in every[:k]) < 2]
            assert len(listed) + sum(counted.values()) == len(every) and counted, engine
            exempt = frozenset(counted)
            assert engine.hits(data, 0, len(data), 2, counted, exempt) == every
            # with keep, an expression past the cap lists only its first keep; the others all theirs
            few: dict[int, int] = {}
            cut = engine.hits(data, 0, len(data), 2, few, keep=1)
            assert [hit for hit in cut if hit[1] in few] == [hit for k, hit in enumerate(every) if hit[1] in few
                                                            and all(h[1] != hit[1] for h in every[:k])]
            assert len(cut) + sum(few.values()) == len(every) and set(few) == exempt
        assert plain._how != covered._how


def test_version_names_the_matcher() -> None:
    out = subprocess.run([console_script(), "--version"], capture_output=True, text=True, check=True).stdout
    assert "log matcher: hyperscan" in out


def test_broker_churn_is_counted_not_stored(tmp_path: Path) -> None:
    """RabbitMQ 3.9+ churn: accept/authenticate/close lines become a load curve; only the
    injected missed-heartbeat closes (and the few lines around them) become events."""
    truth = shapes.generate("rabbitmq", 4, tmp_path / "rabbit.log")
    result = read_logs([str(tmp_path / "rabbit.log")])
    kinds = [e.kind.value for e in result.events]
    assert kinds.count("heartbeat_missed_client") == truth["injected"] > 0
    lines = (tmp_path / "rabbit.log").read_bytes().count(b"\n")
    assert len(result.events) < 100 < lines // 100  # not one event per connection
    curve = result.activity[str(tmp_path / "rabbit.log")]
    accepts = (tmp_path / "rabbit.log").read_bytes().count(b"accepting AMQP connection")
    assert abs(sum(n for _, _, n in curve) - accepts) < 0.1 * accepts  # the counts add up


def test_report_size_does_not_grow_with_the_log(tmp_path: Path) -> None:
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    shapes.write_one(shapes.SHAPES["redis"], small, 1024 * 1024)
    shapes.write_one(shapes.SHAPES["redis"], big, 8 * 1024 * 1024)
    sizes = []
    for log in (small, big):
        out = tmp_path / f"{log.stem}.json"
        done = subprocess.run([console_script(), "logs", str(log), "--format", "json", "-o", str(out)],
                              capture_output=True, text=True, check=False)
        assert done.returncode in (0, 1), done.stderr
        sizes.append(out.stat().st_size)
    assert sizes[1] < 3 * sizes[0]  # 8x the log, not 8x the report


def test_application_tracebacks_are_not_connection_failures(tmp_path: Path) -> None:
    """Celery 3.1 with a task failure every 25 tasks (task errors and the app's logger.exception,
    some ending in requests' ConnectionError): only the injected broker losses are incidents."""
    truth = shapes.generate("celery31", 3, tmp_path / "w31.log")
    result = read_logs([str(tmp_path / "w31.log")])
    lost = [e for e in result.events if e.kind.value == "connection_lost"]
    assert len(lost) == truth["injected"] > 0
    assert all("Connection to broker lost" in e.text for e in lost)


def test_prefixed_and_json_logs_take_the_same_scan(tmp_path: Path) -> None:
    for shape in ("compose", "json"):
        truth = shapes.generate(shape, 2, tmp_path / f"{shape}.log")
        result = read_logs([str(tmp_path / f"{shape}.log")])
        lost = [e for e in result.events if e.kind.value == "connection_lost"]
        assert len(lost) == truth["injected"] > 0, shape
        data = (tmp_path / f"{shape}.log").read_bytes()
        for event in lost:  # the line numbers point at the line itself
            line = data.split(b"\n")[event.line - 1].decode()
            assert "Connection to broker lost" in line, (shape, event.line)


def test_report_timeline_keeps_incidents_and_summarises_the_rest(tmp_path: Path, monkeypatch) -> None:
    """Past the report's budget of events, every incident's own events stay, and what is left
    out is counted per kind (a smaller budget here, so that a small log exceeds it)."""
    from celery_doctor import timeline
    from celery_doctor.pipeline import analyse_logs

    log = tmp_path / "rabbit.log"
    shapes.write_one(shapes.SHAPES["rabbitmq"], log, 2 * 1024 * 1024)
    full = analyse_logs([str(log)])
    monkeypatch.setattr(timeline, "REPORT_EVENTS", 20)
    small = analyse_logs([str(log)])
    assert len(full.events) > 20 >= len(small.events)
    evidence = {(e.source, e.line) for inc in small.incidents for e in inc.events}
    assert evidence <= {(e.source, e.line) for e in small.events}
    left = small.data["timeline_left_out"]
    assert left["events_left_out"] == len(full.events) - len(small.events)
    assert sum(left["by_kind"].values()) == left["events_left_out"]


def test_the_stdlib_fallback_gives_the_same_events(tmp_path: Path) -> None:
    """Where no Hyperscan wheel loads, the engine is chosen at import: same events, named."""
    log = tmp_path / "worker.log"
    shapes.write_one(shapes.SHAPES["celery31"], log, 3 * 1024 * 1024)
    probe = ("import sys, json; sys.modules['hyperscan'] = None\n"
             "from celery_doctor.ingest import matcher, read_logs\n"
             f"r = read_logs([{str(log)!r}])\n"
             "print(json.dumps([matcher.ENGINE, [[e.line, e.kind.value] for e in r.events]]))")
    import json

    engine, events = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                               check=True).stdout)
    assert engine == "stdlib bytes.find"
    assert events == [[e.line, e.kind.value] for e in read_logs([str(log)]).events]
    assert any(kind == "connection_lost" for _, kind in events)
