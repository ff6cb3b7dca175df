"""Large plain files are scanned in byte ranges by several processes (one per core).

The scan is bound by memory bandwidth in a single thread; a second core halves the wall time.
Each range starts at a line boundary and reads the look-back window before it; the parent
renumbers lines and joins the ranges in order.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

from celery_doctor.ingest.reader import LOOKBACK_BYTES, Scanner, SourceState
from celery_doctor.ingest.sources import chunks

SPLIT_MIN = 128 * 1024 * 1024  # below this, starting processes costs more than it saves


def workers_for(size: int) -> int:
    return min(4, os.cpu_count() or 1) if size >= SPLIT_MIN else 1


def boundaries(path: str, size: int, parts: int) -> list[int]:
    """Byte offsets that split the file into ``parts`` ranges at line starts."""
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            handle.seek(size * k // parts)
            handle.readline()
            cuts.append(max(cuts[-1], handle.tell()))
    cuts.append(size)
    return cuts


def _scan_range(path: str, template: SourceState, start: int, end: int) -> SourceState:
    state = replace(template, info=replace(template.info, warnings=[], meta=dict(template.info.meta)),
                    events=[], activity=[])
    scanner = Scanner(state)
    scanner.first_chunk = start == 0
    with open(path, "rb") as handle:
        handle.seek(max(0, start - LOOKBACK_BYTES))
        scanner.tail = handle.read(start - max(0, start - LOOKBACK_BYTES))
        for block in chunks(handle, b"", state.info.warnings, limit=end - start):
            scanner.feed(block)
    scanner.finish()
    return state


def scan_split(path: str, state: SourceState, size: int, parts: int | None = None) -> None:
    """Scan ``path`` in parallel ranges and merge the results into ``state``."""
    cuts = boundaries(path, size, parts or workers_for(size))
    ranges = list(itertools.pairwise(cuts))
    with ProcessPoolExecutor(max_workers=len(ranges), mp_context=get_context("fork")) as pool:
        results = list(pool.map(_scan_range, [path] * len(ranges), [state] * len(ranges),
                              [a for a, _ in ranges], [b for _, b in ranges]))
    lines = 0
    for part in results:
        state.events.extend(replace(e, line=e.line + lines) for e in part.events)
        state.activity.extend(part.activity)
        state.out_of_order += part.out_of_order
        lines += part.info.lines
        state.info.warnings.extend(w for w in part.info.warnings if w not in state.info.warnings)
    state.info.lines = lines
    state.info.events = len(state.events)
