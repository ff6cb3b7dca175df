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
import gc
import itertools
import os
import queue
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing import get_context

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
    # only the file's last bytes, where the read comes back short, are copied.
    if len(_buffer) != full:
        _buffer = bytearray(full)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = start
        while pos < end:
            stop = min(end, pos + CHUNK)
            read_from = max(0, stop + LOOKAHEAD - full)  # at most pos - LOOKBACK_BYTES
            got = os.preadv(fd, [_buffer], read_from)
            buf: Buffer = _buffer if got == full else bytes(memoryview(_buffer)[:got])
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
                services=state.services, naive_tz=bool(state.info.meta.get("naive_tz")))


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
        ex = ProcessPoolExecutor(max_workers=min(pool_size, len(ranges)), mp_context=get_context("fork"),
                                 initializer=_worker_start)
        # the workers are forked at the first submit and inherit the states: a range names its file's
        # (pickling each state's megabyte of sample with every range cost the pool's start more than
        # its scan); the objects the parent holds are frozen out of the collector meanwhile, so a
        # worker's collections do not copy every page it shares with the parent
        _TEMPLATES[:] = [state for _, state, _ in files]
        gc.freeze()
        try:
            futures: list[Future[Part]] = [ex.submit(_scan_forked, files[i][0], i, a, b) for i, a, b in ranges]
            gc.unfreeze()
            if meanwhile is not None:
                meanwhile()
            for blocks, state, size in streams:  # meanwhile, here
                scan_stream(blocks, state, progress, size)
            for fut in futures:
                part = fut.result()
                parts.append(part)
                if progress is not None:
                    name = files[part.index][1].info.name
                    progress(name, min(sizes[part.index], part.start + RANGE_MIN), sizes[part.index])
        except BaseException:
            gc.unfreeze()
            _stop_now(ex)  # interrupted or failed: no waiting for the ranges still being scanned
            raise
        ex.shutdown()
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


def _scan_forked(path: str, index: int, start: int, end: int) -> Part:
    return scan_range(path, _TEMPLATES[index], index, start, end)


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


def _stop_now(ex: ProcessPoolExecutor) -> None:
    procs = list((getattr(ex, "_processes", None) or {}).values())  # no public way to stop a running task
    calls = getattr(ex, "_call_queue", None)
    if calls is not None:
        # work still queued for the killed workers would keep the queue's feeder thread writing to a
        # pipe nobody reads, and the interpreter's exit waits for it (seen with Debian's 3.11.2)
        calls.cancel_join_thread()
    ex.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()
    for proc in procs:
        proc.join(5)


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

