"""The shared vocabulary of every stage: events in, incidents and findings out.

Every layer imports from here; this module imports nothing of the project.
Enums are ``str`` subclasses so they serialise to JSON as their plain value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class DoctorError(Exception):
    """Base of every stage's own error type; the CLI turns it into one line and exit 2."""


class Side(str, Enum):
    """Who logged the event."""

    CLIENT = "client"
    BROKER = "broker"
    PROXY = "proxy"
    HARNESS = "harness"


class Kind(str, Enum):
    """What an event says happened (a closed set: rules match on these, never on text)."""

    CONNECTED = "connected"  # client: "Connected to amqp://..."
    CONNECTION_ACCEPTED = "connection_accepted"  # broker: accepting AMQP connection
    CONNECTION_CLOSED_CLEAN = "connection_closed_clean"  # broker: orderly close by the client
    CONNECTION_LOST = "connection_lost"  # client: lost an established connection
    CANNOT_CONNECT = "cannot_connect"  # client: connect attempt failed
    HEARTBEAT_MISSED_CLIENT = "heartbeat_missed_client"  # broker: missed heartbeats from client
    HEARTBEAT_MISSED_BROKER = "heartbeat_missed_broker"  # client: too many heartbeats missed
    CLIENT_CLOSED_ABRUPTLY = "client_closed_abruptly"  # broker: client unexpectedly closed TCP
    BROKER_FORCED_CLOSE = "broker_forced_close"  # broker: connection_forced / admin close
    SERVER_CLOSED_IDLE = "server_closed_idle"  # redis: "Closing idle client" (timeout)
    SERVER_CLOSED_LIMIT = "server_closed_limit"  # redis output buffer / max clients
    AUTH_REFUSED = "auth_refused"
    ACCESS_REFUSED = "access_refused"  # vhost access / missing vhost / connection limits
    TLS_ERROR = "tls_error"
    ALARM_SET = "alarm_set"
    ALARM_CLEARED = "alarm_cleared"
    BLOCKED = "blocked"
    CONSUMER_TIMEOUT = "consumer_timeout"  # broker: delivery acknowledgement timed out
    CHANNEL_ERROR = "channel_error"
    TASK_RECEIVED = "task_received"
    TASK_SUCCEEDED = "task_succeeded"
    TASK_FAILED = "task_failed"
    WORKER_READY = "worker_ready"
    WORKER_SHUTDOWN = "worker_shutdown"
    WORKER_LOST = "worker_lost"  # pool child died: not a network event
    WORKER_CRASH = "worker_crash"  # client: stopped on an exception that is not a connection error
    BROKER_START = "broker_start"
    BROKER_STOP = "broker_stop"
    FAILOVER = "failover"  # redis replica promotion, sentinel switch-master
    PROXY_CUT = "proxy_cut"  # fault proxy: ground truth of an injected cut
    PROXY_BLACKHOLE = "proxy_blackhole"
    PROXY_HEAL = "proxy_heal"
    PROXY_REFUSE = "proxy_refuse"
    OTHER = "other"


class ClosedBy(str, Enum):
    BROKER = "broker"
    CLIENT = "client"
    NETWORK = "network"
    UNKNOWN = "unknown"


class Phase(str, Enum):
    STARTUP = "startup"
    IDLE = "idle"
    LOAD = "load"
    SHUTDOWN = "shutdown"
    UNKNOWN = "unknown"


class Category(str, Enum):
    NETWORK_IDLE_TIMEOUT = "network_idle_timeout"
    NETWORK_PATH_LOSS = "network_path_loss"
    HEARTBEAT_MISCONFIG = "heartbeat_misconfig"
    LONG_TASK_BLOCKS_HEARTBEAT = "long_task_blocks_heartbeat"
    REDIS_SERVER_TIMEOUT = "redis_server_timeout"
    POOL_EXHAUSTION_OR_MISUSE = "pool_exhaustion_or_misuse"
    PREFORK_FORK_SHARED_CONNECTION = "prefork_fork_shared_connection"
    BROKER_RESOURCE_ALARM = "broker_resource_alarm"
    AUTH_OR_PERMISSIONS = "auth_or_permissions"
    TLS_OR_PROXY = "tls_or_proxy"
    BROKER_RESTART_OR_FAILOVER = "broker_restart_or_failover"
    VERSION_INCOMPATIBILITY = "version_incompatibility"
    OLD_SETTING_NAMES_IGNORED = "old_setting_names_ignored"
    BENIGN_CLIENT_DISCONNECT = "benign_client_disconnect"
    NO_INCIDENT = "no_incident"
    UNKNOWN = "unknown"  # failures were seen but nothing explains them


