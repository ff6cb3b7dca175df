"""The command line: each command parses its arguments, runs one pipeline, hands the result
to ``report/``. This is the only module that writes to the terminal.

Exit statuses are :class:`celery_doctor.status.ExitStatus`. Every error is one line on stderr:
a stage's own error (``DoctorError``) or a usage error exits BAD_INPUT; anything else that
escapes is a bug in celery-doctor and exits INTERNAL with one redacted line, the traceback only
when ``CELERY_DOCTOR_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import click

from celery_doctor import __version__
from celery_doctor.model import DoctorError, Report, Severity
from celery_doctor.redact import redact
from celery_doctor.report import FORMATS, ReportError, render
from celery_doctor.status import ExitStatus, terminate_as_interrupt

PROG = "celery-doctor"


class InputError(DoctorError):
    """Unusable command-line input (the stages raise their own DoctorError subclasses)."""


def error_line(message: str) -> None:
    """The one line every failure prints: redacted, prefixed, never wrapped."""
    text = " ".join(redact(message).split())
    click.echo(f"{PROG}: error: {text}", err=True)


def fail(message: str) -> NoReturn:
    error_line(message)
    sys.exit(ExitStatus.BAD_INPUT)


def debug() -> bool:
    return os.environ.get("CELERY_DOCTOR_DEBUG", "").strip().lower() not in ("", "0", "no", "false")


def internal_error(exc: BaseException) -> NoReturn:
    """A bug, not the user's input: one redacted line (the traceback only on request)."""
    if debug():
        import traceback

        click.echo(redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))), err=True)
    detail = str(exc) or "(no message)"
    click.echo(f"{PROG}: internal error: {type(exc).__name__}: {' '.join(redact(detail).split())}"
               f" (CELERY_DOCTOR_DEBUG=1 shows the traceback)", err=True)
    sys.exit(ExitStatus.INTERNAL)


def usage_error(exc: click.ClickException) -> ExitStatus:
    """click's three-line usage message as one line that names the command's --help."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if isinstance(exc, click.UsageError) and ctx is not None else ""
    error_line(exc.format_message().rstrip(".") + hint)
    return ExitStatus.BAD_INPUT


def raw_main(args: Sequence[str] | None = None) -> ExitStatus:
    """Run one command and return its status instead of exiting (tests call this in-process)."""
    try:
        code = main.main(args=list(args) if args is not None else None, prog_name=PROG, standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(N) returns N without standalone mode
            return ExitStatus(code) if code in set(ExitStatus) else ExitStatus.BAD_INPUT
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return ExitStatus.OK
        if isinstance(code, int):
            return ExitStatus(code) if code in set(ExitStatus) else ExitStatus.INTERNAL
        error_line(str(code))
        return ExitStatus.BAD_INPUT
    except BrokenPipeError:  # `celery-doctor ... | head`: the reader had enough; say nothing
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK
    except click.ClickException as exc:
        return usage_error(exc)
    except click.Abort:
        click.echo(f"{PROG}: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except KeyboardInterrupt:
        click.echo(f"{PROG}: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except DoctorError as exc:
        error_line(str(exc))
        return ExitStatus.BAD_INPUT
    except Exception as exc:  # the last line of defence: a bug is one line too
        with contextlib.suppress(SystemExit):
            internal_error(exc)
        return ExitStatus.INTERNAL
    return ExitStatus.OK


def run() -> NoReturn:
    """The console script. Once the command is done the process ends at once, its output flushed:
    the interpreter's own teardown would free every event, buffer and module one by one, ~50 ms
    after a 1 GB log, and nothing of ours runs at exit (the scan's pool is already joined)."""
    terminate_as_interrupt()
    code = raw_main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say there
            stream.flush()
    os._exit(int(code))


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--format, --output and --fail-on, shared by every command."""
    options = (
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                     help="Output format."),
        click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
                     help="Write the report to this file instead of stdout."),
        click.option("--fail-on", type=click.Choice([s.value for s in Severity]), default="medium",
                     show_default=True, help="Exit 1 when a finding has at least this severity."),
    )
    for option in reversed(options):
        func = option(func)
    return func


def output_width(to_terminal: bool) -> int:
    """COLUMNS when set (also on a pipe: `COLUMNS=80 celery-doctor ... | less`), else the terminal's
    width, else 110 for files and pipes; never below 60, where panels stop making sense."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return max(60, int(columns))
    import shutil  # here: `--help` starts faster without it

    return max(60, shutil.get_terminal_size((110, 24)).columns) if to_terminal else 110


def write_out(text: str, output: str | None) -> None:
    """The rendered text to --output or stdout."""
    if output:
        from pathlib import Path  # here: `--help` starts faster without it

        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    else:
        try:
            click.echo(text, nl=False)
            sys.stdout.flush()
        except OSError as exc:  # a full disk, a closed pipe: one line, not a traceback at exit
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
            fail(f"cannot write the report to stdout: {exc.strerror or exc}")


def emit(report: Report, fmt: str, output: str | None, fail_on: str) -> NoReturn:
    """Render, write, and exit with the status the findings call for."""
    to_terminal = output is None and sys.stdout.isatty()
    width = output_width(to_terminal)
    try:
        text = render(report, fmt, color=to_terminal and fmt == "text", width=width)
    except ReportError as exc:
        fail(str(exc))
    write_out(text, output)
    worst = report.worst()
    threshold = Severity(fail_on)
    sys.exit(ExitStatus.FINDINGS if worst is not None and worst.rank >= threshold.rank else ExitStatus.OK)


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar on stderr for long reads; silent when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield lambda name, done, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"{label}: {name}", total=total or None)
            bar.update(tasks[name], completed=done)

        yield update


