"""Failover evidence: kombu moving to the next URL of a multi-host broker_url (``Will retry
using next failover.``, celery/worker/consumer/consumer.py: logged when the connection has
alternates and kombu switches host with no pause), a Sentinel that knows no master
(redis-py ``MasterNotFoundError: No master found for 'X'``), Sentinel's ``+switch-master``, a
replica promoted (``MASTER MODE enabled``).

What the logs alone say: which nodes the worker tried, which ones failed, and whether it
connected to one afterwards (failover worked) or every node it tried failed (failover could not
help). What the config adds (``with_config``, called by rules/combine.py's cross-check): the nodes
broker_url lists, so "every node failed" can be said of the configured set, and a failover the
file does not explain (one host configured) points at a config that is not the one in effect.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from celery_doctor.model import Category, Event, Evidence, Finding, Fix, Kind, Severity, Side
from celery_doctor.rules.context import LogContext, all_events, evidence_of
from celery_doctor.rules.registry import rule

SIGNS = re.compile(r"Will retry using next failover|No master found for|MasterNotFoundError|\+switch-master"
                   r"|MASTER MODE enabled|Connection with master lost")
_CANNOT = re.compile(r"Cannot connect to (?P<url>[a-z][\w+.-]*://\S*?):\s+(?P<why>.*?)\.?\s*(?:\n|$)")
_CONNECTED = re.compile(r"Connected to (?P<url>[a-z][\w+.-]*://\S+)")
_NO_MASTER = re.compile(r"No master found for '(?P<name>[^']*)'")
_MONITOR = re.compile(r"\+monitor master (?P<name>\S+) (?P<addr>\S+ \d+)")
_SWITCH = re.compile(r"\+switch-master (?P<name>\S+) (?P<old>\S+ \d+) (?P<new>\S+ \d+)")
DEFAULT_PORTS = {"amqp": 5672, "pyamqp": 5672, "librabbitmq": 5672, "amqps": 5671, "redis": 6379, "rediss": 6379,
                 "sentinel": 26379, "sqs": 443}


def node(url: str) -> str:
    """``host:port`` of a broker URL, the way kombu reads it (the userinfo ends at the last ``@``);
    the scheme's default port when none is written."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/", 1)[0]
    host = authority.rpartition("@")[2] or "localhost"
    if host.startswith("[") and "]" in host:  # [ipv6]:port
        addr, _, port = host[1:].partition("]")
        port = port.lstrip(":")
    else:
        addr, _, port = host.partition(":")
    default = DEFAULT_PORTS.get(scheme.split("+")[0].lower())
    return f"{addr or 'localhost'}:{port or default or ''}".rstrip(":")


def configured_nodes(value: str) -> list[str]:
    """The nodes a broker_url setting lists: ``'a;b'``, a list or tuple of URLs, or one URL."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        parsed = value.strip().strip("'\"")
    urls: list[str] = []
    if isinstance(parsed, str):
        urls = [u for u in parsed.split(";") if "://" in u]
    elif isinstance(parsed, list | tuple):
        urls = [u for item in parsed if isinstance(item, str) for u in item.split(";") if "://" in u]
    return list(dict.fromkeys(node(u.strip()) for u in urls))


@dataclass
class Path:
    """What the worker's connection attempts show, in order."""

    failed: dict[str, str] = field(default_factory=dict)  # node -> the error text (last seen)
    failed_events: list[Event] = field(default_factory=list)
    switched: list[Event] = field(default_factory=list)  # the "Will retry using next failover" events
    connected: Event | None = None  # the first connect after the first failure
    connected_to: str | None = None
    gave_up: Event | None = None  # "Unrecoverable error" after the failures
    no_master: dict[str, str] = field(default_factory=dict)  # sentinel node -> master name it did not know
    server: list[Event] = field(default_factory=list)  # Sentinel / replica lines (broker side)


def _path(events: list[Event]) -> Path:
    out = Path()
    for e in events:
        text = e.text
        if e.side == Side.CLIENT and e.kind == Kind.CANNOT_CONNECT:
            m = _CANNOT.search(text)
            if m:
                where = node(m["url"])
                out.failed[where] = m["why"].strip()
                out.failed_events.append(e)
                if (n := _NO_MASTER.search(text)) is not None:
                    out.no_master[where] = n["name"]
            if "Will retry using next failover" in text:
                out.switched.append(e)
        elif e.side == Side.CLIENT and e.kind == Kind.CONNECTED and out.failed_events and out.connected is None:
            m = _CONNECTED.search(text)
            out.connected, out.connected_to = e, node(m["url"]) if m else None
        elif out.failed_events and out.connected is None and "Unrecoverable error" in text:
            out.gave_up = e
        elif e.kind == Kind.FAILOVER or (e.side != Side.CLIENT and SIGNS.search(text)):
            out.server.append(e)
    return out


