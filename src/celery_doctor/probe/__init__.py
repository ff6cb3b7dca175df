"""Scripts that run inside the user's interpreter (stdlib only, Python 2.7 and 3.5+ syntax),
and the one helper that finds that interpreter."""

from __future__ import annotations

import os
import shutil
import sys


def find_interpreter(python: str | None) -> str | None:
    """The path of ``--python`` (a name on PATH or a path), this interpreter when not given,
    None when it is not an executable; each stage turns None into its own error."""
    if not python:
        return sys.executable
    found = shutil.which(python) if os.sep not in python else python
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        return None
    return found