def _version(ctx: click.Context, value: bool) -> None:
    """--version names the log scanner's matcher engine (Hyperscan or the stdlib fallback)."""
    if not value or ctx.resilient_parsing:
        return
    from celery_doctor.ingest import counting
    from celery_doctor.ingest.matcher import ENGINE

    click.echo(f"celery-doctor, version {__version__} (log matcher: {ENGINE}; line count: {counting.engine()})")
    ctx.exit()


@contextlib.contextmanager
def busy(label: str) -> Iterator[None]:
    """A rich spinner on stderr for steps that can take seconds (probes, imports); nothing when
    stderr is not a terminal, so pipes and CI logs stay clean."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(label):
        yield


class DoctorGroup(click.Group):
    """Turns stage errors into one line and BAD_INPUT, anything else into one INTERNAL line.

    Here (not only in :func:`raw_main`) so that ``celery doctor`` — celery's own click group
    invoking this one — gets the same single lines and statuses.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DoctorError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo(f"{PROG}: interrupted", err=True)
            sys.exit(ExitStatus.INTERRUPTED)
        except Exception as exc:
            internal_error(exc)


@click.group(name="doctor", cls=DoctorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _p, v: _version(ctx, v),
              help="Show the version (and the log matcher in use) and exit.")
def main() -> None:
    """Find out why Celery workers lose their broker connection, and prove the fix."""


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--format-hint", default=None,
              help="Force the log format of every file instead of sniffing it.")
@output_options
def logs(files: tuple[str, ...], format_hint: str | None, fmt: str, output: str | None,
         fail_on: str) -> None:
    """Merge worker, kombu and broker logs; say who closed each connection, and when.

    FILES are worker/beat logs, RabbitMQ or Redis server logs, plain, .gz or - for stdin;
    a folder means every file inside it, a quoted glob the files it matches.
    """
    from celery_doctor.pipeline import analyse_logs, expand_log_paths

    paths = expand_log_paths(list(files))
    with progress_bar("reading logs") as progress:
        report = analyse_logs(paths, format_hint=format_hint, progress=progress)
    emit(report, fmt, output, fail_on)


@main.command()
@click.argument("url")
@click.option("--heartbeat", type=click.IntRange(min=0), default=120, show_default=True,
              help="The broker_heartbeat your Celery config asks for (RabbitMQ).")
@click.option("--management", "management_url", default=None, metavar="URL",
              help="RabbitMQ management API [default: http://BROKER-HOST:15672, same credentials].")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=5.0, show_default=True,
              help="Wall-clock budget of the whole probe (DNS, handshake, management API, churn sample).")
@click.option("--churn-interval", type=click.FloatRange(min=0, max=60), default=5.0,
              show_default=True, help="Seconds between the two connection-churn samples (0: one), within --timeout.")
@click.option("--sentinel-master", default=None, metavar="NAME",
              help="Master name for sentinel:// URLs (needed when a Sentinel knows several).")
