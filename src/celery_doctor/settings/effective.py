"""The effective settings of an importable app, read by probe/settings_probe.py in the user's
interpreter (a subprocess with a timeout: an app that hangs on import is killed, not waited on)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from importlib import resources
from typing import Any

from celery_doctor.probe import find_interpreter
from celery_doctor.settings.interface import SettingsError

MARK = "CELERY-DOCTOR-SETTINGS "


def resolve_python(python: str | None) -> str:
    """The interpreter's path; a clear SettingsError when it is not one."""
    found = find_interpreter(python)
    if found is None:
        raise SettingsError(f"--python {python}: no such interpreter")
    return found


def read_effective(app: str, python: str | None = None, timeout: float = 30.0,
                   cwd: str | None = None) -> dict[str, Any]:
    """Run the probe; the parsed JSON document, or a SettingsError saying in one line what failed."""
    exe = resolve_python(python)
    script = resources.files("celery_doctor").joinpath("probe", "settings_probe.py")
    with resources.as_file(script) as path:
        try:
            proc = subprocess.Popen([exe, str(path), app], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=cwd or os.getcwd(), start_new_session=True)
        except OSError as exc:
            raise SettingsError(f"--python {python}: cannot run it: {exc.strerror or exc}") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the app's own children too
            proc.communicate()
            raise SettingsError(f"--app {app}: importing it did not finish within {timeout:g}s "
                                "(does the module connect to something at import time?)") from None
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): the probe is in its own session, stop it too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if not lines:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise SettingsError(f"--python {python or exe}: the settings probe did not run ({last[:200]})")
    try:
        doc: dict[str, Any] = json.loads(lines[-1][len(MARK):])
    except ValueError:
        raise SettingsError("the settings probe printed something that is not JSON") from None
    if "error" in doc and doc.get("kind") != "config":
        raise SettingsError(f"--app {app}: {doc['error']}".splitlines()[0])
    return doc
