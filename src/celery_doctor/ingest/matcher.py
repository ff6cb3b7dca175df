"""Find many literals at once in raw bytes: the scan that makes `logs` run at grep speed.

A gigabyte of log holds a few hundred lines that matter. They all carry one of the catalogue's
literals (signatures.py), so one pass of a multi-literal matcher over the undecoded bytes finds
them, and nothing else is decoded or parsed. Hyperscan (Intel's SIMD matcher, through the
``hyperscan`` package) runs that pass at memory speed; where no wheel exists for the platform the
stdlib fallback (one ``bytes.find`` per literal) gives the same hits, slower. The engine is chosen
at import and named in ``celery-doctor --version``.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import heapq
import importlib
import os
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from celery_doctor.ingest import counting

_hs: Any = None  # the module, when it imports
with contextlib.suppress(Exception):  # ImportError, or a wheel built for another CPU: the stdlib then
    _hs = importlib.import_module("hyperscan")

Buffer = Any  # bytes or bytearray (what has find/rfind and the buffer protocol)


Expression = tuple[bytes, bytes | None]  # (literal, a line-local pattern that narrows it, or None)
How = tuple[int, int, Any, int]  # a search string's (expression, kind, line pattern, bytes back to the hit)
SAMPLE_BYTES = 256 * 1024  # how much of an input the choice of search strings looks at
# how much of a big input the choice of Hyperscan engine is timed on: the engines' speeds part only
# once the bytes no longer fit in a core's cache (the Celery catalogue: equal on 256 KB, 2x apart on 1 MB)
TIMING_BYTES = 1024 * 1024


Groups = dict[int, list[int]]  # per expression: the offsets of its hits, ascending


class Matcher(Protocol):
    expressions: tuple[Expression, ...]

    def grouped(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
                counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
                owned: tuple[int, int] | None = None, keep: int | None = None) -> Groups:
        """Per expression (its index), the offsets of its hits (an offset inside the line that
        matched), ascending, for the bytes ``data[start:end]`` (offsets counted from ``start``).
        ``owned``: only the hits at offsets in [owned[0], owned[1]) are listed (a window scanned with
        the bytes around it, so that a line across its edge is found whole, owns only its own). With
        ``cap``, an expression not in ``exempt`` with more hits than ``cap`` repeats: only its first
        ``keep`` (``cap`` when not given) are listed, the rest counted (per expression) in ``counted``."""

    def hits(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
             counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
             owned: tuple[int, int] | None = None, keep: int | None = None) -> list[tuple[int, int]]:
        """The same hits as (offset, expression) pairs in offset order."""

    def found(self, data: Buffer, start: int, end: int) -> bool:
        """Whether any expression hits in ``data[start:end]`` (the first hit ends the search)."""


class _Engine:
    """What both engines share: the flat list of hits, from their groups."""

    def grouped(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
                counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
                owned: tuple[int, int] | None = None, keep: int | None = None) -> Groups:
        raise NotImplementedError

    def hits(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
             counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
             owned: tuple[int, int] | None = None, keep: int | None = None) -> list[tuple[int, int]]:
        groups = self.grouped(data, start, end, cap, counted, exempt, owned, keep)
        return sorted((at, ident) for ident, ats in groups.items() for at in ats)

    def found(self, data: Buffer, start: int, end: int) -> bool:
        return bool(self.grouped(data, start, end))


def _cut(groups: Groups, low: int, high: int, cap: int | None, counted: dict[int, int] | None,
         exempt: frozenset[int], keep: int | None) -> Groups:
    """Each expression's offsets sorted and cut to [low, high); past ``cap`` (when not exempt) to
    its first ``keep`` (or ``cap``), the rest counted in ``counted``. One slice per expression: a
    window of a churning broker's log holds tens of thousands of hits of one literal."""
    over = counted if counted is not None else {}
    out: Groups = {}
    for ident, ats in groups.items():
        ats.sort()  # in order already, but for the hits of one expression found by several search strings
        first, last = bisect.bisect_left(ats, low), bisect.bisect_left(ats, high)
        if first or last < len(ats):
            ats = ats[first:last]
        if cap is not None and ident not in exempt and len(ats) > cap:
            over[ident] = over.get(ident, 0) + len(ats) - cap
            ats = ats[:cap]
        if keep is not None and ident in over and len(ats) > keep:  # it repeats: its first keep
            over[ident] += len(ats) - keep
            ats = ats[:keep]
        if ats:
            out[ident] = ats
    return out