@rule("CD-L23", "logs", Category.BROKER_RESTART_OR_FAILOVER)
def failover(ctx: LogContext) -> Iterable[Finding]:
    """The worker failed over to another broker node (or a Sentinel moved the master), or every
    node it tried failed."""
    events = all_events(ctx)
    path = _path(events)
    if not path.switched and not path.server and not path.no_master:
        return []
    tried = list(path.failed)
    facts: dict[str, object] = {"source": "logs", "nodes_failed": tried, "connected_to": path.connected_to}
    if path.connected is not None:
        moved = path.connected_to not in path.failed if path.connected_to else True
        title = (f"Broker node {', '.join(tried)} was unreachable; the worker failed over to {path.connected_to}"
                 if tried and path.connected_to and moved else "A broker node went away and the client failed over")
        explanation = ("The logs show failover working: " + (
            f"the worker could not reach {', '.join(f'{n} ({path.failed[n]})' for n in tried)}, moved to the next "
            f"node and connected to {path.connected_to}." if tried and path.connected_to else
            "a broker node (or Sentinel) refused or knew no master, and the client moved to the next one and "
            "connected again.") + " The cause is on the broker side (a node stopped, a master switch); look at that "
            "node's log.")
        facts["failover"] = "worked"
        switch = next((m for e in path.server if (m := _SWITCH.search(e.text))), None)
        if switch:
            title = (f"Sentinel moved master {switch['name']} from {switch['old'].replace(' ', ':')} to "
                     f"{switch['new'].replace(' ', ':')}; the worker followed it")
            explanation += (f" The Sentinel log shows the switch ({title.split(';')[0]}): the old master went away, "
                            "a replica was promoted, and the worker's next connect through the Sentinels reached the "
                            "new master.")
            facts["switch"] = {"master": switch["name"], "from": switch["old"].replace(" ", ":"),
                               "to": switch["new"].replace(" ", ":")}
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM, title=title,
            explanation=explanation,
            evidence=evidence_of([*path.failed_events[:3], path.connected, *path.server]),
            fix=Fix(text="Nothing to change in Celery if the node was stopped on purpose; bring the failed node "
                         "back (or take it out of broker_url). Keep every node listed in broker_url (or every "
                         "sentinel) and broker_connection_retry on."),
            confidence=0.85, facts=facts)]
    if path.no_master and set(path.no_master) == set(tried):
        names = sorted(set(path.no_master.values()))
        facts["failover"] = "no_master"
        monitored = {m["name"]: m["addr"].replace(" ", ":") for e in events if (m := _MONITOR.search(e.text))}
        facts["master_name"] = names[0]
        wrong = bool(monitored) and not set(names) & set(monitored)
        if wrong:
            facts["monitored"] = sorted(monitored)
        monitor_lines = [e for e in events if _MONITOR.search(e.text)]
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
            title=(f"The Sentinels monitor {', '.join(sorted(monitored))}, not {names[0]}: master_name is wrong"
                   if wrong else f"No Sentinel the worker asked knows a master named {', '.join(names)}"),
            explanation=(f"Every Sentinel tried ({', '.join(tried)}) answered 'No master found for "
                         f"{names[0]!r}' and the worker never connected" + (
                             f"; the Sentinel's own log shows it monitors {', '.join(sorted(monitored))}, so the "
                             "master name in broker_transport_options['master_name'] is not one it knows."
                             if wrong else ": either the master name in broker_transport_options['master_name'] is "
                             "not one these Sentinels monitor (a typo, another deployment's name), or the Sentinels "
                             "lost the master (down, or a failover that found no replica to promote).")),
            evidence=evidence_of([*path.failed_events[:4], *monitor_lines, *path.server]),
            fix=Fix(text="Use the name the Sentinels monitor (`redis-cli -p 26379 SENTINEL masters`); if it is "
                         "right, bring the master or a replica back.",
                    snippet="broker_transport_options = {'master_name': "
                            + (repr(sorted(monitored)[0]) if wrong else "'<the name SENTINEL masters shows>'") + "}"),
            confidence=0.9 if wrong else 0.8, facts=facts)]
    if path.switched and len(tried) == 1 and path.gave_up is None:
        facts["failover"] = "switching"  # one node failed, the logs end before the next attempt
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
            title=f"Broker node {tried[0]} was unreachable; the worker moved to the next node of its failover list",
            explanation=(f"The worker could not reach {tried[0]} ({path.failed[tried[0]]}) and kombu switched to the "
                         "next URL of broker_url; the logs end before the next attempt, so whether another node "
                         "answered is not shown. The cause is on the broker side: look at that node's log."),
            evidence=evidence_of([*path.failed_events, *path.server]),
            fix=Fix(text="Bring the node back (or take it out of broker_url); keep every node listed and "
                         "broker_connection_retry on."),
            confidence=0.75, facts=facts)]
    if path.failed_events and (path.switched or len(tried) > 1):
        facts["failover"] = "all_failed"
        errors = sorted(set(path.failed.values()))
        refused = all("refused" in e.lower() for e in errors)
        return [Finding(
            category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.HIGH,
            title=f"Every broker node the worker tried was unreachable ({', '.join(tried)})",
            explanation=("The worker went through its failover list ("
                         + ", ".join(f"{n}: {path.failed[n]}" for n in tried) + ") and connected to none"
                         + (", then gave up" if path.gave_up else "")
                         + ". Failover cannot help when every node is down: " + (
                             "each one refused the connection, so nothing listens there (brokers stopped, or wrong "
                             "ports)." if refused else "check that the brokers run and that the worker's host can "
                             "reach them.")),
            evidence=evidence_of([*path.failed_events, *([path.gave_up] if path.gave_up else []), *path.server]),
            fix=Fix(text="Start the broker nodes (or correct broker_url); the worker connects as soon as one answers "
                         "if broker_connection_retry is on."),
            confidence=0.7, facts=facts)]
    # broker-side lines only (a Sentinel switch, a replica promoted) with no client story to pair
    hits = [e for e in events if e.kind == Kind.FAILOVER or SIGNS.search(f"{e.error or ''}\n{e.text}")]
    recovered = any(e.kind == Kind.CONNECTED and hits[0].ts is not None and e.ts is not None and e.ts >= hits[0].ts
                    for e in ctx.timeline.events)
    switch = next((m for e in hits if (m := _SWITCH.search(e.text))), None)
    facts["failover"] = "broker_side"
    if switch:
        facts["switch"] = {"master": switch["name"], "from": switch["old"].replace(" ", ":"),
                           "to": switch["new"].replace(" ", ":")}
    switched = (f"Sentinel moved master {switch['name']} from {switch['old'].replace(' ', ':')} to "
             f"{switch['new'].replace(' ', ':')}") if switch else None
    return [Finding(
        category=Category.BROKER_RESTART_OR_FAILOVER, severity=Severity.MEDIUM,
        title=switched or "A broker node went away and the client failed over",
        explanation=("The logs show failover on the broker side" + (" and the client connected again" if recovered
                                                                   else "") + ": connections to the old master "
                     "were cut when it went away; clients reconnect through the Sentinels to the new one."),
        evidence=evidence_of(hits),
        fix=Fix(text="Nothing to change in Celery if the master was failed over on purpose; list every sentinel in "
                     "broker_url and keep broker_connection_retry on. Look at why the old master went away."),
        confidence=0.85 if recovered else 0.75,
        facts=facts,
    )]


