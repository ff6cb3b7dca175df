"""Celery worker and beat logs (3.1 to 5.x), with kombu, py-amqp and redis-py messages in them."""

from __future__ import annotations

import re
from typing import Any

from celery_doctor.ingest import times
from celery_doctor.ingest.interface import Family, Start
from celery_doctor.model import Kind, Side

# default worker_log_format: "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
HEADER = re.compile(r"^\[(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?: ?(\w+)/([^\]]*)\] ?")
# custom worker_log_format that still starts with a timestamp and carries a level
CUSTOM = re.compile(
    r"^\[?(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))?(Z|[+-]\d\d:?\d\d)?\]?[ :|\-\]\[]+"
    r"(?:.{0,120}?)\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
# a default header cut at the front by a copy-paste: ",937: WARNING/MainProcess] ", "ERROR/MainProcess] ",
# "MainProcess] ", or a layout without time: "[WARNING/MainProcess] "
FRAGMENT = re.compile(
    r"^\[?(?:[\d:,.\- ]*\d\]?:? ?)?(?:(DEBUG|INFO|WARNING|ERROR|CRITICAL)/)?"
    r"(MainProcess|ForkPoolWorker-\d+|PoolWorker-\d+|Worker-\d+|Beat|Dummy-\d+|MainThread|"
    r"ThreadPoolExecutor-[\d_]+|SpawnProcess-\d+)\] ?")
# custom layouts without a time: "ERROR [MainThread] [consumer.py:493] - ", "WARNING:celery.worker:..."
# and a time of day without a date: "11:27:04 [WARNING] celery.worker.consumer.consumer: "
UNTIMED = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)(?:\s+\[[^\]]*\])+\s*(?:-\s+)?|"
                     r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:|"
                     r"^\d\d:\d\d:\d\d(?:[,.]\d+)? \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")
# header-less lines Celery prints (to stderr, or before logging is set up) that are records of
# their own: never continuation lines of the record before them
STANDALONE = re.compile(
    r"^(?:worker: (?:Warm|Cold) shutdown \(MainProcess\)|worker: Hitting Ctrl\+C again|"
    r"Restarting celery worker \(|celery (?:multi|beat) v\d|\S+\.py:\d+: \w*Warning: |"
    r"\s*-+ ?\**-* ?celery@\S+ v\d|[\s\-*]*\.> \w[\w ]*:|\[(?:tasks|queues|config)\]\s*$)")
ERRNO = re.compile(r"(?:Errno |\(|Error )(\d{2,3})\b")
AUTH = re.compile(r"AccessRefused|ACCESS_REFUSED|login refused|WRONGPASS|NOAUTH|invalid password|"
                  r"AuthenticationError|invalid username-password|"
                  # Redis with no password set, sent one (6+: acl.c authCommand; before 6: server.c)
                  r"called without any password configured|Client sent AUTH, but no password is set")
CONNECT_REASON = re.compile(r"Cannot connect to \S+?: (.+?)\.*$")
REPR_AT_END = re.compile(r"\(([A-Z]\w+(?:Error|Exception|Refused|Forced|Closed)\(.*\))\)\s*$")
# the exception a header line names: kombu's "Couldn't ack %r, reason:%r", celery's "Control command
# error: %r" and "Unrecoverable error: %r", redis-py 8's bare reprs "(network:ConnectionError)"
HEADER_REPR = re.compile(
    r"(?:reason: ?|Control command error: |Unrecoverable error: |Error in timer: )(.+?)\s*$|"
    r"Connection [eE]rror: (.+?)\.? (?:Trying again|Retry in)|"
    r"\(((?:network|tls|auth|server):\w+)\)\s*$")
