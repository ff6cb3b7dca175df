"""The reproduction harness: one real Celery worker (the user's interpreter), one queue, a
trivial task and a sleep task, a publisher, and the fault proxy between both of them and the
broker. It runs a scenario and returns what it observed (``facts.RunFacts``): the ledger, the
proxies' decisions, the worker's state and the run's log files. Judging them is
``pipeline.reproduce``'s job, through the same engine as every other input.

Everything the run starts is stopped in ``finally``: the worker and the publisher run in their
own sessions (Ctrl-C reaches only us; we stop them), the proxy thread is stopped, and the
run's queue (a unique name) is emptied into the ledger and deleted. A guard process
(``reaper.py``) does the same if celery-doctor dies before its ``finally`` could.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue as queue_mod
import re
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
from pathlib import Path
from typing import IO, Any

from celery_doctor.model import DoctorError
from celery_doctor.repro import brokers, ledger, middlebox, scenarios
from celery_doctor.repro.facts import Canary, RunFacts, WorkerState
from celery_doctor.repro.proxy import Fault, ProxyThread, parse_fault
from celery_doctor.status import interrupt

APP_FILE = Path(__file__).with_name("harness_app.py")
BROKER_LOCK = Path("/tmp/celery-doctor-broker.lock")
READY_TIMEOUT_S = 45.0
DEFAULT_RABBITMQ_RESTART = "rabbitmqctl -q stop_app; sleep 2; rabbitmqctl -q start_app"
PUBLISH_TIMEOUT_S = 5  # the publisher's confirm and socket timeouts
REDIS_PUBLISH_TIMEOUT_S = 3  # a Redis LPUSH answers in milliseconds: a dead flow is known sooner
WATCHDOG_MARGIN_S = 20.0  # beyond a publish command's deadline: connect retries, one last confirm

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
    # broker_transport_options merged over the config's (a fix under test, e.g. --verify-fix)
    transport_options: dict[str, Any] = field(default_factory=dict)
    middlebox: str = "auto"  # "auto" (kernel when it can), "kernel", "proxy"


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
        raise HarnessError(_no_celery(python))
    return found


def _no_celery(python: str) -> str:
    """What to do when the interpreter under test has no Celery: the worker must run in the
    user's Celery environment, never in one celery-doctor would force on them."""
    where = f"Celery is not importable by {python}"
    if "pipx" in python or "/pipx/" in sys.prefix:
        where += (" (celery-doctor's own pipx environment: pipx installs it without Celery; "
                  "`pipx inject celery-doctor 'celery[redis]'` adds it there)")
    return (f"{where}. repro runs a real worker: install Celery with your broker's extra "
            "(pip install 'celery[redis]' or 'celery[librabbitmq]'/plain 'celery' for RabbitMQ) into the "
            "environment you want to test and pass --python /path/to/that/venv/bin/python, "
            "or install celery-doctor[repro] to test with the Celery it brings")


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