class Severity(str, Enum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


@dataclass(frozen=True)
class Event:
    ts: datetime | None  # aware, UTC, corrected by the clock offset; None: undated (ordered by position)
    source: str  # input name as given by the user
    line: int  # 1-based line of the first physical line
    side: Side
    kind: Kind
    text: str  # the raw line (a multi-line record joined by "\n")
    peer: str | None = None  # ip:port or broker connection id
    error: str | None = None  # exception name / errno / reason, when the line carries one
    signature: str | None = None  # id of the catalogue entry that matched
    level: str | None = None  # log level as written by the source
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"timeout_s": 60}

    @property
    def dated(self) -> bool:
        return self.ts is not None

    @property
    def at(self) -> datetime:
        """The time of a dated event. The merged timeline and every incident hold dated events
        only (undated ones, e.g. a bare pasted traceback, travel in ``Timeline.undated`` and
        ``Report.undated``), so stages past the timeline read ``at`` without a None check."""
        if self.ts is None:
            raise ValueError(f"{self.source}:{self.line}: an undated event has no time")
        return self.ts


@dataclass(frozen=True)
class Evidence:
    source: str
    line: int
    text: str
    ts: datetime | None = None

    @classmethod
    def of(cls, event: Event) -> Evidence:
        return cls(source=event.source, line=event.line, text=event.text, ts=event.ts)


@dataclass
class Incident:
    """One connection failure, seen from one or both sides."""

    id: int
    events: list[Event]
    closed_by: ClosedBy
    phase: Phase
    reason: str  # why closed_by/phase were chosen, in words
    confidence: float
    idle_before_s: float | None = None
    uptime_s: float | None = None
    period_s: float | None = None
    outage_s: float | None = None  # until the next successful connect
    verdict_id: str | None = None  # the branch of the "who closed it" rules that decided closed_by

    @property
    def ts(self) -> datetime:
        return self.events[0].at


@dataclass(frozen=True)
class Fix:
    text: str
    snippet: str | None = None  # config in the user's Celery version's names
    verify: str | None = None  # how to check it worked (e.g. a repro command line)


class Role(str, Enum):
    """How a finding stands in diagnose's answer."""

    CAUSE = "cause"  # explains the observed failures (ranked; the first is the answer)
    RISK = "risk"  # no failure was observed: what could cause one (config or broker alone)
    CONFIG = "config"  # "also found in the config": hygiene no observed failure ties to
    CONTEXT = "context"  # a verdict or a note (no incident, benign disconnects, the probe's own URL)


@dataclass
class Finding:
    category: Category
    severity: Severity
    title: str
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)
    fix: Fix | None = None
    confidence: float = 0.5
    contradicting: list[Evidence] = field(default_factory=list)
    # machine-readable facts behind the finding, for cross-input rules (e.g. {"setting":
    # "broker_heartbeat", "value": 0}); rules compare these, never the prose
    facts: dict[str, Any] = field(default_factory=dict)
    rule_id: str | None = None  # the rule that made it (docs/incident-rules.md lists them)
    # where diagnose places it (see Role): a renderer shows the findings in the Report's order
    # and may group them by role; the first "cause" is the answer
    role: Role = Role.CAUSE


@dataclass
class SourceInfo:
    """What ingest learned about one input."""

    name: str
    format: str  # e.g. "celery", "rabbitmq-logger", "redis"
    lines: int = 0
    events: int = 0
    offset_s: float = 0.0  # clock offset applied to bring it onto the reference clock
    offset_basis: str | None = None  # which coinciding events the offset came from
    warnings: list[str] = field(default_factory=list)
    # what the log itself says about the run: celery version, transport, pool, concurrency,
    # heartbeat; "naive_tz": True when its timestamps carry no zone (read as UTC)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BrokerFacts:
    """What a live probe of one broker saw (``broker/`` fills it, ``rules/`` judges it).

    ``facts`` holds the broker-specific measurements, JSON-ready, under stable keys
    (see docs/broker.md); ``notes`` says which steps could not be done and why.
    """

    kind: str  # "rabbitmq" | "redis"
    url: str  # already redacted
    host: str
    port: int
    reachable: bool = False
    logged_in: bool | None = None  # None: the probe never got that far
    version: str | None = None
    elapsed_s: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one command found; ``report/`` renders it, ``redact`` cleans it."""

    command: str
    findings: list[Finding] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # the merged timeline (dated events)
    undated: list[Event] = field(default_factory=list)  # events with no time, in input order
    sources: list[SourceInfo] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # command-specific payload, JSON-ready
    warnings: list[str] = field(default_factory=list)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=None)
