"""One self-contained HTML file: the causes first, then the timeline drawn per source.

Everything the page needs is inline (CSS, SVG, a few lines of JS) so it can be attached to a
ticket or opened from a mail with no network. Geometry is computed here and the template only
emits it; every string is redacted *before* escaping, because HTML entities (``&#34;``) would
otherwise hide a quoted ``password="..."`` from the redaction patterns run on the final page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2

from celery_doctor import __version__
from celery_doctor.model import Event, Evidence, Finding, Incident, Kind, Report, SourceInfo
from celery_doctor.redact import MASK, _is_secret_key, redact_data
from celery_doctor.report.interface import Renderer
from celery_doctor.report.sections import input_sections

# --- what each event kind looks like on the timeline -------------------------------------------
# group -> (row in the lane, css class, legend label); rows: 0 = failures/closes, 1 = (re)connects
GROUPS: dict[str, tuple[int, str]] = {
    "lost": (0, "Connection lost / reset (client)"),
    "closed": (0, "Closed by the broker"),
    "cut": (0, "Cut by the proxy / network"),
    "connected": (1, "Connected / accepted"),
    "lifecycle": (1, "Broker or worker start/stop"),
    "alarm": (1, "Alarm / blocked"),
    "clean": (1, "Orderly close"),
    "other": (1, "Other"),
    "evidence": (1, "Evidence line"),
}
KIND_GROUP: dict[Kind, str] = {
    Kind.CONNECTION_LOST: "lost",
    Kind.CANNOT_CONNECT: "lost",
    Kind.HEARTBEAT_MISSED_BROKER: "lost",
    Kind.AUTH_REFUSED: "lost",
    Kind.ACCESS_REFUSED: "lost",
    Kind.TLS_ERROR: "lost",
    Kind.HEARTBEAT_MISSED_CLIENT: "closed",
    Kind.CLIENT_CLOSED_ABRUPTLY: "closed",
    Kind.BROKER_FORCED_CLOSE: "closed",
    Kind.SERVER_CLOSED_IDLE: "closed",
    Kind.SERVER_CLOSED_LIMIT: "closed",
    Kind.CONSUMER_TIMEOUT: "closed",
    Kind.PROXY_CUT: "cut",
    Kind.PROXY_BLACKHOLE: "cut",
    Kind.PROXY_REFUSE: "cut",
    Kind.PROXY_HEAL: "connected",
    Kind.CONNECTED: "connected",
    Kind.CONNECTION_ACCEPTED: "connected",
    Kind.WORKER_READY: "connected",
    Kind.BROKER_START: "lifecycle",
    Kind.BROKER_STOP: "lifecycle",
    Kind.WORKER_SHUTDOWN: "lifecycle",
    Kind.FAILOVER: "lifecycle",
    Kind.ALARM_SET: "alarm",
    Kind.ALARM_CLEARED: "alarm",
    Kind.BLOCKED: "alarm",
    Kind.CONNECTION_CLOSED_CLEAN: "clean",
}
# Task lines are drawn as load (from Report.data["activity"]), not one mark each.
LOAD_KINDS = {Kind.TASK_RECEIVED, Kind.TASK_SUCCEEDED}

# --- geometry (SVG user units; the SVG scales to the page width) -------------------------------
WIDTH = 1200
GUTTER = 190  # lane labels
RIGHT = 14
AXIS_TOP = 34  # incident labels + time ticks above the lanes
LANE_H = 74
LANE_GAP = 8
ROW_Y = (17, 36)  # mark rows inside a lane
LOAD_TOP, LOAD_H = 46, 24  # the load area at the bottom of a lane
IDLE_MIN_S = 5.0
MAX_MARKS = 4000  # beyond this, the marks that are evidence or in incidents are kept first
MAX_EVENT_ROWS = 2000
MAX_EVIDENCE = 15
EVIDENCE_SHOWN = 5  # the rest of a finding's evidence sits behind a "more" toggle
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                43200, 86400, 172800, 604800)


@dataclass
class _Scale:
    t0: datetime
    t1: datetime

    @property
    def span_s(self) -> float:
        return max((self.t1 - self.t0).total_seconds(), 1e-6)

    def x(self, ts: datetime) -> float:
        frac = (ts - self.t0).total_seconds() / self.span_s
        return round(GUTTER + frac * (WIDTH - GUTTER - RIGHT), 2)


def duration(seconds: float | None) -> str:
    """Human duration: 42.5s, 3m 20s, 1h 05m, 2d 3h."""
    if seconds is None:
        return "–"
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 0.1:  # a reconnect in 11 ms is not "0.0s"
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m}m {s:02d}s"
    if seconds < 86400:
        h, m = divmod(round(seconds / 60), 60)
        return f"{h}h {m:02d}m"
    d, h = divmod(round(seconds / 3600), 24)
    return f"{d}d {h}h"


def _utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


def _first_line(text: str, limit: int = 400) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(text: str) -> str | None:
    """The last line of a multi-line record: for a traceback, the exception that ended it."""
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    return _first_line(lines[-1].strip(), 300) if lines else None


def _parse_iso(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _activity(report: Report) -> dict[str, list[tuple[datetime, datetime, int]]]:
    raw = report.data.get("activity")
    out: dict[str, list[tuple[datetime, datetime, int]]] = {}
    if not isinstance(raw, dict):
        return out
    for name, curve in raw.items():
        buckets = []
        for item in curve or []:
            if not isinstance(item, list | tuple) or len(item) < 3:
                continue
            a, b = _parse_iso(item[0]), _parse_iso(item[1])
            if a is None or b is None:
                continue
            buckets.append((a, max(a, b), int(item[2] or 0)))
        if buckets:
            out[str(name)] = sorted(buckets)
    return out


class _Ids:
    """Stable DOM ids for sources (by lane index) and for event marks (lane + line), and the
    short name each source is shown under (the shortest path tail that tells them apart)."""

    def __init__(self, names: list[str]) -> None:
        self.lane = {name: i for i, name in enumerate(names)}
        self._short = _unique_tails(names)

    def short(self, name: str) -> str:
        return self._short.get(name) or _unique_tails([name])[name]

    def mark(self, source: str, line: int) -> str | None:
        lane = self.lane.get(source)
        return None if lane is None else f"m-{lane}-{line}"


def _skipped(report: Report, activity: dict[str, Any]) -> set[str]:
    """Inputs that gave nothing to draw (an unknown format, an empty file): no empty lane for
    them; the page lists them under the warnings instead."""
    used = {e.source for e in report.events} | set(activity) | {
        ev.source for f in report.findings for ev in [*f.evidence, *f.contradicting]}
    return {s.name for s in report.sources if not s.events and s.name not in used}


def _lane_names(report: Report, activity: dict[str, Any]) -> list[str]:
    skipped = _skipped(report, activity)
    names = [s.name for s in report.sources if s.name not in skipped]
    for name in [e.source for e in report.events] + list(activity):
        if name not in names:
            names.append(name)
    return names


def _ticks(scale: _Scale) -> list[dict[str, Any]]:
    span = scale.span_s
    step = next((s for s in TICK_STEPS_S if span / s <= 9), TICK_STEPS_S[-1])
    start = scale.t0.replace(microsecond=0)
    epoch = start.timestamp()
    first = datetime.fromtimestamp(epoch - epoch % step + step, UTC)
    if step >= 86400:
        fmt = "%m-%d"
    elif step >= 60:
        fmt = "%H:%M"
    else:
        fmt = "%H:%M:%S"
    ticks = []
    ts = first
    while ts <= scale.t1:
        label = ts.strftime(fmt)
        if step < 86400 and ts.hour == 0 and ts.minute == 0 and ts.second == 0:
            label = ts.strftime("%m-%d")
        ticks.append({"x": scale.x(ts), "label": label})
        ts += timedelta(seconds=step)
    return ticks


def _timeline(report: Report, names: list[str], ids: _Ids, activity: dict[str, Any],
              evidence: list[Evidence], incident_of: dict[tuple[str, int], int]) -> dict[str, Any] | None:
    marked = [e for e in report.events if e.kind not in LOAD_KINDS]
    times = [e.at for e in report.events] + [ev.ts for ev in evidence if ev.ts]
    for curve in activity.values():
        times += [curve[0][0], curve[-1][1]]
    if not (marked or activity or report.incidents) or not times:
        return None
    times = [_utc(t) for t in times]
    lo, hi = min(times), max(times)
    pad = max((hi - lo).total_seconds() * 0.02, 5.0)
    scale = _Scale(lo - timedelta(seconds=pad), hi + timedelta(seconds=pad))

    infos = {s.name: s for s in report.sources}
    lanes: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        y = AXIS_TOP + i * (LANE_H + LANE_GAP)
        info = infos.get(name)
        lanes.append({
            "index": i, "y": y, "name": name, "short": ids.short(name),
            "format": info.format if info else "", "side": _lane_side(report.events, name),
            "offset": f"clock {info.offset_s:+.1f}s" if info and info.offset_s else "",
            "load": [], "idle": [], "load_max": 0,
        })
    lane_by_name = {lane["name"]: lane for lane in lanes}
    height = AXIS_TOP + len(lanes) * (LANE_H + LANE_GAP) + 22

    # load and idle stretches, per lane
    for name, curve in activity.items():
        lane = lane_by_name[name]
        bars = _load_bars(curve, scale)
        top = max((b["n"] for b in bars), default=0)
        lane["load_max"] = max((n for _, _, n in curve), default=0)
        for bar in bars:
            h = 0 if not top else max(1.5, LOAD_H * bar["n"] / top)
            bar["y"] = round(lane["y"] + LOAD_TOP + LOAD_H - h, 2)
            bar["h"] = round(h, 2)
        lane["load"] = bars
        lane["idle"] = _idle_stretches(curve, report.events, name, scale)
    for lane in lanes:
        kind = " · ".join(x for x in (lane["format"], lane["side"]) if x)
        lane["subs"] = [x for x in (kind, f"load ≤ {lane['load_max']} task lines" if lane["load_max"] else "",
                                    lane["offset"]) if x]

    # marks: every non-task event, then evidence lines that no event covers
    evidence_keys = {(ev.source, ev.line) for ev in evidence}
    if len(marked) > MAX_MARKS:
        keep = [e for e in marked if (e.source, e.line) in evidence_keys or (e.source, e.line) in incident_of]
        rest = [e for e in marked if (e.source, e.line) not in evidence_keys and (e.source, e.line) not in incident_of]
        marked = sorted(keep + rest[: max(0, MAX_MARKS - len(keep))], key=lambda e: e.at)
    marks: dict[str, dict[str, Any]] = {}
    for event in marked:
        mid = ids.mark(event.source, event.line)
        if mid is None or mid in marks:
            continue
        group = KIND_GROUP.get(event.kind, "other")
        marks[mid] = _mark(mid, event.at, lane_by_name[event.source], group, event.kind.value,
                           event.text, f"{event.source}:{event.line}", scale,
                           incident_of.get((event.source, event.line)))
    for ev in evidence:
        mid = ids.mark(ev.source, ev.line)
        if mid is None or mid in marks or ev.ts is None:
            continue
        marks[mid] = _mark(mid, _utc(ev.ts), lane_by_name[ev.source], "evidence", "evidence", ev.text,
                           f"{ev.source}:{ev.line}", scale, incident_of.get((ev.source, ev.line)))

    bands = []
    last_label = -1e9
    for inc in report.incidents:
        start = min(_utc(e.at) for e in inc.events)
        end = max(_utc(e.at) for e in inc.events)
        x0, x1 = scale.x(start), scale.x(end)
        if x1 - x0 < 5.0:  # keep an instantaneous incident visible: 5 units around it
            x0, x1 = (x0 + x1) / 2 - 2.5, (x0 + x1) / 2 + 2.5
        x0, w = round(x0, 2), round(x1 - x0, 2)
        show = x0 - last_label >= 22
        if show:
            last_label = x0
        bands.append({
            "id": inc.id, "x": x0, "w": w, "closed_by": inc.closed_by.value,
            "label": show, "title": _incident_title(inc),
        })
    return {
        "width": WIDTH, "height": height, "gutter": GUTTER, "right": WIDTH - RIGHT,
        "axis_top": AXIS_TOP, "lane_h": LANE_H, "lanes": lanes, "ticks": _ticks(scale),
        "marks": list(marks.values()), "bands": bands,
        "start": scale.t0.strftime("%Y-%m-%d %H:%M:%S"), "end": scale.t1.strftime("%Y-%m-%d %H:%M:%S"),
        "legend": _legend(marks.values(), lanes, bands),
        "dropped": max(0, len([e for e in report.events if e.kind not in LOAD_KINDS]) - len(marked)),
    }


def _unique_tails(names: list[str], limit: int = 28) -> dict[str, str]:
    """``a/x/worker.log, a/y/worker.log, a/x/broker.log`` -> ``x/worker.log, y/worker.log, broker.log``."""
    parts = {name: [p for p in name.replace("\\", "/").split("/") if p] or [name] for name in names}
    out: dict[str, str] = {}
    for name, segs in parts.items():
        for n in range(1, len(segs) + 1):
            tail = segs[-n:]
            clash = any(other != name and o[-n:] == tail for other, o in parts.items())
            if not clash:
                break
        short = "/".join(tail)
        out[name] = short if len(short) <= limit else "…" + short[-(limit - 1):]
    return out


def _lane_side(events: list[Event], name: str) -> str:
    sides = {e.side.value for e in events if e.source == name}
    return sides.pop() if len(sides) == 1 else ("mixed" if sides else "")


def _mark(mid: str, ts: datetime, lane: dict[str, Any], group: str, kind: str, text: str, where: str,
          scale: _Scale, incident: int | None) -> dict[str, Any]:
    row = GROUPS[group][0]
    return {
        "id": mid, "x": scale.x(_utc(ts)), "y": lane["y"] + ROW_Y[row], "group": group, "kind": kind,
        "title": f"{_utc(ts):%H:%M:%S.%f}"[:-3] + f" {kind} · {where}\n{_first_line(text)}",
        "incident": incident,
    }


def _load_bars(curve: list[tuple[datetime, datetime, int]], scale: _Scale) -> list[dict[str, Any]]:
    """One bar per bucket, merging buckets that would be narrower than 2 units on screen."""
    bars: list[dict[str, Any]] = []
    for a, b, n in curve:
        x0, x1 = scale.x(a), scale.x(b)
        if bars and x0 < bars[-1]["x0"] + 2.0:
            bar = bars[-1]
            bar["x1"], bar["n"], bar["to"] = max(bar["x1"], x1), bar["n"] + n, b
            continue
        bars.append({"x0": x0, "x1": x1, "n": n, "from": a, "to": b})
    out = []
    for bar in bars:
        if bar["n"] <= 0:
            continue
        out.append({
            "x": bar["x0"], "w": round(max(bar["x1"] - bar["x0"], 1.5), 2), "n": bar["n"],
            "title": f"{bar['from']:%H:%M:%S}–{bar['to']:%H:%M:%S} · {bar['n']} task lines",
        })
    return out


def _idle_stretches(curve: list[tuple[datetime, datetime, int]], events: list[Event], name: str,
                    scale: _Scale) -> list[dict[str, Any]]:
    """Gaps with no task activity between the source's first and last line."""
    own = [_utc(e.at) for e in events if e.source == name]
    busy = [(a, b) for a, b, n in curve if n > 0]
    if not busy:
        return []
    first = min([busy[0][0], *own]) if own else busy[0][0]
    last = max([busy[-1][1], *own]) if own else busy[-1][1]
    threshold = max(IDLE_MIN_S, scale.span_s * 0.01)
    edges = [(first, first), *busy, (last, last)]
    out = []
    end = edges[0][1]
    for a, b in edges[1:]:
        gap = (a - end).total_seconds()
        if gap >= threshold:
            x0, x1 = scale.x(end), scale.x(a)
            out.append({"x": x0, "w": round(x1 - x0, 2), "label": f"idle {duration(gap)}",
                        "title": f"idle {duration(gap)}: {end:%H:%M:%S} – {a:%H:%M:%S}",
                        "show_label": x1 - x0 >= 64})
        end = max(end, b)
    return out


