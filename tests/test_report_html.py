"""The HTML report: structure, links between evidence and timeline, no external resources, no
secrets, and a real headless Chromium that renders it (DOM after scripts ran, and a screenshot).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from celery_doctor.model import (
    Category,
    ClosedBy,
    Event,
    Evidence,
    Finding,
    Fix,
    Incident,
    Kind,
    Phase,
    Report,
    Severity,
    Side,
    SourceInfo,
)
from celery_doctor.report import FORMATS, render
from celery_doctor.report.html import HtmlRenderer

T0 = datetime(2024, 5, 14, 9, 0, 0, tzinfo=UTC)
WORKER = "tests/fixtures/idle/worker.log"
BROKER = "tests/fixtures/idle/broker.log"
PROXY = "tests/fixtures/idle/proxy.jsonl"
LOST = ("[{ts}: WARNING/MainProcess] consumer: Connection to broker lost. Trying to re-establish the connection...\n"
        "Traceback (most recent call last):\nConnectionResetError: [Errno 104] Connection reset by peer")
CLOSED = ("{ts} [warning] <0.812.0> closing AMQP connection <0.812.0> (10.0.0.9:51234 -> 10.0.0.5:5672): "
          "client unexpectedly closed TCP connection")
ACCEPTED = "{ts} [info] <0.812.0> accepting AMQP connection <0.812.0> (10.0.0.9:51234 -> 10.0.0.5:5672)"


def idle_cut_report(cuts: int = 4, period_s: float = 300.0, password: str = "s3cr3t-pw") -> Report:
    """A Report shaped like a middlebox idle cut seen by worker, broker and fault proxy."""
    events: list[Event] = []
    incidents: list[Incident] = []
    activity: list[list[object]] = []
    lines = {WORKER: 10, BROKER: 5, PROXY: 1}

    def ev(ts: datetime, source: str, side: Side, kind: Kind, text: str) -> Event:
        event = Event(ts=ts, source=source, line=lines[source], side=side, kind=kind,
                      text=text.format(ts=ts.strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]))
        lines[source] += 3
        events.append(event)
        return event

    url = f"amqp://celery:{password}@10.0.0.5:5672//"
    connected = "[{ts}: INFO/MainProcess] Connected to " + url
    t = T0
    ev(t, WORKER, Side.CLIENT, Kind.CONNECTED, connected)
    ev(t, BROKER, Side.BROKER, Kind.CONNECTION_ACCEPTED, ACCEPTED)
    for i in range(cuts):
        for k in range(6):
            a = t + timedelta(seconds=5 + 10 * k)
            activity.append([a.isoformat(), (a + timedelta(seconds=10)).isoformat(), 20 + 7 * ((k + i) % 4)])
        cut = t + timedelta(seconds=period_s)
        proxy = ev(cut, PROXY, Side.PROXY, Kind.PROXY_CUT, '{{"ts": "{ts}", "event": "cut", "idle_s": 240}}')
        lost = ev(cut + timedelta(seconds=0.2), WORKER, Side.CLIENT, Kind.CONNECTION_LOST, LOST)
        closed = ev(cut + timedelta(seconds=0.3), BROKER, Side.BROKER, Kind.CLIENT_CLOSED_ABRUPTLY, CLOSED)
        t = cut + timedelta(seconds=2)
        ev(t, WORKER, Side.CLIENT, Kind.CONNECTED, connected)
        ev(t, BROKER, Side.BROKER, Kind.CONNECTION_ACCEPTED, ACCEPTED)
        incidents.append(Incident(
            id=i + 1, events=[proxy, lost, closed], closed_by=ClosedBy.NETWORK, phase=Phase.IDLE,
            reason="client reset and broker 'client closed' at the same moment", confidence=0.9,
            idle_before_s=240.0, uptime_s=period_s, period_s=period_s if cuts > 2 else None, outage_s=2.0))
    finding = Finding(
        category=Category.NETWORK_IDLE_TIMEOUT, severity=Severity.HIGH,
        title="Something between worker and broker cuts connections idle for 4 minutes",
        explanation="Each reset follows 240 s without traffic and both sides see the close at once.",
        evidence=[Evidence.of(i.events[1]) for i in incidents] + [Evidence.of(i.events[2]) for i in incidents[:2]],
        fix=Fix(text="Enable AMQP heartbeats below the idle timeout.",
                snippet=f"broker_heartbeat = 60\nbroker_url = '{url}'",
                verify="celery-doctor repro --fault idle-cut:240"),
        confidence=0.87)
    second = Finding(
        category=Category.HEARTBEAT_MISCONFIG, severity=Severity.MEDIUM, title="Heartbeats are off",
        explanation="With heartbeats disabled an idle connection carries no traffic.",
        evidence=[Evidence(source="celeryconfig.py", line=12, text="broker_heartbeat = 0")],
        contradicting=[Evidence.of(events[1])], confidence=0.55)
    sources = [
        SourceInfo(name=WORKER, format="celery", lines=lines[WORKER], meta={"celery": "5.3.6"}),
        SourceInfo(name=BROKER, format="rabbitmq", lines=lines[BROKER], offset_s=-3.2, offset_basis="connect pairs"),
        SourceInfo(name=PROXY, format="proxy-jsonl", lines=lines[PROXY]),
    ]
    events.sort(key=lambda e: e.ts)
    return Report(command="logs", findings=[finding, second], incidents=incidents, events=events, sources=sources,
                  summary={"incidents": len(incidents), "closed_by": {"network": len(incidents)}, "reconnects": cuts},
                  data={"activity": {WORKER: activity}})

# --- helpers -------------------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--disable-dev-shm-usage"]
BROWSER_TIMEOUT_S = 90


def _chromium() -> str:
    """The browser binary; the browser tests fail (never skip) in CI when it is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed (scripts/test.sh installs it with apt-get)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)