# an exception line as Python prints it at the end of a traceback (module path optional; Python 2's
# socket.error prints as "error: ...")
EXCEPTION = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*(?:[A-Z]\w*(?:Error|Exception|Refused|Forced|Closed|Timeout|Exit|Interrupt|"
    r"Failed|Lost|Warning)|error|timeout|herror|gaierror)(?::\s|:$|$)"
    # as error trackers and log shippers quote it: a repr (``ResponseError('OOM ...')``, first letter
    # sometimes lowered) or module and class joined by a colon (``redis.exceptions:ResponseError msg``)
    r"|^(?:[A-Za-z_]\w*\.)*[A-Za-z]\w*(?:Error|Exception|Refused|Forced|Closed)\((?:[\"'\d]|b')"
    r"|^[A-Za-z_]\w*(?:\.\w+)*:[A-Z]\w*(?:Error|Exception)\s")
CHAIN = ("During handling of the above exception", "The above exception was the direct cause")


# A traceback through the broker's client code (kombu, py-amqp, redis-py, celery's consumer,
# backends and events), or naming a broker URL: the worker's own connection. (The scan looks for
# these names in a record's bytes first: reader.BROKER_WORDS, built from the same tuples.)
BROKER_LIBRARIES = ("kombu", "amqp", "redis", "librabbitmq", "pika", "billiard")
BROKER_CELERY_PARTS = ("worker", "backends", "events")
BROKER_CODE = re.compile(
    rf'File "(?:[^"]*[/\\])?(?:{"|".join(BROKER_LIBRARIES)})[/\\]|'
    rf'File "(?:[^"]*[/\\])?celery[/\\](?:{"|".join(BROKER_CELERY_PARTS)}|app[/\\]amqp)|'
    r"^(?:kombu|amqp|redis|librabbitmq|celery)\.[\w.]*:|\b(?:amqps?|rediss?|sentinel|pyamqp)://", re.M)
# A traceback through the client of another service (HTTP, SQL, mail, a cloud API): the
# application's own connection, which a task logs (``logger.exception``) when that service drops it.
APP_CODE = re.compile(
    r'File "[^"]*[/\\](?:requests|urllib3|httpx|httpcore|aiohttp|http[/\\]client\.py|httplib\.py|psycopg2?|'
    r'pymysql|MySQLdb|django[/\\]db|sqlalchemy|botocore|boto3|pymongo|elasticsearch|smtplib\.py|paramiko|grpc)\b|'
    r"^(?:requests|urllib3|httpx|httpcore|aiohttp|http\.client|psycopg2?|pymysql|MySQLdb|django\.db|sqlalchemy|"
    r"botocore|pymongo|elasticsearch|smtplib|grpc)\.[\w.]*:|HTTPS?ConnectionPool\(", re.M)
# the task logger's header (celery/app/log.py TaskFormatter): "... name[task id]: message"
TASK_LOGGER = re.compile(r"\] [\w.]+\[[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\]: ")


def application_traceback(lines: list[str]) -> bool:
    """Whether a record's traceback is the application's: through another service's client, or
    logged by a task's own logger, and nowhere through the broker's client code."""
    text = "\n".join(lines)
    if BROKER_CODE.search(text):
        return False
    return bool(APP_CODE.search(text) or TASK_LOGGER.search(lines[0]))


def exceptions(lines: list[str]) -> list[str]:
    """The exception lines of a record's tracebacks, first (usually the cause) to last."""
    return [ln.strip() for ln in lines if ln[:1] not in (" ", "\t") and EXCEPTION.match(ln.strip())]


class Celery(Family):
    name = "celery"
    side = Side.CLIENT

    def start(self, line: str, year: int) -> Start | None:
        m = HEADER.match(line)
        if m:
            y, mo, d, h, mi, s, frac, level = m.group(1, 2, 3, 4, 5, 6, 7, 8)
            ts = times.stamp(int(y), int(mo), int(d), int(h), int(mi), int(s), times.micro(frac))
            return Start(ts, level.upper(), naive=True) if ts else None
        m = CUSTOM.match(line)
        if m:
            y, mo, d, h, mi, s, frac, zone, level = m.groups()
            tz = times.zone(zone)
            ts = times.stamp(int(y), int(mo), int(d), int(h), int(mi), int(s), times.micro(frac), tz)
            return Start(ts, level.upper(), naive=tz is None) if ts else None
        return None

    def undated_start(self, line: str) -> Start | None:
        m = FRAGMENT.match(line)
        if m:
            return Start(None, (m.group(1) or "").upper(), naive=True)
        m = UNTIMED.match(line)
        if m:
            return Start(None, (m.group(1) or m.group(2) or m.group(3)).upper(), naive=True)
        if STANDALONE.match(line):
            return Start(None, "", naive=True, standalone=True)
        return None

    def message_start(self, line: str) -> int:
        m = HEADER.match(line) or CUSTOM.match(line)
        if m is None:
            m = FRAGMENT.match(line) or UNTIMED.match(line)
        return m.end() if m else 0

    def error(self, lines: list[str], message: str) -> str | None:
        """The last exception of the record's traceback (what was raised); a traceback cut before
        its exception line gives the repr on the header line, never a frame or source line."""
        body = lines[0][self.message_start(lines[0]):]
        connect = CONNECT_REASON.search(" ".join(" ".join(lines[:3]).split()))
        if connect:  # the reason is on the first line (or its hard-wrapped rest); then the retry
            return connect.group(1).split(" Trying again")[0].split(" Will retry")[0].rstrip(".")
        raised = exceptions(lines[1:])
        if raised:
            return raised[-1]
        if EXCEPTION.match(body.strip()):  # a bare exception line: it is the error
            return body.strip()
        m = HEADER_REPR.search(body)
        if m:
            return next(g for g in m.groups() if g).rstrip(".")
        m = REPR_AT_END.search(body)
        return m.group(1) if m else None

    def fields(self, message: str, error: str | None) -> tuple[str | None, dict[str, Any]]:
        detail: dict[str, Any] = {}
        en = ERRNO.search(error) if error else None
        if en:
            detail["errno"] = int(en.group(1))
        chained = exceptions(message.splitlines()[1:])
        if len(chained) > 1:  # chained tracebacks: the first is usually the cause
            detail["exceptions"] = chained
            detail["cause"] = chained[0]
        return None, detail

    def refine(self, kind: Kind, error: str | None) -> Kind:
        if kind in (Kind.CONNECTION_LOST, Kind.CANNOT_CONNECT) and error and AUTH.search(error):
            return Kind.AUTH_REFUSED
        return kind


FAMILY = Celery()
