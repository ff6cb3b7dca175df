"""A longer fuzz campaign than the suite's property tests (see docs/fuzz.md).

Each target mutates the project's own fixtures (logs, configs, requirement and lock files) or
plants secrets of every shape, runs the real command in-process, and checks the promises:
exit 0, 1 or 2; one line on stderr for exit 2; no traceback; strict JSON for --format json;
no planted secret anywhere; each input done within --per-input seconds. A failing input is
saved under --crashes with what went wrong, so it can be replayed:

    python scripts/fuzz.py --seconds 600 --seed 7 --crashes fuzz-crashes/

The inputs are a function of the seed, so a native crash (SIGSEGV), which ends the run,
is found again by running the same target with the same seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from celery_doctor.cli import main  # noqa: E402
from secret_shapes import MARKER, SHAPES, config_py, json_log, rabbit_log, requirements_txt, worker_log  # noqa: E402

CHUNKS = [b"9" * 40, b"9" * 5000, b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"-13-", b"23:59:60", b"+99:00", b"\n",
          b"Traceback (most recent call last):\n", b"succeeded in 1e999s", b'{"ts": 1e20}\n', b"[" * 300,
          b"(" * 300, b"'a' b'b'", b"f'{BROKER_URL=}'", b"[[package]]\n", b"name = 1\n", b"= ", b"^", b"nan",
          b"Infinity", b"\r", b"\t", b"# -*- coding: latin-1 -*-\n", b"\xe9", b"@", b"//", b";", b"'", b'"']


class TimedOut(Exception):
    pass


def corpus(patterns: tuple[str, ...]) -> list[bytes]:
    out = []
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file() and path.stat().st_size < 300_000:
                out.append(path.read_bytes())
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, max(len(data) - 1, 0))
        op = rng.choice(("insert", "replace", "delete", "duplicate", "splice"))
        chunk = rng.choice(CHUNKS)
        if op == "insert":
            data = data[:at] + chunk + data[at:]
        elif op == "replace":
            data = data[:at] + chunk + data[at + len(chunk):]
        elif op == "delete":
            data = data[:at] + data[at + rng.randint(1, 400):]
        elif op == "duplicate":
            data = data[:at] + data[at:at + rng.randint(1, 2000)] * rng.randint(2, 20) + data[at:]
        else:
            data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]
    return data


def check(args: list[str], fmt: str | None, output: Path | None) -> str | None:
    """Run one command; the broken promise in words, or None."""
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        if isinstance(result.exception, TimedOut):
            raise result.exception
        return "exception: " + "".join(traceback.format_exception(result.exception))[-600:]
    text = result.stdout + result.stderr + (output.read_text(errors="replace") if output and output.exists() else "")
    if result.exit_code not in (0, 1, 2):
        return f"exit {result.exit_code}: {result.stderr.strip()[-300:]}"
    if re.search(r"^Traceback \(most recent call last\):\n  File ", result.stderr, re.M):
        return "traceback on stderr"
    if result.exit_code == 2 and len(result.stderr.strip().splitlines()) != 1:
        return f"exit 2 with {len(result.stderr.strip().splitlines())} lines on stderr"
    if MARKER in text:
        line = next(ln for ln in text.splitlines() if MARKER in ln)
        return f"secret printed: {line[:200]}"
    if fmt == "json" and result.exit_code in (0, 1) and not output:
        try:
            json.loads(result.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as exc:
            return f"not strict JSON: {exc}"
    return None


def target_file(name: str, command: Callable[[Path], list[str]], seeds: list[bytes], formats: tuple[str, ...]):
    def run(rng: random.Random, work: Path) -> tuple[bytes, str | None]:
        data = mutate(rng, rng.choice(seeds))
        path = work / name
        path.write_bytes(data)
        fmt = rng.choice(formats)
        args = command(path) + (["--format", fmt] if fmt else [])
        return data, check(args, fmt, None)
    return run


def target_secrets(rng: random.Random, work: Path) -> tuple[bytes, str | None]:
    """Plant a random handful of secret shapes in every input kind; one command and format."""
    shapes = dict(rng.sample(sorted(SHAPES.items()), rng.randint(1, 5)))
    kind = rng.choice(["logs", "config", "migrate", "pins", "broker"])
    fmt = rng.choice(["text", "json", "markdown", "html"])
    out = work / "out.txt"
    out.unlink(missing_ok=True)
    if kind == "logs":
        (work / "w.log").write_text(worker_log(shapes))
        (work / "r.log").write_text(rabbit_log(shapes))
        (work / "a.jsonl").write_text(json_log(shapes))
        args = ["logs", str(work / "w.log"), str(work / "r.log"), str(work / "a.jsonl"), "--format", fmt]
        data = (work / "w.log").read_bytes()
    elif kind in ("config", "migrate"):
        (work / "celeryconfig.py").write_text(config_py(shapes, old_names=kind == "migrate"))
        data = (work / "celeryconfig.py").read_bytes()
        args = (["config", str(work / "celeryconfig.py"), "--format", fmt] if kind == "config" else
                ["config", "migrate", str(work / "celeryconfig.py")])
        fmt = fmt if kind == "config" else "diff"
    elif kind == "pins":
        (work / "requirements.txt").write_text(requirements_txt(shapes))
        data = (work / "requirements.txt").read_bytes()
        args = ["pins", "-r", str(work / "requirements.txt"), "--format", fmt]
    else:
        pw = rng.choice(list(shapes.values()))
        url = rng.choice([f"amqp://user:{pw}@127.0.0.1:1//", f"redis://:{pw}@127.0.0.1:1/0",
                          f"amqpx://u:{pw}@h//", f"amqp://u:{pw}@127.0.0.1:99999//", f"redis://:{pw}@h/x"])
        data = url.encode()
        args = ["broker", url, "--timeout", "1", "--format", fmt]
    if rng.random() < 0.5 and kind != "migrate":
        args += ["--output", str(out)]
        return data, check(args, None, out)
    return data, check(args, fmt, None)


LOG_SEEDS = ("examples/*/*.log", "tests/fixtures/*/*.log")
CONFIG_SEEDS = ("tests/fixtures/configs/*.py", "tests/fixtures/configs/*/*.py")
TARGETS: dict[str, Callable[[list[bytes]], Callable[[random.Random, Path], tuple[bytes, str | None]]]] = {
    "logs": lambda s: target_file("worker.log", lambda p: ["logs", str(p)], s, ("json", "text", "html")),
    "config": lambda s: target_file("celeryconfig.py", lambda p: ["config", str(p)], s, ("json", "text")),
    "migrate": lambda s: target_file("celeryconfig.py", lambda p: ["config", "migrate", str(p)], s, ("json", "")),
    "requirements": lambda s: target_file("requirements.txt", lambda p: ["pins", "-r", str(p)], s, ("json",)),
    "poetry.lock": lambda s: target_file("poetry.lock", lambda p: ["pins", "-r", str(p)], s, ("json",)),
    "uv.lock": lambda s: target_file("uv.lock", lambda p: ["pins", "-r", str(p)], s, ("json",)),
    "Pipfile.lock": lambda s: target_file("Pipfile.lock", lambda p: ["pins", "-r", str(p)], s, ("json",)),
    "secrets": lambda s: target_secrets,
}
SEEDS = {"logs": LOG_SEEDS, "config": CONFIG_SEEDS, "migrate": CONFIG_SEEDS,
         "requirements": ("tests/fixtures/pins/*.txt",), "poetry.lock": ("tests/fixtures/pins/**/poetry.lock",),
         "uv.lock": ("tests/fixtures/pins/**/uv.lock",), "Pipfile.lock": ("tests/fixtures/pins/Pipfile.lock",),
         "secrets": ()}


def _alarm(signum: int, frame: object) -> None:
    raise TimedOut()


def campaign(names: list[str], seconds: float, seed: int, per_input: float, crashes: Path) -> dict[str, dict]:
    signal.signal(signal.SIGALRM, _alarm)
    crashes.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}
    for name in names:
        seeds = corpus(SEEDS[name]) or [b""]
        run = TARGETS[name](seeds)
        rng = random.Random(f"{seed}-{name}")
        stats = {"inputs": 0, "failures": 0, "kinds": {}}
        deadline = time.monotonic() + seconds / len(names)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            while time.monotonic() < deadline:
                signal.setitimer(signal.ITIMER_REAL, per_input)
                try:
                    state = rng.getstate()
                    data, problem = run(rng, work)
                except TimedOut:
                    rng.setstate(state)
                    data, _ = b"", None
                    problem = f"no answer within {per_input:g} s"
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                stats["inputs"] += 1
                if problem:
                    stats["failures"] += 1
                    kind = problem.splitlines()[-1][:80] if problem.startswith("exception") else problem[:60]
                    stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
                    number = stats["failures"]
                    (crashes / f"{name}-{number}.bin").write_bytes(data)
                    (crashes / f"{name}-{number}.txt").write_text(problem)
        figures[name] = stats
        print(f"{name:14} {stats['inputs']:6} inputs {stats['failures']:4} failures", flush=True)
    return figures


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="repeatable; default: all")
    parser.add_argument("--seconds", type=float, default=120.0, help="time budget of the whole run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-input", type=float, default=20.0, help="a slower input is a failure (hang)")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    figures = campaign(args.target or sorted(TARGETS), args.seconds, args.seed, args.per_input, args.crashes)
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "seconds": args.seconds, "targets": figures}, indent=1))
    return 1 if any(f["failures"] for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main_())