def _incident_title(inc: Incident) -> str:
    parts = [f"incident #{inc.id}: closed by {inc.closed_by.value}, phase {inc.phase.value}"]
    if inc.idle_before_s is not None:
        parts.append(f"idle before {duration(inc.idle_before_s)}")
    if inc.outage_s is not None:
        parts.append(f"outage {duration(inc.outage_s)}")
    return " · ".join(parts) + f"\n{inc.reason}"


def _legend(marks: Any, lanes: list[dict[str, Any]], bands: list[dict[str, Any]]) -> list[dict[str, str]]:
    groups = {m["group"] for m in marks}
    items = [{"group": g, "label": label} for g, (_, label) in GROUPS.items() if g in groups]
    if any(lane["load"] for lane in lanes):
        items.append({"group": "load", "label": "Load (task lines)"})
    if any(lane["idle"] for lane in lanes):
        items.append({"group": "idle", "label": "Idle stretch"})
    for closed_by in sorted({b["closed_by"] for b in bands}):
        items.append({"group": f"band-{closed_by}", "label": f"Incident, closed by {closed_by}"})
    return items


def _evidence_rows(items: list[Evidence], ids: _Ids, incident_of: dict[tuple[str, int], int]
                   ) -> list[dict[str, Any]]:
    return [{
        "where": f"{ids.short(ev.source)}:{ev.line}" if ev.line else ids.short(ev.source), "path": ev.source,
        "ts": f"{_utc(ev.ts):%H:%M:%S}" if ev.ts else "",
        "text": _first_line(ev.text, 600), "tail": _tail(ev.text), "more": len(ev.text.splitlines()) > 2,
        "full": ev.text,
        "mark": ids.mark(ev.source, ev.line) if ev.ts or (ev.source, ev.line) in incident_of else None,
        "incident": incident_of.get((ev.source, ev.line)),
    } for ev in items]


