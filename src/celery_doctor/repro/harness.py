"""The reproduction harness: one real Celery worker (the user's interpreter), one queue, a
trivial task and a sleep task, a publisher, and the fault proxy between both of them and the
broker. It runs a scenario, proves what happened to every task (the ledger), and hands the
worker's log, the broker's log lines of the run and the proxy's events to the ``logs`` engine.

Everything the run starts is stopped in ``finally``: the worker and the publisher run in their
own sessions (Ctrl-C reaches only us; we stop them), the proxy thread is stopped, and the
run's queue (a unique name) is emptied into the ledger and deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue as queue_mod
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from celery_doctor.model import DoctorError, Report
from celery_doctor.repro import brokers, ledger, scenarios
from celery_doctor.repro.proxy import Fault, ProxyThread, parse_fault

APP_FILE = Path(__file__).with_name("harness_app.py")
BROKER_LOCK = Path("/tmp/celery-doctor-broker.lock")
READY_TIMEOUT_S = 45.0
DEFAULT_RABBITMQ_RESTART = "rabbitmqctl -q stop_app; sleep 2; rabbitmqctl -q start_app"

Progress = Callable[[str, float], None]  # (what is happening, fraction of the run done)


class HarnessError(DoctorError):
    """The reproduction could not be set up or run (worker failed to start, bad --python...)."""


@dataclass
class RunOptions:
    scenario: str = "idle"
    fault: Fault | None = None
    broker_url: str | None = None
    config: Path | None = None  # the user's celeryconfig.py, applied on top of the minimal one
    python: str = sys.executable
    heartbeat: float | None = None
    acks_late: bool | None = None
    pool: str | None = None
    concurrency: int = 2
    rate: float = 50.0
    duration: float = 10.0
    task_seconds: float | None = None
    hook: str | None = None  # broker-restart: the command that restarts the broker
    lock_broker: bool = True  # take the exclusive broker lock while a restart hook may run
    workdir: Path | None = None  # keep the run's files here (default: a temp dir, removed)
    label: str = "minimal"


@dataclass
class RunResult:
    data: dict[str, Any]
    report: Report | None
    files: dict[str, str] = field(default_factory=dict)


# -- the user's interpreter ----------------------------------------------------------------

def versions(python: str) -> dict[str, Any]:
    """Python and Celery-family versions of the interpreter under test."""
    script = ("import json,sys\nout={'python':'%d.%d.%d'%sys.version_info[:3]}\n"
              "for n in ('celery','kombu','amqp','billiard','vine','redis'):\n"
              "    try:\n        out[n]=__import__(n).__version__\n"
              "    except Exception:\n        out[n]=None\nprint(json.dumps(out))\n")
    try:
        done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"cannot run --python {python}: {exc}") from None
    if done.returncode != 0:
        raise HarnessError(f"--python {python} failed: {done.stderr.strip().splitlines()[-1:]}")
    found: dict[str, Any] = json.loads(done.stdout)
    if not found.get("celery"):
        raise HarnessError(f"Celery is not importable by {python}")
    return found


# -- config ----------------------------------------------------------------------------------

OLD_NAMES = {
    "broker_url": "BROKER_URL", "result_backend": "CELERY_RESULT_BACKEND",
    "task_ignore_result": "CELERY_IGNORE_RESULT", "imports": "CELERY_IMPORTS",
    "include": "CELERY_INCLUDE", "task_default_queue": "CELERY_DEFAULT_QUEUE",
    "task_routes": "CELERY_ROUTES", "broker_heartbeat": "BROKER_HEARTBEAT",
    "task_acks_late": "CELERY_ACKS_LATE", "broker_transport_options": "BROKER_TRANSPORT_OPTIONS",
    "worker_prefetch_multiplier": "CELERYD_PREFETCH_MULTIPLIER",
    "task_default_exchange": "CELERY_DEFAULT_EXCHANGE",
    "task_default_routing_key": "CELERY_DEFAULT_ROUTING_KEY",
    "broker_connection_retry_on_startup": None,  # 5.3+: no old name
}


def _uses_old_names(text: str) -> bool:
    """Celery refuses a config that mixes old and new names: write ours in the user's style."""
    import re

    old = re.findall(r"^(?:BROKER_|CELERY_|CELERYD_)[A-Z_]+\s*=", text, re.M)
    new = re.findall(r"^(?:broker_|task_|worker_|result_)[a-z_]+\s*=", text, re.M)
    return len(old) > len(new)


