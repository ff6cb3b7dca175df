"""A share of some pure work computed by a forked child, on a machine with a second core.

What `logs` does after its scan (the rules over the events, the report's timeline) is pure
computation on data already in memory, done while the second core, free once the scan's pool has
finished, would sit idle: a forked child computes every other task while this process computes
the rest, which takes up to half the time off that last, serial step.

The answer never depends on the child: if it cannot be started, fails, is killed or sends back
what does not unpickle, its tasks are computed here, in order, as if it had never been asked.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

READ = 1 << 20


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Every task's result, in order; the tasks at odd positions computed by a forked child where
    that can help (Linux, two cores or more, two tasks or more)."""
    if len(tasks) < 2 or not sys.platform.startswith("linux") or cores() < 2:
        return [task() for task in tasks]
    theirs = range(1, len(tasks), 2)
    pid, pipe = _start([tasks[k] for k in theirs])
    results: list[Any] = [None] * len(tasks)
    collected = False
    try:
        for k in range(0, len(tasks), 2):
            results[k] = tasks[k]()
        collected = True
        got = _collect(pid, pipe)
    finally:
        if not collected:  # interrupted, or a task of ours failed: the child is not waited for
            _stop(pid, pipe)
    if got is None or len(got) != len(theirs):
        got = [tasks[k]() for k in theirs]
    for k, value in zip(theirs, got, strict=True):
        results[k] = value
    return results


def _start(tasks: list[Callable[[], Any]]) -> tuple[int, int]:
    """(pid, the read end of its pipe); pid -1 when no child could be forked."""
    try:
        read, write = os.pipe()
    except OSError:
        return -1, -1
    parent = os.getpid()
    gc.freeze()  # a collection in the child would otherwise copy every page of the parent's objects
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return -1, -1
    finally:
        if os.getpid() == parent:
            gc.unfreeze()
    if pid == 0:  # the child: compute, send, leave without running any of the parent's exit code
        status = 1
        try:
            os.close(read)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            out = []
            for task in tasks:
                if os.getppid() != parent:  # the parent is gone: nobody wants the answer
                    os._exit(1)
                out.append(task())
            data = memoryview(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
            while data:
                data = data[os.write(write, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    return pid, read


def _collect(pid: int, pipe: int) -> list[Any] | None:
    """The child's results, or None (no child, a failure, a short or foreign answer)."""
    if pid < 0:
        return None
    chunks = []
    try:
        while block := os.read(pipe, READ):
            chunks.append(block)
    except BaseException:  # interrupted while waiting: the child goes too
        _stop(pid, pipe)
        raise
    os.close(pipe)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        got = pickle.loads(b"".join(chunks))
    except Exception:  # cut short: the tasks are computed here
        return None
    return got if isinstance(got, list) else None


def _stop(pid: int, pipe: int) -> None:
    if pid < 0:
        return
    with contextlib.suppress(OSError):
        os.close(pipe)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
