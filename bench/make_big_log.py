"""Write a large worker log for bench_logs.py: mostly task lines, a few hundred connection errors.

    python bench/make_big_log.py [SIZE_MB] [PATH]     (default 1024 MB, bench/data/worker-big.log)

Built from the lines of a real recording (tests/fixtures/rabbitmq-idle-cut/worker.log): its task
received/succeeded lines repeat with increasing times, and every ~3 MB one of its real
connection-loss records (with the traceback Celery printed) is inserted.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOST = """[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...
Traceback (most recent call last):
  File "/usr/lib/python3/site-packages/celery/worker/consumer/consumer.py", line 340, in start
    blueprint.start(self)
  File "/usr/lib/python3/site-packages/amqp/transport.py", line 342, in _read
    s = recv(n - len(rbuf))
ConnectionResetError: [Errno 104] Connection reset by peer
[{ts2}: INFO/MainProcess] Connected to amqp://guest:**@127.0.0.1:5672//
"""


def stamp(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S,") + f"{ts.microsecond // 1000:03d}"


def main() -> int:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    path = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "bench" / "data" / "worker-big.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = datetime(2026, 11, 1, tzinfo=UTC)
    step = timedelta(milliseconds=7)
    target = size_mb * 1024 * 1024
    written = 0
    errors = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            lines = []
            for _ in range(10_000):  # ~1.5 MB of task traffic
                task = uuid.uuid4()
                ts += step
                lines.append(f"[{stamp(ts)}: INFO/MainProcess] Task proj.tasks.add[{task}] received\n")
                ts += step
                lines.append(f"[{stamp(ts)}: INFO/ForkPoolWorker-3] Task proj.tasks.add[{task}] "
                             f"succeeded in 0.0012s: 42\n")
            if written // (3 * 1024 * 1024) != (written + sum(map(len, lines))) // (3 * 1024 * 1024):
                ts += timedelta(seconds=30)
                lines.append(LOST.format(ts=stamp(ts), ts2=stamp(ts + timedelta(milliseconds=20))))
                errors += 1
            block = "".join(lines)
            out.write(block)
            written += len(block)
    print(f"{path}: {written / 1e6:.0f} MB, {errors} connection errors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