def config_module(path: Path, *, user_config: Path | None, overrides: dict[str, Any],
                  merge_transport: dict[str, Any] | None = None) -> None:
    """Write the run's config module: the user's file (if any) executed first, then the
    harness's overrides (broker through the proxy, the run's queue, no result backend...)."""
    lines = ["# generated by celery-doctor repro: the user's config (if any), then the run's overrides"]
    old = False
    if user_config is not None:
        text = user_config.read_text(encoding="utf-8", errors="replace")
        old = _uses_old_names(text)
        lines += [f"_path = {str(user_config)!r}",
                  "with open(_path) as _f:",
                  "    exec(compile(_f.read(), _path, 'exec'))",
                  "del _f, _path"]
    for key, value in overrides.items():
        name = (OLD_NAMES.get(key) or key) if old else key
        if old and key in OLD_NAMES and OLD_NAMES[key] is None:
            continue
        lines.append(f"{name} = {value!r}")
    if merge_transport:
        name = "BROKER_TRANSPORT_OPTIONS" if old else "broker_transport_options"
        lines.append(f"{name} = dict(globals().get({name!r}) or {{}}, **{merge_transport!r})")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- processes -------------------------------------------------------------------------------

def _stop_group(proc: subprocess.Popen[Any] | None, *, warm_s: float = 4.0, cold_s: float = 3.0) -> None:
    """Warm shutdown (TERM), then cold (QUIT), then KILL the whole process group."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, warm_s), (signal.SIGQUIT, cold_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # pool children left behind by a killed parent share its group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class Publisher:
    """The publisher subprocess: JSON commands in on stdin, one JSON reply per command out."""

    def __init__(self, python: str, env: dict[str, str], cwd: Path, log: IO[str]) -> None:
        self.proc = subprocess.Popen(
            [python, str(cwd / "harness_app.py"), "publish"], cwd=cwd, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )
        self.replies: queue_mod.Queue[dict[str, Any] | None] = queue_mod.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.replies.put(json.loads(line))
        self.replies.put(None)

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        reply = self._reply(timeout)
        if reply is None or reply.get("op") != "ready":
            raise HarnessError("the publisher did not start (see publisher.log in --workdir)")
        return reply

    def _reply(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.replies.get(timeout=timeout)
        except queue_mod.Empty:
            return None

    def publish(self, *, prefix: str, start: int, count: int, rate: float, task: str,
                args: tuple[Any, ...], timeout: float) -> dict[str, Any] | None:
        """Publish and wait for the reply; None when the publisher hung or died."""
        command = {"op": "publish", "prefix": prefix, "start": start, "count": count, "rate": rate,
                   "task": task, "args": list(args)}
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self._reply(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                _stop_group(self.proc, warm_s=1, cold_s=1)
        _stop_group(self.proc, warm_s=1, cold_s=1)


@contextlib.contextmanager
def _exclusive_broker_lock(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    with BROKER_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM to us cleans up like Ctrl-C does (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the run ---------------------------------------------------------------------------------

class _Run:
    def __init__(self, options: RunOptions, progress: Progress | None) -> None:
        self.o = options
        self.progress = progress or (lambda what, done: None)
        self.run_id = uuid.uuid4().hex[:10]
        self.queue = f"celery-doctor.repro.{self.run_id}"
        self.worker_name = f"doctor-{self.run_id}"
        self.prefix = f"doctor-{self.run_id}"
        self.seq = 0
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.publish_hangs = 0
        self.publisher: Publisher | None = None
        self.worker: subprocess.Popen[Any] | None = None
        self.proxy: ProxyThread | None = None  # between the worker and the broker
        self.pub_proxy: ProxyThread | None = None  # between the publisher and the broker

    # files of the run
    def path(self, name: str) -> Path:
        return self.dir / name

    def execute(self) -> RunResult:
        o = self.o
        self.target = brokers.choose(o.broker_url)
        self.versions = versions(o.python)
        if o.config is not None and not o.config.is_file():
            raise HarnessError(f"--config {o.config}: no such file")
        if o.fault is not None and o.fault.find("broker-restart") and not o.hook:
            if self.target.kind == "rabbitmq" and self.target.host in ("127.0.0.1", "localhost"):
                o.hook = DEFAULT_RABBITMQ_RESTART
                self.notes.append("broker-restart uses `rabbitmqctl stop_app; sleep 2; start_app` "
                                  "(under the exclusive broker lock)")
            else:
                raise HarnessError("fault broker-restart needs --hook COMMAND for this broker")
        self.plan = scenarios.plan(
            o.scenario, o.fault, heartbeat=o.heartbeat, acks_late=o.acks_late, pool=o.pool,
            concurrency=o.concurrency, rate=o.rate, duration=o.duration, task_seconds=o.task_seconds)
        self.notes += self.plan.notes
        keep = o.workdir is not None
        if keep:
            assert o.workdir is not None
            o.workdir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f"repro-{o.label}-", dir=o.workdir))
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="celery-doctor-repro-"))
        restart = bool(o.fault is not None and o.fault.find("broker-restart"))
        try:
            with _exclusive_broker_lock(restart and o.lock_broker), _terminate_as_interrupt():
                return self._run()
        finally:
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> RunResult:
        o, plan = self.o, self.plan
        started = time.monotonic()
        self.started_at = datetime.now(UTC)
        broker_log = brokers.log_file(self.target)
        log_offset = broker_log.stat().st_size if broker_log else 0
        leftovers = ledger.BrokerLeftovers(note="the run did not get far enough to check the queue")
        ready_s = None
        worker_exit: int | None = None
        canary: dict[str, Any] = {}
        try:
            self.progress("starting the fault proxy", 0.0)
            self.proxy = ProxyThread(("127.0.0.1", 0), (self.target.host, self.target.port),
                                     event_log=self.path("proxy-events.jsonl"), hook=o.hook)
            address = self.proxy.start()
            # the publisher gets its own proxy with the same fault (minus the restart hook), so
            # the worker's incidents stay separate from producer-side failures
            self.pub_proxy = ProxyThread(("127.0.0.1", 0), (self.target.host, self.target.port),
                                         event_log=self.path("publisher-proxy-events.jsonl"))
            pub_address = self.pub_proxy.start()
            self._write_configs(address, pub_address)
            shutil.copy(APP_FILE, self.path("harness_app.py"))
            if o.scenario == "startup":
                self._set_fault(o.fault)
            self.progress("starting the worker", 0.05)
            t0 = time.monotonic()
            self._start_worker()
            self._start_publisher()
            if o.scenario != "startup":
                self._wait_ready(READY_TIMEOUT_S)
                ready_s = time.monotonic() - t0
                self._set_fault(o.fault)
            budget = max(plan.budget_s, 1.0)
            spent = 0.0
            for step in plan.steps:
                self.progress(step.label or step.op, 0.1 + 0.75 * min(spent / budget, 1.0))
                ts = time.monotonic()
                self._step(step)
                spent += time.monotonic() - ts
                if self.worker is not None and self.worker.poll() is not None:
                    worker_exit = self.worker.returncode
                    self.notes.append(f"the worker exited during the run (status {worker_exit})")
                    break
            self.progress("fault removed: checking the worker still consumes", 0.88)
            self._set_fault(None)
            canary = self._canary()
        finally:
            self.progress("stopping worker, publisher and proxy", 0.93)
            if self.worker is not None and self.worker.poll() is not None and worker_exit is None:
                worker_exit = self.worker.returncode
            alive_at_end = self.worker is not None and self.worker.poll() is None
            _stop_group(self.worker)
            if self.publisher is not None:
                self.publisher.stop()
            for handle in (getattr(self, "_worker_out", None), getattr(self, "_publisher_log", None)):
                if handle is not None:
                    handle.close()
            proxy_events = self.proxy.events if self.proxy is not None else []
            pub_events = self.pub_proxy.events if self.pub_proxy is not None else []
            for thread in (self.proxy, self.pub_proxy):
                if thread is not None:
                    thread.stop()
            if o.hook and o.hook == DEFAULT_RABBITMQ_RESTART:
                # never leave the shared broker stopped, whatever happened to the hook
                subprocess.run("rabbitmqctl -q start_app; rabbitmqctl -q await_startup --timeout 60",
                               shell=True, capture_output=True, timeout=90)
            time.sleep(0.5)  # let the broker requeue what the closed connections held
            leftovers = brokers.inspect_and_delete(self.target, self.queue, self.worker_name)
            self.finished_at = datetime.now(UTC)
        wall = time.monotonic() - started
        self.progress("diagnosing the run with the logs engine", 0.97)
        broker_lines = self._broker_window(broker_log, log_offset, proxy_events)
        report, analysis_note = self._analyse(broker_lines, proxy_events)
        rows = ledger.read_lines(self.path("ledger.jsonl"))
        tasks = ledger.build(rows)
        canary_ids = {tid for tid in tasks if "-canary-" in tid}
        summary = ledger.summarise(tasks, leftovers, exclude=canary_ids)
        expected, expected_why = scenarios.expected_categories(o.fault, o.scenario, plan, proxy_events)
        top = report.findings[0].category if report is not None and report.findings else None
        expected_names = sorted(c.value for c in expected)
        check: dict[str, Any] = {
            "expected": expected_names,
            "why": expected_why,
            "top_finding": top.value if top else None,
            "ok": top in expected if top is not None else False,
        }
        if analysis_note:
            check["note"] = analysis_note
        if not check["ok"]:
            check["message"] = (
                f"self-check failed: the top finding is {top.value if top else 'missing'}, but the "
                f"run should show {' or '.join(expected_names)} ({expected_why})")
        data: dict[str, Any] = {
            "label": o.label,
            "scenario": o.scenario,
            "fault": o.fault.spec if o.fault else None,
            "broker": {"kind": self.target.kind, "url": self.target.url,
                       "chosen_because": self.target.chosen_because},
            "versions": self.versions,
            "python": o.python,
            "config": str(o.config) if o.config else None,
            "settings": {"heartbeat_s": plan.heartbeat, "heartbeat_why": plan.heartbeat_why,
                         "acks_late": plan.acks_late, "pool": plan.pool,
                         "concurrency": plan.concurrency,
                         "heartbeat_from_user_config": bool(o.config and o.heartbeat is None)},
            "queue": self.queue,
            "ledger": summary,
            "verdict": ledger.verdict_line(summary),
            "worker": {"ready_s": round(ready_s, 2) if ready_s is not None else None,
                       "alive_at_end": alive_at_end, "exit_status": worker_exit,
                       "consuming_at_end": canary.get("executed"),
                       "alive_but_not_consuming": bool(alive_at_end and canary.get("executed") is False)},
            "canary": canary,
            "proxy": _proxy_summary(proxy_events),
            "publisher_proxy": _proxy_summary(pub_events),
            "recovery": _recovery(report),
            "self_check": check,
            "wall_s": round(wall, 2),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
            "publish_hangs": self.publish_hangs,
            "notes": self.notes,
            "workdir": str(self.dir) if o.workdir is not None else None,
        }
        files = {"worker_log": str(self.path("worker.log")), "proxy_events": str(self.path("proxy-events.jsonl"))}
        return RunResult(data=data, report=report, files=files)

    # -- setup ---------------------------------------------------------------------------------

    def _write_configs(self, address: tuple[str, int], pub_address: tuple[str, int]) -> None:
        o, plan = self.o, self.plan
        overrides: dict[str, Any] = {
            "broker_url": self.target.through(address),
            "result_backend": None,
            "task_ignore_result": True,
            "imports": (),
            "include": (),
            "task_default_queue": self.queue,
            "task_default_exchange": self.queue,
            "task_default_routing_key": self.queue,
            "task_routes": None,
        }
        if o.config is None or o.heartbeat is not None:
            overrides["broker_heartbeat"] = plan.heartbeat
        if o.config is None or o.acks_late is not None or o.scenario == "long-task":
            overrides["task_acks_late"] = plan.acks_late
        if o.config is None:
            overrides["worker_prefetch_multiplier"] = 4
        if _celery_major(self.versions) >= 5:
            overrides["broker_connection_retry_on_startup"] = True
        config_module(self.path("doctor_worker_config.py"), user_config=o.config, overrides=overrides)
        transport = {"confirm_publish": True} if self.target.kind == "rabbitmq" else None
        overrides["broker_url"] = self.target.through(pub_address)
        config_module(self.path("doctor_publisher_config.py"), user_config=o.config, overrides=overrides,
                      merge_transport=transport)
        for role in ("worker", "publisher"):
            settings = {"ledger": str(self.path("ledger.jsonl")), "queue": self.queue,
                        "config_module": f"doctor_{role}_config", "confirm_timeout": 10}
            self.path(f"settings-{role}.json").write_text(json.dumps(settings), encoding="utf-8")

    def _env(self, role: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"CELERY_DOCTOR_REPRO": str(self.path(f"settings-{role}.json")),
                    "PYTHONPATH": str(self.dir), "TZ": "UTC", "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        env.pop("CELERY_CONFIG_MODULE", None)
        return env

    def _start_worker(self) -> None:
        plan = self.plan
        cmd = [self.o.python, "-m", "celery", "-A", "harness_app", "worker", "-l", "INFO",
               "-Q", self.queue, "-n", f"{self.worker_name}@%h", "-P", plan.pool,
               "-c", str(plan.concurrency), "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-f", str(self.path("worker.log"))]
        self._worker_out = self.path("worker.out").open("w")
        self.worker = subprocess.Popen(cmd, cwd=self.dir, env=self._env("worker"), stdin=subprocess.DEVNULL,
                                       stdout=self._worker_out, stderr=subprocess.STDOUT,
                                       start_new_session=True)

    def _start_publisher(self) -> None:
        self._publisher_log = self.path("publisher.log").open("w")
        self.publisher = Publisher(self.o.python, self._env("publisher"), self.dir, self._publisher_log)
        self.publisher.wait_ready(READY_TIMEOUT_S)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        log = self.path("worker.log")
        while time.monotonic() < deadline:
            if self.worker is not None and self.worker.poll() is not None:
                tail = self.path("worker.out").read_text(errors="replace").strip().splitlines()[-3:]
                raise HarnessError(f"the worker exited at start (status {self.worker.returncode}): "
                                   + " | ".join(tail))
            if log.exists() and " ready." in log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise HarnessError(f"the worker was not ready after {timeout:g} s")

    def _set_fault(self, fault: Fault | None) -> None:
        if self.proxy is not None:
            self.proxy.set_fault(fault)
        if self.pub_proxy is not None:
            self.pub_proxy.set_fault(_without_restart(fault))

    # -- steps -----------------------------------------------------------------------------------

    def _step(self, step: scenarios.Step) -> None:
        t0 = time.monotonic()
        if step.op == "wait":
            self._sleep(step.seconds)
        elif step.op == "publish":
            self._publish(step.count, step.rate, step.task, step.args)
        elif step.op == "drain":
            self._drain(self.plan.drain_s)
        key = f"{step.op}:{step.label}"
        self.timings[key] = self.timings.get(key, 0.0) + time.monotonic() - t0

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, left))
            if self.worker is not None and self.worker.poll() is not None:
                return

    def _publish(self, count: int, rate: float, task: str, args: tuple[Any, ...],
                 prefix: str | None = None) -> dict[str, Any] | None:
        if self.publisher is None:
            return None
        timeout = (count / rate if rate else count * 0.05) + 25.0
        reply = self.publisher.publish(prefix=prefix or self.prefix, start=self.seq, count=count,
                                       rate=rate, task=task, args=args, timeout=timeout)
        self.seq += count
        if reply is None or reply.get("op") != "done":
            # hung on a dead connection (or died): what it managed is in the ledger already
            self.publish_hangs += 1
            self.notes.append(f"the publisher hung or failed after {timeout:.0f} s; restarted it")
            self.publisher.stop()
            try:
                self._start_publisher()
            except HarnessError:
                self.publisher = None
        return reply

    def _drain(self, timeout: float) -> bool:
        """Wait until every confirmed task has succeeded (True) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            tasks = ledger.build(ledger.read_lines(self.path("ledger.jsonl")))
            pending = [t for t in tasks.values() if t.published and not t.succeeded]
            if not pending:
                return True
            if time.monotonic() >= deadline or (self.worker is not None and self.worker.poll() is not None):
                return False
            time.sleep(0.2)

    def _canary(self) -> dict[str, Any]:
        """After the fault is gone: does the worker still take new work, and how fast?
        A canary the broker refused (still restarting) is published again."""
        t0 = time.monotonic()
        deadline = t0 + max(8.0, 2 * self.plan.heartbeat + 6.0) + 12.0
        published = False
        attempts = 0
        while time.monotonic() < deadline:
            if not published and attempts < 10:
                attempts += 1
                reply = self._publish(1, 0, "doctor.noop", (), prefix=f"{self.prefix}-canary")
                published = bool(reply and reply.get("ok"))
            tasks = ledger.build(ledger.read_lines(self.path("ledger.jsonl")))
            if any("-canary-" in t.id and t.succeeded for t in tasks.values()):
                return {"published": True, "executed": True, "attempts": attempts,
                        "latency_s": round(time.monotonic() - t0, 2)}
            if self.worker is not None and self.worker.poll() is not None:
                break
            time.sleep(0.2 if published else 1.0)
        return {"published": published, "executed": False, "attempts": attempts,
                "waited_s": round(time.monotonic() - t0, 2)}

    # -- analysis --------------------------------------------------------------------------------

    def _broker_window(self, log: Path | None, offset: int, proxy_events: list[Any]) -> Path | None:
        if log is None:
            self.notes.append("the broker's log is not readable here: the verdict uses the worker "
                              "log and the proxy's events only")
            return None
        try:
            with log.open("rb") as handle:
                handle.seek(offset if log.stat().st_size >= offset else 0)
                lines = handle.read().decode("utf-8", errors="replace").splitlines()
        except OSError as exc:
            self.notes.append(f"cannot read the broker's log: {exc.strerror}")
            return None
        if self.target.kind == "rabbitmq":
            ports = set()
            for event in proxy_events:
                local = (event.detail or {}).get("local")
                if local and ":" in local:
                    with contextlib.suppress(ValueError):
                        ports.add(int(local.rsplit(":", 1)[1]))
            lines = brokers.rabbitmq_lines_for(lines, ports)
        out = self.path("broker.log")
        out.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        return out

    def _analyse(self, broker_log: Path | None, proxy_events: list[Any]) -> tuple[Report | None, str | None]:
        paths = [str(self.path("worker.log"))]
        if broker_log is not None and broker_log.stat().st_size:
            paths.append(str(broker_log))
        events_file = self.path("proxy-events.jsonl")
        if events_file.exists() and events_file.stat().st_size:
            paths.append(str(events_file))
        try:
            from celery_doctor.pipeline import analyse_logs
        except ImportError as exc:
            return None, f"the logs engine is not available ({exc})"
        try:
            return analyse_logs(paths), None
        except DoctorError as exc:
            return None, f"the logs engine failed on this run's logs: {exc}"


