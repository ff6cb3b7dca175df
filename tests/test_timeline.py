"""Clock offsets between sources are estimated from events that must coincide."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery_doctor import timeline
from celery_doctor.model import Event, Kind, Side, SourceInfo

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


@dataclass
class FakeIngest:  # the shape of ingest.IngestResult, built by hand for pure timing logic
    events: list[Event]
    sources: list[SourceInfo]
    activity: dict = field(default_factory=dict)


def ev(source: str, side: Side, kind: Kind, seconds: float) -> Event:
    return Event(ts=T0 + timedelta(seconds=seconds), source=source, line=1, side=side, kind=kind,
                 text=kind.value)


def test_two_hour_container_offset_is_found_and_removed() -> None:
    shift = 7200.0  # broker container logs in a zone two hours ahead
    events = []
    for i, t in enumerate((0.0, 95.0, 190.0)):
        events.append(ev("worker.log", Side.CLIENT, Kind.CONNECTED, t + 0.05))
        events.append(ev("rabbit.log", Side.BROKER, Kind.CONNECTION_ACCEPTED, t + shift + i * 0.01))
    sources = [SourceInfo("worker.log", "celery"), SourceInfo("rabbit.log", "rabbitmq")]
    tl = timeline.build(FakeIngest(events, sources))
    broker = [e for e in tl.events if e.source == "rabbit.log"]
    assert abs(broker[0].ts - T0) < timedelta(seconds=1)
    assert sources[1].offset_s is not None and abs(sources[1].offset_s + shift) < 1
    assert "connected~connection_accepted" in (sources[1].offset_basis or "")


def test_same_clock_gets_no_offset() -> None:
    events = [ev("w", Side.CLIENT, Kind.CONNECTED, 0.2), ev("b", Side.BROKER, Kind.CONNECTION_ACCEPTED, 0.0),
              ev("w", Side.CLIENT, Kind.CONNECTED, 50.3), ev("b", Side.BROKER, Kind.CONNECTION_ACCEPTED, 50.0)]
    sources = [SourceInfo("w", "celery"), SourceInfo("b", "rabbitmq")]
    timeline.build(FakeIngest(events, sources))
    assert sources[1].offset_s == 0.0 and sources[1].offset_basis is None


def test_single_pair_that_is_no_time_zone_is_not_trusted() -> None:
    events = [ev("w", Side.CLIENT, Kind.CONNECTED, 0.0), ev("b", Side.BROKER, Kind.CONNECTION_ACCEPTED, 437.0)]
    sources = [SourceInfo("w", "celery"), SourceInfo("b", "rabbitmq")]
    tl = timeline.build(FakeIngest(events, sources))
    assert sources[1].offset_s == 0.0
    assert [e.source for e in tl.events] == ["w", "b"]