@output_options
def broker(url: str, heartbeat: int, management_url: str | None, timeout: float,
           churn_interval: float, sentinel_master: str | None, fmt: str, output: str | None,
           fail_on: str) -> None:
    """Confirm the broker's health: reachability, login, heartbeat, alarms, limits, churn.

    URL is an amqp://, amqps://, pyamqp://, redis://, rediss:// or sentinel:// broker URL.
    Exit 2 when the URL is bad or nothing answers there; a refused login is a finding (exit 1).
    """
    from celery_doctor.broker import ProbeOptions
    from celery_doctor.pipeline import check_broker

    options = ProbeOptions(timeout=timeout, heartbeat=heartbeat, management_url=management_url,
                           churn_interval=churn_interval, sentinel_master=sentinel_master)
    with busy(f"probing {redact(url)} (churn sampled over {churn_interval:g} s)"):
        report = check_broker(url, options)
    emit(report, fmt, output, fail_on)


@main.command()
@click.option("--scenario", type=click.Choice(["startup", "idle", "load", "long-task"]), default="idle",
              show_default=True, help="What the worker does while the fault is in place.")
@click.option("--fault", "fault_spec", default=None, metavar="SPEC",
              help="idle-cut:S[:rst|fin|silent], blackhole[:AFTER[:FOR]], reset-under-load:P, "
                   "reset-after-bytes:N, latency:MS[:JITTER], bandwidth:KBPS, refuse, broker-restart.")
@click.option("--broker", "broker_url", default=None, metavar="URL",
              help="amqp:// or redis:// broker [default: local RabbitMQ, else local Redis].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Your celeryconfig.py, applied on top of the minimal config.")
@click.option("--compare", is_flag=True, help="Run minimal and --config side by side.")
@click.option("--python", "python", default=None, metavar="PATH",
              help="Interpreter with your Celery/kombu versions [default: this one].")
@click.option("--heartbeat", type=click.FloatRange(min=0), default=None,
              help="broker_heartbeat in seconds [default: chosen per scenario and fault].")
@click.option("--acks-late/--acks-early", default=None, help="task_acks_late for the run.")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads", "eventlet", "gevent"]), default=None,
              help="Worker pool [default: prefork; solo for long-task].")
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=2, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.1, max=5000), default=50.0, show_default=True,
              help="load: tasks per second.")
@click.option("--duration", type=click.FloatRange(min=0.5, max=600), default=10.0, show_default=True,
              help="load: seconds of publishing.")
@click.option("--task-seconds", type=click.FloatRange(min=0.1, max=600), default=None,
              help="long-task: how long the task runs.")
@click.option("--hook", default=None, metavar="COMMAND",
              help="broker-restart: the shell command that restarts the broker.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep the run's logs, ledger and proxy events in this folder (the report says where).")
@click.option("--middlebox", type=click.Choice(["auto", "kernel", "proxy"]), default="auto", show_default=True,
              help="What cuts the flows: a kernel NAT (netns + nftables, needs root; idle cuts) or the "
                   "userspace proxy; auto takes the kernel one when it can. The report says which.")
@click.option("--verify-fix", is_flag=True,
              help="Rerun the same fault with the fix the verdict proposes and say whether it did harm.")
@output_options
def repro(scenario: str, fault_spec: str | None, broker_url: str | None, config_file: str | None,
          compare: bool, python: str | None, heartbeat: float | None, acks_late: bool | None,
          pool: str | None, concurrency: int, rate: float, duration: float, task_seconds: float | None,
          hook: str | None, workdir: str | None, middlebox: str, verify_fix: bool, fmt: str, output: str | None,
          fail_on: str) -> None:
    """Reproduce a connection failure: one real worker, one queue, a fault proxy, a task ledger.

    The worker runs in your interpreter (--python) with a trivial task; the proxy between it and
    the broker injects the fault; the ledger proves what happened to every task; the run's own
    logs are diagnosed by the same engine as `logs`.
    """
    from pathlib import Path

    from celery_doctor.pipeline import reproduce_runs
    from celery_doctor.repro.harness import RunOptions
    from celery_doctor.repro.proxy import parse_fault

    if compare and not config_file:
        raise InputError("--compare needs --config FILE (it runs minimal and your config side by side)")
    if config_file and not Path(config_file).is_file():
        raise InputError(f"--config {config_file}: no such file")
    options = RunOptions(
        scenario=scenario, fault=parse_fault(fault_spec) if fault_spec else None, broker_url=broker_url,
        config=Path(config_file) if config_file else None, python=python or sys.executable,
        heartbeat=heartbeat, acks_late=acks_late, pool=pool, concurrency=concurrency, rate=rate,
        duration=duration, task_seconds=task_seconds, hook=hook, workdir=Path(workdir) if workdir else None,
        middlebox=middlebox)
    with run_progress() as progress:
        report = reproduce_runs(options, compare, progress=progress, verify_fix=verify_fix)
    emit(report, fmt, output, fail_on)