@lru_cache(maxsize=1024)
def _escape(literal: bytes) -> bytes:
    return b"".join(b"\\" + bytes([c]) if not chr(c).isalnum() else bytes([c]) for c in literal)


def _line_hits(data: Buffer, start: int, end: int, at: int, pattern: re.Pattern[bytes]) -> list[int]:
    """Where ``pattern`` matches (each match's last byte, from ``start``) on the line holding ``at``."""
    line_start = max(start, data.rfind(b"\n", start, at) + 1)
    line_end = data.find(b"\n", at, end)
    return [m.end() - 1 - start for m in pattern.finditer(data, line_start, end if line_end < 0 else line_end)]


# -- search strings: what the matcher looks for instead of a frequent literal or a pattern --------
# how a search string's hit becomes a hit of its expression (COVER: of the literals it is a piece of,
# those found whole around it)
LITERAL, DIRECT, LINE, NONE, COVER = 0, 1, 2, 3, 4
NEVER = rb"\x00\x01\d+\x02"  # a pattern no log holds (and were one to, its hits are dropped)


def _fastest(dbs: list[Any], sample: bytes) -> int:
    """The index of the database that scans the sample fastest (best of 3 each, taken in turn); the
    first unless another is clearly faster and calls back no more often (each hit costs Python work
    the timing does not see: a shared cover's piece that is common in the input)."""
    best = [float("inf")] * len(dbs)
    calls = [0] * len(dbs)
    for _ in range(3):
        for k, db in enumerate(dbs):
            count = [0]

            def counted(*_args: Any, count: list[int] = count) -> None:
                count[0] += 1

            began = time.perf_counter()
            db.scan(sample, match_event_handler=counted)
            best[k] = min(best[k], time.perf_counter() - began)
            calls[k] = count[0]
    fair = [k for k in range(len(dbs)) if calls[k] <= 8 + 2 * calls[0]]
    other = min(fair, key=lambda k: best[k])
    return other if best[other] < 0.8 * best[0] else 0


PIECE = 5  # the length of the pieces a shared cover is made of
PIECE_PLACES = 12  # about this many places in a literal a piece is taken from (each is counted in the sample)


