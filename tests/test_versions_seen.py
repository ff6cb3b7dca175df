"""Version fingerprints read from the logs: banner, egg and site-packages paths, module layouts,
and traceback frames matched against the line index generated from the released wheels."""

from __future__ import annotations

from pathlib import Path

from celery_doctor.pipeline import analyse_logs
from celery_doctor.rules.logs.versions import releases_for_frame
from conftest import FIXTURES

THREADS = FIXTURES / "threads"


def test_paths_and_layout_name_the_releases(tmp_path: Path) -> None:
    # the frames of a Celery 3.1 worker running from eggs (celery#2258 shows amqp-1.4.6-py3.4.egg)
    log = tmp_path / "worker.log"
    log.write_text(
        "[2015-08-11 10:00:00,000: WARNING/MainProcess] consumer: Connection to broker lost. "
        "Trying to re-establish the connection...\n"
        "Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.4/dist-packages/celery-3.1.18-py3.4.egg/celery/worker/consumer.py", '
        "line 278, in start\n    blueprint.start(self)\n"
        '  File "/usr/local/lib/python3.4/dist-packages/kombu-3.0.35-py3.4.egg/kombu/async/hub.py", '
        "line 340, in create_loop\n    cb(*cbargs)\n"
        '  File "/usr/local/lib/python3.4/dist-packages/amqp-1.4.6-py3.4.egg/amqp/transport.py", '
        "line 178, in _read\n    raise IOError('Socket closed')\n"
        "OSError: Socket closed\n")
    versions = analyse_logs([str(log)]).data["versions"]
    assert versions["kombu"]["version"] == "kombu 3.0.35" and versions["amqp"]["version"] == "amqp 1.4.6"
    assert versions["celery"]["version"] == "celery 3.1.18"
    assert versions["python"]["version"] == "python 3.4"


def test_module_layout_bounds_the_release() -> None:
    versions = analyse_logs([str(THREADS / "124-kombu962-float-items" / "logs" / "worker.log")]).data["versions"]
    assert "celery" in versions and "kombu" in versions
    assert versions["python"]["version"] == "python 3.7"


def test_line_index_maps_a_frame_to_its_releases() -> None:
    # kombu#962's frame: kombu/transport/redis.py line 1040 in on_readable (kombu 4.2.1 with redis-py 3)
    releases = releases_for_frame("kombu", "kombu/transport/redis.py", "on_readable", 1040)
    assert releases, "data/line_index.json is missing kombu: run scripts/build_line_index.py"
    assert "4.2.1" in releases and all(r.startswith("4.") for r in releases)


def test_traceback_lines_confirm_the_known_bug_range() -> None:
    report = analyse_logs([str(THREADS / "124-kombu962-float-items" / "logs" / "worker.log")])
    bug = report.findings[0]
    assert bug.rule_id == "CD-K01" and bug.facts["known_bad"] == "redis3_kombu-lt-4.2.2"
    assert "kombu" in bug.facts["versions_seen"] and bug.confidence > 0.9
    assert "inside that range" in bug.explanation
