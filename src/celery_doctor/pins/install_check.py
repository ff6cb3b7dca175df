"""Prove a ladder step is real: a throwaway venv, pip install the pinned set, import it, start a
worker against the broker, send it one task, see it succeed, clean everything up.

Slow (a minute or so per step) and bounded: every subprocess has a timeout and the venv is
always removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery_doctor.pins.readers.interpreter import resolve_python, run_probe

VENV_TIMEOUT_S = 120
INSTALL_TIMEOUT_S = 600
READY_TIMEOUT_S = 90
TASK_TIMEOUT_S = 60

APP = '''\
import os

from celery import Celery

app = Celery("cd_check", broker=os.environ["CD_CHECK_BROKER"])


@app.task(name="cd_check.ping")
def ping():
    return "pong"
'''


@dataclass
class InstallCheck:
    ok: bool
    summary: str
    python: str
    pins: dict[str, str]
    elapsed_s: float = 0.0
    stages: list[dict[str, Any]] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary, "python": self.python, "pins": self.pins,
                "elapsed_s": round(self.elapsed_s, 1), "stages": self.stages, "log_tail": self.log_tail}


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
         cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)


def check_install(pins: dict[str, str], broker_url: str, python: str | None = None,
                  extra_requirements: tuple[str, ...] = ()) -> InstallCheck:
    exe = resolve_python(python)
    version = run_probe(exe)["python"]
    started = time.monotonic()
    result = InstallCheck(ok=False, summary="", python=version, pins=dict(pins))
    workdir = tempfile.mkdtemp(prefix="celery-doctor-check-")
    try:
        _steps(result, exe, workdir, pins, broker_url, extra_requirements)
    except subprocess.TimeoutExpired as exc:
        result.summary = f"timed out after {exc.timeout:g}s: {' '.join(map(str, exc.cmd[:3]))} ..."
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        result.elapsed_s = time.monotonic() - started
    return result


def _stage(result: InstallCheck, name: str, ok: bool, detail: str) -> bool:
    result.stages.append({"stage": name, "ok": ok, "detail": detail})
    if not ok:
        result.summary = f"{name} failed: {detail}"
    return ok


def _tail(text: str, n: int = 12) -> list[str]:
    return [line for line in text.strip().splitlines()[-n:]]


def _steps(result: InstallCheck, exe: str, workdir: str, pins: dict[str, str], broker_url: str,
           extra: tuple[str, ...]) -> None:
    venv = Path(workdir) / "venv"
    proc = _run([exe, "-m", "venv", str(venv)], VENV_TIMEOUT_S)
    if not _stage(result, "venv", proc.returncode == 0, (proc.stderr.strip() or "created")[-300:]):
        return
    py = str(venv / "bin" / "python")
    requirements = [f"{n}=={v}" for n, v in pins.items()] + list(extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = _run([py, "-m", "pip", "install", "--no-input", *requirements], INSTALL_TIMEOUT_S, env=env)
    if not _stage(result, "pip install", proc.returncode == 0,
                  " ".join(requirements) if proc.returncode == 0 else (_tail(proc.stderr, 3) or ["?"])[-1]):
        result.log_tail = _tail(proc.stderr + proc.stdout)
        return
    names = [n for n in pins if n != "redis"] + (["redis"] if "redis" in pins else [])
    check = "import importlib.metadata as m, " + ", ".join(names) + "; print(' '.join(m.version(n) for n in " \
            + repr(names) + "))"
    proc = _run([py, "-c", check], 60, env=env, cwd=workdir)
    if not _stage(result, "import", proc.returncode == 0,
                  proc.stdout.strip() if proc.returncode == 0 else (_tail(proc.stderr, 1) or ["?"])[-1]):
        return
    _worker(result, py, workdir, broker_url, env)


def _worker(result: InstallCheck, py: str, workdir: str, broker_url: str, env: dict[str, str]) -> None:
    queue = f"celery-doctor-check-{uuid.uuid4().hex[:8]}"
    Path(workdir, "cd_check_app.py").write_text(APP, encoding="utf-8")
    env = {**env, "CD_CHECK_BROKER": broker_url, "CD_CHECK_QUEUE": queue, "PYTHONUNBUFFERED": "1"}
    log_path = Path(workdir, "worker.log")
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [py, "-m", "celery", "-A", "cd_check_app", "worker", "-l", "info", "-P", "solo", "-Q", queue,
             "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ready = _wait_for(log_path, ("ready.",), worker, READY_TIMEOUT_S)
            if not _stage(result, "worker ready", ready, "worker logged 'ready.'" if ready else
                          "no 'ready.' line within the time allowed"):
                result.log_tail = _tail(log_path.read_text(errors="replace"))
                return
            publish = "import os; from cd_check_app import ping; ping.apply_async(queue=os.environ['CD_CHECK_QUEUE'])"
            sent = _run([py, "-c", publish], TASK_TIMEOUT_S,
                        env=env, cwd=workdir)
            if not _stage(result, "task sent", sent.returncode == 0,
                          "published cd_check.ping" if sent.returncode == 0 else (_tail(sent.stderr, 1) or ["?"])[-1]):
                return
            done = _wait_for(log_path, ("succeeded in",), worker, TASK_TIMEOUT_S)
            _stage(result, "task executed", done, "worker logged the task succeeded" if done else
                   "the task did not succeed in time")
            if done:
                result.ok = True
                result.summary = "installed, imported, worker ready, task executed"
        finally:
            _stop(worker)
            result.log_tail = result.log_tail or _tail(log_path.read_text(errors="replace"), 6)
            # the queue and the exchange Celery declared for it (named after it): nothing stays
            _run([py, "-c", "from cd_check_app import app\nwith app.connection() as c:\n"
                  "    for op in ('queue_delete', 'exchange_delete'):\n"
                  "        try:\n"
                  f"            getattr(c.channel(), op)({queue!r})\n"
                  "        except Exception:\n"
                  "            pass\n"], 30, env=env, cwd=workdir)


def _wait_for(path: Path, needles: tuple[str, ...], proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if any(n in text for n in needles):
            return True
        if proc.poll() is not None:
            return any(n in path.read_text(errors="replace") for n in needles)
        time.sleep(0.3)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def interpreter_version(python: str | None) -> str:
    return str(run_probe(python or sys.executable)["python"])
