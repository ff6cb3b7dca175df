"""Where one `celery-doctor logs` run spends its time: wall and CPU seconds per phase.

    python bench/phases.py FILE... [--ranges]

Runs the `logs` pipeline in this process, as the command does (imports, the pool's scan of every
byte range, the merge, incidents and rules, the JSON report with its redaction, the write), and
prints a timestamp at the end of each phase with the parent's CPU seconds so far; at the end the
CPU seconds of the pool's workers. ``--ranges`` also prints each range as a worker finishes it
(when it started, how long it took). The phase in which the parent's CPU grows while the
workers' does not is serial: on 2 cores it costs its full time on the clock.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()


def mark(what: str) -> None:
    print(f"{time.perf_counter() - T0:7.3f} s  cpu {time.process_time():5.2f} s  {what}", file=sys.stderr, flush=True)


SHOW_RANGES = False
SCAN_RANGE: Any = None


def timed_range(path: str, template: Any, index: int, start: int, end: int) -> Any:
    """The pool's task, timed (module-level: the pool pickles it by name)."""
    began = time.perf_counter()
    part = SCAN_RANGE(path, template, index, start, end)
    if SHOW_RANGES:
        print(
            f"        worker {os.getpid()}: bytes {start:,}-{end:,} from {began - T0:.3f} s, "
            f"{time.perf_counter() - began:.3f} s",
            file=sys.stderr,
            flush=True,
        )
    return part


def main(argv: list[str]) -> int:
    show_ranges = "--ranges" in argv
    files = [a for a in argv if a != "--ranges"]
    if not files:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    mark("interpreter started")
    import celery_doctor.ingest  # noqa: F401 - what `logs` imports: the reader,
    from celery_doctor import pipeline  # the stages, rules, reports
    from celery_doctor import timeline as timeline_stage
    from celery_doctor.ingest import parallel
    from celery_doctor.report import render

    mark("imported")
    global SHOW_RANGES, SCAN_RANGE
    SHOW_RANGES, SCAN_RANGE = show_ranges, parallel.scan_range
    join, build = parallel.join, timeline_stage.build

    def timed_join(*args: object) -> None:
        mark("pool done: every range scanned (join starts)")
        join(*args)  # type: ignore[arg-type]
        mark("ranges joined")

    def timed_build(*args: object) -> object:
        mark("logs read")
        return build(*args)  # type: ignore[arg-type]

    import celery_doctor.ingest as ingest

    scan_files = ingest.scan_files

    def timed_scan(*args: Any, **kwargs: Any) -> None:
        mark("inputs opened and sniffed (the pool starts: numpy import, fork)")
        scan_files(*args, **kwargs)

    ingest.scan_files = timed_scan  # type: ignore[assignment]
    parallel.scan_range = timed_range  # type: ignore[assignment]
    parallel.join = timed_join  # type: ignore[assignment]
    pipeline.timeline_stage.build = timed_build  # type: ignore[assignment]
    report = pipeline.analyse_logs(files)
    mark("timeline, incidents and rules done")
    text = render(report, "json")
    mark(f"JSON report rendered and redacted ({len(text):,} characters)")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "celery-doctor-phases.json"
    out.write_text(text, encoding="utf-8")
    mark(f"written to {out}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"CPU seconds: parent {own.ru_utime + own.ru_stime:.2f}, pool workers "
        f"{children.ru_utime + children.ru_stime:.2f}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