def _write(tmp_path: Path, report: Report, name: str = "report.html") -> Path:
    path = tmp_path / name
    path.write_text(render(report, "html"), encoding="utf-8")
    return path


class _Page(HTMLParser):
    """Tag/attribute inventory of a page (the stdlib parser, as a browser-agnostic view)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append((tag, values))
        if "id" in values:
            self.ids.add(values["id"])

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def with_class(self, name: str) -> list[dict[str, str]]:
        """Elements of that class that have an id (legend glyphs share classes but have none)."""
        return [a for _, a in self.tags if name in a.get("class", "").split() and "id" in a]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _local_hrefs(page: _Page) -> list[str]:
    return [a["href"][1:] for _, a in page.tags if a.get("href", "").startswith("#") and len(a["href"]) > 1]


# --- the page, read without a browser -------------------------------------------------------------

def test_html_is_a_registered_format() -> None:
    assert "html" in FORMATS


def test_causes_come_in_order_with_fix_and_evidence() -> None:
    text = render(idle_cut_report(), "html")
    page = _parse(text)
    findings = page.with_class("finding")
    assert [f["id"] for f in findings] == ["finding-1", "finding-2"]
    assert text.index("network_idle_timeout") < text.index("heartbeat_misconfig")
    assert "broker_heartbeat = 60" in text and "celery-doctor repro --fault idle-cut:240" in text
    # the traceback's last line is shown with its first line
    assert "ConnectionResetError: [Errno 104] Connection reset by peer" in text
    assert "87% confidence" in text


def test_timeline_has_one_lane_per_source_marks_bands_idle_and_load() -> None:
    report = idle_cut_report(cuts=4)
    text = render(report, "html")
    page = _parse(text)
    assert "timeline-svg" in page.ids
    assert {f"lane-{i}" for i in range(3)} <= page.ids
    assert {f"band-{i}" for i in range(1, 5)} <= page.ids
    groups = {m["class"].split()[1] for m in page.with_class("mark")}
    assert {"g-lost", "g-closed", "g-cut", "g-connected"} <= groups
    assert text.count('<rect class="load-bar"') >= 4 * 6 // 2 + 3  # neighbouring buckets may merge
    assert any("idle 4m" in t for t in page.text)
    marks = page.with_class("mark")
    assert len(marks) == len([e for e in report.events if e.kind not in (Kind.TASK_RECEIVED, Kind.TASK_SUCCEEDED)])


def test_every_evidence_line_links_to_a_mark_on_the_timeline() -> None:
    report = idle_cut_report()
    page = _parse(render(report, "html"))
    links = [a for _, a in page.tags if "evlink" in a.get("class", "").split()]
    targets = [a["data-mark"] for a in links if "data-mark" in a]
    # all timed evidence of the first finding, plus the incident lines, point at marks
    assert len(targets) >= len(report.findings[0].evidence)
    assert set(targets) <= page.ids
    # the evidence from a file with no timestamp (celeryconfig.py) has no link
    assert any("nolink" in a["class"] for a in links)
    # and every in-page anchor resolves
    assert set(_local_hrefs(page)) - page.ids == set()


def test_evidence_that_no_event_covers_gets_its_own_mark() -> None:
    report = idle_cut_report()
    line = Evidence(source=BROKER, line=4242, text="missed heartbeats from client, timeout: 60s",
                    ts=T0 + timedelta(seconds=42))
    report.findings[1].evidence.append(line)
    page = _parse(render(report, "html"))
    mark = next(a for a in page.with_class("mark") if a["id"] == "m-1-4242")
    assert "g-evidence" in mark["class"]
    assert any(a.get("data-mark") == "m-1-4242" for _, a in page.tags if "evlink" in a.get("class", ""))


def test_marks_carry_the_raw_line_as_their_title() -> None:
    text = render(idle_cut_report(), "html")
    titles = re.findall(r'<g class="mark g-closed" id="(m-1-\d+)"[^>]*>\s*<title>([^<]*)</title>', text)
    assert titles
    assert all("client unexpectedly closed TCP connection" in html.unescape(t) for _, t in titles)


def test_incident_table_shows_the_numbers() -> None:
    page = _parse(render(idle_cut_report(), "html"))
    assert {f"inc-{i}" for i in range(1, 5)} <= page.ids
    text = " ".join(page.text)
    for needle in ("closed by", "idle before", "uptime", "period", "outage", "4m 00s", "5m 00s", "2.0s"):
        assert needle in text


def test_no_external_resources() -> None:
    text = render(idle_cut_report(), "html")
    page = _parse(text)
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "poster", "data", "srcset"):
            value = attrs.get(name, "").strip().lower()
            assert not re.match(r"^(https?:)?//", value), (tag, name, value)
        assert not (tag == "link" and "stylesheet" in attrs.get("rel", "")), "external stylesheet"
        assert not (tag == "script" and "src" in attrs), "external script"
    styles = re.findall(r"<style>(.*?)</style>", text, re.S)
    assert styles and not re.search(r"@import|url\(\s*['\"]?(https?:)?//", "".join(styles))
    assert "url(#hatch)" in "".join(styles)  # the one url() is an in-page SVG pattern


SECRETS = ("hunter2-pw", "tok-9f8e7d6c5b4a", "Zm9vOmJhcg==XYZ", "s3cr3t-pw")


def _report_full_of_secrets() -> Report:
    report = idle_cut_report(password="s3cr3t-pw")
    leaky = Event(ts=T0 + timedelta(seconds=30), source=WORKER, line=999, side=Side.CLIENT,
                  kind=Kind.CANNOT_CONNECT,
                  text='Cannot connect to redis://:hunter2-pw@cache:6379/0 password="hunter2-pw" '
                       'token=tok-9f8e7d6c5b4a')
    report.events.append(leaky)
    report.findings[0].evidence.insert(0, Evidence.of(leaky))
    report.findings.append(Finding(
        category=Category.AUTH_OR_PERMISSIONS, severity=Severity.CRITICAL, title="Login refused for amqp://u:hunter2-pw@h//",
        explanation="Authorization: Basic Zm9vOmJhcg==XYZ was sent; api_key=tok-9f8e7d6c5b4a",
        evidence=[Evidence(source="settings.py", line=3, text="BROKER_PASSWORD = 'hunter2-pw'")],
        fix=Fix(text="Use the password from an environment variable", snippet="broker_url = 'amqp://u:hunter2-pw@h//'")))
    report.warnings.append("could not parse amqp://admin:hunter2-pw@10.0.0.1//")
    report.summary["broker_url"] = "redis://:hunter2-pw@cache:6379/0"
    report.data.update({
        "broker": {"url": "amqp://u:hunter2-pw@h//", "password": "hunter2-pw", "token": "tok-9f8e7d6c5b4a"},
        "settings": [{"name": "broker_password", "value": "hunter2-pw"}],
    })
    report.sources[0].meta["broker"] = "amqp://u:hunter2-pw@h//"
    return report


def test_no_secrets_in_the_page_even_after_unescaping() -> None:
    text = render(_report_full_of_secrets(), "html")
    # the secrets were really there to be found: their contexts are on the page, masked
    assert "Login refused" in text and "BROKER_PASSWORD" in text and "***" in text
    # the renderer alone (before render()'s final pass) already redacted, before HTML escaping
    # could hide a quoted password="..." from the patterns
    bare = HtmlRenderer().render(_report_full_of_secrets())
    for plain in (text, html.unescape(text), bare, html.unescape(bare)):
        for secret in SECRETS:
            assert secret not in plain, secret


def test_a_report_without_events_shows_its_data_and_no_timeline() -> None:
    report = Report(command="broker", findings=[], summary={"reachable": True},
                    data={"facts": {"version": "3.10.8", "heartbeat_s": 60, "alarms": []},
                          "connections": [{"peer": "10.0.0.9:51234", "state": "running", "channels": 2}]})
    text = render(report, "html")
    page = _parse(text)
    assert "timeline-svg" not in page.ids and "incidents" not in page.ids
    assert "details" in page.ids and "No findings" in text
    body = " ".join(page.text)
    assert "3.10.8" in body and "10.0.0.9:51234" in body and "running" in body


def test_incidents_without_activity_still_draw_a_timeline() -> None:
    report = idle_cut_report(cuts=2)
    report.data = {}
    text = render(report, "html")
    page = _parse(text)
    assert "timeline-svg" in page.ids
    assert 'class="idle-stretch"' not in text and "Load (task lines)" not in text


# --- in a real browser ----------------------------------------------------------------------------

def test_chromium_renders_the_timeline_and_the_causes(tmp_path: Path) -> None:
    path = _write(tmp_path, idle_cut_report())
    done = _browser(tmp_path, "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _parse(done.stdout)
    assert 'data-ready="1"' in done.stdout  # the page's script ran to its end
    assert {"timeline-svg", "causes", "finding-1", "band-1", "lane-2", "inspector"} <= dom.ids
    assert len(dom.with_class("mark")) >= 20 and len(dom.with_class("finding")) == 2


def test_following_an_evidence_link_highlights_its_mark(tmp_path: Path) -> None:
    report = idle_cut_report()
    path = _write(tmp_path, report)
    first = report.findings[0].evidence[0]
    target = f"m-0-{first.line}"
    done = _browser(tmp_path, "--dump-dom", f"{path.as_uri()}#{target}")
    assert done.returncode == 0, done.stderr[-2000:]
    marks = {a["id"]: a for a in _parse(done.stdout).with_class("mark")}
    assert "hit" in marks[target]["class"].split()  # the script highlighted the mark
    inspector = re.search(r'<div id="inspector"[^>]*>', done.stdout)
    assert inspector and "hidden" not in inspector.group(0)  # and opened the line under the timeline
    assert "Connection to broker lost" in done.stdout.split('id="inspector-text"', 1)[1][:600]


def test_chromium_screenshot_is_a_real_page(tmp_path: Path) -> None:
    path = _write(tmp_path, idle_cut_report())
    shot = tmp_path / "shot.png"
    done = _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", path.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 1600)
        colours = rgb.resize((320, 400)).getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50  # text, badges, marks: not a blank or single-colour page
    red = sum(n for n, (r, g, b) in colours if r > 180 and g < 90 and b < 90)
    assert red > 0  # the HIGH badge / severity bar / lost marks are drawn in red


def test_sources_with_the_same_file_name_stay_apart() -> None:
    report = idle_cut_report(cuts=2)
    twin = "other/host-b/worker.log"
    report.sources.append(SourceInfo(name=twin, format="celery"))
    report.events.append(Event(ts=T0 + timedelta(seconds=9), source=twin, line=1, side=Side.CLIENT,
                               kind=Kind.CONNECTED, text="Connected to amqp://guest:**@h//"))
    text = render(report, "html")
    names = re.findall(r'<text class="lane-name"[^>]*><title>[^<]*</title>([^<]*)</text>', text)
    assert names == ["idle/worker.log", "broker.log", "proxy.jsonl", "host-b/worker.log"]


IDLE_CUT = Path(__file__).resolve().parent / "fixtures" / "rabbitmq-idle-cut"


def test_a_recorded_idle_cut_renders_in_chromium(tmp_path: Path) -> None:
    """The real pipeline on a real recording (tests/fixtures/rabbitmq-idle-cut), in the browser."""
    from celery_doctor.pipeline import analyse_logs

    report = analyse_logs([str(IDLE_CUT / "worker.log"), str(IDLE_CUT / "broker.log"), str(IDLE_CUT / "proxy.jsonl")])
    assert report.incidents and report.findings
    path = _write(tmp_path, report)
    done = _browser(tmp_path, "--dump-dom", path.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _parse(done.stdout)
    assert {"timeline-svg", "finding-1", "band-1", "lane-0", "lane-1", "lane-2"} <= dom.ids
    assert {a["class"].split()[1] for a in dom.with_class("mark")} >= {"g-lost", "g-closed", "g-cut"}
    assert set(_local_hrefs(dom)) - dom.ids == set()


# --- every report, on screen: no sideways scroll, headline = top cause, links reach the timeline ---

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
WIDTHS = (800, 1400, 1920)

# Runs inside the page after its own script: measures the page and follows every evidence link.
PROBE = """<script>
(function () {
  var d = document.documentElement, svg = document.getElementById("timeline-svg"), links = [];
  document.querySelectorAll("#causes a[data-mark]").forEach(function (a) {
    window.scrollTo(0, 0);
    a.click();
    var mark = document.getElementById(a.getAttribute("data-mark")), r = svg && svg.getBoundingClientRect();
    links.push({mark: a.getAttribute("data-mark"), hit: !!mark && mark.classList.contains("hit"),
                inView: !!r && r.bottom > 0 && r.top < window.innerHeight});
  });
  window.scrollTo(0, 0);
  var wide = [];
  document.querySelectorAll("body *").forEach(function (el) {
    if (!el.closest(".scroll") && el.getBoundingClientRect().right > d.clientWidth + 1) { wide.push(el.tagName); }
  });
  d.setAttribute("data-probe", JSON.stringify({scrollWidth: d.scrollWidth, clientWidth: d.clientWidth,
    wide: wide.slice(0, 5), links: links, headline: document.querySelector("h1").textContent.trim()}));
})();
</script>"""


def _report_for(name: str) -> Report:
    from celery_doctor.pipeline import DiagnoseOptions, check_pins, diagnose

    if name == "every-input":  # logs, config and a live broker probe in one diagnosis
        return diagnose(DiagnoseOptions(logs=[str(EXAMPLES / "idle-cut" / "*.log")],
                                        config=str(ROOT / "tests/fixtures/configs/celeryconfig_31.py"),
                                        broker="redis://127.0.0.1:6379/0", timeout=5))
    if name == "pins":
        return check_pins(str(ROOT / "tests/fixtures/pins/requirements-celery41-unpinned-kombu.txt"), None, "5.4",
                          None, False, None)
    return diagnose(DiagnoseOptions(logs=[str(EXAMPLES / name / "*.log")]))


@pytest.mark.parametrize("name", [*sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()), "every-input", "pins"])
def test_every_report_fits_800_1400_1920_and_its_links_reach_the_timeline(name: str, tmp_path: Path) -> None:
    import json

    report = _report_for(name)
    page = render(report, "html").replace("</body>", PROBE + "</body>")
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    for width in WIDTHS:
        done = _browser(tmp_path, "--force-prefers-reduced-motion", f"--window-size={width},900",
                        "--dump-dom", path.as_uri())
        assert done.returncode == 0, done.stderr[-2000:]
        found = re.search(r'data-probe="([^"]*)"', done.stdout)
        assert found, f"{name} at {width}px: the probe did not run"
        probe = json.loads(html.unescape(found.group(1)))
        assert probe["scrollWidth"] <= probe["clientWidth"], (name, width, probe)  # no sideways scroll
        assert probe["wide"] == [], (name, width, probe["wide"])
        assert probe["headline"] == (report.findings[0].title if report.findings else "No findings")
        if report.events and any(f.evidence for f in report.findings):
            assert probe["links"], f"{name}: no evidence link to the timeline"
        for link in probe["links"]:
            assert link["hit"] and link["inView"], (name, width, link)


def test_a_skipped_input_has_no_lane_and_is_listed_under_the_warnings() -> None:
    from celery_doctor.pipeline import analyse_logs

    folder = EXAMPLES / "idle-cut"
    report = analyse_logs([str(folder / "worker.log"), str(folder / "broker.log"), str(folder / "truth.json")])
    page = render(report, "html")
    lanes = re.findall(r'<text class="lane-name"[^>]*><title>([^<]*)</title>', page)
    assert lanes and not any(lane.endswith("truth.json") for lane in lanes)
    warnings = page.split('id="warnings"', 1)[1].split("</section>", 1)[0]
    assert "Not on the timeline" in warnings and "truth.json" in warnings


def test_each_input_gets_a_readable_section_in_every_format() -> None:
    report = _report_for("every-input")
    page = render(report, "html")
    assert 'id="input-config"' in page and 'id="input-broker"' in page
    broker = page.split('id="input-broker"', 1)[1].split("</section>", 1)[0]
    assert "maxclients" in broker and "<table" in broker  # the probe's facts, not a JSON dump
    markdown = render(report, "markdown")
    assert "## Config" in markdown and "## Broker probe" in markdown and "| tcp-keepalive |" in markdown
    text = render(report, "text", width=100)
    assert "Broker probe" in text and "tcp-keepalive" in text
