"""`celery-doctor logs` against `grep -c` on every log shape: time, peak memory, incidents.

    python bench/bench_logs.py [--shapes worker,json,...] [--sizes 100,1024] [--repeat 3] [--clean]

For each shape (bench/shapes.py) and size the input is generated once into bench/data/, read
once to warm the page cache, then `grep -c ANCHOR` (writing its count to a file: GNU grep stops
at the first match when its output is /dev/null) and `celery-doctor logs --format json` run in
turn, ``--repeat`` times, interleaved, so both see the same machine load. For `.gz` the anchor is
`zcat | grep -c`. The table gives the medians, their ratio (and the ratio of the best run of each:
other work on the machine only ever adds time), the CPU seconds of each, the peak resident memory of the whole
process tree (sampled from /proc: the parent and every worker it forks), the size of the JSON
report and the incidents found against the number injected. The load average is printed with it
because other work on the machine changes both columns.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shapes  # bench/ is not a package

PAGE = os.sysconf("SC_PAGE_SIZE")
CLI = Path(sys.executable).with_name("celery-doctor")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return found


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (shared pages counted in each)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(_children(pid))
    return total


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # every reaped descendant: pool workers too
    return usage.ru_utime + usage.ru_stime


def run(cmd: str, out: Path) -> tuple[float, float, int, str | None]:
    """(wall seconds, CPU seconds of the whole tree, peak tree RSS bytes, failure) of a shell
    command whose stdout goes to ``out``."""
    cpu0 = _cpu()
    with out.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(["bash", "-c", f"set -o pipefail; {cmd}"], stdout=sink, stderr=subprocess.PIPE)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.01)
        wall = time.perf_counter() - start
    cpu = _cpu() - cpu0
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.returncode not in (0, 1):  # grep: 1 = no match; logs: 1 = findings
        last = err.splitlines()[-1] if err else ""
        return wall, cpu, peak, f"exit {proc.returncode}: {last[:200]}"
    return wall, cpu, peak, None


def truth_for(shape: str, size_mb: int) -> dict[str, object]:
    path = shapes.DATA / f"{shape}-{size_mb}mb.log.truth.json"
    if path.exists():
        truth = json.loads(path.read_text())
        if all(Path(f).exists() for f in truth["files"]):  # type: ignore[union-attr]
            return truth
    print(f"  generating {shape} {size_mb} MB ...", file=sys.stderr, flush=True)
    return shapes.generate(shape, size_mb)


def bench_one(shape: str, size_mb: int, repeat: int, truth: dict[str, object] | None = None) -> dict[str, object]:
    truth = truth or truth_for(shape, size_mb)
    files = [str(f) for f in truth["files"]]  # type: ignore[union-attr]
    quoted = " ".join(shlex.quote(f) for f in files)
    anchor = shlex.quote(str(truth["anchor"]))
    grep = f"zcat {quoted} | grep -c {anchor}" if truth["gz"] else f"grep -c {anchor} {quoted}"
    report = shapes.DATA / f"{shape.split()[0]}-{size_mb}mb.report.json"
    ours = f"{shlex.quote(str(CLI))} logs {quoted} --format json -o {shlex.quote(str(report))}"
    for f in files:  # warm the page cache
        subprocess.run(["cat", f], stdout=subprocess.DEVNULL, check=True)
    grep_s, ours_s, peaks, grep_cpu, ours_cpu = [], [], [], [], []
    failure = None
    report.unlink(missing_ok=True)
    for _ in range(repeat):
        g, gc, _, _ = run(grep, shapes.DATA / "grep.out")
        o, oc, peak, failure = run(ours, shapes.DATA / "logs.out")
        grep_s.append(g)
        ours_s.append(o)
        grep_cpu.append(gc)
        ours_cpu.append(oc)
        peaks.append(peak)
        if failure:
            break
    data = json.loads(report.read_text()) if report.exists() and not failure else {}
    size = sum(Path(f).stat().st_size for f in files)
    return {"shape": shape, "size_mb": size / 1e6, "grep_s": statistics.median(grep_s),
            "logs_s": statistics.median(ours_s), "logs_all": ours_s, "grep_all": grep_s,
            "grep_cpu": statistics.median(grep_cpu), "logs_cpu": statistics.median(ours_cpu),
            "peak_mb": max(peaks) / 1e6, "report_kb": report.stat().st_size / 1e3 if data else 0,
            "found": _found(data, truth), "injected": truth["injected"],
            "timeline": len(data.get("timeline", [])), "failure": failure}


def _found(data: dict[str, Any], truth: dict[str, object]) -> int:
    """Incidents found; for a recorded log whose truth names a kind (its abrupt closes), the lines of
    that kind the report accounts for: events plus those the scan counted."""
    kind = truth.get("kind")
    if not kind:
        return len(data.get("incidents", []))
    events = int(data.get("summary", {}).get("events_by_kind", {}).get(kind, 0))
    return events + sum(int((s.get("meta", {}).get("counted") or {}).get(kind, 0)) for s in data.get("sources", []))


def row(r: dict[str, object]) -> str:
    ratio = float(r["logs_s"]) / max(1e-9, float(r["grep_s"]))  # type: ignore[arg-type]
    # the best run of each, too: other work on the machine only ever adds time
    best = min(r["logs_all"]) / max(1e-9, min(r["grep_all"]))  # type: ignore[type-var, arg-type, operator]
    return (f"| {r['shape']} | {float(r['size_mb']):,.0f} MB | {float(r['grep_s']):.2f} s "  # type: ignore[arg-type]
            f"| {float(r['logs_s']):.2f} s | {ratio:.1f}x ({best:.1f}x) "  # type: ignore[arg-type]
            f"| {float(r['grep_cpu']):.2f} / {float(r['logs_cpu']):.2f} s "  # type: ignore[arg-type]
            f"| {float(r['peak_mb']):,.0f} MB "  # type: ignore[arg-type]
            f"| {float(r['report_kb']):,.0f} KB | {r['found']} / {r['injected']} |"  # type: ignore[arg-type]
            + (f" failed ({r['failure']})" if r.get("failure") else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=",".join(shapes.SHAPES))
    parser.add_argument("--sizes", default="100", help="MB, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clean", action="store_true", help="delete each generated input after its run")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--recorded", default="", help="truth files of recorded logs (record_rabbit_churn.py), "
                        "comma-separated, benched after the shapes")
    args = parser.parse_args(argv)
    if not CLI.exists():
        print(f"{CLI} missing: install the project in this interpreter's environment", file=sys.stderr)
        return 2
    # byte-compile the package first: an environment with PYTHONDONTWRITEBYTECODE set (or an
    # editable install never run before) would compile every module on every run, ~0.15 s of startup
    # that an installed package does not pay
    package = Path(__file__).resolve().parent.parent / "src" / "celery_doctor"
    if package.is_dir():
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=False)
    version = subprocess.run([str(CLI), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    load0 = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, {version}")
    print("| shape | size | `grep -c` | `logs --format json` | ratio (best runs) | CPU grep / logs | peak RSS (tree) "
          "| report | incidents found / injected |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for size_mb in (int(s) for s in args.sizes.split(",")):
        for shape in filter(None, args.shapes.split(",")):  # --shapes "" benches only --recorded
            result = bench_one(shape, size_mb, args.repeat)
            results.append(result)
            print(row(result), flush=True)
            if args.clean:
                truth = truth_for(shape, size_mb)
                for f in truth["files"]:  # type: ignore[union-attr]
                    Path(f).unlink(missing_ok=True)
    for path in filter(None, args.recorded.split(",")):
        truth = json.loads(Path(path).read_text())
        result = bench_one(str(truth["shape"]), 0, args.repeat, truth)
        results.append(result)
        print(row(result), flush=True)
    load1 = os.getloadavg()
    print(f"load average (1/5/15 min): before {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}; median of {args.repeat} interleaved runs each")
    if args.json:
        args.json.write_text(json.dumps({"version": version, "load": [load0, load1], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