def _stop_group(proc: subprocess.Popen[Any] | None, *, warm_s: float = 2.5, cold_s: float = 1.5) -> None:
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
                args: tuple[Any, ...], timeout: float, deadline: float = 0.0) -> dict[str, Any] | None:
        """Publish and wait for the reply; None when the publisher hung or died."""
        command = {"op": "publish", "prefix": prefix, "start": start, "count": count, "rate": rate,
                   "task": task, "args": list(args), "deadline_s": deadline}
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
    """SIGTERM and SIGHUP (the terminal closing) clean up like Ctrl-C does; only possible from
    the main thread. While the cleanup runs, a second signal is ignored so it can finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- the run ---------------------------------------------------------------------------------

class _Guard:
    """The reaper process (``repro/reaper.py``): told what the run started, it cleans up if
    celery-doctor dies before its own ``finally`` has done so."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        with contextlib.suppress(OSError):
            self.proc = subprocess.Popen([sys.executable, "-m", "celery_doctor.repro.reaper"],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def tell(self, **message: Any) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()

    def release(self) -> None:
        """Everything is cleaned up: the guard exits without acting."""
        self.tell(done=True)
        if self.proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


ERROR_LINE = re.compile(r"\[(?:ERROR|CRITICAL)/|ACCESS_REFUSED|NOT_ALLOWED|AuthenticationError|"
                        r"WRONGPASS|NOAUTH|Cannot connect to|Error: |Traceback|^\w+(?:Error|Exception): ")


FATAL_AT_START = re.compile(r"ACCESS_REFUSED|NOT_ALLOWED|WRONGPASS|NOAUTH|DENIED Redis|invalid password")


def _error_lines(path: Path, limit: int = 6) -> list[str]:
    """The lines of a worker's log or output that say what went wrong, as FILE:LINE: TEXT,
    most specific first (an access refusal before the generic 'cannot connect')."""
    if not path.exists():
        return []
    found: list[tuple[int, str]] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if ERROR_LINE.search(line):
                found.append((number, line.rstrip()[:300]))
    specific = [f for f in found if FATAL_AT_START.search(f[1]) or "Auth" in f[1]]
    ordered = specific + [f for f in found if f not in specific]
    return [f"{path.name}:{n}: {text}" for n, text in ordered[:limit]]


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
        self.not_sent_reason: str | None = None
        self.publisher: Publisher | None = None
        self.worker: subprocess.Popen[Any] | None = None
        self.proxy: ProxyThread | None = None  # between the worker and the broker
        self.pub_proxy: ProxyThread | None = None  # between the publisher and the broker
        self.guard: _Guard | None = None
        self.kernel: middlebox.KernelMiddlebox | None = None
        self.witness_bound = False

    # files of the run
    def path(self, name: str) -> Path:
        return self.dir / name

    def execute(self) -> RunFacts:
        o = self.o
        self.target = brokers.choose(o.broker_url)
        self.versions = versions(o.python)
        if self.target.kind == "redis" and not self.versions.get("redis"):
            raise HarnessError(f"the redis client library is not importable by {o.python}: install "
                               "Celery's redis extra there (pip install 'celery[redis]')")
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
            concurrency=o.concurrency, rate=o.rate, duration=o.duration, task_seconds=o.task_seconds,
            broker=self.target.kind)
        self.notes += self.plan.notes
        self.use_kernel, self.middlebox_why = middlebox.choose(o.fault, self.target.host, o.middlebox != "proxy")
        if o.middlebox == "kernel" and not self.use_kernel:
            raise HarnessError(f"--middlebox kernel is not possible here: it would fall back to {self.middlebox_why}")
        self.keep = o.workdir is not None
        if self.keep:
            assert o.workdir is not None
            try:
                o.workdir.mkdir(parents=True, exist_ok=True)
                self.dir = Path(tempfile.mkdtemp(prefix=f"repro-{o.label}-", dir=o.workdir))
            except OSError as exc:
                raise HarnessError(f"--workdir {o.workdir}: {exc.strerror or exc}") from None
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="celery-doctor-repro-"))
        restart = bool(o.fault is not None and o.fault.find("broker-restart"))
        try:
            with _exclusive_broker_lock(restart and o.lock_broker), _terminate_as_interrupt():
                return self._run()
        except HarnessError as exc:
            where = (f"the run's files are in {self.dir}" if self.keep else
                     "rerun with --workdir DIR to keep the run's files")
            raise HarnessError(f"{exc} ({where})") from None

    def _run(self) -> RunFacts:
        o, plan = self.o, self.plan
        started = time.monotonic()
        broker_log = brokers.log_file(self.target)
        log_offset = broker_log.stat().st_size if broker_log else 0
        leftovers = ledger.BrokerLeftovers(note="the run did not get far enough to check the queue")
        worker = WorkerState()
        canary = Canary()
        self.guard = _Guard()
        self.guard.tell(run={"url": self.target.url, "kind": self.target.kind, "host": self.target.host,
                             "port": self.target.port, "queue": self.queue, "worker_name": self.worker_name})
        finished = False
        try:
            if self.use_kernel:
                self.progress("starting the kernel middlebox", 0.0)
                self.kernel = middlebox.KernelMiddlebox(self.run_id, self.target.port,
                                                        self.path("proxy-events.jsonl"),
                                                        self.path("publisher-proxy-events.jsonl"))
                self.guard.tell(netns=self.kernel.name)
                self.kernel.start()
                address, pub_address = self.kernel.address("worker"), self.kernel.address("publisher")
            else:
                self.progress("starting the fault proxy", 0.0)
                self.proxy = ProxyThread(("127.0.0.1", 0), (self.target.host, self.target.port),
                                         event_log=self.path("proxy-events.jsonl"), hook=o.hook)
                address = self.proxy.start()
                # the publisher gets its own proxy with the same fault (minus the restart hook),
                # so the worker's incidents stay separate from producer-side failures
                self.pub_proxy = ProxyThread(("127.0.0.1", 0), (self.target.host, self.target.port),
                                             event_log=self.path("publisher-proxy-events.jsonl"))
                pub_address = self.pub_proxy.start()
            self._write_configs(address, pub_address)
            shutil.copy(APP_FILE, self.path("harness_app.py"))
            # the witness before the first publish: on RabbitMQ once the worker declared the
            # exchange (its type is the config's), except at startup, where tasks go out first
            # (RabbitMQ only: on Redis kombu routes to each bound list in its own command, so a
            # reset between them would make the witness wrong; delivery tags count there)
            early_witness = o.scenario == "startup"
            if early_witness and self.target.kind == "rabbitmq":
                self._bind_witness()
            if o.scenario == "startup":
                self._set_fault(o.fault)
            self.progress("starting the worker", 0.05)
            t0 = time.monotonic()
            self._start_worker()
            self._start_publisher()
            if o.scenario != "startup":
                self._wait_ready(READY_TIMEOUT_S)
                worker.ready_s = round(time.monotonic() - t0, 2)
                if not early_witness and self.target.kind == "rabbitmq":
                    self._bind_witness()
                self._set_fault(o.fault)
            budget = max(plan.budget_s, 1.0)
            spent = 0.0
            for step in plan.steps:
                self.progress(step.label or step.op, 0.1 + 0.75 * min(spent / budget, 1.0))
                ts = time.monotonic()
                self._step(step)
                spent += time.monotonic() - ts
                if self.worker is not None and self.worker.poll() is not None:
                    worker.exit_status = self.worker.returncode
                    self.notes.append(f"the worker exited during the run (status {worker.exit_status})")
                    break
            self.progress("fault removed: checking the worker still consumes", 0.88)
            self._set_fault(None)
            canary = self._canary()
            finished = True
        finally:
            self.progress("stopping worker, publisher and proxy", 0.93)
            if self.worker is not None and self.worker.poll() is not None and worker.exit_status is None:
                worker.exit_status = self.worker.returncode
            worker.alive_at_end = self.worker is not None and self.worker.poll() is None
            # a worker that no longer consumed has nothing to finish: a short warm shutdown
            _stop_group(self.worker, warm_s=2.5 if canary.executed or not finished else 1.0)
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
            if self.kernel is not None:
                self.kernel.close()
                proxy_events, pub_events = self.kernel.events["worker"], self.kernel.events["publisher"]
            if o.hook and o.hook == DEFAULT_RABBITMQ_RESTART:
                # never leave the shared broker stopped, whatever happened to the hook
                subprocess.run("rabbitmqctl -q start_app; rabbitmqctl -q await_startup --timeout 60",
                               shell=True, capture_output=True, timeout=90)
            if finished:
                time.sleep(0.5)  # let the broker requeue what the closed connections held
            leftovers = brokers.inspect_and_delete(self.target, self.queue, self.worker_name,
                                                   witness=self.witness_bound)
            self.guard.release()
            if not self.keep and not finished:
                shutil.rmtree(self.dir, ignore_errors=True)
        wall = time.monotonic() - started
        worker.errors = _error_lines(self.path("worker.log")) or _error_lines(self.path("worker.out"))
        broker_lines = self._broker_window(broker_log, log_offset, proxy_events)
        logs = [self.path("worker.log")]
        if broker_lines is not None and broker_lines.stat().st_size:
            logs.append(broker_lines)
        events_file = self.path("proxy-events.jsonl")
        if events_file.exists() and events_file.stat().st_size:
            logs.append(events_file)
        return RunFacts(
            label=o.label, scenario=o.scenario, fault=o.fault, target=self.target, versions=self.versions,
            python=o.python, config=o.config, plan=plan, effective=self._effective(),
            tasks=ledger.build(ledger.read_lines(self.path("ledger.jsonl"))), leftovers=leftovers,
            worker=worker, canary=canary, worker_events=proxy_events, publisher_events=pub_events,
            middlebox="kernel" if self.kernel is not None else "proxy", middlebox_why=self.middlebox_why,
            queue=self.queue,
            directory=self.dir, kept=self.keep, logs=logs, wall_s=round(wall, 2),
            timings={k: round(v, 2) for k, v in self.timings.items()}, notes=self.notes,
            publish_hangs=self.publish_hangs, not_sent_reason=self.not_sent_reason)

    def _effective(self) -> dict[str, Any]:
        try:
            found = json.loads(self.path("effective-worker.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

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
        config_module(self.path("doctor_worker_config.py"), user_config=o.config, overrides=overrides,
                      merge_transport=o.transport_options or None)
        # the publisher is the harness's instrument, not the subject: bounded waits everywhere,
        # so a publish into a dead socket fails in seconds instead of hanging the run
        transport: dict[str, Any] = dict(o.transport_options or {})
        if self.target.kind == "rabbitmq":
            transport["confirm_publish"] = True
        else:
            transport.update(socket_timeout=REDIS_PUBLISH_TIMEOUT_S, socket_connect_timeout=REDIS_PUBLISH_TIMEOUT_S)
        overrides["broker_url"] = self.target.through(pub_address)
        config_module(self.path("doctor_publisher_config.py"), user_config=o.config, overrides=overrides,
                      merge_transport=transport)
        for role in ("worker", "publisher"):
            settings = {"ledger": str(self.path("ledger.jsonl")), "queue": self.queue,
                        "config_module": f"doctor_{role}_config", "confirm_timeout": PUBLISH_TIMEOUT_S,
                        "effective": str(self.path(f"effective-{role}.json"))}
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
        if self.guard is not None:
            self.guard.tell(pgid=self.worker.pid)

    def _start_publisher(self) -> None:
        if getattr(self, "_publisher_log", None) is None:
            self._publisher_log = self.path("publisher.log").open("a")
        self.publisher = Publisher(self.o.python, self._env("publisher"), self.dir, self._publisher_log)
        if self.guard is not None:
            self.guard.tell(pgid=self.publisher.proc.pid)
        self.publisher.wait_ready(READY_TIMEOUT_S)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        log = self.path("worker.log")
        while time.monotonic() < deadline:
            if self.worker is not None and self.worker.poll() is not None:
                errors = _error_lines(log) or _error_lines(self.path("worker.out"))
                raise HarnessError(f"the worker exited at start (status {self.worker.returncode}): "
                                   + (" | ".join(errors[:3]) or "it logged no error"))
            text = log.read_text(errors="replace") if log.exists() else ""
            if " ready." in text:
                return
            if len(FATAL_AT_START.findall(text)) >= 2:  # the broker refuses us: retrying is pointless
                raise HarnessError("the broker refused the worker: " + " | ".join(_error_lines(log)[:2]))
            time.sleep(0.1)
        errors = _error_lines(log)
        raise HarnessError(f"the worker was not ready after {timeout:g} s"
                           + (": " + " | ".join(errors[:3]) if errors else ""))

    def _bind_witness(self) -> None:
        self.witness_bound = True  # set first: an interrupt inside the bind still removes it
        why_not = brokers.bind_witness(self.target, self.queue, declare_exchange=self.o.config is None)
        if why_not:
            self.notes.append(why_not + " (a task run twice is told a second publish from a redelivery "
                                        "by the worker's redelivered flag only)")

    def _set_fault(self, fault: Fault | None) -> None:
        if self.kernel is not None:
            self.kernel.set_fault(fault)  # one NAT for both sides, as on a real gateway
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
        prefix = prefix or self.prefix
        start = self.seq
        self.seq += count
        # every task is in the ledger before the publisher is asked for it
        ledger.append(self.path("ledger.jsonl"),
                      [{"ev": "planned", "id": ledger.task_id(prefix, start + i), "seq": start + i}
                       for i in range(count)])
        if self.publisher is None:
            self.not_sent_reason = self.not_sent_reason or "the publisher could not be restarted"
            return None
        planned_s = count / rate if rate else count * 0.05
        # a publisher slower than the plan (latency, a slow broker) stops at this deadline and
        # the rest stay 'not sent', named; the watchdog covers a publisher stuck inside a call
        deadline = planned_s * 1.5 + PUBLISH_TIMEOUT_S + 2.0  # room for one timed-out publish
        timeout = deadline + WATCHDOG_MARGIN_S
        reply = self.publisher.publish(prefix=prefix, start=start, count=count, rate=rate,
                                       task=task, args=args, timeout=timeout, deadline=deadline)
        if reply is not None and reply.get("op") == "done" and reply.get("not_sent"):
            achieved = (reply.get("sent", 0) / reply["elapsed"]) if reply.get("elapsed") else 0.0
            self.not_sent_reason = (
                f"the publisher fell behind the plan: {reply.get('sent')} of {count} sent in the "
                f"{deadline:.1f} s allowed ({achieved:.1f}/s"
                + (f" against {rate:g}/s planned" if rate else "") + "); each publish waits for the "
                "broker's answer through the fault")
            self.notes.append(self.not_sent_reason)
        if reply is None or reply.get("op") != "done":
            # hung on a dead connection (or died): what it managed is in the ledger already
            self.publish_hangs += 1
            self.notes.append(f"the publisher hung or failed (no answer after {timeout:.0f} s); "
                              "restarted it")
            self.publisher.stop()
            try:
                self._start_publisher()
            except HarnessError:
                self.publisher = None
        return reply

    def _drain(self, timeout: float) -> bool:
        """Wait until every task sent has succeeded (True), the timeout passes, or the ledger
        stops moving for a while (a worker that no longer consumes will not drain)."""
        deadline = time.monotonic() + timeout
        stall = max(4.0, 2 * self.plan.heartbeat + 3.0)
        last_size, last_change = -1, time.monotonic()
        while True:
            path = self.path("ledger.jsonl")
            tasks = ledger.build(ledger.read_lines(path))
            pending = [t for t in tasks.values() if (t.published or t.sending) and not t.succeeded
                       and t.published is not False]
            if not pending:
                return True
            size = path.stat().st_size if path.exists() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            now = time.monotonic()
            if now >= deadline or now - last_change >= stall or (
                    self.worker is not None and self.worker.poll() is not None):
                return False
            time.sleep(0.2)

    def _canary(self) -> Canary:
        """After the fault is gone: does the worker still take new work, and how fast?
        A canary the broker refused (still restarting) is published again."""
        t0 = time.monotonic()
        restart = bool(self.o.fault is not None and self.o.fault.find("broker-restart"))
        startup = self.o.scenario == "startup"
        # a worker whose socket died unnoticed never consumes: wait long enough for heartbeats
        # (2 intervals) or a reconnect backoff (startup, restart) to act, not longer
        wait = max(6.0, 2 * self.plan.heartbeat + 4.0)
        if self.target.kind == "redis":
            # kombu replaces a dead Redis connection after a socket timeout (if any) plus two
            # health-check intervals; its default (25 s) is longer than a run: wait at most 15 s
            configured = self._effective().get("broker_transport_options")
            options = {**(configured if isinstance(configured, dict) else {}), **self.o.transport_options}
            with contextlib.suppress(TypeError, ValueError):
                timeout = float(options.get("socket_timeout") or 0)
                interval = float(options.get("health_check_interval", 25) or 0)
                if timeout:
                    wait = min(15.0, max(wait, timeout + 2 * interval + 3.0))
        deadline = t0 + wait + (12.0 if restart or startup else 0.0)
        canary = Canary()
        while time.monotonic() < deadline:
            if not canary.published and canary.attempts < 10:
                canary.attempts += 1
                reply = self._publish(1, 0, "doctor.noop", (), prefix=f"{self.prefix}-canary")
                canary.published = bool(reply and reply.get("ok"))
            tasks = ledger.build(ledger.read_lines(self.path("ledger.jsonl")))
            if any("-canary-" in t.id and t.succeeded for t in tasks.values()):
                canary.executed = True
                canary.latency_s = round(time.monotonic() - t0, 2)
                return canary
            if self.worker is not None and self.worker.poll() is not None:
                break
            time.sleep(0.2 if canary.published else 1.0)
        canary.waited_s = round(time.monotonic() - t0, 2)
        return canary

    # -- the broker's log ----------------------------------------------------------------------

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


def discard(facts: RunFacts) -> None:
    """Remove the run's folder once it has been analysed, unless --workdir asked to keep it."""
    if not facts.kept:
        shutil.rmtree(facts.directory, ignore_errors=True)


def run(options: RunOptions, progress: Progress | None = None) -> RunFacts:
    """Run one reproduction and return what it observed; everything it started is stopped
    before it returns or raises (and by the guard process if celery-doctor itself dies)."""
    return _Run(options, progress).execute()
