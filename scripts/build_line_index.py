#!/usr/bin/env python3
"""Regenerate src/celery_doctor/data/line_index.json: which releases a traceback frame can come from.

One command:  python scripts/build_line_index.py  [--cache DIR] [--jobs N]

For every release of celery, kombu, amqp and redis-py in data/requirements.json, it downloads
the released file (the same cache and download rules as build_requirements_data.py), parses the
modules that appear in broker-connection tracebacks with ``ast``, and records each function's
line span. A frame ``File ".../kombu/transport/redis.py", line 161, in append`` then matches
the releases whose ``append`` spans line 161 in that file (rules/logs/versions.py).

Kept small: only the files below, spans shared by consecutive releases stored once, releases
as indexes into one list per package.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_requirements_data import _existing, pip  # noqa: E402  (the same cache and pip call)

# wheels only: pip never builds anything, so a release without a wheel for these is skipped
WHEEL_PYTHONS = (None, "2.7")


def download(name: str, version: str, cache: Path) -> Path | None:
    found = _existing(cache, name, version)
    if found:
        return found
    for python in WHEEL_PYTHONS:
        extra = ["--python-version", python] if python else []
        proc = pip("download", "--no-deps", "--only-binary=:all:", *extra, f"{name}=={version}", "-d", str(cache),
                   timeout=120)
        if proc.returncode == 0:
            return _existing(cache, name, version)
    return None

FILES = {
    "celery": ["celery/worker/consumer/consumer.py", "celery/worker/consumer.py", "celery/worker/loops.py",
               "celery/worker/worker.py", "celery/backends/redis.py", "celery/backends/asynchronous.py",
               "celery/app/task.py", "celery/app/amqp.py", "celery/worker/pidbox.py", "celery/bootsteps.py"],
    "kombu": ["kombu/connection.py", "kombu/transport/pyamqp.py", "kombu/transport/redis.py",
              "kombu/transport/virtual/base.py", "kombu/transport/virtual/__init__.py", "kombu/messaging.py",
              "kombu/message.py", "kombu/asynchronous/hub.py", "kombu/async/hub.py", "kombu/transport/base.py",
              "kombu/common.py", "kombu/pidbox.py"],
    "amqp": ["amqp/connection.py", "amqp/transport.py", "amqp/channel.py", "amqp/method_framing.py",
             "amqp/abstract_channel.py"],
    "redis": ["redis/connection.py", "redis/client.py", "redis/_compat.py", "redis/sentinel.py"],
}
OUT = ROOT / "src" / "celery_doctor" / "data" / "line_index.json"


def sources(path: Path, wanted: list[str]) -> dict[str, str]:
    """The wanted module files inside a wheel or sdist, by their path inside the package."""
    out: dict[str, str] = {}

    def take(name: str, read: object) -> None:
        for want in wanted:
            if name.endswith("/" + want) or name == want:
                out.setdefault(want, read().decode("utf-8", "replace"))  # type: ignore[operator]

    if path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                take(name, lambda name=name: z.read(name))
    else:
        with tarfile.open(path) as t:
            for member in t.getmembers():
                if member.isfile():
                    take(member.name, lambda member=member: t.extractfile(member).read())  # type: ignore[union-attr]
    return out


def spans(text: str) -> dict[str, list[tuple[int, int]]]:
    """function name -> its (first line, last line) spans; a traceback names the function, not the
    class, so every method of that name in the file counts."""
    try:
        tree = ast.parse(text)
    except SyntaxError:  # Python 2 only sources: fall back to def lines and indentation
        return _spans_by_indent(text)
    out: dict[str, list[tuple[int, int]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.setdefault(node.name, []).append((node.lineno, node.end_lineno or node.lineno))
    return out


def _spans_by_indent(text: str) -> dict[str, list[tuple[int, int]]]:
    lines = text.splitlines()
    out: dict[str, list[tuple[int, int]]] = {}
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped.startswith("def "):
            continue
        indent = len(line) - len(stripped)
        name = stripped[4:].split("(")[0].strip()
        end = i
        for j in range(i + 1, len(lines)):
            nxt = lines[j]
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            if nxt.strip():
                end = j
        out.setdefault(name, []).append((i + 1, end + 1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "celery-doctor-releases")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--packages", nargs="*", default=list(FILES))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    requirements = json.loads((ROOT / "src" / "celery_doctor" / "data" / "requirements.json").read_text())
    index: dict[str, object] = {"about": "function line spans per release, for matching traceback frames; "
                                         "generated by scripts/build_line_index.py", "packages": {}}
    for name in args.packages:
        versions = list(requirements["packages"][name]["releases"])
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            files = dict(zip(versions, pool.map(lambda v, n=name: download(n, v, args.cache), versions), strict=True))
        table: dict[str, dict[str, list[list[int]]]] = {}
        done = []
        for i, version in enumerate(versions):
            path = files[version]
            if path is None:
                print(f"{name} {version}: not downloadable, skipped", file=sys.stderr)
                continue
            done.append(version)
            for module, text in sources(path, FILES[name]).items():
                for function, found in spans(text).items():
                    rows = table.setdefault(module, {}).setdefault(function, [])
                    for first, last in found:
                        run = next((r for r in rows if r[0] == first and r[1] == last and r[3] == i - 1), None)
                        if run is not None:
                            run[3] = i  # the same span as in the release before: extend the run
                        else:
                            rows.append([first, last, i, i])
        index["packages"][name] = {"versions": versions, "files": table}  # type: ignore[index]
        print(f"{name}: {len(done)}/{len(versions)} releases", file=sys.stderr)
    OUT.write_text(json.dumps(index, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
