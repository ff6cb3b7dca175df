"""Find many literals at once in raw bytes: the scan that makes `logs` run at grep speed.

A gigabyte of log holds a few hundred lines that matter. They all carry one of the catalogue's
literals (signatures.py), so one pass of a multi-literal matcher over the undecoded bytes finds
them, and nothing else is decoded or parsed. Hyperscan (Intel's SIMD matcher, through the
``hyperscan`` package) runs that pass at memory speed; where no wheel exists for the platform the
stdlib fallback (one ``bytes.find`` per literal) gives the same hits, slower. The engine is chosen
at import and named in ``celery-doctor --version``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

_hs: Any = None  # the module, when it imports
with contextlib.suppress(Exception):  # ImportError, or a wheel built for another CPU: the stdlib then
    _hs = importlib.import_module("hyperscan")

Buffer = Any  # bytes, mmap or memoryview: whatever supports the buffer protocol


Expression = tuple[bytes, bytes | None]  # (literal, a line-local pattern that narrows it, or None)


class Matcher(Protocol):
    expressions: tuple[Expression, ...]

    def hits(self, data: Buffer) -> list[tuple[int, int]]:
        """(an offset inside the line that matched, index of the expression), in offset order."""


def _escape(literal: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if not chr(c).isalnum() else bytes([c]) for c in literal)


class HyperscanMatcher:
    def __init__(self, expressions: tuple[Expression, ...]) -> None:
        assert _hs is not None
        self.expressions = expressions
        patterns = [pattern if pattern is not None else _escape(lit) for lit, pattern in expressions]
        self._db = _compiled(patterns)
        # a literal's start is known; a pattern's match is reported at its end (inside the line)
        self._back = [len(lit) if pattern is None else 1 for lit, pattern in expressions]

    def hits(self, data: Buffer) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        back = self._back

        def on_match(ident: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            found.append((end - back[ident], ident))

        if len(data):
            self._db.scan(data, match_event_handler=on_match)
        found.sort()
        return found


class FindMatcher:
    """The stdlib fallback: one ``bytes.find`` loop per literal (each runs at C speed); a pattern
    is checked on the line of each hit of its literal. An expression whose literal starts with a
    NUL byte (no log holds one) has no literal: its pattern is searched, reported where each match
    ends (as Hyperscan reports a pattern)."""

    def __init__(self, expressions: tuple[Expression, ...]) -> None:
        self.expressions = expressions
        self._patterns = [re.compile(p) if p is not None else None for _, p in expressions]

    def hits(self, data: Buffer) -> list[tuple[int, int]]:
        view = data if isinstance(data, bytes) else bytes(data)
        found: list[tuple[int, int]] = []
        for ident, (lit, _) in enumerate(self.expressions):
            pattern = self._patterns[ident]
            if pattern is not None and lit[:1] == b"\0":
                found.extend((m.end() - 1, ident) for m in pattern.finditer(view))
                continue
            at = view.find(lit)
            while at >= 0:
                if pattern is None:
                    found.append((at, ident))
                else:
                    line_start = view.rfind(b"\n", 0, at) + 1
                    line_end = view.find(b"\n", at)
                    if pattern.search(view, line_start, len(view) if line_end < 0 else line_end):
                        found.append((at, ident))
                at = view.find(lit, at + 1)
        found.sort()
        return found


def _compiled(patterns: list[bytes]) -> Any:
    """The Hyperscan database for ``patterns``: compiling literals and patterns together takes
    ~0.1 s, so the result is kept in the user's cache folder, keyed by the patterns and the engine's
    version (a database that does not load is compiled again)."""
    key = hashlib.sha256(b"\0".join([str(getattr(_hs, "__version__", "")).encode(), *patterns])).hexdigest()[:24]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "celery-doctor" / f"hs-{key}.db"
    with contextlib.suppress(Exception):
        loaded = _hs.loadb(cache.read_bytes(), _hs.HS_MODE_BLOCK)
        loaded.scratch = _hs.Scratch(loaded)  # a loaded database comes without one
        return loaded
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=patterns, ids=list(range(len(patterns))), elements=len(patterns), flags=[0] * len(patterns))
    with contextlib.suppress(OSError):  # a read-only home only costs the compile next time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_hs.dumpb(db))
        tmp.replace(cache)
    return db


def _engine() -> str:
    if _hs is None:
        return "stdlib bytes.find"
    try:
        HyperscanMatcher(((b"probe", None), (b"x", rb"x\S+y"))).hits(b"a probe")
    except Exception:  # e.g. a CPU without the instructions the wheel needs
        return "stdlib bytes.find"
    return f"hyperscan {getattr(_hs, '__version__', '')}".strip()


ENGINE = _engine()


@lru_cache(maxsize=32)
def build(expressions: tuple[Expression, ...]) -> Matcher:
    """One compiled matcher per set of expressions (cached: sources of one family share it)."""
    unique = tuple(dict.fromkeys(expressions))
    if ENGINE.startswith("hyperscan") and unique:
        return HyperscanMatcher(unique)
    return FindMatcher(unique)
