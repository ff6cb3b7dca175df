"""The run's guard: a small process, in its own session, that outlives celery-doctor.

The harness cleans up after itself in ``finally``; that covers a normal end, an error, Ctrl-C,
SIGTERM and SIGHUP. It cannot cover its own death (SIGKILL, the OOM killer, a second Ctrl-C in
the middle of the cleanup). The guard can: the harness tells it, one JSON line at a time on its
stdin, what the run started (process groups) and declared (the queue and its keys); when its
stdin reaches end-of-file without a ``done`` line, the harness is gone, and the guard kills the
groups and deletes the run's queue, exchange and Redis keys itself.

Run as ``python -m celery_doctor.repro.reaper`` (celery-doctor's interpreter, not the user's).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time


def _kill(groups: set[int]) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        alive = set()
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
                alive.add(pgid)
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            for pgid in list(alive):
                try:
                    os.killpg(pgid, 0)
                except (ProcessLookupError, PermissionError):
                    alive.discard(pgid)
        if not alive:
            return


def main() -> int:
    # the terminal's signals are the harness's business: the guard acts only on end-of-file
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    run: dict[str, str] = {}
    namespaces: list[str] = []
    done = False
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("pgid"):
            groups.add(int(message["pgid"]))
        if message.get("run"):
            run = message["run"]
        if message.get("netns"):
            namespaces.append(str(message["netns"]))
        if message.get("done"):
            done = True
    if done:
        return 0
    _kill(groups)
    if run.get("queue"):
        from celery_doctor.repro import brokers

        target = brokers.BrokerTarget(url=run["url"], kind=run["kind"], host=run["host"],
                                      port=int(run["port"]), chosen_because="")
        brokers.inspect_and_delete(target, run["queue"], run["worker_name"])
    if namespaces:
        from celery_doctor.repro.middlebox import delete_namespace

        for name in namespaces:
            delete_namespace(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
