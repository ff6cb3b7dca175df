"""One pool over byte ranges of every input: all cores busy whatever the number and size of files.

Plain files are cut into ranges at any byte (a record belongs to the range holding its first
hit; see ``Scanner.feed``), about two ranges per worker so that one slow range does not leave a
core idle. A worker reads its range window by window with ``os.pread`` (one copy from the page
cache, as grep's read does) plus a look-back and a look-ahead around each window, and returns
only what it found: events, activity buckets, counts. The parent renumbers the lines and joins
the ranges of each file in order. Compressed and piped inputs cannot be split: the parent
streams them meanwhile, decompressing in a thread beside the scan.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import itertools
import os
import pickle
import queue
import select
import signal
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NoReturn

from celery_doctor.ingest import counting
from celery_doctor.ingest.reader import CHUNK, LOOKBACK_BYTES, Buffer, Scanner, SourceState, downsample, note_counted
from celery_doctor.model import Event

SPLIT_MIN = 48 * 1024 * 1024  # below this in all, starting processes costs more than it saves
RANGE_MIN = 16 * 1024 * 1024
RANGE_MAX = 64 * 1024 * 1024  # many ranges: a worker slowed by other work on the machine leaves less behind
NUMPY_MIN = 256 * 1024 * 1024  # from this much in all, numpy's faster newline count pays for its import
LOOKAHEAD = 256 * 1024  # a record that starts in a window may end this far past it
PR_SET_PDEATHSIG = 1  # linux/prctl.h
MAX_WORKERS = 4  # each forked worker counts the parent's pages in its RSS: keep the tree small

BACKWARDS = "timestamps go backwards"
Progress = Callable[[str, int, int], None]


@dataclass
class Part:
    """What one range of one file gave: small, so returning it from a worker is cheap."""

    index: int
    start: int
    events: list[Event] = field(default_factory=list)
    activity: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    counted: list[tuple[datetime, datetime, int, str]] = field(default_factory=list)
    lines: int = 0
    ends_with_newline: bool = True
    out_of_order: int = 0
    warnings: list[str] = field(default_factory=list)
    services: dict[str, str] = field(default_factory=dict)
    naive_tz: bool = False
    report: bool = False


def workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def _fresh(template: SourceState) -> SourceState:
    return replace(template, info=replace(template.info, warnings=[], meta=dict(template.info.meta)),
                   events=[], activity=[], counted=[], services=dict(template.services))


_buffer = bytearray()  # one read buffer per process, reused range after range


def scan_range(path: str, template: SourceState, index: int, start: int, end: int) -> Part:
    """Scan bytes [start, end) of ``path`` (a whole file when start is 0 and end its size)."""
    global _buffer
    state = _fresh(template)
    scanner = Scanner(state)
    scanner.first_chunk = start == 0
    last: Buffer = b"\n"
    full = LOOKBACK_BYTES + CHUNK + LOOKAHEAD
    # every window is read into the same buffer of one size: a fresh 8 MB object per window (or one
    # per range end) cost more in page faults than the scan itself on ten 100 MB files. A window
    # shorter than CHUNK (a range's last) reads more look-back instead, so the buffer stays whole;
    # only the file's last window, which the buffer would overrun, is read into one of its own size
    # (reading a whole buffer's worth again and copying it cost a third of a 10 MB file's scan).
    if len(_buffer) != full:
        _buffer = bytearray(full)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = start
        while pos < end:
            stop = min(end, pos + CHUNK)
            read_from = max(0, stop + LOOKAHEAD - full)  # at most pos - LOOKBACK_BYTES
            buf: Buffer = _buffer
            if read_from + full > size:  # the file's last window: its own bytes only
                read_from = max(0, pos - LOOKBACK_BYTES)
                buf = bytearray(max(0, size - read_from))
            got = os.preadv(fd, [buf], read_from)
            if got < len(buf):  # the file got shorter since
                buf = bytes(memoryview(buf)[:got])
            owned = min(got, stop - read_from)
            if owned <= pos - read_from:  # the file got shorter while we read it
                break
            scanner.feed(buf, pos - read_from, owned)
            last = buf[owned - 1:owned]
            pos = stop
    finally:
        os.close(fd)
    scanner.finish()
    return Part(index=index, start=start, events=state.events, activity=state.activity, counted=state.counted,
                lines=state.info.lines,
                ends_with_newline=last == b"\n", out_of_order=state.out_of_order,
                warnings=[w for w in state.info.warnings if not w.startswith(BACKWARDS)],
                services=state.services, naive_tz=bool(state.info.meta.get("naive_tz")), report=state.report)


def scan_stream(blocks: Iterator[bytes], state: SourceState, progress: Progress | None = None,
                size: int = 0) -> None:
    """Scan a stream (.gz, stdin) chunk by chunk; the next chunk is read (and decompressed: zlib
    releases the GIL) in a thread while this one is scanned."""
    scanner = Scanner(state)
    done = 0
    tail = b""
    for block in _read_ahead(blocks):  # each ends at a line's end (chunks()): no line crosses the edge
        buf = tail + block
        scanner.feed(buf, len(tail), len(buf))
        tail = buf[-LOOKBACK_BYTES:]
        done += len(block)
        if progress is not None:
            progress(state.info.name, done, size or done)
    scanner.finish()
    note_counted(state)


def _read_ahead(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    pipe: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for block in blocks:
                pipe.put(block)
        except (OSError, EOFError, zlib.error) as exc:  # chunks() already warns on these; be safe
            pipe.put(exc)
        pipe.put(None)

    thread = threading.Thread(target=produce, name="celery-doctor-read-ahead", daemon=True)
    thread.start()
    while (item := pipe.get()) is not None:
        if isinstance(item, BaseException):
            break
        yield item
    thread.join()


def plan(sizes: list[int], pool: int) -> list[tuple[int, int, int]]:
    """(file index, start, end) ranges over all files, about two per worker."""
    total = sum(sizes)
    target = max(RANGE_MIN, min(RANGE_MAX, total // max(1, 2 * pool)))
    ranges: list[tuple[int, int, int]] = []
    for index, size in enumerate(sizes):
        parts = max(1, round(size / target))
        cuts = [size * k // parts for k in range(parts + 1)]
        ranges.extend((index, a, b) for a, b in itertools.pairwise(cuts) if b > a)
    # the last ranges handed out are cut in four: a worker that finishes first then waits a
    # quarter of a range for the other, not a whole one
    if len(ranges) > 2 * pool and target >= 4 * RANGE_MIN:
        tail = [(i, a + (b - a) * k // 4, a + (b - a) * (k + 1) // 4) for i, a, b in ranges[-pool:] for k in range(4)]
        ranges = ranges[:-pool] + tail
    return ranges


def scan_files(files: list[tuple[str, SourceState, int]], streams: list[tuple[Iterator[bytes], SourceState, int]],
               progress: Progress | None = None, meanwhile: Callable[[], object] | None = None) -> None:
    """Scan every plain file (by ranges, in a pool when it pays) and every stream, filling each state;
    ``meanwhile`` runs here while the pool works (or after the scan, without a pool)."""
    sizes = [size for _, _, size in files]
    pool_size = workers()
    ranges = plan(sizes, pool_size)
    parts: list[Part] = []
    # before forking: the workers share the loaded module (a compressed size counts ~8x: logs inflate 10-15x)
    if sum(sizes) + 8 * sum(size for _, _, size in streams) >= NUMPY_MIN:
        counting.enable()
    if pool_size > 1 and sum(sizes) >= SPLIT_MIN and len(ranges) > 1:
        for _, state, _ in files:  # build the matchers here, once: the forked workers share them
            Scanner(_fresh(state))
        # the workers inherit the states: a range names its file's (pickling each state's megabyte of
        # sample with every range cost the pool's start more than its scan)
        _TEMPLATES[:] = [state for _, state, _ in files]
        pool = _Pool([(files[i][0], i, a, b) for i, a, b in ranges], min(pool_size, len(ranges)))
        try:
            if meanwhile is not None:
                meanwhile()
            for blocks, state, size in streams:  # meanwhile, here
                scan_stream(blocks, state, progress, size)
            for part in pool.parts():
                parts.append(part)
                if progress is not None:
                    name = files[part.index][1].info.name
                    progress(name, min(sizes[part.index], part.start + RANGE_MIN), sizes[part.index])
        finally:
            pool.close()  # interrupted or failed: no waiting for the ranges still being scanned
    else:
        for blocks, state, size in streams:
            scan_stream(blocks, state, progress, size)
        for i, a, b in ranges:
            parts.append(scan_range(files[i][0], files[i][1], i, a, b))
            if progress is not None:
                progress(files[i][1].info.name, b, sizes[i])
        if meanwhile is not None:
            meanwhile()
    join(files, parts)


_TEMPLATES: list[SourceState] = []  # the parent's states, as the forked workers see them
FRAME = struct.Struct("<Q")  # a result's length before its pickle
TASK = struct.Struct("<I")  # a range's index in the task pipe
PIPE_SIZE = 1 << 20  # a worker's result pipe: a few ranges' results wait there while the parent is busy


class WorkerDied(RuntimeError):
    """A scan worker ended before returning its range (killed, or out of memory)."""


class _Pool:
    """Forked workers that take ranges from one pipe and send back their Parts, each on a pipe of
    its own. The standard library's process pool cost ~20 ms of imports (multiprocessing, logging,
    sockets) before the first byte was scanned, and a thread on each side of every result; here a
    range's index is 4 bytes in a pipe (written at once, read 4 bytes at a time by whichever worker
    is free) and a result one length-prefixed pickle."""

    def __init__(self, tasks: list[tuple[str, int, int, int]], size: int) -> None:
        self.tasks = tasks
        self.pending = len(tasks)
        self.workers: dict[int, int] = {}  # result pipe -> pid
        self.buffers: dict[int, bytearray] = {}
        take, give = os.pipe()
        os.write(give, b"".join(TASK.pack(k) for k in range(len(tasks))))  # a few hundred bytes: never blocks
        gc.freeze()  # a worker's collections would otherwise copy every page of the parent's objects
        try:
            for _ in range(size):
                read, write = os.pipe()
                # Linux only; elsewhere, a smaller pipe only makes a worker wait for the parent more
                with contextlib.suppress(OSError, AttributeError):
                    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
                pid = os.fork()
                if pid == 0:
                    self._work(take, give, write, [read, *self.workers])
                os.close(write)
                self.workers[read] = pid
                self.buffers[read] = bytearray()
        except BaseException:
            self.close()
            raise
        finally:
            gc.unfreeze()
            os.close(take)
            os.close(give)

    def _work(self, take: int, give: int, out: int, inherited: list[int]) -> NoReturn:
        """In a worker: ranges until the task pipe is empty, each result written whole."""
        status = 1
        try:
            gc.unfreeze()
            os.close(give)
            for fd in inherited:
                os.close(fd)
            _worker_start()
            while len(raw := os.read(take, TASK.size)) == TASK.size:
                (k,) = TASK.unpack(raw)
                path, index, start, end = self.tasks[k]
                try:
                    done: tuple[Part | None, BaseException | None] = (
                        scan_range(path, _TEMPLATES[index], index, start, end), None)
                    data = pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # sent to the parent, which raises it
                    try:
                        data = pickle.dumps((None, exc), protocol=pickle.HIGHEST_PROTOCOL)
                    except Exception:
                        data = pickle.dumps((None, RuntimeError(repr(exc))), protocol=pickle.HIGHEST_PROTOCOL)
                view = memoryview(FRAME.pack(len(data)) + data)
                while view:
                    view = view[os.write(out, view):]
            status = 0
        finally:
            os._exit(status)

    def parts(self) -> Iterator[Part]:
        """The Parts, as the workers finish them; a worker's error is raised here."""
        ended: list[str] = []  # how the workers that stopped before the end did
        while self.pending:
            if not self.buffers:
                raise WorkerDied(f"a scan worker stopped before its range was done ({', '.join(ended)}): "
                                 f"{self.pending} range(s) of the logs not read")
            ready, _, _ = select.select(list(self.buffers), [], [])
            for fd in ready:
                chunk = os.read(fd, PIPE_SIZE)
                if not chunk:  # the worker is done (or died: then a range is missing)
                    os.close(fd)
                    del self.buffers[fd]
                    _, status = os.waitpid(self.workers.pop(fd), 0)
                    if os.WIFSIGNALED(status):
                        ended.append(f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
                    elif os.WEXITSTATUS(status):
                        ended.append(f"exit status {os.WEXITSTATUS(status)}")
                    continue
                buf = self.buffers[fd]
                buf += chunk
                while len(buf) >= FRAME.size and len(buf) >= FRAME.size + (n := FRAME.unpack_from(buf)[0]):
                    part, exc = pickle.loads(memoryview(buf)[FRAME.size:FRAME.size + n])
                    del buf[:FRAME.size + n]
                    if exc is not None:
                        raise exc
                    self.pending -= 1
                    yield part

    def close(self) -> None:
        """Reap the workers (done once every Part is in: they exit at the empty task pipe); with
        ranges left (interrupted, or a failure), kill them first."""
        for fd, pid in self.workers.items():
            if self.pending:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(fd)
        for pid in self.workers.values():
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        self.workers.clear()
        self.buffers.clear()


def _worker_start() -> None:
    """In each forked worker: Ctrl-C is the parent's to handle (it stops the pool), SIGTERM kills,
    and on Linux the worker dies with the parent even if the parent is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError, ImportError):
        import ctypes  # here, in the worker: ~8 ms the parent's serial start need not pay

        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's prctl among them
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the line above took effect
            os._exit(1)


def join(files: list[tuple[str, SourceState, int]], parts: list[Part]) -> None:
    lines = [0] * len(files)
    last_newline = [True] * len(files)
    for part in sorted(parts, key=lambda p: (p.index, p.start)):
        state = files[part.index][1]
        base = lines[part.index]
        state.events.extend(replace(e, line=e.line + base) if base else e for e in part.events)
        state.activity.extend(part.activity)
        state.counted.extend(part.counted)
        state.out_of_order += part.out_of_order
        state.services.update(part.services)
        if part.naive_tz:
            state.info.meta["naive_tz"] = True
        state.report = state.report or part.report
        state.info.warnings.extend(w for w in part.warnings if w not in state.info.warnings)
        lines[part.index] += part.lines
        last_newline[part.index] = part.ends_with_newline
    for index, (_, state, _size) in enumerate(files):
        state.activity = downsample(state.activity)
        note_counted(state)
        state.info.lines = lines[index] + (0 if last_newline[index] else 1)
        state.info.events = len(state.events)
        if state.out_of_order:
            state.info.warnings.append(f"{BACKWARDS} {state.out_of_order} time(s); events were re-sorted")