@contextlib.contextmanager
def run_progress() -> Iterator[Callable[[str, float], None]]:
    """A spinner with the current step on stderr while a reproduction runs (terminals only)."""
    if not sys.stderr.isatty():
        yield lambda what, done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("repro", total=1.0)

        def update(what: str, done: float) -> None:
            bar.update(task, description=what, completed=done)

        yield update


def _address(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"{what} {value!r}: expected HOST:PORT")
    return (host.strip("[]") or "127.0.0.1", int(port))


@main.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Where to listen; port 0 picks a free port (printed at start).")
@click.option("--upstream", default="127.0.0.1:5672", show_default=True, metavar="HOST:PORT")
@click.option("--fault", "fault_spec", default=None, metavar="SPEC", help="As for `repro --fault`.")
@click.option("--hook", default=None, metavar="COMMAND", help="broker-restart: the restart command.")
@click.option("--event-log", type=click.Path(dir_okay=False), default=None,
              help="Also append every decision as a JSON line to this file.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds [default: until Ctrl-C].")
def proxy(listen: str, upstream: str, fault_spec: str | None, hook: str | None, event_log: str | None,
          duration: float | None) -> None:
    """Run the fault proxy alone, printing its decisions as they happen (Ctrl-C stops it)."""
    import asyncio
    from pathlib import Path

    from celery_doctor.report.proxy_text import proxy_banner, proxy_event_line
    from celery_doctor.repro.proxy import FaultProxy, parse_fault

    fault = parse_fault(fault_spec) if fault_spec else None
    server = FaultProxy(_address(listen, "--listen"), _address(upstream, "--upstream"), fault,
                        Path(event_log) if event_log else None, hook)

    async def serve() -> None:
        await server.start()
        host, port = server.address
        click.echo(proxy_banner(host, port, upstream, fault.spec if fault else None), err=True)
        shown = 0
        deadline = None if duration is None else asyncio.get_running_loop().time() + duration
        try:
            while deadline is None or asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
                for event in server.events[shown:]:
                    click.echo(proxy_event_line(event))
                shown = len(server.events)
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        click.echo("proxy stopped", err=True)


@main.command()
@click.argument("more_logs", nargs=-1, metavar="[LOG]...")
@click.option("--logs", "logs_", multiple=True, metavar="FILE|GLOB|DIR",
              help="Worker, beat, RabbitMQ or Redis logs: several after one --logs (as a shell glob "
                   "expands), repeatable, quoted globs and folders too.")
@click.option("--config", "config_path", default=None, metavar="PATH", help="celeryconfig.py or Django settings.")
@click.option("--app", default=None, metavar="MODULE", help="The importable Celery app (effective settings).")
@click.option("--python", default=None, metavar="PATH", help="The interpreter of the user's environment.")
@click.option("--broker", "broker_url", default=None, metavar="URL", help="Probe this broker.")
@click.option("--repro", "repro_fault", default=None, metavar="FAULT",
              help="Reproduce with this fault (e.g. idle-cut:10:rst) against the broker.")
@click.option("--report", "reports", multiple=True, metavar="FILE",
              help="`celery -A proj report` (or `celery inspect conf`) output: the versions and settings the "
                   "running app has. A report pasted inside a log file is found without this.")
@click.option("--from", "from_version", default=None, metavar="VERSION", help="Celery version before the upgrade.")
@click.option("--to", "to_version", default=None, metavar="VERSION", help="Celery version after the upgrade.")
@click.option("--idle-timeout", default=None, metavar="SECONDS|PROFILE",
              help="The middlebox idle timeout, in seconds or a profile (aws-elb, azure-lb, ...).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=5.0, show_default=True,
              help="Wall-clock budget of the broker probe.")