def _finding(f: Finding, rank: int, ids: _Ids, incident_of: dict[tuple[str, int], int]) -> dict[str, Any]:
    return {
        "rank": rank, "category": f.category.value, "severity": f.severity.value, "title": f.title,
        "rule_id": f.rule_id, "role": f.role.value,
        "confidence": round(f.confidence * 100), "explanation": f.explanation,
        "fix": None if f.fix is None else {"text": f.fix.text, "snippet": f.fix.snippet, "verify": f.fix.verify},
        "evidence": _evidence_rows(f.evidence[:MAX_EVIDENCE], ids, incident_of),
        "evidence_more": max(0, len(f.evidence) - MAX_EVIDENCE),
        "against": _evidence_rows(f.contradicting[:MAX_EVIDENCE], ids, incident_of),
    }


def _incident_row(inc: Incident, ids: _Ids) -> dict[str, Any]:
    first = inc.events[0]
    return {
        "id": inc.id, "ts": f"{_utc(inc.ts):%Y-%m-%d %H:%M:%S}", "closed_by": inc.closed_by.value,
        "phase": inc.phase.value, "idle": duration(inc.idle_before_s), "uptime": duration(inc.uptime_s),
        "period": duration(inc.period_s), "outage": duration(inc.outage_s),
        "confidence": round(inc.confidence * 100), "reason": inc.reason,
        "lines": [{"where": f"{ids.short(e.source)}:{e.line}", "kind": e.kind.value,
                   "ts": f"{_utc(e.at):%H:%M:%S.%f}"[:-3], "mark": ids.mark(e.source, e.line),
                   "text": _first_line(e.text, 300)} for e in inc.events[:6]],
        "more": max(0, len(inc.events) - 6), "first": f"{first.source}:{first.line}",
    }


