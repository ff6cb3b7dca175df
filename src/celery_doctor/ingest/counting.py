"""Counting newlines at memory speed: the line numbers every event cites.

A line number is the count of newlines before the line, so the scan counts every newline of the
input once (the total is the source's line count). ``bytes.count`` does it one byte at a time
(about 1 GB/s); numpy compares 16 or 32 bytes per instruction, about four times as fast, so a
gigabyte costs ~0.2 CPU-seconds instead of ~0.8. numpy is optional: where it does not import the
stdlib count gives the same numbers, and small spans use it anyway (numpy's import, ~60 ms,
pays for itself only on hundreds of megabytes: :func:`enable` is called for those).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections import Counter
from typing import Any

NEWLINE = 10
SMALL = 1 << 20  # below this a span is counted by bytes.count (numpy's per-call cost dominates)
BLOCK = 256 * 1024  # numpy compares this much at a time into one reused mask (it stays in L2)

_np: Any = None
_mask: Any = None


def enable() -> bool:
    """Load numpy for the counts (once); False where it is not installed or does not load."""
    global _np, _mask
    if _np is None:
        # no BLAS here: OpenBLAS otherwise starts a thread per core at import that spins for a while
        # (~60 ms of CPU taken from the scan on a 2-core machine); a user's own setting is kept
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        with contextlib.suppress(Exception):  # ImportError, or a broken build: the stdlib count then
            np = importlib.import_module("numpy")
            _mask = np.empty(BLOCK, dtype=bool)
            _np = np
    return _np is not None


def engine() -> str:
    """What counts the lines of big inputs here (numpy when it is installed, without importing it)."""
    if _np is not None:
        return "numpy"
    return "numpy" if importlib.util.find_spec("numpy") is not None else "bytes.count"


def newlines(buf: Any, start: int, end: int) -> int:
    """The number of b'\\n' bytes in ``buf[start:end]`` (``buf``: bytes, bytearray or mmap)."""
    if end - start < SMALL or _np is None:
        return buf.count(b"\n", start, end)
    np, mask = _np, _mask
    block = len(mask)
    data = np.frombuffer(buf, dtype=np.uint8, count=end - start, offset=start)
    total = 0
    for at in range(0, end - start, block):
        piece = data[at : at + block]
        out = mask if len(piece) == block else mask[: len(piece)]
        total += int(np.count_nonzero(np.equal(piece, NEWLINE, out=out)))
    del data
    return total


def occurrences(data: bytes, pieces: list[bytes], size: int) -> dict[bytes, int]:
    """How often each piece of ``size`` bytes (at most 8) occurs in ``data``, overlaps counted.
    With numpy, every window of ``data`` becomes one 64-bit number, sorted once, and each piece is
    looked up in it (~1 ms for 32 KB); without, a Counter of the windows (~6 ms)."""
    if _np is None or not 0 < size <= 8 or len(data) < size:
        windows = Counter(data[i:i + size] for i in range(len(data) - size + 1))
        return {piece: windows[piece] for piece in pieces}
    np = _np
    n = len(data) - size + 1
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    codes = raw[:n].copy()
    for k in range(1, size):
        codes |= raw[k:k + n] << np.uint64(8 * k)
    codes.sort()
    keys = np.array([int.from_bytes(piece, "little") for piece in pieces], dtype=np.uint64)
    found = np.searchsorted(codes, keys, "right") - np.searchsorted(codes, keys, "left")
    return dict(zip(pieces, (int(c) for c in found), strict=True))