@output_options
def diagnose(more_logs: tuple[str, ...], logs_: tuple[str, ...], config_path: str | None, app: str | None,
             python: str | None, broker_url: str | None, repro_fault: str | None, reports: tuple[str, ...],
             from_version: str | None,
             to_version: str | None, idle_timeout: str | None, timeout: float, fmt: str, output: str | None,
             fail_on: str) -> None:
    """Rank the likely causes from whatever evidence you have, with the lines that prove them.

    Log files may follow --logs or stand alone: `diagnose --logs logs/*.log --broker URL`.
    """
    from celery_doctor.pipeline import DiagnoseOptions
    from celery_doctor.pipeline import diagnose as run_diagnose

    logs_ = logs_ + more_logs  # the shell expands `--logs *.log` into one --logs and loose files
    if not (logs_ or config_path or app or broker_url or repro_fault or reports):
        raise InputError("nothing to diagnose: give --logs, --config, --app, --report, --broker or --repro")
    options = DiagnoseOptions(logs=list(logs_), config=config_path, app=app, python=python, broker=broker_url,
                              repro=repro_fault, from_version=from_version, to_version=to_version,
                              idle_timeout=idle_timeout, timeout=timeout, reports=list(reports),
                              stdin_head=_peek_stdin() if "-" in logs_ else None)
    if logs_:
        with progress_bar("reading logs") as progress:
            report = run_diagnose(options, progress=progress)
    else:  # a probe, an import or a reproduction: seconds with nothing to count
        with busy("diagnosing: " + ", ".join(name for name, given in (
                ("config", config_path or app), ("report", reports), ("broker probe", broker_url),
                ("reproduction", repro_fault)) if given)):
            report = run_diagnose(options)
    emit(report, fmt, output, fail_on)


STDIN_PEEK = 1024 * 1024  # a pasted `celery report` sits near the top of what is piped in


class _Replay(io.RawIOBase):
    """Stdin with its first bytes read already: they come again first, then the rest of the stream."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _peek_stdin() -> str:
    """The start of piped-in text (for a `celery report` inside it); the reader still sees all of it."""
    head = sys.stdin.buffer.read(STDIN_PEEK)
    sys.stdin = io.TextIOWrapper(io.BufferedReader(_Replay(head, sys.stdin.buffer)))
    return head.decode("utf-8", errors="replace")


class _ConfigGroup(click.Group):
    """`config PATH...` and `config --app MODULE` run the hidden `check`; `config migrate FILE` migrates."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(f"Usage: {ctx.command_path} [OPTIONS] [PATH]...\n"
                        f"       {ctx.command_path} migrate [OPTIONS] FILE\n")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The audit's own options (they belong to the hidden `check`), then `migrate`."""
        check = self.commands["check"]
        with click.Context(check, info_name=ctx.info_name, parent=ctx.parent) as check_ctx:
            rows = [row for param in check.get_params(check_ctx) if isinstance(param, click.Option)
                    and (row := param.get_help_record(check_ctx)) is not None]
        with formatter.section("Options"):
            formatter.write_dl(rows)
        self.format_commands(ctx, formatter)


@main.group(cls=_ConfigGroup)
def config() -> None:
    """Are the settings you meant really in effect?

    PATH is a celeryconfig.py, a Django settings file or a project folder, read without running
    it; --app MODULE imports the app in your interpreter and shows the effective settings.
    `config migrate FILE` rewrites the old setting names (see `config migrate --help`).
    """


@config.command("check", hidden=True)
@click.argument("paths", nargs=-1)
@click.option("--app", default=None, metavar="MODULE",
              help="Import this app (e.g. proj.celery:app) in --python and show the effective settings.")
@click.option("--python", default=None, metavar="PY", help="Interpreter of your environment [default: this one].")
@click.option("--to", "to_version", default=None, metavar="VERSION", help="Target Celery [default: newest].")
@click.option("--from", "from_version", default=None, metavar="VERSION", help="Celery you upgrade from.")
@click.option("--idle-timeout", default=None, metavar="SECONDS|PROFILE",
              help="Middlebox idle timeout: seconds or aws-elb, aws-alb, aws-nlb, azure-lb, gcp-nat, gcp-vpc.")