def _source_row(src: SourceInfo) -> dict[str, Any]:
    offset = f"{src.offset_s:+.1f}s" if src.offset_s else "0"
    if src.offset_basis:
        offset += f" ({src.offset_basis})"
    # (the per-window counts of repeated lines are for the JSON report: 200 rows in a table cell)
    meta = ", ".join(f"{k}={v}" for k, v in src.meta.items()
                     if v not in (None, "", [], {}) and k != "counted_by_window")
    return {"name": src.name, "format": src.format, "lines": src.lines, "events": src.events,
            "offset": offset, "meta": meta, "warnings": src.warnings}


NAME_KEYS = ("name", "key", "setting", "option", "variable")


def _mask_named_secrets(value: Any) -> Any:
    """``{"name": "broker_password", "value": "x"}`` rows: the key that names a secret is not the
    dict key, so redact_data cannot see it; mask the row's other strings here."""
    if isinstance(value, list | tuple):
        return [_mask_named_secrets(v) for v in value]
    if not isinstance(value, dict):
        return value
    named = next((str(value[k]) for k in NAME_KEYS if isinstance(value.get(k), str)), None)
    secret = named is not None and _is_secret_key(named)
    return {k: MASK if secret and k not in NAME_KEYS and isinstance(v, str) and v else _mask_named_secrets(v)
            for k, v in value.items()}


