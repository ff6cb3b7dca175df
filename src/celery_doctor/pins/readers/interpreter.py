"""A live interpreter (the current one or ``--python PY``), read by the stdlib-only probe.

The probe runs *inside* that interpreter, so an old Celery 3.1 / Python 2.7 environment is read
exactly as it is, without importing any of it into celery-doctor's own process.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from importlib import resources

from celery_doctor.pins.interface import Environment, Pin, PinsError
from celery_doctor.probe import find_interpreter

PROBE_TIMEOUT_S = 60.0


def resolve_python(python: str | None) -> str:
    """The interpreter's path; a clear PinsError when it is not one."""
    found = find_interpreter(python)
    if found is None:
        raise PinsError(f"--python {python}: no such interpreter")
    return found


def run_probe(python: str | None, broker_url: str | None = None) -> dict:
    exe = resolve_python(python)
    script = resources.files("celery_doctor").joinpath("probe", "pins_probe.py")
    with resources.as_file(script) as path, tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run([exe, str(path), broker_url or ""], capture_output=True, text=True,
                                  timeout=PROBE_TIMEOUT_S, cwd=cwd, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PinsError(f"--python {python}: the probe did not answer within {PROBE_TIMEOUT_S:g}s") from exc
        except OSError as exc:
            raise PinsError(f"--python {python}: cannot run it: {exc.strerror or exc}") from exc
    try:
        answer = json.loads(proc.stdout.strip().splitlines()[-1])
        answer["packages"]
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PinsError(f"--python {python or exe}: not a Python interpreter celery-doctor can read ({last})") \
            from exc
    return answer


def read_interpreter(python: str | None, broker_url: str | None = None) -> Environment:
    answer = run_probe(python, broker_url)
    env = Environment(origin=answer.get("executable") or str(python), format="interpreter",
                      python=answer["python"], installed=True, probe=answer)
    for name, dist in sorted(answer["packages"].items()):
        env.add(Pin(name=name, version=dist["version"], text=f"{name}=={dist['version']} (installed)"))
    return env