def with_config(findings: list[Finding], broker_url: str | None, evidence: Evidence | None) -> None:
    """The config's broker_url beside the failover the logs show (in place): several nodes and a
    switch confirm it; every configured node failing is said of the whole list; a failover with one
    node configured means the file is not what the worker ran with."""
    found = next((f for f in findings if f.rule_id == "CD-L23" and f.facts.get("failover")), None)
    # (called on the findings before combine merges them: CD-L04's restart may lead the category)
    if found is None or broker_url is None or evidence is None:
        return
    nodes = configured_nodes(broker_url)
    if not nodes:
        return
    failed = [str(n) for n in found.facts.get("nodes_failed") or []]
    outcome = found.facts["failover"]
    found.facts["nodes_configured"] = nodes
    listed = f"broker_url lists {len(nodes)} node(s): {', '.join(nodes)}"
    seen = [*failed, *([str(found.facts["connected_to"])] if found.facts.get("connected_to") else [])]
    foreign = [n for n in dict.fromkeys(seen) if n not in nodes]
    if foreign:
        found.contradicting.append(evidence)
        found.explanation += (f"\nAgainst the config: {listed}, yet the worker tried {', '.join(foreign)}; the file "
                              "is not what the worker ran with (an environment variable, --broker, or another "
                              "settings module).")
        return
    if len(nodes) < 2:
        return
    found.evidence.append(evidence)
    untried = [n for n in nodes if n not in failed and n != found.facts.get("connected_to")]
    if outcome == "worked":
        found.confidence = min(0.95, found.confidence + 0.05)
        found.explanation += f"\nThe config agrees: {listed}; the worker used that list as intended."
    elif outcome == "no_master":
        found.explanation += f"\n{listed}: the worker asked every one of them."
    elif outcome == "all_failed":
        if not untried:
            found.title = f"All {len(nodes)} broker nodes in broker_url failed ({', '.join(nodes)})"
            found.confidence = min(0.9, found.confidence + 0.1)
            found.explanation += f"\n{listed}: every one of them failed, so failover had nowhere to go."
        else:
            found.explanation += (f"\n{listed}; the logs show no attempt on {', '.join(untried)} (cut before the "
                                  "worker got there, or the worker runs with another list).")