def _generic(value: Any, depth: int = 0) -> dict[str, Any]:
    """A JSON-ready value as a nested structure the template draws as tables."""
    if isinstance(value, dict) and depth < 5 and len(value) <= 200:
        return {"type": "dict", "items": [(str(k), _generic(v, depth + 1)) for k, v in value.items()]}
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | list | tuple) for v in value):
        return {"type": "scalar", "text": ", ".join(_scalar(v) for v in value) if value else "–"}
    if isinstance(value, list | tuple) and len(value) == 1 and isinstance(value[0], dict):
        return _generic(value[0], depth)
    if (isinstance(value, list | tuple) and value and depth < 5 and len(value) <= 200
            and all(isinstance(v, dict) for v in value)):
        cols: list[str] = []
        for row in value:
            cols += [str(k) for k in row if str(k) not in cols]
        if len(cols) <= 10:
            return {"type": "rows", "cols": cols,
                    "rows": [[_generic(row.get(c), depth + 1) for c in cols] for row in value]}
        return {"type": "list", "items": [_generic(row, depth + 1) for row in value]}
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, indent=2, default=str)
        return {"type": "pre", "text": text if len(text) < 20000 else text[:20000] + "\n…"}
    return {"type": "scalar", "text": _scalar(value)}


def _scalar(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _view(report: Report) -> dict[str, Any]:
    activity = _activity(report)
    names = _lane_names(report, activity)
    ids = _Ids(names)
    incident_of = {(e.source, e.line): inc.id for inc in report.incidents for e in inc.events}
    evidence = [ev for f in report.findings for ev in [*f.evidence, *f.contradicting]]
    times = sorted(_utc(e.at) for e in report.events)
    # secret-looking keys are masked before the structure is flattened into (key, value) rows
    data = redact_data(_mask_named_secrets({k: v for k, v in report.data.items() if k != "activity"}))
    summary = redact_data(_mask_named_secrets(report.summary))
    worst = report.worst()
    return {
        "command": report.command, "version": __version__, "shown": EVIDENCE_SHOWN,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "window": None if not times else {
            "from": f"{times[0]:%Y-%m-%d %H:%M:%S}", "to": f"{times[-1]:%Y-%m-%d %H:%M:%S}",
            "span": duration((times[-1] - times[0]).total_seconds())},
        "worst": worst.value if worst else None,
        "inputs": [s.name for s in report.sources],
        "sources": [_source_row(s) for s in report.sources],
        "findings": [_finding(f, i, ids, incident_of) for i, f in enumerate(report.findings, 1)],
        "incidents": [_incident_row(i, ids) for i in report.incidents],
        "stats": _stats(report),
        "timeline": _timeline(report, names, ids, activity, evidence, incident_of),
        "events": [{"id": ids.mark(e.source, e.line), "ts": f"{_utc(e.at):%H:%M:%S.%f}"[:-3],
                    "where": f"{ids.short(e.source)}:{e.line}", "path": e.source, "kind": e.kind.value,
                    "side": e.side.value,
                    "group": KIND_GROUP.get(e.kind, "other"), "text": _first_line(e.text, 500)}
                   for e in report.events if e.kind not in LOAD_KINDS][:MAX_EVENT_ROWS],
        "events_total": sum(1 for e in report.events if e.kind not in LOAD_KINDS),
        "summary": [(k.replace("_", " "), _generic(v)) for k, v in summary.items()
                    if v not in (None, {}, [])],
        "data": [(k.replace("_", " "), _generic(v)) for k, v in data.items()],
        "warnings": report.warnings,
        "skipped": sorted(_skipped(report, activity)),
        "sections": [{"id": f"input-{sec.name}", "title": sec.title,
                      "blocks": [{"title": b.title, "header": b.header, "rows": b.rows, "text": b.text}
                                 for b in sec.blocks]}
                     for sec in input_sections(report)],
    }


def _stats(report: Report) -> list[tuple[str, str]]:
    """The few numbers an on-call engineer wants in the header."""
    s = report.summary
    out: list[tuple[str, str]] = []
    if report.incidents or "incidents" in s:
        out.append(("incidents", str(len(report.incidents) or s.get("incidents", 0))))
    closed = s.get("closed_by")
    if isinstance(closed, dict) and closed:
        top = max(closed.items(), key=lambda kv: kv[1])
        out.append(("mostly closed by", f"{top[0]} ({top[1]})"))
    if "reconnects" in s:
        out.append(("reconnects", str(s["reconnects"])))
    if s.get("longest_outage_s") is not None:
        out.append(("longest outage", duration(float(s["longest_outage_s"]))))
    periods = [i.period_s for i in report.incidents if i.period_s]
    if periods:
        out.append(("recurs every", duration(sorted(periods)[len(periods) // 2])))
    if not report.findings or not out:
        out.append(("findings", str(len(report.findings))))
    return out


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("celery_doctor.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class HtmlRenderer(Renderer):
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        # the view is redacted string by string here; report.render redacts the whole page after
        view = redact_data(_view(report))
        return _ENV.get_template("report.html.j2").render(**view)
