"""A signal in the middle of a big `logs` run: one line, the documented status (130: SIGTERM and
SIGHUP end a run like Ctrl-C), and no process of the tree left behind, the scan pool's workers
included. Killed outright (SIGKILL), the parent takes its workers with it (they die with it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import children_of, console_script

LINE = (b"[2026-11-23 22:32:38,921: INFO/ForkPoolWorker-1] Task shop.tasks.sync[8f1c] succeeded in 0.01s: None\n"
        b"[2026-11-23 22:32:38,925: WARNING/MainProcess] urllib3 retrying after connection broken\n")


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "worker.log"
    block = LINE * 40000
    with path.open("wb") as out:
        for _ in range(30):  # ~200 MB: the scan runs in its pool of workers
            out.write(block)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state != "Z"


def _start(big_log: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    argv = [console_script(), "logs", str(big_log), "--format", "json", "-o", str(tmp_path / "r.json")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = children_of(proc.pid)
        if len(workers) >= 2:  # the pool is scanning
            return proc, workers
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the pool never started")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_mid_scan_is_one_line_130_and_leaves_nothing(big_log: Path, tmp_path: Path, sig: signal.Signals) -> None:
    proc, workers = _start(big_log, tmp_path)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.decode().strip().splitlines() == ["celery-doctor: interrupted"]
    time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]
    assert not (tmp_path / "r.json").exists()


def test_parent_killed_outright_takes_its_workers(big_log: Path, tmp_path: Path) -> None:
    proc, workers = _start(big_log, tmp_path)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]


def test_config_app_interrupted_stops_the_import_probe() -> None:
    # the app probe runs in its own session (an app's children are killed with it): a SIGTERM to
    # celery-doctor must stop it as well, not leave a hanging import behind
    configs = Path(__file__).parent / "fixtures" / "configs"
    proc = subprocess.Popen([console_script(), "config", "--app", "hang_app"], cwd=configs,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not children_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    probes = children_of(proc.pid)
    assert probes, "the import probe never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and err.decode().strip() == "celery-doctor: interrupted"
    assert not [p for p in probes if _alive(p)]
