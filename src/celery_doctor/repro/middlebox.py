"""The kernel middlebox: a network namespace, a veth pair and nftables NAT, whose conntrack
established-flow timeout is the idle timeout.

A userspace proxy cannot see TCP keepalives (the kernel answers them below it), so it cuts
flows that a real NAT gateway or load balancer keeps alive, and it can never prove a keepalive
fix. This middlebox is a real NAT: the worker and the publisher connect to the namespace's
address; the namespace DNATs each connection to the host and masquerades it; the host hands it
to the broker on loopback. Once the fault is set, a flow with no packet for SECONDS (TCP
keepalive probes count, as on a real NAT) loses its conntrack entry; the next packet of that
flow, from either end, is no longer NATed and is answered with an RST (``idle-cut:S:rst``, as
AWS's NAT gateway does) or dropped (``idle-cut:S:silent``). Every such flow is added to an nft
set, which the poller turns into ``proxy_cut`` events, so the run keeps its ground truth.

Needs root, ``ip`` (iproute2), ``nft`` (nftables) and conntrack in the kernel. It handles
idle cuts on a local broker; every other fault goes through the userspace proxy
(``choose`` says which and why).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from celery_doctor.model import DoctorError, Event, Kind, Side
from celery_doctor.repro.proxy import Fault

NO_TIMEOUT_S = 432000  # conntrack's own default (5 days): no idle cut before the fault is set
POLL_S = 0.2
SUBNET = "10.213"  # /30 blocks of 10.213.0.0/16, one per run


class MiddleboxError(DoctorError):
    """The kernel middlebox could not be set up."""


def delete_namespace(name: str) -> None:
    """Delete a namespace the run created (its veth end and nft tables go with it), and the
    host table named after it."""
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10, check=False)
    subprocess.run(["nft", "delete", "table", "ip", name.replace("-", "_")], capture_output=True,
                   timeout=10, check=False)


def choose(fault: Fault | None, broker_host: str, wanted: bool = True) -> tuple[bool, str]:
    """Whether this run can use the kernel middlebox, and why (or why not), in words."""
    if not wanted:
        return False, "the userspace proxy (--middlebox proxy)"
    if fault is None or fault.find("idle-cut") is None:
        return False, "the userspace proxy: no idle cut to make"
    kinds = {part.kind for part in fault.each()} if fault is not None else set()
    others = ", ".join(sorted(kinds - {"idle-cut"}))
    if others:
        return False, f"the userspace proxy: the kernel middlebox does idle cuts only, not {others}"
    cut = fault.find("idle-cut") if fault is not None else None
    if cut is not None and cut.mode == "fin":
        return False, "the userspace proxy: a NAT never closes with FIN (idle-cut:S:fin)"
    if broker_host not in ("127.0.0.1", "localhost"):
        return False, "the userspace proxy: the kernel middlebox serves a broker on this host only"
    if os.geteuid() != 0:
        return False, "the userspace proxy: the kernel middlebox needs root (network namespaces, nftables)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return False, f"the userspace proxy: {' and '.join(missing)} not installed (iproute2, nftables)"
    if not Path("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established").exists():
        return False, "the userspace proxy: conntrack is not available in this kernel"
    return True, ("the kernel middlebox: a network namespace with nftables NAT whose conntrack "
                  "established timeout is the idle timeout (TCP keepalives count, as on a real NAT)")


def _run(*cmd: str, stdin: str | None = None, netns: str | None = None) -> str:
    full = (["ip", "netns", "exec", netns, *cmd] if netns else list(cmd))
    done = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=15)
    if done.returncode != 0:
        raise MiddleboxError(f"kernel middlebox: `{' '.join(cmd)}` failed: {done.stderr.strip()[:200]}")
    return done.stdout


class KernelMiddlebox:
    """One NAT namespace between the run's clients and the broker, with two front ports (one
    for the worker, one for the publisher) so each side's cuts stay separate, like the
    proxies' two event logs."""

    def __init__(self, run_id: str, broker_port: int, worker_log: Path, publisher_log: Path) -> None:
        # not the "cdmb-" prefix of the first version, whose test fixture (still in other
        # checkouts running at the same time) removed every new namespace of that prefix
        self.name = f"cdnat-{run_id[:8]}"
        self.table = self.name.replace("-", "_")
        self.host_if, self.ns_if = f"cdh{run_id[:8]}", f"cdn{run_id[:8]}"
        block = int(hashlib.sha1(run_id.encode()).hexdigest()[:4], 16) % 16384
        base = f"{SUBNET}.{block // 64}.{(block % 64) * 4}"
        prefix, last = base.rsplit(".", 1)
        self.host_ip, self.ns_ip = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"
        self.broker_port = broker_port
        self.ports = {"worker": 15000 + block % 20000, "publisher": 35001 + block % 20000}
        self.logs = {"worker": worker_log, "publisher": publisher_log}
        self.events: dict[str, list[Event]] = {"worker": [], "publisher": []}
        self.fault: Fault | None = None
        self._cut_after: float = 0.0  # the idle timeout in force when flows expired
        self._mode = "rst"
        self._known: dict[int, str] = {}  # client port -> role
        self._cut: set[int] = set()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def address(self, role: str) -> tuple[str, int]:
        return (self.ns_ip, self.ports[role])

    def start(self) -> None:
        up = f"{self.broker_port}"
        _run("ip", "netns", "add", self.name)
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _run("ip", "link", "set", self.ns_if, "netns", self.name)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            # the host accepts the NATed flows for its loopback broker on this veth only
            _run("sysctl", "-qw", f"net.ipv4.conf.{self.host_if}.route_localnet=1")
            for cmd in (("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if),
                        ("ip", "link", "set", self.ns_if, "up"), ("ip", "link", "set", "lo", "up"),
                        ("sysctl", "-qw", "net.ipv4.ip_forward=1"),
                        # strict tracking: a packet of a flow whose entry expired is not picked up
                        # again as a new flow (the kernel default 'loose' would heal every cut)
                        ("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")):
                _run(*cmd, netns=self.name)
            self._set_timeout(NO_TIMEOUT_S)
            self._ruleset("drop")
            # the host leg: to the loopback broker, from loopback (Redis's protected mode and
            # RabbitMQ's guest user accept loopback clients only)
            _run("nft", "-f", "-", stdin=f"""table ip {self.table} {{
  chain pre {{
    type nat hook prerouting priority dstnat;
    iifname "{self.host_if}" ip daddr {self.host_ip} tcp dport {up} dnat to 127.0.0.1:{up}
  }}
  chain local_in {{
    type nat hook input priority 100;
    ip saddr {self.ns_ip} ip daddr 127.0.0.1 tcp dport {up} snat to 127.0.0.1
  }}
}}
""")
        except BaseException:
            self.close()
            raise
        self._poller = threading.Thread(target=self._poll, name="kernel-middlebox", daemon=True)
        self._poller.start()

    def _ruleset(self, verdict: str) -> None:
        """The namespace's NAT: front ports -> the host's broker port, masqueraded; packets of
        expired flows are recorded, then rejected with an RST or dropped."""
        w, p, up = self.ports["worker"], self.ports["publisher"], self.broker_port
        action = "reject with tcp reset" if verdict == "rst" else "drop"
        rules = f"""table ip mb
delete table ip mb
table ip mb {{
  set cut {{ type ipv4_addr . inet_service . inet_service; flags dynamic; }}
  chain pre {{
    type nat hook prerouting priority dstnat;
    tcp dport {{ {w}, {p} }} dnat to {self.host_ip}:{up}
  }}
  chain post {{
    type nat hook postrouting priority srcnat;
    oifname "{self.ns_if}" ip daddr {self.host_ip} masquerade
  }}
  chain expired {{
    type filter hook input priority filter;
    ct state invalid tcp flags & (syn | rst) == 0 add @cut {{ ip saddr . tcp sport . tcp dport }} {action}
  }}
}}
"""
        _run("nft", "-f", "-", stdin=rules, netns=self.name)

    def _set_timeout(self, seconds: float) -> None:
        _run("sysctl", "-qw", f"net.netfilter.nf_conntrack_tcp_timeout_established={max(1, round(seconds))}",
             netns=self.name)

    def set_fault(self, fault: Fault | None) -> None:
        cut = fault.find("idle-cut") if fault is not None else None
        self.fault = fault
        if cut is not None and cut.seconds is not None:
            self._cut_after, self._mode = cut.seconds, cut.mode
            self._ruleset("rst" if cut.mode == "rst" else "drop")
            self._set_timeout(cut.seconds)
            for role in self.events:
                self._record(role, Kind.OTHER, None, f"conntrack established timeout set to {cut.seconds:g} s")
        else:
            self._set_timeout(NO_TIMEOUT_S)

    # -- ground truth ------------------------------------------------------------------------

    def _record(self, role: str, kind: Kind, client: str | None, message: str) -> None:
        ts = datetime.now(UTC)
        row = {"ts": ts.isoformat(timespec="microseconds"), "source": "proxy", "kind": kind.value,
               "client": client, "upstream": f"127.0.0.1:{self.broker_port}",
               "fault": self.fault.spec if self.fault else None, "message": message}
        text = json.dumps(row)
        with self.logs[role].open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        self.events[role].append(Event(ts=ts, source="proxy", line=len(self.events[role]) + 1, side=Side.PROXY,
                                       kind=kind, text=text, peer=client,
                                       detail={"message": message, "fault": row["fault"],
                                               "local": client, "middlebox": "kernel"}))

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            with contextlib.suppress(MiddleboxError, subprocess.TimeoutExpired, OSError, ValueError):
                self._poll_once()

    def _poll_once(self) -> None:
        # new connections, by the front port they went to (host side: ss sees them)
        out = subprocess.run(["ss", "-Htn", "dst", self.ns_ip], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            cols = line.split()
            if len(cols) < 5:
                continue
            local, peer = cols[3], cols[4]
            port, front = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
            role = next((r for r, p in self.ports.items() if p == front), None)
            if role and port not in self._known:
                self._known[port] = role
                self._record(role, Kind.CONNECTED, f"{self.host_ip}:{port}",
                             f"connection opened through the NAT from {self.host_ip}:{port}")
        listed = _run("nft", "-j", "list", "set", "ip", "mb", "cut", netns=self.name)
        for element in _set_elements(listed):
            _saddr, sport, dport = element
            port = sport if dport in self.ports.values() else dport
            if port in self._cut:
                continue
            self._cut.add(port)
            role = self._known.get(port, "worker")
            # a flow that expired under the fault stays dead after it: its later packets still
            # hit the rule, and are reported with the timeout that killed it
            how = "answered with RST" if self._mode == "rst" else "dropped silently"
            side = "client" if dport in self.ports.values() else "broker"
            self._record(role, Kind.PROXY_CUT, f"{self.host_ip}:{port}",
                         f"conntrack entry expired after {self._cut_after:g}s idle; "
                         f"next packet ({side} side) {how}")

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(5)
            with contextlib.suppress(Exception):
                self._poll_once()  # the last cuts before the namespace goes
        # the broker still holds the far end of flows the NAT forgot (no heartbeat ever tells it):
        # close them, or RabbitMQ keeps the dead worker's exclusive remote-control queue
        for port in sorted(self._known):
            subprocess.run(["ss", "-K", "-tn", "state", "established",
                            f"( sport = :{self.broker_port} and dport = :{port} )"],
                           capture_output=True, timeout=10, check=False)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True, timeout=10, check=False)
        delete_namespace(self.name)


def _set_elements(listed: str) -> list[tuple[str, int, int]]:
    """The (ip, port, port) elements of ``nft -j list set``."""
    out: list[tuple[str, int, int]] = []
    try:
        doc = json.loads(listed)
    except ValueError:
        return out
    for item in doc.get("nftables", []):
        for element in (item.get("set") or {}).get("elem", []) or []:
            concat = element.get("concat") if isinstance(element, dict) else None
            if concat is None and isinstance(element, dict):
                concat = (element.get("elem") or {}).get("val", {}).get("concat")
            if isinstance(concat, list) and len(concat) == 3:
                with contextlib.suppress(TypeError, ValueError):
                    out.append((str(concat[0]), int(concat[1]), int(concat[2])))
    return out