@click.option("--timeout", type=click.FloatRange(min=1, max=600), default=30.0, show_default=True,
              help="Seconds allowed for importing the app (--app).")
@output_options
def config_check(paths: tuple[str, ...], app: str | None, python: str | None, to_version: str | None,
                 from_version: str | None, idle_timeout: str | None, timeout: float, fmt: str,
                 output: str | None, fail_on: str) -> None:
    """Audit celeryconfig.py / Django settings + celery.py statically, or the app's effective settings."""
    from celery_doctor.pipeline import check_config, check_effective

    if not paths and not app:
        raise InputError("config: give a config file or project directory, or --app MODULE")
    if app:
        with busy(f"importing {app} in {python or 'this interpreter'}"):
            report = check_effective(app, python, list(paths), to_version, from_version, idle_timeout, timeout)
    else:
        report = check_config(list(paths), to_version, from_version, idle_timeout)
    emit(report, fmt, output, fail_on)


@config.command("migrate")
@click.argument("file")
@click.option("--to", "to_version", default=None, metavar="VERSION", help="Target Celery [default: newest].")
@click.option("--django", is_flag=True, help="Write Django's CELERY_ namespace form (CELERY_BROKER_URL).")
@click.option("--write", "write_", is_flag=True, help="Apply the change (keeps FILE.orig, never overwritten).")
@click.option("--format", "fmt", type=click.Choice(["diff", "json"]), default="diff", show_default=True,
              help="diff: a patch for `git apply` / `patch -p1` (secrets masked, see --show-secrets); "
                   "json: the renames and the diff, secrets masked.")
@click.option("--show-secrets", is_flag=True,
              help="Print the diff with your file's text as it is, passwords included (an applicable patch).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the diff or JSON to this file instead of stdout.")
def config_migrate(file: str, to_version: str | None, django: bool, write_: bool, fmt: str,
                   show_secrets: bool, output: str | None) -> None:
    """Rename old setting names in FILE; comments and layout stay. Prints a diff unless --write.

    What was done goes to stderr, so `celery-doctor config migrate FILE | git apply` works.
    """
    from celery_doctor.pipeline import migrate_config
    from celery_doctor.report.migration import migration_notes, render_migration

    result = migrate_config(file, to_version, django, write_)
    write_out(render_migration(result, fmt, show_secrets), output)
    for line in migration_notes(result, show_secrets):
        click.echo(line, err=True)


@main.command()
@click.option("-r", "--requirement", "requirement", default=None, metavar="FILE",
              help="requirements.txt, pyproject.toml, poetry.lock, uv.lock, Pipfile.lock or pip freeze "
                   "output (- for stdin). Without it: the interpreter given by --python.")
@click.option("--python", "python", default=None, metavar="PY",
              help="The interpreter whose environment (or Python version) to check [default: this one].")
@click.option("--to", "to", default=None, metavar="VERSION", help="Plan a ladder of pinned sets up to this celery.")
@click.option("--write-constraints", "constraints_dir", default=None, metavar="DIR",
              help="Write one pip constraints file per ladder step into DIR.")
@click.option("--check-install", is_flag=True,
              help="For each ladder step this interpreter can run: install it in a throwaway venv and start a "
                   "worker against --broker (slow).")
@click.option("--broker", "broker_url", default=None, metavar="URL",
              help="The broker URL the workers use (picks transport checks; --check-install connects to it).")
@output_options
def pins(requirement: str | None, python: str | None, to: str | None, constraints_dir: str | None,
         check_install: bool, broker_url: str | None, fmt: str, output: str | None, fail_on: str) -> None:
    """Check that celery, kombu, amqp, billiard, vine, redis and Python fit together; plan the upgrade.

    Finds declared-requirement violations, known-bad combinations (with their source), unsupported
    Pythons and missing transports; with --to, a ladder of fully pinned sets.
    """
    from celery_doctor.pipeline import check_pins

    if check_install and not to:
        raise InputError("--check-install needs --to VERSION (it installs the ladder's steps)")
    with busy("reading the environment" + (" and checking installs" if check_install else "")):
        report = check_pins(requirement, python, to, constraints_dir, check_install, broker_url)
    emit(report, fmt, output, fail_on)


if __name__ == "__main__":  # pragma: no cover
    run()
