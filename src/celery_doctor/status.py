"""Exit statuses: the one list of what ``celery-doctor`` returns to the shell.

Scripts and CI jobs branch on these, so each has one meaning and the numbers never change.
"""

from __future__ import annotations

import signal
from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    OK = 0  # nothing at or above --fail-on
    FINDINGS = 1  # at least one finding at or above --fail-on
    BAD_INPUT = 2  # bad usage, unreadable input, unreachable broker: one line on stderr
    INTERNAL = 70  # a bug in celery-doctor (sysexits EX_SOFTWARE): one line, traceback with CELERY_DOCTOR_DEBUG=1
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


def interrupt(signum: int, frame: Any) -> None:
    """A signal handler that ends the run the way Ctrl-C does; a second signal during the cleanup
    is ignored so that it can finish."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """SIGTERM and SIGHUP (a supervisor stopping us, the terminal closing) end a run the way Ctrl-C
    does: the same cleanup, one line, INTERRUPTED. Main thread only (where the console script starts)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
