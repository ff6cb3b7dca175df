"""Speed and memory of `celery-doctor logs` on a big worker log, against `grep -c` (the anchor).

    python bench/make_big_log.py 1024        # once: bench/data/worker-big.log
    python bench/bench_logs.py [PATH]

Same run, warm cache: the file is read once before timing. Prints both wall times, their ratio
(goal: <= 3x grep) and the analysis' peak RSS (goal: < 300 MB, independent of the file size).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.stdout.strip()


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "data" / "worker-big.log"
    if not path.exists():
        print(f"{path} missing: run python bench/make_big_log.py first", file=sys.stderr)
        return 2
    subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    grep_s, count = timed(["grep", "-c", "reset by peer", str(path)])
    analyse = [sys.executable, "-m", "celery_doctor.cli", "logs", str(path), "--format", "json", "-o", "/dev/null"]
    ours_s, _ = timed(analyse)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child: ours
    size_mb = path.stat().st_size / 1e6
    print(f"file: {size_mb:.0f} MB, 'reset by peer' lines: {count}")
    print(f"grep -c:            {grep_s:6.2f} s")
    print(f"celery-doctor logs: {ours_s:6.2f} s  ({ours_s / grep_s:.2f}x grep, goal <= 3x)")
    print(f"peak RSS:           {peak_mb:6.0f} MB (goal < 300 MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
