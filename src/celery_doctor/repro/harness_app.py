# mypy: ignore-errors
# ruff: noqa: UP030, UP032, SIM105  (Python 2.7/3.5 syntax on purpose)
"""The reproduction's Celery app: copied into the run directory and run by the *user's*
interpreter (``--python``), so the Celery/kombu/py-amqp versions under test are theirs.

It is never imported by celery-doctor itself. Keep it importable by Python 2.7 and 3.5+
(no f-strings, no annotations) so old Celery environments can be reproduced too.

One file, two roles:
- ``celery -A harness_app worker ...``: the worker, with a trivial task and a sleep task. Every
  step of a task's life (received, started, succeeded, acked) is appended to the ledger file,
  one JSON line per step, by whichever process takes the step.
- ``python harness_app.py publish``: the publisher. It reads commands (JSON lines) on stdin,
  publishes through the same proxy with publisher confirms (RabbitMQ), appends one ledger line
  per publish and answers each command with one JSON line on stdout.

Run settings come from the JSON file named by ``CELERY_DOCTOR_REPRO`` (see harness.py).
"""

import json
import os
import sys
import time
import traceback

SETTINGS_FILE = os.environ.get("CELERY_DOCTOR_REPRO")
if not SETTINGS_FILE:
    raise RuntimeError("CELERY_DOCTOR_REPRO is not set: this module is run by celery-doctor repro")
with open(SETTINGS_FILE) as _handle:
    SETTINGS = json.load(_handle)

LEDGER = SETTINGS["ledger"]