def shared_cover(literals: list[bytes], sample: bytes) -> list[tuple[bytes, list[tuple[int, int]]]] | None:
    """Fewer, shorter search strings standing for ``literals``: pieces of PIECE bytes, each rare in
    the sample, such that every literal holds one (chosen greedily: most literals per occurrence in
    the sample). (piece, [(literal index, where in it the piece is)]) per piece; every literal is
    given to one piece only, so each of its occurrences is found once. None when no cover is
    shorter than the literals themselves or its pieces are common in the sample."""
    places: dict[bytes, dict[int, int]] = {}  # piece -> {literal index: where in it}
    for index, lit in enumerate(literals):
        starts = range(max(1, len(lit) - PIECE + 1))
        for at in starts[::max(1, len(starts) // PIECE_PLACES)]:
            places.setdefault(lit[at:at + PIECE], {}).setdefault(index, at)
    # every PIECE-byte window of the sample counted in one pass (a count per piece cost 15 us each)
    whole = [piece for piece in places if len(piece) == PIECE]
    seen = {piece: sample.count(piece) for piece in places if len(piece) != PIECE}
    seen.update(counting.occurrences(sample, whole, PIECE))
    holders = {piece: frozenset(where) for piece, where in places.items()}
    left = set(range(len(literals)))
    chosen: list[tuple[bytes, list[tuple[int, int]]]] = []
    # lazy greedy: a piece's score only falls as literals get covered, so the best stale score on the
    # heap that is still right when recomputed is the best
    heap = [(-len(holders[p]) / (1 + seen[p]), p) for p in holders]
    heapq.heapify(heap)
    while left and heap:
        _, piece = heapq.heappop(heap)
        score = len(holders[piece] & left) / (1 + seen[piece])
        if heap and score < -heap[0][0]:
            heapq.heappush(heap, (-score, piece))
            continue
        mine = sorted(holders[piece] & left)
        if mine:
            chosen.append((piece, [(i, places[piece][i]) for i in mine]))
            left.difference_update(mine)
    if left:
        return None
    own = sum(sample.count(lit) for lit in literals)
    if len(chosen) >= len(literals) or sum(seen[p] for p, _ in chosen) > 4 + 2 * own:
        return None
    return chosen


@lru_cache(maxsize=4096)
def _frequency(sample: bytes, text: bytes) -> int:
    return sample.count(text) if sample else 0


@lru_cache(maxsize=256)
def _parsed(pattern: bytes) -> Any:
    from re import _parser as parser  # type: ignore[attr-defined]

    try:
        return parser.parse(pattern.decode("latin-1"))
    except Exception:  # not ours to parse: the matcher takes it as it is
        return None


def pattern_cover(pattern: bytes, sample: bytes) -> list[bytes] | None:
    """Literals of which every match of ``pattern`` holds at least one (the rarest such set in
    the sample), or None when the pattern cannot be read that way (flags, classes only)."""
    from re import _constants as sre  # type: ignore[attr-defined]

    tree = _parsed(pattern)
    if tree is None:
        return None
    if tree.state.flags & ~(sre.SRE_FLAG_UNICODE):
        return None

    def covers(items: list[Any]) -> list[list[bytes]]:
        found: list[list[bytes]] = []
        run: list[int] = []

        def close() -> None:
            if len(run) >= 3:
                found.append([bytes(run)])
            run.clear()

        for op, av in items:
            if op is sre.LITERAL and av < 256:
                run.append(av)
                continue
            close()
            if op is sre.SUBPATTERN and not av[1]:  # a group without flags of its own
                found.extend(covers(list(av[-1])))
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] >= 1:
                found.extend(covers(list(av[2])))
            elif op is sre.BRANCH:
                alternatives = [best(covers(list(branch))) for branch in av[1]]
                if all(alternatives):
                    found.append(sorted({lit for alt in alternatives for lit in alt or []}))
        close()
        return found

    def best(options: list[list[bytes]]) -> list[bytes] | None:
        if not options:
            return None
        # rarest first; then the one whose last bytes are rarest (where a multi-literal matcher
        # confirms a candidate: 'Closing connection ' ends in what every line of a broker holds,
        # ' because' does not); then the longest
        return min(options, key=lambda lits: (sum(_frequency(sample, lit) for lit in lits),
                                              sum(_frequency(sample, lit[-4:]) for lit in lits),
                                              -min(map(len, lits))))

    return best(covers(list(tree)))


def _stop(*_: object) -> bool:
    return True  # Hyperscan's callback: stop at this match


class HyperscanMatcher(_Engine):
    """One Hyperscan pass over the bytes for every expression: its literal, or for a pattern the
    literals every match holds that are rarest in a sample of the input (the pattern then runs
    on the lines where they are). Hyperscan runs a pattern by confirming it wherever its longest
    literal is: ``access to vhost \\S+ refused`` on every line where a busy broker granted access
    to a vhost; `` refused`` is on almost none. The hits are the same whatever the sample, only
    the speed differs."""

    def __init__(self, expressions: tuple[Expression, ...], sample: bytes = b"", timing: bytes = b"") -> None:
        assert _hs is not None
        self.expressions = expressions
        self._how: list[How] = []  # per search string
        strings: list[bytes] = []
        pieces: list[bytes | None] = []  # per search string: the bytes it finds, when it is a literal
        for ident, (lit, pattern) in enumerate(expressions):
            if pattern is None:
                strings.append(_escape(lit))
                pieces.append(lit)
                self._how.append((ident, LITERAL, None, len(lit)))
                continue
            # a pattern without a literal (its literal starts with NUL: the connection-error words,
            # whose every match's position counts) runs in Hyperscan as it is
            cover = pattern_cover(pattern, sample) if sample and lit[:1] != b"\0" else None
            if cover is None:
                strings.append(pattern)
                pieces.append(None)
                self._how.append((ident, DIRECT, None, 1))
            else:
                compiled = re.compile(pattern)
                for piece in cover:
                    strings.append(_escape(piece))
                    pieces.append(piece)
                    self._how.append((ident, LINE, compiled, 0))
        # literals alone compile in a millisecond; patterns take ~0.1 s, so those are kept on disk
        keep = any(how == DIRECT for _, how, _, _ in self._how)
        self._db = _compiled(strings, keep=keep)
        # a COVER search string -> what each literal it stands for is, in full, and where in it the piece is
        self._covers: dict[int, list[tuple[How, bytes, int]]] = {}
        self._plan()
        if timing and not keep:
            self._choose(strings, pieces, sample, timing)

    def _choose(self, strings: list[bytes], pieces: list[bytes | None], sample: bytes, timing: bytes) -> None:
        """Time other sets of search strings on the input's own bytes and keep the fastest.
        Hyperscan picks its engine by the set: for some sets of literals alone it picks one twice as
        slow as the one a set with a pattern gets (the Celery catalogue on a worker log: 2.1 against
        4.1 GB/s), for others the opposite (a RabbitMQ log: 3.3 against 2.1), so a pattern that never
        matches is one candidate (its hits, none, are dropped). The other: the literals replaced by
        a shared cover of short rare pieces (35 RabbitMQ literals by 22 pieces: 2.3x faster there),
        each hit of a piece then checked for its literals around it."""
        how = self._how
        candidates: list[tuple[Any, list[How], dict[int, list[tuple[How, bytes, int]]]]] = [(self._db, how, {})]
        # with a pattern: ~20 ms to compile, kept on disk
        candidates.append((_compiled([*strings, NEVER], keep=True), [*how, (-1, NONE, None, 0)], {}))
        literal = [sid for sid, piece in enumerate(pieces) if piece is not None]
        # the pieces are counted in the sample's middle half (~300 counts of 32 KB: 2 ms); the timing
        # says the rest
        cover = (shared_cover([pieces[sid] or b"" for sid in literal], sample[len(sample) // 2:])
                 if len(literal) > 8 else None)
        if cover is not None:
            kept = [sid for sid, piece in enumerate(pieces) if piece is None]
            cover_how = [how[sid] for sid in kept] + [(-1, COVER, None, len(piece)) for piece, _ in cover]
            held = {len(kept) + k: [(how[literal[i]], pieces[literal[i]] or b"", at) for i, at in holders]
                    for k, (_, holders) in enumerate(cover)}
            cover_db = _compiled([strings[sid] for sid in kept] + [_escape(piece) for piece, _ in cover], keep=False)
            candidates.append((cover_db, cover_how, held))
        self._db, self._how, self._covers = candidates[_fastest([db for db, _, _ in candidates], timing)]
        self._plan()

    def _plan(self) -> None:
        """Per search string, how its hit is resolved: most are a literal or a pattern reported where
        it ends, resolved by one subtraction; a piece of a shared cover that stands for one literal,
        by one comparison (a busy broker's or a 3.1 app's windows call back tens of thousands of
        times: each Python step per hit counts)."""
        self._simple: list[tuple[int, int] | None] = [
            (back, ident) if kind in (LITERAL, DIRECT) else None for ident, kind, _, back in self._how]
        self._single: list[tuple[bytes, int, int] | None] = [None] * len(self._how)
        for sid, held in self._covers.items():
            (meant, meant_kind, _, _), lit, at = held[0]
            if len(held) == 1 and meant_kind == LITERAL:  # the literal begins this far before the piece's end
                self._single[sid] = (lit, self._how[sid][3] + at, meant)

    def found(self, data: Buffer, start: int, end: int) -> bool:
        if not all(plain is not None for plain in self._simple):
            return super().found(data, start, end)  # a pattern or a shared piece: its hits are resolved
        if end <= start:
            return False
        # only literals: any match is a hit, and the first one stops the scan
        with memoryview(data) as view:
            try:
                self._db.scan(view[start:end], match_event_handler=_stop)
            except _hs.ScanTerminated:
                return True
        return False

    def grouped(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
                counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
                owned: tuple[int, int] | None = None, keep: int | None = None) -> Groups:
        end = len(data) if end is None else end
        if end <= start:
            return {}
        low, high = owned if owned is not None else (0, end - start)
        # each search string's match ends in a list of its own: one append per match in the callback,
        # and what follows is one step per search string, not per match
        stops: list[list[int]] = [[] for _ in self._how]
        add = [found.append for found in stops]

        def on_match(sid: int, _start: int, stop: int, _flags: int, _ctx: object) -> None:
            add[sid](stop)

        with memoryview(data) as view:
            self._db.scan(view[start:end], match_event_handler=on_match)
        groups: Groups = {}
        rest: list[tuple[int, int]] = []  # hits resolved the slow way (patterns' lines, shared pieces)
        lines: set[tuple[int, int]] = set()
        span = end - start
        for sid, ends in enumerate(stops):
            if not ends:
                continue
            plain, one = self._simple[sid], self._single[sid]
            if plain is not None:  # a literal (back: its length) or a pattern (back: 1)
                back, ident = plain
                ats = [stop - back for stop in ends]
            elif one is not None:  # a piece of a shared cover that stands for one literal
                lit, back, ident = one
                size, whole = len(lit), data.startswith
                ats = [at for stop in ends if 0 <= (at := stop - back) <= span - size and whole(lit, start + at)]
            else:
                for stop in ends:
                    self._resolve(data, start, end, stop, sid, lines, rest)
                continue
            if ident in groups:
                groups[ident] += ats
            else:
                groups[ident] = ats
        for at, ident in rest:
            groups.setdefault(ident, []).append(at)
        return _cut(groups, low, high, cap, counted, exempt, keep)

    def _resolve(self, data: Buffer, start: int, end: int, stop: int, sid: int, lines: set[tuple[int, int]],
                 out: list[tuple[int, int]]) -> None:
        ident, kind, check, back = self._how[sid]
        if kind == COVER:
            # a piece of a shared cover: the search strings it stands for, whole around it and
            # inside [start, end), as if Hyperscan had found them
            for (meant, meant_kind, meant_check, meant_back), lit, at in self._covers[sid]:
                begin = stop - back - at
                if begin >= 0 and begin + len(lit) <= end - start and data.startswith(lit, start + begin):
                    if meant_kind == LITERAL:
                        out.append((begin + len(lit) - meant_back, meant))
                    else:
                        self._line(data, start, end, begin + len(lit), meant, meant_check, lines, out)
        elif kind == LINE:
            self._line(data, start, end, stop, ident, check, lines, out)

    @staticmethod
    def _line(data: Buffer, start: int, end: int, stop: int, ident: int, check: Any,
              lines: set[tuple[int, int]], found: list[tuple[int, int]]) -> None:
        """A pattern's hits on the line where one of its literals ended at ``stop`` (each line once,
        whichever literal led there)."""
        key = (data.rfind(b"\n", start, start + stop), ident)
        if key not in lines:
            lines.add(key)
            found.extend((at, ident) for at in _line_hits(data, start, end, start + stop - 1, check))


class FindMatcher(_Engine):
    """The stdlib fallback: one ``bytes.find`` loop per literal (each runs at C speed); a pattern
    is checked on the line of each hit of its literal. An expression whose literal starts with a
    NUL byte (no log holds one) has no literal: its pattern is searched, reported where each match
    ends (as Hyperscan reports a pattern)."""

    def __init__(self, expressions: tuple[Expression, ...], sample: bytes = b"") -> None:
        self.expressions = expressions
        self._patterns = [re.compile(p) if p is not None else None for _, p in expressions]

    def grouped(self, data: Buffer, start: int = 0, end: int | None = None, cap: int | None = None,
                counted: dict[int, int] | None = None, exempt: frozenset[int] = frozenset(),
                owned: tuple[int, int] | None = None, keep: int | None = None) -> Groups:
        end = len(data) if end is None else end
        groups: Groups = {}
        for ident, (lit, _) in enumerate(self.expressions):
            pattern = self._patterns[ident]
            found: list[int] = []
            if pattern is not None and lit[:1] == b"\0":
                found.extend(m.end() - 1 - start for m in pattern.finditer(data, start, end))
            else:
                at = data.find(lit, start, end)
                seen_line = -2
                while at >= 0:
                    if pattern is None:
                        found.append(at - start)
                    else:
                        line_start = data.rfind(b"\n", start, at)
                        if line_start != seen_line:  # a line's matches once, however often the literal is on it
                            seen_line = line_start
                            found.extend(_line_hits(data, start, end, at, pattern))
                    at = data.find(lit, at + 1, end)
            if found:
                groups[ident] = sorted(set(found))
        low, high = owned if owned is not None else (0, max(0, end - start))
        return _cut(groups, low, high, cap, counted, exempt, keep)


def _compiled(patterns: list[bytes], keep: bool = True) -> Any:
    """The Hyperscan database for ``patterns``, compiled once per process (files of one family
    and layout get the same search strings)."""
    key = tuple(patterns)
    if key not in _DATABASES:
        _DATABASES[key] = _compile(patterns, keep)
    return _DATABASES[key]


_DATABASES: dict[tuple[bytes, ...], Any] = {}


def _compile(patterns: list[bytes], keep: bool) -> Any:
    """The Hyperscan database for ``patterns``: compiling literals and patterns together takes
    ~0.1 s, so the result is kept in the user's cache folder, keyed by the patterns and the engine's
    version (a database that does not load is compiled again)."""
    key = hashlib.sha256(b"\0".join([str(getattr(_hs, "__version__", "")).encode(), *patterns])).hexdigest()[:24]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "celery-doctor" / f"hs-{key}.db"
    if keep:
        with contextlib.suppress(Exception):
            loaded = _hs.loadb(cache.read_bytes(), _hs.HS_MODE_BLOCK)
            loaded.scratch = _hs.Scratch(loaded)  # a loaded database comes without one
            return loaded
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=patterns, ids=list(range(len(patterns))), elements=len(patterns), flags=[0] * len(patterns))
    if not keep:
        return db
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
        HyperscanMatcher(((b"probe", None), (b"x", rb"x\S+y"))).hits(b"a probe xay")
    except Exception:  # e.g. a CPU without the instructions the wheel needs
        return "stdlib bytes.find"
    return f"hyperscan {getattr(_hs, '__version__', '')}".strip()


ENGINE = _engine()


def build(expressions: tuple[Expression, ...], sample: bytes = b"", timing: bytes = b"") -> Matcher:
    """One compiled matcher per set of expressions (the ranges of a file share it, the forked workers
    too); ``sample``: a piece of the input its search strings are chosen on; ``timing``: for a matcher
    that scans whole windows of a big input, a piece of it the engine is chosen on, by timing. Given
    several inputs of one family, the first one's sample decides for all: the hits are the same
    whatever the sample, only the speed differs, and choosing again for each of ten files cost
    ~7 ms each before the scan could start."""
    unique = tuple(dict.fromkeys(expressions))
    key = (unique, bool(sample), bool(timing))
    if key not in _BUILT:
        if ENGINE.startswith("hyperscan") and unique:
            _BUILT[key] = HyperscanMatcher(unique, sample[:SAMPLE_BYTES], timing[:TIMING_BYTES])
        else:
            _BUILT[key] = FindMatcher(unique)
    return _BUILT[key]


_BUILT: dict[tuple[tuple[Expression, ...], bool, bool], Matcher] = {}