def _without_restart(fault: Fault | None) -> Fault | None:
    """The fault for the publisher's proxy: the broker restart runs once, from the worker's."""
    if fault is None:
        return None
    kept = [part for part in fault.each() if part.kind != "broker-restart"]
    if not kept:
        return None
    return parse_fault("+".join(part.spec for part in kept))


def _celery_major(found: dict[str, Any]) -> int:
    try:
        return int(str(found.get("celery") or "0").split(".")[0])
    except ValueError:
        return 0


def _proxy_summary(events: list[Any]) -> dict[str, Any]:
    from collections import Counter

    kinds = Counter(e.kind.value for e in events)
    return {"connections": kinds.get("connected", 0), "cuts": kinds.get("proxy_cut", 0),
            "blackholed": kinds.get("proxy_blackhole", 0), "healed": kinds.get("proxy_heal", 0),
            "refused": kinds.get("proxy_refuse", 0),
            "decisions": [{"ts": e.ts.isoformat(timespec="milliseconds"), "kind": e.kind.value,
                           "client": e.peer, "message": (e.detail or {}).get("message")}
                          for e in events if e.kind.value != "connected"][:100]}


def _recovery(report: Report | None) -> dict[str, Any]:
    if report is None:
        return {}
    outages = [i.outage_s for i in report.incidents if i.outage_s is not None]
    return {"reconnects": report.summary.get("reconnects"),
            "incidents": len(report.incidents),
            "outages_s": [round(x, 2) for x in outages],
            "longest_outage_s": round(max(outages), 2) if outages else None}