def record(event, task_id, **fields):
    """Append one ledger line with a single write (O_APPEND keeps lines whole across processes)."""
    fields.update({"ev": event, "id": task_id, "ts": time.time(), "pid": os.getpid()})
    line = (json.dumps(fields, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


from celery import Celery, signals  # noqa: E402

app = Celery("doctor_repro")
app.config_from_object(SETTINGS["config_module"])

EFFECTIVE = ("broker_heartbeat", "task_acks_late", "worker_prefetch_multiplier", "broker_pool_limit",
             "broker_connection_timeout", "broker_transport_options", "task_reject_on_worker_lost",
             "worker_enable_remote_control")


def _write_effective():
    """The settings as Celery resolved them (the user's file, then the run's overrides), so the
    report shows what the run really used, not what the harness would have defaulted to."""
    path = SETTINGS.get("effective")
    if not path:
        return
    out = {}
    for name in EFFECTIVE:
        try:
            value = app.conf[name]
        except Exception:  # a name this Celery does not know
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        out[name] = value
    with open(path, "w") as handle:
        json.dump(out, handle)


try:
    _write_effective()
except Exception:  # never stop the worker for a report detail
    pass


def _delivery(request):
    info = getattr(request, "delivery_info", None) or {}
    return bool(info.get("redelivered"))


@app.task(name="doctor.noop", bind=True, ignore_result=True)
def noop(self, seq=0):
    record("started", self.request.id, redelivered=_delivery(self.request), seq=seq)
    return seq


@app.task(name="doctor.sleep", bind=True, ignore_result=True)
def sleep(self, seconds=1.0, seq=0):
    record("started", self.request.id, redelivered=_delivery(self.request), seq=seq)
    time.sleep(float(seconds))
    return seq


def _on_success(sender=None, result=None, **kwargs):
    request = getattr(sender, "request", None)
    if request is not None and request.id:
        record("succeeded", request.id)


signals.task_success.connect(_on_success, weak=False)

_received = getattr(signals, "task_received", None)  # Celery >= 4.? ; older ones skip it
if _received is not None:
    def _on_received(sender=None, request=None, **kwargs):
        task_id = getattr(request, "id", None) or getattr(request, "task_id", None)
        if task_id:
            # the message's delivery tag: on Redis (kombu's virtual transport) a uuid given at
            # publish and kept when an unacked message is restored, so two tags for one task are
            # two copies the publisher sent; on RabbitMQ a per-channel counter (not recorded)
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if isinstance(tag, int):
                record("received", task_id)
            else:
                record("received", task_id, tag=str(tag) if tag is not None else None)

    _received.connect(_on_received, weak=False)


def _message_id(message):
    headers = getattr(message, "headers", None) or {}
    if headers.get("id"):
        return headers["id"]
    try:
        payload = message.payload
        if isinstance(payload, dict) and payload.get("id"):
            return payload["id"]
    except Exception:  # a body we cannot decode has no id for us
        pass
    return (getattr(message, "properties", None) or {}).get("correlation_id")


def _wrap_ack():
    """Record every ack the worker attempts, and whether the client library accepted it."""
    try:
        from kombu.message import Message
    except ImportError:  # kombu 3.0
        from kombu.transport.base import Message
    original = Message.ack

    def ack(self, *args, **kwargs):
        task_id = _message_id(self)
        try:
            result = original(self, *args, **kwargs)
        except Exception as exc:
            if task_id:
                record("acked", task_id, ok=False, error="{0}: {1}".format(type(exc).__name__, exc))
            raise
        if task_id:
            record("acked", task_id, ok=True)
        return result

    Message.ack = ack


_wrap_ack()


# -- publisher ------------------------------------------------------------------------------

def _publish_options():
    # through the run's exchange, not the default one Celery would pick for a direct queue:
    # the harness's witness queue is bound to it and keeps a copy of every message the broker
    # routes, so a task the publisher sent twice is seen twice by the broker itself
    options = {"queue": SETTINGS["queue"], "exchange": SETTINGS["queue"], "routing_key": SETTINGS["queue"]}
    try:
        import inspect

        from kombu.messaging import Producer
        if "confirm_timeout" in inspect.signature(Producer.publish).parameters:
            options["confirm_timeout"] = SETTINGS.get("confirm_timeout", 10)
    except Exception:  # older kombu: no confirm timeout, the harness watchdog acts
        pass
    return options


def _publish(command, options):
    task = command.get("task", "doctor.noop")
    count = int(command.get("count", 1))
    rate = float(command.get("rate") or 0)
    prefix = command["prefix"]
    start = int(command.get("start", 0))
    args = command.get("args") or []
    deadline = float(command.get("deadline_s") or 0)
    began = time.time()
    ok = failed = 0
    sent = 0
    for i in range(count):
        if deadline and time.time() - began > deadline:
            break  # fell behind the plan: the rest stay 'planned', the harness names them
        if rate > 0:
            due = began + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
        seq = start + i
        task_id = "{0}-{1:05d}".format(prefix, seq)
        t0 = time.time()
        sent += 1
        # written before the call: a publisher killed inside it leaves a task that was being
        # sent, which the ledger tells apart from one never sent
        record("sending", task_id, seq=seq)
        try:
            app.send_task(task, args=list(args), kwargs={"seq": seq}, task_id=task_id, **options)
        except Exception as exc:  # every failure is a ledger line, not a crash
            failed += 1
            record("published", task_id, ok=False, seq=seq, ms=round((time.time() - t0) * 1000, 2),
                   error="{0}: {1}".format(type(exc).__name__, exc))
        else:
            ok += 1
            record("published", task_id, ok=True, seq=seq, ms=round((time.time() - t0) * 1000, 2))
    return {"op": "done", "ok": ok, "failed": failed, "sent": sent, "not_sent": count - sent,
            "elapsed": round(time.time() - began, 3)}


def publisher():
    options = _publish_options()
    out = sys.stdout
    out.write(json.dumps({"op": "ready", "celery": _versions()}) + "\n")
    out.flush()
    for line in iter(sys.stdin.readline, ""):
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        try:
            reply = _publish(command, options)
        except Exception:
            reply = {"op": "error", "error": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    _close_connections()


def _close_connections():
    """Close the publisher's pooled connections with a proper AMQP close, so the broker does
    not log an abrupt disconnect that has nothing to do with the fault."""
    pool = app.pool
    held = list(getattr(pool, "_dirty", ()))
    held += list(getattr(getattr(pool, "_resource", None), "queue", ()))
    for conn in held:
        try:
            if conn is not None and getattr(conn, "_connection", None) is not None:
                conn.release()
        except Exception:
            pass
    try:
        pool.force_close_all()
    except Exception:
        pass


def _versions():
    found = {"python": "{0}.{1}.{2}".format(*sys.version_info[:3])}
    for name in ("celery", "kombu", "amqp", "billiard", "vine", "redis"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", None)
        except Exception:
            found[name] = None
    return found


if __name__ == "__main__" and sys.argv[1:] == ["publish"]:
    publisher()
elif __name__ == "__main__" and sys.argv[1:] == ["versions"]:
    print(json.dumps(_versions()))
