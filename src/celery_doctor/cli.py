"""The command line: each command parses its arguments, runs one pipeline, hands the result
to ``report/``. This is the only module that writes to the terminal.

Exit status: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 bad usage or
unreadable input (one clear line on stderr, never a traceback).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click

from celery_doctor import __version__
from celery_doctor.model import DoctorError, Report, Severity
from celery_doctor.redact import redact
from celery_doctor.report import FORMATS, ReportError, render

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


class InputError(DoctorError):
    """Unusable command-line input (the stages raise their own DoctorError subclasses)."""


def fail(message: str) -> NoReturn:
    click.echo(f"celery-doctor: error: {redact(message)}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--format, --output and --fail-on, shared by every command."""

    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                  help="Output format.")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
                  help="Write the report to this file instead of stdout.")
    @click.option("--fail-on", type=click.Choice([s.value for s in Severity]), default="medium",
                  show_default=True, help="Exit 1 when a finding has at least this severity.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def emit(report: Report, fmt: str, output: str | None, fail_on: str) -> NoReturn:
    """Render, write, and exit with the status the findings call for."""
    to_terminal = output is None and sys.stdout.isatty()
    width = click.get_terminal_size()[0] if to_terminal else 110
    try:
        text = render(report, fmt, color=to_terminal and fmt == "text", width=width)
    except ReportError as exc:
        fail(str(exc))
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
    else:
        click.echo(text, nl=False)
    worst = report.worst()
    threshold = Severity(fail_on)
    sys.exit(EXIT_FINDINGS if worst is not None and worst.rank >= threshold.rank else EXIT_OK)


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


class DoctorGroup(click.Group):
    """Turns stage errors into one line and exit 2; tracebacks only with CELERY_DOCTOR_DEBUG."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DoctorError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo("celery-doctor: interrupted", err=True)
            sys.exit(130)


@click.group(cls=DoctorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="celery-doctor")
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

    FILES are worker/beat logs, RabbitMQ or Redis server logs, plain, .gz or - for stdin.
    """
    from celery_doctor.pipeline import analyse_logs

    with progress_bar("reading logs") as progress:
        report = analyse_logs(list(files), format_hint=format_hint, progress=progress)
    emit(report, fmt, output, fail_on)


@main.command()
@click.argument("url")
@click.option("--heartbeat", type=click.IntRange(min=0), default=120, show_default=True,
              help="The broker_heartbeat your Celery config asks for (RabbitMQ).")
@click.option("--management", "management_url", default=None, metavar="URL",
              help="RabbitMQ management API [default: http://BROKER-HOST:15672, same credentials].")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=5.0, show_default=True,
              help="Seconds allowed for each network step.")
@click.option("--churn-interval", type=click.FloatRange(min=0, max=60), default=5.0,
              show_default=True, help="Seconds between the two connection-churn samples (0: one).")
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
    import dataclasses

    from celery_doctor.broker import ProbeOptions, probe_broker
    from celery_doctor.rules.broker_rules import broker_findings

    options = ProbeOptions(timeout=timeout, heartbeat=heartbeat, management_url=management_url,
                           churn_interval=churn_interval, sentinel_master=sentinel_master)
    facts = probe_broker(url, options)
    report = Report(
        command="broker",
        findings=broker_findings(facts),
        summary={"broker": facts.kind, "version": facts.version,
                 "login": {True: "ok", False: "refused", None: "not tried"}[facts.logged_in],
                 "probe_s": facts.elapsed_s},
        data={"broker": dataclasses.asdict(facts)},
        warnings=list(facts.notes),
    )
    emit(report, fmt, output, fail_on)

if __name__ == "__main__":  # pragma: no cover
    main()