def run(options: RunOptions, progress: Progress | None = None) -> RunResult:
    """Run one reproduction; everything it started is stopped before it returns or raises."""
    return _Run(options, progress).execute()


def _finding_brief(report: Report | None) -> list[dict[str, Any]]:
    if report is None:
        return []
    return [{"category": f.category.value, "severity": f.severity.value, "title": f.title,
             "confidence": round(f.confidence, 2)} for f in report.findings]


def to_report(results: list[RunResult]) -> Report:
    """One Report for one run, or for a --compare pair (the last run is the user's config)."""
    for result in results:
        result.data["findings"] = _finding_brief(result.report)
        result.data["categories"] = [f["category"] for f in result.data["findings"]]
    main = results[-1]
    engine = main.report or Report(command="repro")
    warnings = list(engine.warnings)
    for result in results:
        check = result.data["self_check"]
        prefix = f"{result.data['label']}: " if len(results) > 1 else ""
        if not check["ok"]:
            warnings.append(prefix + check["message"])
        if check.get("note"):
            warnings.append(prefix + check["note"])
    data: dict[str, Any] = dict(main.data) if len(results) == 1 else {"runs": [r.data for r in results]}
    summary = {"scenario": main.data["scenario"], "fault": main.data["fault"],
               "ledger": main.data["verdict"], "wall_s": main.data["wall_s"]}
    return Report(command="repro", findings=engine.findings, incidents=engine.incidents,
                  events=engine.events, sources=engine.sources, summary=summary, data=data,
                  warnings=warnings)
